"""Mutation audit 8: tests that kill mutants which survived the existing suite (pipeline/quarantine.py,
pipeline/vocabcheck.py, ...). Each test's docstring names the mutation it kills."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from test_quarantine_cli import _hand_made, contrib_project

from pipeline import cli
from pipeline.datasetformat import assemble_conversations, conversation_block, parse_text
from pipeline.model import GPT, GPTConfig
from pipeline.runlock import RunLocked, exclusive_run
from pipeline.sources.normalize import output_paths
from pipeline.tokenizer import N_VOCAB
from pipeline.trainmetrics import summarize
from pipeline.vocabcheck import VocabError, check_vocab


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return contrib_project(tmp_path, monkeypatch)


def _rules_table(rules: list[str]) -> pl.DataFrame:
    """A quarantine of one row per entry of `rules`, numbered in file order."""
    n = len(rules)
    return pl.DataFrame(
        {
            "check": rules,
            "reason": [f"reason {i}" for i in range(n)],
            "origin": [f"f.txt:{i}" for i in range(n)],
            "text": [f"text {i}" for i in range(n)],
        }
    )


def test_quarantine_rules_are_listed_most_rows_first_then_by_name(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills quarantine.read_source: `.sort(["len", "check"], descending=[True, False])` dropped from
    by_check (the rules came in group_by's order, neither by count nor by name)."""
    _hand_made(project, _rules_table(["b", "d", "d", "c", "c", "a", "a", "a"]))
    for _ in range(3):  # group_by's own order varies between runs: one pass could match by chance
        assert cli.main(["quarantine", "contrib", "--json"]) == 0
        (account,) = json.loads(capsys.readouterr().out)
        assert list(account["by_check"].items()) == [("a", 3), ("c", 2), ("d", 2), ("b", 1)]
    assert cli.main(["quarantine", "contrib"]) == 0
    rules = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rules == ["a", "c", "d", "b"]


def test_quarantine_first_example_is_the_rules_first_row_in_the_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills quarantine.read_source: `group_by("check").first()` changed to `.last()` (the example
    shown for each rule was its last row, not the first the rule caught)."""
    _hand_made(project, _rules_table(["a", "b", "a", "b", "a"]))
    assert cli.main(["quarantine", "contrib", "--json"]) == 0
    (account,) = json.loads(capsys.readouterr().out)
    assert account["first"] == {
        "a": {"origin": "f.txt:0", "reason": "reason 0"},
        "b": {"origin": "f.txt:1", "reason": "reason 1"},
    }
    assert cli.main(["quarantine", "contrib"]) == 0
    out = capsys.readouterr().out
    assert "first: f.txt:0: reason 0" in out and "first: f.txt:1: reason 1" in out


def test_quarantine_check_alone_lists_ten_rows(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Kills quarantine.run: the `--check` default of `--rows` changed from 10 (README/--help: "default
    with --check: 10")."""
    _hand_made(project, _rules_table(["a"] * 12 + ["b"]))
    assert cli.main(["quarantine", "contrib", "--check", "a", "--json"]) == 0
    (account,) = json.loads(capsys.readouterr().out)
    assert [row["origin"] for row in account["rows"]] == [f"f.txt:{i}" for i in range(10)]
    assert cli.main(["quarantine", "contrib", "--json"]) == 0  # without --check: no rows
    (account,) = json.loads(capsys.readouterr().out)
    assert account["rows"] == []


