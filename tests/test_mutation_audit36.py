"""Mutation audit 36: the code session 37 added to chat (bounded_line, the persona limit, commands
read through invisible.visible), chatrequest/responsesapi's string checks, serve's blank --host,
quarantine's known rules, readers' CSV header line, runstate/trainsetup's tampered-state checks,
shards' damaged header, params' root_first, the dataset card, check's subfolder note, contrib's
sidecar shape and registry's unknown-licence wording. Each test kills a hand-made mutant that the
suite let live; its docstring names the mutation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from test_mutation_audit27 import LoggedRuntime, run_state, tiny_model
from test_polish37 import refused_csv_header
from test_redteam37b import _restore, _saved_state
from test_train import paths_in, tiny_config

from pipeline import chat, checkpoint, trainsetup
from pipeline.chatrequest import ChatRequest, RequestError
from pipeline.tokenizer import PADDED_VOCAB

# ---------------------------------------------------------------- chat.bounded_line


def test_a_last_line_of_exactly_the_limit_without_a_newline_is_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills chat.bounded_line `len(line) <= MAX_MESSAGE_CHARS` -> `<`: input's last line, with no
    newline after it, of exactly the limit was skipped as too long; one character more is."""
    monkeypatch.setattr(chat, "MAX_MESSAGE_CHARS", 5)
    assert chat.bounded_line(io.StringIO("ab\nabcde")) == "ab\n"
    stdin = io.StringIO("abcde")
    assert chat.bounded_line(stdin) == "abcde"
    assert chat.bounded_line(stdin) == ""  # then the end of input
    with pytest.raises(chat.MessageTooLong):
        chat.bounded_line(io.StringIO("abcdef"))


def test_the_rest_of_a_line_too_long_is_dropped_not_read_as_the_next_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills chat.bounded_line's drain loop skipped (`while False and ...`): the tail of a line past
    the limit was read as the next message (here "fgh", then two more pieces of the longer one)."""
    monkeypatch.setattr(chat, "MAX_MESSAGE_CHARS", 5)
    stdin = io.StringIO("abcdefgh\n" + "x" * 17 + "\nhi\n")
    for _ in range(2):
        with pytest.raises(chat.MessageTooLong, match="over 5 characters was skipped"):
            chat.bounded_line(stdin)
    assert chat.bounded_line(stdin) == "hi\n"


# ---------------------------------------------------------------- chatrequest.check_strings


@pytest.mark.parametrize("value", [0, False, [], {}])
@pytest.mark.parametrize("key", ["model", "user", "name"])
def test_a_falsy_value_that_is_no_string_is_refused_too(key: str, value: object) -> None:
    """Kills chatrequest.check_strings `value is not None and ...` -> `value and ...`: `"model": 0`,
    `"user": []` or a message's `"name": false` (no string, yet falsy) were taken with a 200; only
    null stands for "not given"."""
    message: dict[str, object] = {"role": "user", "content": "hi"}
    body: dict[str, object] = {"messages": [message]}
    (message if key == "name" else body)[key] = value
    param = "messages[0].name" if key == "name" else key
    with pytest.raises(RequestError) as e:
        ChatRequest.parse(body)
    assert (e.value.param, e.value.code) == (param, "invalid_type")


# ---------------------------------------------------------------- quarantine._nothing_caught


def test_sources_whose_quarantine_caught_nothing_are_said_to_have_caught_none() -> None:
    """Kills quarantine._nothing_caught dropping `or "none"`: a quarantine that caught no row read
    "(rules that caught rows in a: ; all rules: ...)", a list with nothing in it."""
    from pipeline.quarantine import SourceQuarantine, _nothing_caught

    empty = [SourceQuarantine("a", "data/a.parquet", 3, 0, {}, {})]
    assert "`nope` is not a rule (rules that caught rows in a: none; all rules: " in _nothing_caught(
        "nope", empty
    )
    assert _nothing_caught("utf8", empty).endswith("(rules that caught rows there: none)")


# ---------------------------------------------------------------- runstate.restore_state


def test_recent_losses_that_are_no_numbers_are_refused_at_restore() -> None:
    """Kills runstate.restore_state `[float(x) for x in recent]` -> `list(recent)`: a tampered
    state.pt's `recent_train_losses: ["low"]` was restored as is, into a Progress whose losses
    the run reads as numbers, instead of one line naming the field at the checkpoint."""
    state = _saved_state()
    state["recent_train_losses"] = ["low"]
    with pytest.raises(ValueError, match="^progress: "):
        _restore(state)


def test_a_scaler_state_that_cannot_be_loaded_is_named() -> None:
    """Kills runstate.restore_state's `with _field("scaler")` dropped: a saved loss scaler without
    its `scale` (a tampered or foreign state.pt, restored under float16) was torch's KeyError
    traceback, not one line naming the field."""
    state = _saved_state()
    state["scaler"] = {"growth_factor": 2.0}
    with pytest.raises(ValueError, match="^scaler: "):
        _restore(state, scaler_enabled=True)


# ---------------------------------------------------------------- trainsetup


def test_a_step_of_true_is_refused_even_in_step_one(tmp_path: Path) -> None:
    """Kills trainsetup._state_problem `type(step) is not int` -> `not isinstance(step, int)`: bool is
    an int to Python, and True == 1, so `step: true` in step-00000001/ passed as that folder's step."""
    cfg = tiny_config(init_from="resume")
    run_dir = paths_in(tmp_path, tmp_path / "data").run_dir
    checkpoint.save_run_checkpoint(tiny_model(), {**run_state(cfg, 1), "step": True}, run_dir, 1)
    with pytest.raises(trainsetup.UnreadableState, match="step True is not this folder's step"):
        trainsetup._load_state(run_dir / "step-00000001")


