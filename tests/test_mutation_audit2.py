"""Second mutation-testing audit (session 29): each test kills a deliberate mutation of a core
invariant that the rest of the suite let pass; the mutation is named in the docstring.

Covered here: stop strings and their held-back tail (pipeline.stops), the chat prompt's room for a
message (pipeline.chatsession), tokenize's input check (pipeline.encode), the shard writer's
vocabulary bound (pipeline.shards), the end of the learning-rate schedule (pipeline.lr), atomic
folder swaps and fingerprints (pipeline.atomic), the dedup key and which copy is kept
(pipeline.dedup), the tokens view (pipeline.tokenview), the quarantine account
(pipeline.quarantine), normalize's and build's count reconciliation (pipeline.sources.normalize,
pipeline.buildstats) and train's data check (pipeline.trainsetup.check_data). The audit's table
(mutations tried, killed, equivalent) is in the session notes; the survivors judged equivalent are
not tested.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from test_build import FIXTURE as BUILD_FIXTURE
from test_build import fixture_rows, run_build, write_corpus
from test_chat import PERSONA, scripted_engine
from test_quarantine_cli import BROKEN as QUARANTINE_BROKEN
from test_quarantine_cli import GOOD as QUARANTINE_GOOD
from test_quarantine_cli import _normalize as normalize_contrib
from test_shards import _conversations as shard_conversations
from test_shards import _write_split as write_split
from test_tokenview import ROOT, write_project

from pipeline import atomic, cli, dedup, quarantine
from pipeline.chatsession import ChatSession
from pipeline.encode import to_batch, tokenize_dataset
from pipeline.lr import lr_at
from pipeline.shards import ShardWriter
from pipeline.sources.normalize import _report as normalize_counts
from pipeline.stops import StopStringDecoder, check_stop_strings
from pipeline.tokenizer import ENDOFTEXT_ID, N_VOCAB, get_encoding, render
from pipeline.tokenview import (
    ShownWindow,
    Span,
    conversations,
    format_window,
    loss_spans,
    open_split,
    training_windows,
)

ENC = get_encoding()


def shown_by(decoder: StopStringDecoder, *pieces: str) -> str:
    """What a decoder shows for `pieces`, each fed as its own tokens, then the end."""
    return "".join(decoder.feed(t) for piece in pieces for t in ENC.encode_ordinary(piece)) + decoder.flush()


# ---------------------------------------------------------------- stop strings


def test_a_single_stop_string_is_one_stop_not_its_characters() -> None:
    """A bare string is one stop. Kills `stop = (stop,)` -> `stop = tuple(stop)` (which made "ab"
    the two stops "a" and "b")."""
    assert check_stop_strings("ab") == ("ab",)
    assert shown_by(StopStringDecoder(ENC, "ab"), "a b ba ab c") == "a b ba "


@pytest.mark.parametrize("stop", ["", [""], ["ok", ""]])
def test_an_empty_stop_string_is_refused(stop: object) -> None:
    """ "" would be found at offset 0 of every reply and end it before it starts. Kills dropping
    `or not s` from check_stop_strings."""
    with pytest.raises(ValueError, match="non-empty"):
        check_stop_strings(stop)  # type: ignore[arg-type]


def test_the_held_tail_is_the_longest_over_all_stop_strings() -> None:
    """With stops "cz" and "abcq", "abc" could begin "abcq": all three characters are held, not
    just the "c" that could begin "cz". Kills returning the first stop's hold in _held_tail (then
    "ab" was shown, and "abcq" was missed once "c" was released apart from it)."""
    decoder = StopStringDecoder(ENC, ["cz", "abcq"])
    shown = "".join(decoder.feed(ENC.encode_ordinary(ch)[0]) for ch in "xabc")
    assert shown == "x"
    assert decoder.feed(ENC.encode_ordinary("q")[0]) == "" and decoder.stopped


def test_nothing_comes_after_a_stop_not_even_a_cut_character() -> None:
    """Token 564 is b" \\xe2\\x80": the space ends the reply at stop " " while the two bytes of a
    character wait in the UTF-8 decoder. flush after the stop must show nothing (it would show
    U+FFFD). Kills dropping `if self.stopped: return ""` from flush."""
    assert ENC.decode_single_token_bytes(564) == b" \xe2\x80"
    decoder = StopStringDecoder(ENC, " ")
    assert decoder.feed(ENC.encode_ordinary("ok")[0]) == "ok"
    assert decoder.feed(564) == "" and decoder.stopped
    assert decoder.flush() == ""


# ---------------------------------------------------------------- chat session


def words(n: int) -> str:
    """A message of exactly n tokens ("word" then " word"s)."""
    return "word" + " word" * (n - 1)


def test_a_message_that_just_fits_is_taken_and_one_token_more_is_refused_naming_the_room() -> None:
    """Block 128, reply budget 16: the prompt may hold 112 tokens, of which <|endoftext|> persona
    and <human> ... <endOfText> <bot> take 4 + the persona's. A message of exactly the rest fills
    the prompt; one token more is refused with the room it had. Kills `fixed = 2 + ...` -> `1 + ...`
    in prompt_ids (the error then named one token too many as fitting)."""
    session = ChatSession(scripted_engine(ENC), context=PERSONA, max_new_tokens=16, temperature=0.0)
    room = 112 - 4 - len(ENC.encode_ordinary(PERSONA))
    assert len(session.prompt_ids(words(room))) == 112
    with pytest.raises(ValueError, match=f"message is {room + 1} tokens; with the persona only {room} fit"):
        session.prompt_ids(words(room + 1))


# ---------------------------------------------------------------- tokenize's input check


def dataset_frame(*first_roles: str) -> pl.DataFrame:
    """Dataset rows (encode.INPUT_COLUMNS) whose conversations open with `first_roles`."""
    other = {"human": "bot", "bot": "human"}
    return pl.DataFrame(
        {
            "conversation_id": [f"c{i}" for i in range(len(first_roles))],
            "messages": [
                [{"role": r, "content": "hello"}, {"role": other[r], "content": "hi there"}]
                for r in first_roles
            ],
            "context": [None] * len(first_roles),
            "source": ["alpha"] * len(first_roles),
        }
    )


def test_a_conversation_that_opens_with_the_bot_is_refused_naming_its_row() -> None:
    """A bot-first conversation would train the model to speak unprompted; the build's schema
    refuses it, and tokenize guards datasets made another way. Kills dropping the `bot_first`
    check from encode.to_batch, and naming the row without its `row_offset`."""
    assert to_batch(dataset_frame("human", "human"), "d.parquet", row_offset=7).row_offset == 7
    with pytest.raises(
        ValueError, match=r"d\.parquet: row 8 \(conversation_id 'c1'\): its first message is a bot turn"
    ):
        to_batch(dataset_frame("human", "bot", "human"), "d.parquet", row_offset=7)
    no_messages = dataset_frame("human", "human").with_columns(
        pl.Series("messages", [[{"role": "human", "content": "hi"}], []])
    )
    with pytest.raises(ValueError, match=r"d\.parquet: row 8 \(conversation_id 'c1'\): conversation has no"):
        to_batch(no_messages, "d.parquet", row_offset=7)


# ---------------------------------------------------------------- atomic writes


def test_a_folder_swapped_in_gives_its_private_files_and_folders_the_umasks_modes(tmp_path: Path) -> None:
    """Some writers make 0600 files whatever the umask (safetensors' save_file), and mkdtemp makes
    0700 folders: published as they are, another user could not load the model. Kills
    `fsync_tree(tmp, default_modes=True)` -> `default_modes=False` in atomic_dir."""
    umask = os.umask(0)
    os.umask(umask)
    target = tmp_path / "hf"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "sub").mkdir(mode=0o700)
        for path in (tmp / "model.safetensors", tmp / "sub" / "config.json"):
            path.write_bytes(b"{}")
            path.chmod(0o600)
    for path in (target / "model.safetensors", target / "sub" / "config.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert (target / "sub").stat().st_mode & 0o777 == 0o777 & ~umask


def test_without_renameat2_the_old_folder_set_aside_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel cannot exchange two names, atomic_dir moves the old folder to `.<name>.old`,
    renames the new one in, then deletes the old: a model's worth of disk otherwise stays until the
    next write. Kills dropping the final `_remove(old)` of that fallback."""
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    target = tmp_path / "out"
    for text in ("old", "new"):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "f.txt").write_text(text)
    assert (target / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_json_outputs_do_not_depend_on_the_order_keys_were_added() -> None:
    """DVC hashes the stage outputs: two runs that built one dict in another order must write the
    same bytes. Kills `sort_keys=True` -> `False` in json_bytes (what write_json writes)."""
    assert atomic.json_bytes({"b": 1, "a": {"é": 2, "c": 3}}) == atomic.json_bytes(
        {"a": {"c": 3, "é": 2}, "b": 1}
    )
    assert atomic.json_bytes({"b": 1, "a": "é"}) == '{\n  "a": "é",\n  "b": 1\n}\n'.encode()


def test_a_file_of_the_recorded_size_but_other_bytes_is_different(tmp_path: Path) -> None:
    """fingerprint_mismatch compares the size first, then the sha256. Kills dropping the sha256
    comparison (a same-size edit, a flipped byte, passed), and dropping the "unrecorded" answer
    for a report that holds no fingerprint (then None.get raised AttributeError)."""
    path = tmp_path / "turns.parquet"
    path.write_bytes(b"abcd")
    recorded = atomic.fingerprint(path)
    assert atomic.fingerprint_mismatch(path, recorded) is None
    path.write_bytes(b"abce")
    assert atomic.fingerprint_mismatch(path, recorded) == "different"
    for bad in (None, {}, {"bytes": 4}, {"sha256": 1}):
        assert atomic.fingerprint_mismatch(path, bad) == "unrecorded"
    assert atomic.fingerprint_mismatch(tmp_path / "gone", recorded) == "missing"


# ---------------------------------------------------------------- shards


def test_the_shard_writer_refuses_the_first_id_past_the_vocabulary(tmp_path: Path) -> None:
    """N_VOCAB itself is no token (the embedding has rows up to PADDED_VOCAB, so training would not
    even fail on it). Kills `ids.max() >= N_VOCAB` -> `>` in ShardWriter.add."""
    writer = ShardWriter(tmp_path, shard_tokens=100)
    writer.add(np.array([ENDOFTEXT_ID, N_VOCAB - 1]), np.array([0, 1]), np.array([2]))
    with pytest.raises(ValueError, match=f"token ids must lie in \\[0, {N_VOCAB}\\)"):
        writer.add(np.array([ENDOFTEXT_ID, N_VOCAB]), np.array([0, 1]), np.array([2]))
    writer.abort()


# ---------------------------------------------------------------- learning-rate schedule


def test_from_decay_iters_on_the_rate_is_min_lr_even_when_warmup_fills_the_run() -> None:
    """Past decay_iters the rate is min_lr; with warmup_iters == decay_iters the cosine has no
    length (its ratio is 0 / max(1, 0)), so only the `step >= decay_iters` test gives min_lr there,
    not lr. Kills `>=` -> `>` in lr_at (the other edges of the schedule are in test_train_schedule)."""
    kw = dict(lr=1.0, min_lr=0.1, warmup_iters=8)
    assert lr_at(8, **kw, decay_iters=8) == 0.1
    assert lr_at(10, **kw, decay_iters=10) == 0.1 and lr_at(11, **kw, decay_iters=10) == 0.1


# ---------------------------------------------------------------- dedup key


def conversation_keys(conversations: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """(k1, k2) of each conversation (alternating turns from a human one), as the build keys them."""
    rows = [
        {"conversation_id": cid, "turn": t, "role": ("human", "bot")[t % 2], "text": text}
        for cid, texts in conversations.items()
        for t, text in enumerate(texts)
    ]
    frame = pl.DataFrame(rows).with_columns(dedup.folded_text()).with_columns(dedup.row_key_hashes())
    keys = frame.group_by("conversation_id").agg(dedup.conversation_key_aggs())
    return {r["conversation_id"]: (r["k1"], r["k2"]) for r in keys.iter_rows(named=True)}


def test_the_same_exchanges_in_another_order_are_another_conversation() -> None:
    """The key XORs its rows' hashes, so without the turn number in them the order would not count:
    "x","y","z","w" and "z","w","x","y" hold the same (role, text) rows. Kills dropping `turn` from
    row_key_hashes. And the key's two halves use two seeds (128 bits, not 64 twice): kills hashing
    both with KEY_SEEDS[0]."""
    keys = conversation_keys(
        {"a": ["x", "y", "z", "w"], "b": ["z", "w", "x", "y"], "c": ["X!", "y", "z", "w."]}
    )
    assert keys["a"] != keys["b"]
    assert keys["a"] == keys["c"]  # folded: case and a final mark
    assert all(k1 != k2 for k1, k2 in keys.values())


def test_the_first_copy_in_the_given_order_is_kept() -> None:
    """mark_duplicates sorts by `order` (source rank, then id) and keeps the first of each key,
    whatever order the rows came in. Kills `is_first_distinct` -> `is_last_distinct`, dropping the
    sort, and `first_rank` from the last copy."""
    candidates = pl.DataFrame(
        {"conversation_id": ["b", "a", "c"], "rank": [1, 0, 2], "k1": [7, 7, 9], "k2": [8, 8, 9]}
    )
    marked = dedup.mark_duplicates(candidates, ["rank", "conversation_id"])
    assert marked.select("conversation_id", "duplicate", "first_rank").rows() == [
        ("a", False, 0),
        ("b", True, 0),
        ("c", False, 2),
    ]


# ---------------------------------------------------------------- tokens view


def test_turn_breaks_never_put_a_line_break_before_the_first_turn() -> None:
    """`turn_breaks` starts each turn marker on a new line, except the first (right after
    <|endoftext|>, index 1). Kills `a + k > 1` -> `a + k > 0` in loss_spans."""
    ids, mask = render([{"role": "human", "content": "hi"}, {"role": "bot", "content": "yo"}], None)
    spans = loss_spans(np.array(ids), np.array(mask), turn_breaks=True)
    assert [(s.text, s.loss) for s in spans] == [
        ("<|endoftext|><human>hi<endOfText>\n<bot>", False),
        ("yo<endOfText>", True),
    ]


def test_the_first_id_past_the_vocabulary_is_named_not_a_key_error() -> None:
    """Kills `>= N_VOCAB` -> `> N_VOCAB` in loss_spans (N_VOCAB itself then raised KeyError)."""
    with pytest.raises(ValueError, match=f"token id {N_VOCAB} lies outside the vocabulary"):
        loss_spans(np.array([ENDOFTEXT_ID, N_VOCAB]), np.array([0, 0]))


def test_a_span_left_empty_between_two_of_one_flag_joins_them() -> None:
    """The emoji's first token alone carries the loss: its two bytes decode to nothing yet, so that
    span is empty and the text either side of it (both outside the loss) is one span. Kills
    dropping the join in loss_spans (`if spans and spans[-1].loss == bool(flags[a])` -> never)."""
    ids = get_encoding().encode_ordinary("a🙂b")
    assert len(ids) == 4  # "a", the emoji's two pieces, "b"
    assert loss_spans(np.array(ids), np.array([0, 1, 0, 0])) == [Span("a🙂b", False)]


def test_count_shows_that_many_conversations(tmp_path: Path) -> None:
    """Kills `len(picked) == count` -> `== count + 1` in conversations (--count 1 showed two)."""
    root = write_project(tmp_path)
    for count in (1, 2):
        _, shown, _ = conversations(root, "full", "train", 0, count)
        assert [c.index for c in shown] == list(range(count))


def test_only_step_ones_batch_is_labelled_as_step_one(tmp_path: Path) -> None:
    """Step 1 trains on batch_size * grad_accum rows: the next row is drawn later, not by step 1.
    Kills `r < cfg.batch_size * cfg.grad_accum` -> `<=` in training_windows."""
    from pipeline.params import load_params
    from pipeline.trainconfig import TrainConfig

    root = write_project(tmp_path)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")  # the real profile and seed
    params = load_params(root / "params.yaml")
    cfg = TrainConfig.from_params(params["train"], params["train_profiles"])
    step = cfg.batch_size * cfg.grad_accum
    _, shown = training_windows(root, None, step + 1, None)
    assert [w.first_step for w in shown] == [True] * step + [False]


def test_a_windows_loss_share_is_of_its_targets_not_its_tokens(tmp_path: Path) -> None:
    """A window of block_size + 1 tokens has block_size targets (the first token is only an input):
    1 of 2 targets is 50%, not 1 of 3 tokens' 33%. Kills `/ (w.tokens - 1)` -> `/ w.tokens` in
    format_window."""
    root = write_project(tmp_path)
    shards = open_split(root, "full", "train")
    window = ShownWindow(
        0, 5, False, 2, "turn", tokens=3, loss_tokens=1, spans=[Span("ab", False), Span("c", True)]
    )
    head = format_window(window, shards, root, color=False).splitlines()[0]
    assert head.endswith("1 of 2 targets in the loss (50%)")


# ---------------------------------------------------------------- quarantine


def normalized_contrib(root: Path, text: str) -> Path:
    """A project whose data/contrib/mixed.txt holds `text`, through the real download and normalize."""
    for name in ("sources.yaml", "params.yaml"):
        shutil.copy(ROOT / name, root / name)
    contrib = root / "data" / "contrib"
    contrib.mkdir(parents=True)
    (contrib / "mixed.txt").write_text(text)
    (contrib / "mixed.yaml").write_text("licence: CC0-1.0\ncommercial: true\ndescription: test\n")
    normalize_contrib(root)
    return root


def test_rules_are_listed_most_rows_first_each_with_its_first_row(tmp_path: Path) -> None:
    """Two rules catch three rows each, two catch one. Kills `descending=[True, False]` ->
    `[False, False]` (fewest first) and `.group_by("check").first()` -> `.last()` (the example
    was the rule's last row) in quarantine.read_source."""
    empty_human = "<human> <endOfText>\n<bot> y <endOfText>\n\n"
    root = normalized_contrib(tmp_path, QUARANTINE_GOOD + QUARANTINE_BROKEN + "\n" + empty_human * 2)
    q = quarantine.read_source("contrib", root)
    assert list(q.by_check.items()) == [
        ("first_turn_human", 3),
        ("text_present", 3),
        ("conversation_broken", 1),
        ("turn_unclosed", 1),
    ]
    assert q.first["text_present"]["origin"] == "mixed.txt:7"  # not mixed.txt:13, its last


def test_a_quarantine_replaced_by_one_of_as_many_rows_is_named_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report's row count alone does not vouch for the file: one of as many rows, other reasons,
    is refused by the fingerprint the report recorded. Kills dropping the `problem == "different"`
    refusal in quarantine.read_source (the other file was then shown as the report's)."""
    root = normalized_contrib(tmp_path, QUARANTINE_GOOD * 2 + QUARANTINE_BROKEN)
    path = root / "data" / "quarantine" / "contrib.parquet"
    pl.read_parquet(path).with_columns(reason=pl.lit("edited by hand")).write_parquet(path)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(root))
    assert cli.main(["quarantine", "contrib"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        "contrib: data/quarantine/contrib.parquet is not the quarantine data/normalized/contrib.report.json "
        "was written with"
    ) in captured.err


# ---------------------------------------------------------------- train's data check


def test_tokenized_shards_with_no_loss_token_are_refused_by_their_meta_counts(tmp_path: Path) -> None:
    """Shards with a meta.json are vouched for by it, and its train n_loss_tokens stands for a scan:
    0 of them (only human turns) must be refused as the scan refuses it. Kills `n_loss_tokens > 0`
    -> `>= 0` in trainsetup.check_data (the shards without meta.json the other tests use took the
    scan)."""
    import torch

    from pipeline.device import DistInfo
    from pipeline.trainsetup import Runtime, TrainSetupError, check_data

    for split, seed in (("train", 1), ("val", 2)):
        rows = shard_conversations(8, seed)
        for row in rows:  # the human turns only: nothing for the loss
            row["messages"] = [m for m in row["messages"] if m["role"] == "human"]
        write_split(tmp_path / "dataset" / f"{split}.parquet", rows)
    out = tmp_path / "tokens"
    meta = tokenize_dataset(tmp_path / "dataset", out, shard_tokens=2000, workers=0, batch_conversations=16)
    assert meta["splits"]["train"]["n_loss_tokens"] == 0 and (out / "meta.json").is_file()
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    with pytest.raises(TrainSetupError, match=r"tokens/train: no loss token \(bot turn\) in the train split"):
        check_data(out, rt)


def test_shards_without_meta_need_a_loss_token_in_one_shard_not_in_each(tmp_path: Path) -> None:
    """A train split whose first shard is a human-only conversation and whose second holds a bot
    turn trains. Kills `any(np.any(shard.mask) ...)` -> `all(...)` in trainsetup.check_data."""
    import torch

    from pipeline.device import DistInfo
    from pipeline.trainsetup import Runtime, check_data

    turns = [
        [{"role": "human", "content": "just me"}],
        [{"role": "human", "content": "hi"}, {"role": "bot", "content": "yo"}],
    ]
    for split in ("train", "val"):
        rendered = [render(t, None) for t in turns]
        writer = ShardWriter(
            tmp_path / split, shard_tokens=max(len(ids) for ids, _ in rendered)
        )  # one a shard
        for ids, mask in rendered:
            writer.add(np.array(ids), np.array(mask), np.array([len(ids)]))
        writer.close()
    assert len(list((tmp_path / "train").glob("mask-*.bin"))) == 2
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    check_data(tmp_path, rt)  # no TrainSetupError: the second shard has the loss


# ---------------------------------------------------------------- normalize's count reconciliation


def normalize_report(kept_sources: list[str], quarantined_sources: list[str]) -> dict[str, object]:
    """normalize's report of sources a (2 rows read) and b (2 rows read), rows kept and quarantined
    as the sources listed say (one row a conversation)."""
    live = pl.DataFrame(
        {"source": kept_sources, "conversation_id": [f"c{i}" for i in range(len(kept_sources))]}
    )
    quarantined = pl.DataFrame(
        {"check": ["text_present"] * len(quarantined_sources), "source": quarantined_sources}
    )
    filtered = pl.DataFrame(schema={"source": pl.String, "reason": pl.String, "n": pl.Int64})
    kept_by_source = dict(Counter(kept_sources))
    return normalize_counts(
        4, live.height, kept_by_source, live, quarantined, {}, {"a": 2, "b": 2}, filtered, {}
    )


def test_normalize_counts_each_sources_rows_and_refuses_any_that_do_not_add_up() -> None:
    """rows_read = kept + quarantined + filtered, in total and for each source. Kills, in
    normalize._report: a source's rows_kept or rows_quarantined counted over every source, the
    check dropped, and the check made on the total only (a row put down to the wrong source adds up
    there)."""
    report = normalize_report(["a", "a", "b"], ["b"])
    assert report["by_source"] == {
        "a": {
            "rows_read": 2,
            "rows_kept": 2,
            "rows_filtered": {},
            "rows_quarantined": 0,
            "turns_kept": 2,
            "conversations_kept": 2,
        },
        "b": {
            "rows_read": 2,
            "rows_kept": 1,
            "rows_filtered": {},
            "rows_quarantined": 1,
            "turns_kept": 1,
            "conversations_kept": 1,
        },
    }
    with pytest.raises(RuntimeError, match="normalize lost rows"):
        normalize_report(["a", "b", "b"], ["b"])  # 4 = 3 + 1 in total, but a's 2 rows are 1 and b's 3


# ---------------------------------------------------------------- build's count reconciliation


def test_a_build_that_loses_a_row_fails_and_keeps_the_old_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every row read must be kept, quarantined, filtered or a duplicate: one row more read than
    the build accounts for (a row lost between the plan and the files) is a BuildError naming the
    source, and the dataset already there stays. Kills dropping the `counts do not reconcile`
    refusal in buildstats.compute_stats (stats.json then said `reconciles: true`)."""
    from pipeline import build
    from pipeline.buildinputs import BuildError

    fixture = yaml.safe_load(BUILD_FIXTURE.read_text())
    write_corpus(tmp_path, fixture_rows(fixture))
    names, registry = list(fixture["sources"]), fixture["registry"]
    run_build(tmp_path, names, registry)
    stats = tmp_path / "data" / "dataset" / "full" / "stats.json"
    before = stats.read_bytes()
    real = build.compute_stats

    def one_row_lost(
        plan: pl.DataFrame,
        written: pl.DataFrame,
        quarantined: pl.DataFrame,
        file_rows: dict[int, int],
        *rest: Any,
    ) -> dict[str, Any]:
        first = min(file_rows)
        return real(plan, written, quarantined, {**file_rows, first: file_rows[first] + 1}, *rest)

    monkeypatch.setattr(build, "compute_stats", one_row_lost)
    with pytest.raises(BuildError, match=r"counts do not reconcile: read \d+ rows, accounted for"):
        run_build(tmp_path, names, registry)
    assert stats.read_bytes() == before


def test_the_probe_of_a_huge_block_size_reaches_the_bot_after_a_long_human_turn(tmp_path: Path) -> None:
    """A typo'd block_size is probed with windows of twice the longest shard, which reach every bot
    token a longer window would: here the bot's reply past a human turn of over half the shard.
    Kills `min(cfg.block_size, 2 * longest)` -> `min(cfg.block_size, longest // 2)` in
    trainsetup.check_data (the probe then saw human text only and refused the data)."""
    import torch

    from pipeline.device import DistInfo
    from pipeline.trainconfig import TrainConfig
    from pipeline.trainsetup import Runtime, check_data

    long_human = [{"role": "human", "content": "tell me " * 30}, {"role": "bot", "content": "ok"}]
    for split in ("train", "val"):
        ids, mask = render(long_human, None)
        writer = ShardWriter(tmp_path / split, shard_tokens=len(ids))
        writer.add(np.array(ids), np.array(mask), np.array([len(ids)]))
        writer.close()
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    cfg = TrainConfig(n_layer=1, n_head=1, n_embd=8, block_size=10**12, device="cpu").validated()
    check_data(tmp_path, rt, cfg)  # no TrainSetupError: the whole conversation fits a probe window


def test_a_single_contributed_file_is_counted_as_its_own_source(tmp_path: Path) -> None:
    """One file in data/contrib/ is still the source contrib/<stem>, with its own counts (and
    terms) under the report's by_source: `nanochatgpt quarantine contrib/mixed` reads them. Kills
    `len(sources) > 1 or any("/" in s ...)` -> `len(sources) > 1` in normalize._report."""
    root = normalized_contrib(tmp_path, QUARANTINE_GOOD * 2 + QUARANTINE_BROKEN)
    q = quarantine.read_source("contrib", root, only="contrib/mixed")
    report = json.loads((root / "data" / "normalized" / "contrib.report.json").read_text())
    assert (q.source, q.rows_read, q.rows_quarantined) == ("contrib/mixed", report["rows_read"], 4)
    assert report["by_source"]["contrib/mixed"]["commercial"] is True


def test_the_build_compares_its_rows_with_the_reports_turns_kept_not_its_upstream_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """normalize's rows_kept counts upstream rows (merged into fewer turns); the rows it wrote are
    its turns_kept. A report with more upstream rows matches; one whose turns_kept is not the
    table's is stale, and said. Kills, in buildstats.compute_stats, `matches_normalize_report`
    always true and `rows_kept` read before `turns_kept`."""
    fixture = yaml.safe_load(BUILD_FIXTURE.read_text())
    write_corpus(tmp_path, fixture_rows(fixture))
    names, registry = list(fixture["sources"]), fixture["registry"]
    merged, stale = names[:2]
    for name, change in ((merged, {"rows_kept": 5}), (stale, {"turns_kept": -1})):
        path = tmp_path / "data" / "normalized" / f"{name}.report.json"
        report = json.loads(path.read_text())
        path.write_text(json.dumps({**report, **{k: report[k] + d for k, d in change.items()}}))
    capsys.readouterr()
    stats = run_build(tmp_path, names, registry).stats["sources"]
    assert stats[merged]["matches_normalize_report"] is True
    assert stats[stale]["matches_normalize_report"] is False
    warnings = [line for line in capsys.readouterr().err.splitlines() if "stale report?" in line]
    assert len(warnings) == 1 and stale in warnings[0]


def test_windows_mostly_of_human_text_are_warned_of_with_the_share_drawn_as_the_run_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long human turn beside a short exchange: 13% of turn-aligned windows of 12 tokens reach a
    bot token, under half, so a warning (the probe is seeded: the share is fixed). Kills, in
    trainsetup.check_data, the warning's `reaching < 0.5` -> `< 0.05` and the probe drawn without
    the profile's window_align."""
    import torch

    from pipeline.device import DistInfo
    from pipeline.trainconfig import TrainConfig
    from pipeline.trainsetup import Runtime, check_data

    short = [{"role": "human", "content": "hi"}, {"role": "bot", "content": "hello there"}]
    long_human = [{"role": "human", "content": "tell me " * 30}, {"role": "bot", "content": "ok"}]
    rendered = [render(long_human, None), render(short, None)]
    for split in ("train", "val"):
        writer = ShardWriter(tmp_path / split, shard_tokens=100_000)
        ids, mask = (np.array([t for r in rendered for t in r[k]]) for k in (0, 1))
        writer.add(ids, mask, np.array([len(r[0]) for r in rendered]))
        writer.close()
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    cfg = TrainConfig(n_layer=1, n_head=1, n_embd=8, block_size=12, device="cpu").validated()
    assert cfg.window_align == "turn"
    check_data(tmp_path, rt, cfg)
    assert "warning: only 13% of windows of block_size 12 reach a bot token" in capsys.readouterr().err


def test_a_contrib_source_that_gave_no_rows_is_not_called_commercial(tmp_path: Path) -> None:
    """data/contrib's registry flag is a placeholder: its rows are commercial when every file that
    gave some is, and with none giving any there is nothing to vouch for. Kills
    `bool(giving) and all(...)` -> `all(...)` in buildstats.compute_stats (True for no file)."""
    fixture = yaml.safe_load(BUILD_FIXTURE.read_text())
    rows = fixture_rows(fixture)
    rows["contrib"] = []
    write_corpus(tmp_path, rows)
    contrib = run_build(tmp_path, list(fixture["sources"]), fixture["registry"]).stats["sources"]["contrib"]
    assert (contrib["parts"], contrib["commercial"]) == ({}, False)


def test_a_build_whose_plan_and_files_disagree_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's kept rows must be the rows written, even when the total still adds up (rows_kept
    comes from the files). Kills dropping `planned != (kept_rows, q_rows)` from the refusal in
    buildstats.compute_stats."""
    from pipeline import build
    from pipeline.buildinputs import KEPT, BuildError

    fixture = yaml.safe_load(BUILD_FIXTURE.read_text())
    write_corpus(tmp_path, fixture_rows(fixture))
    real = build.compute_stats

    def plan_off_by_one(plan: pl.DataFrame, *rest: Any) -> dict[str, Any]:
        at = plan["status"].to_list().index(KEPT)  # one kept conversation planned a row longer
        n_rows = pl.when(pl.int_range(pl.len()) == at).then(pl.col("n_rows") + 1).otherwise(pl.col("n_rows"))
        return real(plan.with_columns(n_rows.cast(plan.schema["n_rows"])), *rest)

    monkeypatch.setattr(build, "compute_stats", plan_off_by_one)
    with pytest.raises(BuildError, match="counts do not reconcile"):
        run_build(tmp_path, list(fixture["sources"]), fixture["registry"])