def test_quarantine_missing_beside_a_report_without_its_record_is_named_missing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills quarantine.read_source: `or (problem == "unrecorded" and not ...is_file())` dropped (a
    report without its `outputs` record and no quarantine file said "unreadable (No such file...)"
    instead of naming the file missing and how to fetch it)."""
    paths = output_paths("contrib", project)
    report = json.loads(paths["report"].read_text())
    del report["outputs"]
    paths["report"].write_text(json.dumps(report))
    paths["quarantine"].unlink()
    assert cli.main(["quarantine", "contrib"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("quarantine: contrib: data/quarantine/contrib.parquet is missing (")
    assert "`dvc pull normalize@contrib`" in err and "unreadable" not in err


def test_quarantine_short_text_of_control_characters_stays_a_short_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills quarantine._excerpt: `or not text.isprintable()` dropped. A short text of control
    characters was shown by its full repr: each one 4 to 10 characters escaped, so 150 of them made a
    600-character line; `brief` cuts it like a long text."""
    table = _rules_table(["a"]).with_columns(text=pl.lit("\x1b" * 150))
    _hand_made(project, table)
    assert cli.main(["quarantine", "contrib", "--rows", "1"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("text: ")]
    assert "\x1b" not in line and "\\x1b" in line
    assert len(line) <= len("      text: ") + 160 + len("...")


def _gpt(vocab_size: int) -> GPT:
    return GPT(GPTConfig(block_size=8, vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=8))


def test_check_vocab_boundary_is_the_tokenizers_last_id() -> None:
    """Kills vocabcheck.check_vocab: `vocab_size < N_VOCAB` changed to `<= N_VOCAB` or to
    `< N_VOCAB - 1`. A checkpoint of exactly N_VOCAB rows embeds every id the tokenizer writes (ids
    0..N_VOCAB-1) and must load; one row fewer lacks the last chat token and must be refused."""
    check_vocab(_gpt(N_VOCAB), "ckpt/config.json")  # no error: every id has its row
    with pytest.raises(VocabError) as e:
        check_vocab(_gpt(N_VOCAB - 1), "ckpt/config.json")
    assert str(e.value).startswith(
        f"ckpt/config.json vocab_size: the checkpoint's vocabulary has {N_VOCAB - 1} tokens, but the "
        f"tokenizer writes ids up to {N_VOCAB - 1}"
    )


def test_parse_text_reads_an_older_exports_escaped_context_line() -> None:
    """Kills datasetformat._UNESCAPES: the `"<": "<"` entry dropped. Older exports wrote a context line
    that starts with `<` with a leading backslash (`\\<persona>`); parse_text must still read it back."""
    (conv,) = parse_text("\\<b>old persona</b>\n<human> hi <endOfText>\n<bot> yo <endOfText>\n\n")
    assert conv["context"] == "<b>old persona</b>"


def test_parse_text_keeps_an_unknown_escape_as_written() -> None:
    """Kills datasetformat._unescape: the fallback `m.group(0)` changed to `m.group(1)` (a backslash
    before any other character, `C:\\temp` in hand-edited text, lost its backslash)."""
    (conv,) = parse_text("<human> C:\\temp\\new <endOfText>\n<bot> ok <endOfText>\n\n")
    assert conv["messages"][0]["content"] == "C:\\temp\new"


def test_parse_text_keeps_a_last_conversation_without_its_blank_line() -> None:
    """Kills datasetformat.parse_text: the final `if current is not None: conversations.append(current)`
    dropped (a file whose last conversation has no blank line after it, as a hand edit leaves it,
    lost that conversation)."""
    convs = parse_text(
        "<human> a <endOfText>\n<bot> b <endOfText>\n\n<human> c <endOfText>\n<bot> d <endOfText>"
    )
    assert [c["messages"][0]["content"] for c in convs] == ["a", "c"]


def test_an_empty_context_writes_no_context_line() -> None:
    """Kills datasetformat.context_line: `| (context == "")` dropped (an empty context wrote an empty
    first line, which ends the conversation before its turns: the export no longer parsed)."""
    frame = pl.DataFrame({"lines": ["<human> hi <endOfText>"] * 2, "context": ["", None]})
    blocks = frame.select(block=conversation_block(pl.col("lines"), pl.col("context")))["block"]
    assert blocks.to_list() == ["<human> hi <endOfText>"] * 2


def test_assembled_conversations_count_characters_not_bytes() -> None:
    """Kills datasetformat.assemble_conversations: `chars` summed with `len_bytes` instead of
    `len_chars` (the build's `characters` counts and the split's val budget would count UTF-8 bytes,
    three for each of these characters)."""
    texts = ["héllo", "日本語"]
    rows = pl.DataFrame(
        {
            "order_h": [1, 1],
            "conversation_id": ["c", "c"],
            "turn": [0, 1],
            "role": ["human", "bot"],
            "text": texts,
            "context": [None, None],
            "source": ["s", "s"],
            "licence": ["MIT", "MIT"],
            "commercial": [True, True],
            "split": ["train", "train"],
            "rank": [0, 0],
        },
        schema_overrides={"context": pl.String},
    )
    (chars,) = assemble_conversations(rows)["chars"].to_list()
    assert chars == sum(len(t) for t in texts) == 8


def test_run_lock_records_this_pid_alone_and_refuses_a_second_holder(tmp_path: Path) -> None:
    """Kills runlock.exclusive_run: `os.ftruncate(fd, 0)` dropped (a longer pid left by an earlier run
    showed through: "99" over "1234567890" read "99\\n4567890"), the pid's `os.pwrite` dropped, and
    LOCK_EX changed to LOCK_SH (a second holder was let in). flock locks belong to the open file, so a
    second open in this process is refused as another process would be."""
    lock = tmp_path / "run" / "run.lock"
    lock.parent.mkdir()
    lock.write_text("1234567890123456\n")  # an earlier run's (longer) pid
    with exclusive_run(lock):
        assert lock.read_text() == f"{os.getpid()}\n"
        refused = pytest.raises(RunLocked, match=rf"another training run \(pid {os.getpid()}\) is using")
        with refused, exclusive_run(lock):
            pass
    with exclusive_run(lock):  # released when the block ends
        pass


def test_run_lock_held_without_a_pid_names_the_holder_unknown(tmp_path: Path) -> None:
    """Kills runlock.exclusive_run: the `or "unknown"` fallback dropped (a holder that has not yet
    written its pid made the message read "pid )" and "`kill `")."""
    lock = tmp_path / "run.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunLocked) as e, exclusive_run(lock):
            pass
        assert "(pid unknown)" in str(e.value) and "`kill unknown`" in str(e.value)
    finally:
        os.close(fd)


def _summary(losses: list[float], world_size: int) -> dict:
    """trainmetrics.summarize over stand-ins that carry only the fields it reads."""
    progress = SimpleNamespace(
        train_tokens=1000, train_seconds=2.0, recent_train_losses=losses, last_val_loss=2.5,
        best_val_loss=2.25, initial_val_loss=float("nan"), step=7, origin=None, data_changed=False,
    )  # fmt: skip
    cfg = SimpleNamespace(tokens_per_iter=64, init_from="scratch", variant="full")
    rt = SimpleNamespace(device=SimpleNamespace(type="cpu"), dist=SimpleNamespace(world_size=world_size))
    # stand-ins, not the dataclasses: summarize reads attributes only
    return summarize(progress, cfg, rt, 123, 10.0, 1000.0, 3.0)  # type: ignore[arg-type]


def test_summary_train_loss_is_the_mean_of_the_recent_losses_and_mfu_per_process() -> None:
    """Kills trainmetrics.summarize: `train_loss` as the last loss instead of the mean of the recent
    ones, and MFU divided by `peak` alone instead of `peak * world_size` (the tokens/s of a run of N
    processes is N chips' work: one chip's peak would report N times the utilisation)."""
    one = _summary([3.0, 2.0, 1.0], world_size=1)
    assert one["train_loss"] == 2.0 and one["tokens_per_sec"] == 500.0
    assert one["mfu"] == 10.0 * 500.0 / 1000.0
    assert one["initial_val_loss"] is None  # not finite: null in metrics.json, not NaN
    assert _summary([3.0, 2.0, 1.0], world_size=4)["mfu"] == 10.0 * 500.0 / 4000.0