def test_the_batch_is_refused_from_one_byte_past_the_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills trainsetup.refuse_oversized `batch > host` -> `batch > 2 * host` (any looser bound), and
    BATCH_BYTES_PER_TOKEN 17 -> 1: a global batch whose token arrays (x and y int64, the mask uint8:
    17 bytes a token) take one byte more than the memory is refused; one that fits exactly is not.
    (init_from gpt2: the model's size is not judged.)"""
    cfg = tiny_config(init_from="gpt2")
    batch = cfg.tokens_per_iter * (2 * np.dtype(np.int64).itemsize + np.dtype(np.uint8).itemsize)
    monkeypatch.setattr(trainsetup, "memory_of", lambda dev: batch)
    trainsetup.refuse_oversized(cfg, LoggedRuntime())
    monkeypatch.setattr(trainsetup, "memory_of", lambda dev: batch - 1)
    with pytest.raises(trainsetup.TrainSetupError, match="global batch"):
        trainsetup.refuse_oversized(cfg, LoggedRuntime())


def test_a_model_is_sized_with_its_embeddings_and_optimizer_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills two trainsetup.refuse_oversized mutants: the parameter count without its embeddings
    (`(PADDED_VOCAB + block_size) * n_embd` dropped) and the bytes without the 16 a parameter takes to
    train (`params > mem`). A 1-layer model of n_embd 8 has ~400k parameters, almost all embeddings:
    it needs ~6.4 MB to train, refused with 1 MB; the transformer layers alone need 12 KB."""
    cfg = tiny_config(n_layer=1, n_embd=8, n_head=2)
    params = 12 * 8**2 + (PADDED_VOCAB + cfg.block_size) * 8
    assert params < 10**6 < params * 16  # float32 weight, gradient and AdamW's two moments
    monkeypatch.setattr(trainsetup, "memory_of", lambda dev: 10**6)
    with pytest.raises(trainsetup.TrainSetupError, match="n_layer 1, n_embd 8"):
        trainsetup.refuse_oversized(cfg, LoggedRuntime())
    monkeypatch.setattr(trainsetup, "memory_of", lambda dev: params * 16)
    trainsetup.refuse_oversized(cfg, LoggedRuntime())  # exactly enough


def test_a_gpus_memory_is_its_own_not_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills trainsetup.memory_of's CUDA branch returning None: a model too big for the GPU (and
    small enough for the machine's memory) was no longer refused before allocating. (torch's device
    properties are stubbed: no GPU is needed.)"""

    class _Properties:
        total_memory = 80 * 2**30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: _Properties())
    assert trainsetup.memory_of(torch.device("cuda", 0)) == 80 * 2**30


# ---------------------------------------------------------------- params.outside_root_hint


def test_a_folder_with_params_yaml_alone_is_not_named_as_the_projects_root(tmp_path: Path) -> None:
    """Kills params.outside_root_hint's `above` without `and (d / "dvc.yaml").is_file()`: any folder
    above holding a params.yaml (another tool's) was named as the project's root to run from; the
    project's root holds dvc.yaml too."""
    from pipeline.params import outside_root_hint

    (tmp_path / "params.yaml").write_text("x: 1\n")
    (tmp_path / "sub").mkdir()
    hint = outside_root_hint(tmp_path / "sub")
    assert hint.endswith("run the command from the project's root, where params.yaml is"), hint
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert outside_root_hint(tmp_path / "sub").endswith(f"the project's root, {tmp_path.resolve()}")


# ---------------------------------------------------------------- datasetcard._why_left_out


def test_a_licence_written_with_spaces_around_it_is_still_named_once() -> None:
    """Kills datasetcard._why_left_out `source.licence.strip()` -> `source.licence`: a registry's
    ` CC-BY-NC-4.0 ` (the bar's words name it stripped) did not match, and the card's line named the
    licence twice again."""
    from pipeline import cards, datasetcard

    source = cards.CardSource("nc", " CC-BY-NC-4.0 ", False)
    assert datasetcard._why_left_out("commercial", source) == "its licence forbids commercial use"


# ---------------------------------------------------------------- check.subfolders_not_read


def test_files_deeper_down_a_subfolder_are_counted_and_a_linked_subfolder_is_not_followed(
    tmp_path: Path,
) -> None:
    """Kills two check.subfolders_not_read mutants: `d.rglob("*")` -> `d.iterdir()` (a corpus one
    folder further down, data/contrib/mine/2024/, was passed over in silence, as before the note),
    and `or d.is_symlink()` dropped (a link to a folder elsewhere, `/` even, was walked whole to
    count its files)."""
    from pipeline.check import subfolders_not_read

    contrib = tmp_path / "contrib"
    (contrib / "mine" / "2024").mkdir(parents=True)
    (contrib / "mine" / "2024" / "chats.jsonl").write_text("{}\n")
    (lines,) = subfolders_not_read(contrib)
    assert "mine/ holds 1 file that `dvc repro` will not read" in lines
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_text("a")
    (contrib / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert subfolders_not_read(contrib) == [lines]


# ---------------------------------------------------------------- registry.check_licence


@pytest.mark.parametrize("licence", ["Unknown", "UNKNOWN"])
def test_unknown_in_capitals_is_not_echoed_twice_either(licence: str) -> None:
    """Kills registry.check_licence `name.casefold() == "unknown"` -> `name == "unknown"`: `licence:
    UNKNOWN` read "licence is 'UNKNOWN' (unknown) but commercial is true"."""
    from pipeline.sources.errors import SourceError
    from pipeline.sources.registry import check_licence

    with pytest.raises(SourceError, match="^x: licence is unknown but commercial is true; name"):
        check_licence("x", licence, True, None)


# ---------------------------------------------------------------- readers._csv_header


def test_a_header_whose_quoted_field_runs_past_the_limit_is_named_by_its_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills readers._csv_header `end.start = end.start or reader.reader.line_num` -> `= line_num`:
    a header whose quoted field spans lines past the field limit was named by the line csv.reader
    stopped on (line 12 here), not the line the header starts on (2), as header_line says."""
    record, found = refused_csv_header(tmp_path, monkeypatch, '\na,"' + ("y" * 100 + "\n") * 20 + '"\n1,2\n')
    assert (record.line, record.check, found.header_line) == (2, "csv_parse", 2)
    assert record.reason.startswith("the CSV header (line 2) cannot be read")
