"""Token shards: writer bounds, reader batches, the tokenize stage end to end, bad input, crashes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from pipeline.encode import LENGTH_BOUNDS, count_by_length, length_label, tokenize_dataset
from pipeline.shards import ShardWriter, TokenShards, verify_variant
from pipeline.tokenizer import ENDOFTEXT_ID, HUMAN_ID, decode, encode_conversations, render

REPO = Path(__file__).resolve().parents[1]
WORDS = [
    *["hello", "there", "how", "are", "you", "today", "I", "like", "cats", "and", "long", "walks"],
    "<bot>",
    "<endOfText>",
    "café",
    "😀",
]


# ---------------------------------------------------------------- helpers


def _conversations(n: int, seed: int, sources: tuple[str, ...] = ("alpha", "beta")) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        turns = rnd.randint(2, 6)
        messages = [
            {
                "role": "human" if t % 2 == 0 else "bot",
                "content": " ".join(rnd.choices(WORDS, k=rnd.randint(1, 12))),
            }
            for t in range(turns)
        ]
        rows.append(
            {
                "conversation_id": f"s{seed}:{i}",
                "messages": messages,
                "context": rnd.choice([None, None, "a persona <human> line"]),
                "source": sources[i % len(sources)],
                "licence": "MIT",
                "commercial": True,
            }
        )
    return rows


def _write_split(path: Path, rows: list[dict]) -> None:
    schema = {
        "conversation_id": pl.String(),
        "messages": pl.List(pl.Struct({"role": pl.String(), "content": pl.String()})),
        "context": pl.String(),
        "source": pl.String(),
        "licence": pl.String(),
        "commercial": pl.Boolean(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=schema).write_parquet(path, row_group_size=64)


def _dataset(root: Path, n_train: int = 150, n_val: int = 30) -> tuple[Path, dict[str, list[dict]]]:
    rows = {"train": _conversations(n_train, 1), "val": _conversations(n_val, 2)}
    for split, r in rows.items():
        _write_split(root / f"{split}.parquet", r)
    return root, rows


def _rendered(rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    return [render(r["messages"], r["context"]) for r in rows]


def _write_shards(directory: Path, convs: list[tuple[list[int], list[int]]], shard_tokens: int) -> None:
    writer = ShardWriter(directory, shard_tokens)
    # two batches, so a shard can be continued across `add` calls
    half = len(convs) // 2
    for part in (convs[:half], convs[half:]):
        ids = np.array([i for c in part for i in c[0]], dtype=np.uint16)
        mask = np.array([m for c in part for m in c[1]], dtype=np.uint8)
        writer.add(ids, mask, np.array([len(c[0]) for c in part], dtype=np.int64))
    writer.close()


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[list[int], list[int]]]]:
    convs = _rendered(_conversations(80, 3))
    directory = tmp_path_factory.mktemp("shards") / "train"
    _write_shards(directory, convs, shard_tokens=400)
    return directory, convs


# ---------------------------------------------------------------- writer and reader


def test_writer_bounds_shards_and_keeps_conversations_whole(shard_dir) -> None:
    directory, convs = shard_dir
    shards = TokenShards(directory)
    assert len(shards.shards) > 3
    assert shards.n_conversations == len(convs)
    assert shards.n_tokens == sum(len(c[0]) for c in convs)
    for shard in shards.shards:
        assert shard.n_tokens <= 400
        assert (shard.tokens[np.asarray(shard.starts)] == ENDOFTEXT_ID).all()
    got = [(ids.tolist(), mask.tolist()) for ids, mask in shards.iter_conversations()]
    assert got == convs


def test_shards_read_with_numpy_alone(shard_dir) -> None:
    """The recipe of docs/shards.md: np.fromfile / np.load, nothing of ours."""
    directory, convs = shard_dir
    conversations = []
    k = 0
    while (directory / f"tokens-{k:05d}.bin").exists():
        tokens = np.fromfile(directory / f"tokens-{k:05d}.bin", dtype="<u2")
        mask = np.fromfile(directory / f"mask-{k:05d}.bin", dtype=np.uint8)
        starts = np.load(directory / f"starts-{k:05d}.npy")
        bounds = [*starts.tolist(), len(tokens)]
        conversations += [
            (tokens[a:b].tolist(), mask[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        k += 1
    assert conversations == convs


def test_conversation_longer_than_a_shard_is_an_error(tmp_path: Path) -> None:
    enc = encode_conversations([None], [2], [False, True], ["hello " * 20, "hi"])
    with pytest.raises(ValueError, match="shard_tokens=10"):
        ShardWriter(tmp_path / "x", 10).add(enc.ids, enc.mask, enc.lengths)


def test_writer_rejects_bad_arrays(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path / "x", 100)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 50260\)"):
        writer.add(np.array([50256, 70000]), np.array([0, 1]), np.array([2]))
    with pytest.raises(ValueError, match="mask values must be 0 or 1"):
        writer.add(np.array([50256, 1]), np.array([0, 2]), np.array([2]))
    with pytest.raises(ValueError, match="disagree in length"):
        writer.add(np.array([50256, 1]), np.array([0, 1]), np.array([3]))


def test_reader_rejects_broken_split(tmp_path: Path, shard_dir) -> None:
    directory, _ = shard_dir
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("tokens-00000.bin", "mask-00000.bin", "starts-00000.npy", "tokens-00001.bin"):
        (broken / name).write_bytes((directory / name).read_bytes())
    with pytest.raises(ValueError, match="has no mask-00001.bin"):
        TokenShards(broken)
    (broken / "tokens-00001.bin").unlink()
    (broken / "mask-00000.bin").write_bytes(b"\x00")
    with pytest.raises(ValueError, match="but mask-00000.bin has 1 bytes"):
        TokenShards(broken)
    with pytest.raises(FileNotFoundError, match="no token split"):
        TokenShards(tmp_path / "missing")


def _find_window(shards: TokenShards, x_row: np.ndarray) -> tuple[int, int]:
    """(shard, offset) of the conversation start the row begins at (first tokens must match)."""
    for s, shard in enumerate(shards.shards):
        for start in shard.starts.tolist():
            n = min(len(x_row), shard.n_tokens - start)
            if np.array_equal(shard.tokens[start : start + n], x_row[:n]):
                return s, start
    raise AssertionError("row does not start at a conversation start")


def test_sample_batch_windows_targets_and_padding(shard_dir) -> None:
    directory, _ = shard_dir
    shards = TokenShards(directory)
    B, T = 12, 64
    x, y, mask = shards.sample_batch(B, T, np.random.default_rng(0))
    assert x.shape == y.shape == mask.shape == (B, T)
    assert (x.dtype, y.dtype, mask.dtype) == (np.int64, np.int64, np.uint8)
    assert (x[:, 0] == ENDOFTEXT_ID).all()
    assert np.array_equal(x[:, 1:], y[:, :-1])
    for r in range(B):
        s, start = _find_window(shards, x[r])
        shard = shards.shards[s]
        n = min(T + 1, shard.n_tokens - start)  # real tokens in the window, the rest is padding
        assert np.array_equal(y[r, : n - 1], shard.tokens[start + 1 : start + n])
        assert np.array_equal(mask[r, : n - 1], shard.mask[start + 1 : start + n])
        assert (y[r, n - 1 :] == ENDOFTEXT_ID).all() and not mask[r, n - 1 :].any()
    # a window longer than any shard: every row runs off the shard end and is padded
    _, y_long, m_long = shards.sample_batch(4, 500, np.random.default_rng(1))
    assert (y_long[:, -100:] == ENDOFTEXT_ID).all() and not m_long[:, -100:].any()


def test_sample_batch_uses_only_the_rng(shard_dir) -> None:
    shards = TokenShards(shard_dir[0])
    rng = np.random.default_rng(42)
    state = rng.bit_generator.state
    first = [shards.sample_batch(8, 32, rng) for _ in range(3)]
    rng.bit_generator.state = state  # a resumed run replays the same stream
    again = [shards.sample_batch(8, 32, rng) for _ in range(3)]
    for a, b in zip(first, again, strict=True):
        for u, v in zip(a, b, strict=True):
            assert np.array_equal(u, v)
    # the draw is uniform over conversations: rng.integers(0, n) picks the start
    picks = np.random.default_rng(7).integers(0, shards.n_conversations, size=5)
    x, _, _ = shards.sample_batch(5, 16, np.random.default_rng(7))
    convs = [ids for ids, _ in shards.iter_conversations()]
    for row, j in zip(x, picks, strict=True):
        n = min(16, len(convs[j]))
        assert np.array_equal(row[:n], convs[j][:n])
    # over many draws every conversation gets picked
    seen = {_find_window(shards, r) for r in shards.sample_batch(800, 64, np.random.default_rng(3))[0]}
    assert len(seen) == shards.n_conversations


def test_eval_batches_cover_every_target_once(shard_dir) -> None:
    shards = TokenShards(shard_dir[0])
    B, T = 5, 48
    batches = list(shards.iter_eval_batches(B, T))
    assert all(len(b[0]) == B for b in batches[:-1]) and 1 <= len(batches[-1][0]) <= B
    assert sum(int(m.sum()) for _, _, m in batches) == sum(int(s.mask.sum()) for s in shards.shards)
    # per shard, the windows' targets laid end to end are the shard minus its first token
    ys = np.concatenate([y for _, y, _ in batches])
    row = 0
    for shard in shards.shards:
        n_windows = -(-(shard.n_tokens - 1) // T)
        targets = ys[row : row + n_windows].reshape(-1)[: shard.n_tokens - 1]
        assert np.array_equal(targets, shard.tokens[1:])
        row += n_windows
    assert row == len(ys)
    again = list(shards.iter_eval_batches(B, T))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


# ---------------------------------------------------------------- the tokenize stage


def _tokenize(dataset: Path, out: Path, workers: int = 0, shard_tokens: int = 2000) -> dict:
    return tokenize_dataset(dataset, out, shard_tokens=shard_tokens, workers=workers, batch_conversations=16)


def test_tokenize_dataset_outputs(tmp_path: Path) -> None:
    dataset, rows = _dataset(tmp_path / "dataset")
    out = tmp_path / "tokens"
    meta = _tokenize(dataset, out)
    assert verify_variant(out) == meta
    assert meta["encoding"] == "gpt2-chat" and meta["n_vocab"] == 50260 and meta["padded_vocab"] == 50304
    assert meta["special_ids"] == {
        "<|endoftext|>": 50256,
        "<human>": 50257,
        "<bot>": 50258,
        "<endOfText>": 50259,
    }
    metrics = json.loads((out / "metrics.json").read_text())
    # sources.csv: the training split's make-up, as the metrics count it, largest first
    lines = (out / "sources.csv").read_text().splitlines()
    assert lines[0] == "source,tokens,loss_tokens,conversations"
    table = [line.split(",") for line in lines[1:]]
    assert {r[0]: [int(v) for v in r[1:]] for r in table} == {
        s: [c["tokens"], c["loss_tokens"], c["conversations"]] for s, c in metrics["train"]["sources"].items()
    }
    assert [int(r[1]) for r in table] == sorted((int(r[1]) for r in table), reverse=True)
    # lengths.csv: the training conversations by rendered length, every bin in order, as counted
    want_lengths = [len(i) for i, _ in _rendered(rows["train"])]
    lines = (out / "lengths.csv").read_text().splitlines()
    assert lines[0] == "length,conversations,tokens"
    bins = [line.split(",") for line in lines[1:]]
    assert [b[0] for b in bins] == [length_label(i) for i in range(len(LENGTH_BOUNDS) + 1)]
    assert [b[0] for b in bins][:3] == ["1-32", "33-64", "65-128"] and bins[-1][0] == "8193+"
    for label, n, total in bins:
        low, _, high = label.rstrip("+").partition("-")
        inside = [
            length for length in want_lengths if int(low) <= length <= (int(high) if high else sys.maxsize)
        ]
        assert (int(n), int(total)) == (len(inside), sum(inside)), label
    assert sum(int(b[1]) for b in bins) == metrics["train"]["conversations"]
    assert sum(int(b[2]) for b in bins) == metrics["train"]["tokens"]
    for split in ("train", "val"):
        shards = TokenShards(out / split)
        want = _rendered(rows[split])
        assert [(i.tolist(), m.tolist()) for i, m in shards.iter_conversations()] == want  # parquet order
        info = meta["splits"][split]
        assert info["n_conversations"] == len(want) == info["input"]["rows"]
        assert info["n_tokens"] == sum(len(i) for i, _ in want)
        assert [s["tokens"] for s in info["shards"]] == [
            f"tokens-{k:05d}.bin" for k in range(len(info["shards"]))
        ]
        assert all(s["n_tokens"] <= 2000 for s in info["shards"])
        # metrics: per source, adding up to the split
        m = metrics[split]
        for source in ("alpha", "beta"):
            idx = [k for k, r in enumerate(rows[split]) if r["source"] == source]
            assert m["sources"][source] == {
                "conversations": len(idx),
                "tokens": sum(len(want[k][0]) for k in idx),
                "loss_tokens": sum(sum(want[k][1]) for k in idx),
            }
        assert m["tokens"] == info["n_tokens"] and m["loss_tokens"] == info["n_loss_tokens"]
    assert len(meta["splits"]["train"]["shards"]) > 1
    first = rows["train"][0]
    ids, _ = next(TokenShards(out / "train").iter_conversations())
    assert decode(ids).startswith(
        "<|endoftext|>" + (first["context"] or "") + "<human>" + first["messages"][0]["content"]
    )


def test_reading_follows_row_groups_in_order(tmp_path: Path) -> None:
    from pipeline.encode import _batches, _row_ranges

    rows = _conversations(150, 6)
    _write_split(tmp_path / "t.parquet", rows)  # row groups of 64, 64, 22
    assert _row_ranges(tmp_path / "t.parquet", 50) == [(0, 50), (50, 14), (64, 50), (114, 14), (128, 22)]
    seen = []
    for frame, origin, first in _batches(tmp_path / "t.parquet", 16, read_rows=50):
        assert origin.endswith("t.parquet") and 1 <= frame.height <= 16
        assert frame["conversation_id"][0] == rows[first]["conversation_id"]  # row numbers for errors
        seen += frame["conversation_id"].to_list()
    assert seen == [r["conversation_id"] for r in rows]


def test_worker_processes_write_identical_bytes(tmp_path: Path) -> None:
    dataset, _ = _dataset(tmp_path / "dataset", n_train=120, n_val=10)
    serial = _tokenize(dataset, tmp_path / "serial", workers=0)
    parallel = _tokenize(dataset, tmp_path / "parallel", workers=2)
    assert serial["splits"] == parallel["splits"]  # includes every file's sha256
    verify_variant(tmp_path / "parallel")


def test_null_typed_context_and_empty_val(tmp_path: Path) -> None:
    """A variant without any persona stores `context` as type Null; a split may have no rows."""
    rows = _conversations(20, 4)
    frame = pl.DataFrame(
        {
            "conversation_id": [r["conversation_id"] for r in rows],
            "messages": [r["messages"] for r in rows],
            "context": [None] * len(rows),
            "source": [r["source"] for r in rows],
        }
    )
    assert frame.schema["context"] == pl.Null
    (tmp_path / "ds").mkdir()
    frame.write_parquet(tmp_path / "ds" / "train.parquet")
    frame.head(0).with_columns(pl.col("context").cast(pl.String)).write_parquet(
        tmp_path / "ds" / "val.parquet"
    )
    meta = _tokenize(tmp_path / "ds", tmp_path / "out")
    assert meta["splits"]["val"]["n_conversations"] == 0 and meta["splits"]["val"]["shards"] == []
    val = TokenShards(tmp_path / "out" / "val")
    assert val.n_tokens == 0 and list(val.iter_eval_batches(2, 8)) == []
    with pytest.raises(ValueError, match="no conversations"):
        val.sample_batch(2, 8, np.random.default_rng(0))
    assert TokenShards(tmp_path / "out" / "train").n_conversations == 20


def _leftovers(out: Path) -> list[str]:
    """Hidden temporaries a write left: the variant's own (beside it) and any inside it."""
    inside = sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.is_dir() else []
    beside = sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))
    return beside + inside


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r[5]["messages"][1].update(role="system"),
            r"row 5 \(conversation_id 's1:5'\): a message's role",
        ),
        (
            lambda r: r[7].update(messages=[]),
            r"row 7 \(conversation_id 's1:7'\): conversation has no messages",
        ),
        (
            lambda r: r[3]["messages"][0].update(content=None),
            r"row 3 \(conversation_id 's1:3'\): a message's content",
        ),
        (  # an empty reply (an OpenAI-style export's assistant "") trained <bot><endOfText>
            lambda r: r[9]["messages"][1].update(content=""),
            r"row 9 \(conversation_id 's1:9'\): a message's content is empty",
        ),
        # blank as the turn table's `text_present` rule means it (pipeline.schema.blank): whitespace
        # or invisible characters alone, which the tokenizer took as a reply
        (
            lambda r: r[4]["messages"][1].update(content=" \n\t"),
            r"row 4 \(conversation_id 's1:4'\): a message's content is empty \(or only whitespace",
        ),
        (
            lambda r: r[6]["messages"][0].update(content="\u3164\u200b"),
            r"row 6 \(conversation_id 's1:6'\): a message's content is empty",
        ),
    ],
)
def test_bad_rows_fail_with_file_row_and_rule(tmp_path: Path, change, message: str) -> None:
    dataset, rows = _dataset(tmp_path / "dataset", n_train=40, n_val=5)
    out = tmp_path / "tokens"
    before = _tokenize(dataset, out)
    change(rows["train"])
    _write_split(dataset / "train.parquet", rows["train"])
    with pytest.raises(ValueError, match="train.parquet: " + message):
        _tokenize(dataset, out)
    assert verify_variant(out) == before  # the previous output is untouched
    assert _leftovers(out) == []  # and nothing half-written stays behind


def test_bad_columns_and_too_long_conversation(tmp_path: Path) -> None:
    dataset, rows = _dataset(tmp_path / "dataset", n_train=20, n_val=5)
    pl.read_parquet(dataset / "val.parquet").drop("source").write_parquet(dataset / "val.parquet")
    with pytest.raises(ValueError, match=r"val.parquet: column 'source' is missing"):
        _tokenize(dataset, tmp_path / "out")
    _write_split(dataset / "val.parquet", rows["val"])
    pl.read_parquet(dataset / "val.parquet").with_columns(messages=pl.lit("x")).write_parquet(
        dataset / "val.parquet"
    )
    with pytest.raises(ValueError, match=r"column 'messages' must be list\[struct"):
        _tokenize(dataset, tmp_path / "out")
    _write_split(dataset / "val.parquet", rows["val"])
    rows["train"][9]["messages"][0]["content"] = "word " * 300
    _write_split(dataset / "train.parquet", rows["train"])
    with pytest.raises(
        ValueError, match=r"row 9 \(conversation_id 's1:9'\) renders to \d+ tokens, more than"
    ):
        _tokenize(dataset, tmp_path / "out", shard_tokens=200)
    assert not (tmp_path / "out" / "train").exists()


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import pipeline.shards as shards
    from pipeline.encode import tokenize_dataset

    dataset, out, split = sys.argv[1:4]
    close = shards._OpenShard.close

    def close_then_die(self):
        info = close(self)
        building = self.directory.parent.name.startswith(".")  # inside the variant's temporary copy
        if building and self.directory.name == split and self.index == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # the power goes out mid-split
        return info

    shards._OpenShard.close = close_then_die
    tokenize_dataset(dataset, out, shard_tokens=600, workers=0, batch_conversations=16)
    """
)


def _crash(dataset: Path, out: Path, split: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(dataset), str(out), split], env=env, cwd=REPO
    )
    assert proc.returncode == -9


def test_killed_run_leaves_no_half_split(tmp_path: Path) -> None:
    dataset, _ = _dataset(tmp_path / "dataset", n_train=60, n_val=30)
    out = tmp_path / "tokens"
    # first run killed inside train: no split directory looks whole
    _crash(dataset, out, "train")
    assert not out.exists()
    assert any(name.startswith(".tokens.") for name in _leftovers(out))  # the shards it had written
    before = _tokenize(dataset, out, shard_tokens=600)
    assert _leftovers(out) == []  # the next run clears what the killed one left
    # a rerun killed inside val (train already complete in its temp dir): old output stays whole
    _crash(dataset, out, "val")
    assert verify_variant(out) == before
    assert _leftovers(out)


def test_a_failure_after_the_splits_leaves_the_old_output_whole(tmp_path: Path, monkeypatch) -> None:
    """Shards, meta.json (which hashes them) and metrics go into place together or not at all: a
    failure writing meta.json once both splits are done used to leave new shards beside the old
    meta.json, which then failed verification."""
    from pipeline import atomic

    dataset, rows = _dataset(tmp_path / "dataset", n_train=40, n_val=5)
    out = tmp_path / "tokens"
    before = _tokenize(dataset, out)
    rows["train"][0]["messages"][0]["content"] = "a different first turn"
    _write_split(dataset / "train.parquet", rows["train"])
    write_json = atomic.write_json

    def full_disk(target, obj):
        if Path(target).name == "meta.json":
            raise OSError(28, "No space left on device", str(target))
        write_json(target, obj)

    monkeypatch.setattr(atomic, "write_json", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _tokenize(dataset, out)
    assert verify_variant(out) == before
    assert _leftovers(out) == []
    monkeypatch.setattr(atomic, "write_json", write_json)
    assert verify_variant(out) != _tokenize(dataset, out) == verify_variant(out)


def test_a_path_with_glob_characters_is_read_as_it_is(tmp_path: Path) -> None:
    """polars globs a path by default: under "run[1]/" tokenize read "run1/"'s dataset when one
    existed (silently, with the same row count), else failed on a path it said did not exist."""
    mine, _ = _dataset(tmp_path / "run[1]" / "dataset", n_train=20, n_val=5)
    other = tmp_path / "run1" / "dataset"  # the same row counts, other conversations
    _write_split(other / "train.parquet", _conversations(20, 7))
    _write_split(other / "val.parquet", _conversations(5, 8))
    got = _tokenize(mine, tmp_path / "run[1]" / "tokens")
    assert got["splits"] == _tokenize(mine, tmp_path / "plain")["splits"]
    assert got["splits"] != _tokenize(other, tmp_path / "plain2")["splits"]


def test_encoding_workers_do_not_import_polars() -> None:
    """A spawned worker imports its initializer's module: with it in pipeline.encode, every worker
    loaded polars and pyarrow (+32 MB each) to run numpy + tiktoken code."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from pipeline import encode

    ctx = multiprocessing.get_context("spawn")  # what tokenize_dataset's pool uses, with its initializer
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=encode.start_worker) as pool:
        loaded = pool.submit(eval, "[m for m in ('polars', 'pyarrow') if m in __import__('sys').modules]")
        assert loaded.result(timeout=60) == []


def test_stage_command(tmp_path: Path) -> None:
    root = tmp_path / "project"
    _dataset(root / "data" / "dataset" / "full", n_train=30, n_val=5)
    (root / "params.yaml").write_text(
        "tokenize:\n  shard_tokens: 100000\n  workers: 1\n  batch_conversations: 8\n", encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "NANOCHATGPT_ROOT": str(root)}
    cmd = [sys.executable, "-m", "stages.tokenize", "full"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "tokenize full/train: 30 conversations" in proc.stdout
    meta = verify_variant(root / "data" / "tokens" / "full")
    assert meta["splits"]["val"]["n_conversations"] == 5
    bad = subprocess.run([*cmd[:-1], "../x"], env=env, cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "plain name" in bad.stderr


def test_turn_aligned_windows_start_on_boundaries_and_reach_late_turns(shard_dir) -> None:
    """align="turn": every row starts at <|endoftext|> (a header fits) or <human>, and starts past a
    conversation's first window are drawn too (conversation alignment never reaches them)."""
    shards = TokenShards(shard_dir[0])
    x, _, _ = shards.sample_batch(400, 8, np.random.default_rng(5), align="turn")
    assert set(x[:, 0].tolist()) <= {ENDOFTEXT_ID, HUMAN_ID}
    assert HUMAN_ID in x[:, 0]  # some windows start mid-conversation, at a human turn
    again, _, _ = shards.sample_batch(400, 8, np.random.default_rng(5), align="turn")
    assert (x == again).all()
    with pytest.raises(ValueError, match="align"):
        shards.sample_batch(2, 8, np.random.default_rng(5), align="token")


def test_a_window_at_a_later_turn_begins_with_its_conversations_header(shard_dir) -> None:
    """Chat's prompt, once the oldest turns are cut, is <|endoftext|> + persona + the latest turns:
    a turn-aligned training window starting at a later turn is laid out the same way (header mask 0),
    so the persona is there in training too; a header over half the window is left out."""
    directory, convs = shard_dir
    shards = TokenShards(directory)
    T = 48
    x, y, mask = shards.sample_batch(300, T, np.random.default_rng(7), align="turn")
    windows = np.concatenate([x[:, :1], y], axis=1)  # the T+1 tokens of each row
    targets_mask = np.concatenate([np.zeros((len(x), 1), np.uint8), mask], axis=1)  # mask of windows[:, i]
    found = {"later turn with persona": 0, "later turn": 0}
    for r, w in enumerate(windows):
        match = None
        for ids, m in convs:
            ids, m = np.asarray(ids), np.asarray(m)
            turns = np.flatnonzero(ids == HUMAN_ID)
            head = int(turns[0])  # <|endoftext|> + persona
            for t in turns.tolist():
                n = min(T + 1 - head, len(ids) - t)
                if (
                    head <= (T + 1) // 2
                    and np.array_equal(w[:head], ids[:head])
                    and np.array_equal(w[head : head + n], ids[t : t + n])
                ):
                    assert not targets_mask[r, :head].any()
                    assert np.array_equal(targets_mask[r, head : head + n], m[t : t + n])
                    match = (t, head)
                    break
            if match:
                break
        assert match is not None, f"row {r} is not header + a turn onwards of one conversation"
        t, head = match
        if t > head:
            found["later turn"] += 1
            found["later turn with persona"] += head > 1
    assert found["later turn"] > 50 and found["later turn with persona"] > 10
    # a window too short for the persona headers: those rows start at the turn itself
    x, _, _ = shards.sample_batch(300, 8, np.random.default_rng(7), align="turn")
    assert HUMAN_ID in x[:, 0] and ENDOFTEXT_ID in x[:, 0]


def test_training_refuses_shards_that_differ_from_meta(tmp_path: Path) -> None:
    """The trainer verifies the shards against meta.json (sha256, counts, special ids) before
    training: a damaged or foreign shard used to train silently."""
    from pipeline.device import DistInfo
    from pipeline.trainsetup import Runtime, TrainSetupError, check_data

    dataset, _ = _dataset(tmp_path / "dataset", n_train=20, n_val=4)
    out = tmp_path / "tokens"
    _tokenize(dataset, out)
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    check_data(out, rt)  # as written: fine
    tokens = out / "train" / "tokens-00000.bin"
    data = bytearray(tokens.read_bytes())
    data[10] ^= 1
    tokens.write_bytes(bytes(data))
    with pytest.raises(TrainSetupError, match=r"tokens-00000\.bin: sha256 differs from .*meta\.json"):
        check_data(out, rt)
    data[10] ^= 1
    tokens.write_bytes(bytes(data))
    meta = json.loads((out / "meta.json").read_text())
    meta["special_ids"]["<bot>"] = 50300
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"meta\.json: special_ids .* differ"):
        verify_variant(out)


@pytest.mark.parametrize(
    ("file", "offset", "value", "message"),
    [
        # an id past the model's 50304 rows: IndexError (a CUDA device assert) once a window drew it
        ("train/tokens-00000.bin", 5, 60000, r"tokens-00000\.bin: token 5 is id 60000, outside"),
        # an id of the padding rows, which the exported tokenizer cannot decode
        ("val/tokens-00000.bin", 3, 50270, r"val/tokens-00000\.bin: token 3 is id 50270"),
        ("train/mask-00000.bin", 7, 2, r"mask-00000\.bin: byte 7 is 2, a loss mask holds 0 or 1"),
        # a stray <|endoftext|> mid-conversation: turn windows started there as at a conversation
        ("train/tokens-00000.bin", 4, ENDOFTEXT_ID, r"token 4 is <\|endoftext\|> inside a conversation"),
        # the second conversation's <|endoftext|> overwritten: its start no longer opens one
        ("train/tokens-00000.bin", "start 1", 11, r"conversation 1 starts at token \d+, which is not"),
    ],
)
def test_training_reads_shards_without_meta_whole_before_it_starts(
    tmp_path: Path, file: str, offset: int | str, value: int, message: str
) -> None:
    """Shards without meta.json (written by ShardWriter alone, or by hand) train; nothing vouched
    for their bytes, and check_data looked only for a loss token: an id past the vocabulary passed
    and stopped the run with an IndexError whenever a window first drew it."""
    from pipeline.device import DistInfo
    from pipeline.trainsetup import Runtime, TrainSetupError, check_data

    dataset, _ = _dataset(tmp_path / "dataset", n_train=20, n_val=4)
    out = tmp_path / "tokens"
    _tokenize(dataset, out)
    (out / "meta.json").unlink()
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    check_data(out, rt)  # as the writer wrote them: fine
    if isinstance(offset, str):  # "start k": the offset of conversation k
        offset = int(np.load(out / file.replace("tokens-", "starts-").replace(".bin", ".npy"))[1])
    dtype = np.uint8 if "mask" in file else np.dtype("<u2")
    data = np.fromfile(out / file, dtype=dtype)
    data[offset] = value
    data.tofile(out / file)
    with pytest.raises(TrainSetupError, match=message):
        check_data(out, rt)


def test_training_refuses_windows_too_short_to_reach_a_bot_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A window starts at a human turn: with block_size 4 every window held human text only, every
    step's gradient was zero, and the run exited 0 with val loss unchanged (an untrained model)."""
    from pipeline.device import DistInfo
    from pipeline.trainconfig import TrainConfig
    from pipeline.trainsetup import Runtime, TrainSetupError, check_data

    dataset, _ = _dataset(tmp_path / "dataset", n_train=20, n_val=4)
    out = tmp_path / "tokens"
    _tokenize(dataset, out)
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())

    def cfg(block_size: int) -> TrainConfig:
        return TrainConfig(n_layer=1, n_head=1, n_embd=8, block_size=block_size, device="cpu").validated()

    with pytest.raises(TrainSetupError, match=r"none of 256 windows of block_size 2 reaches a bot token"):
        check_data(out, rt, cfg(2))
    check_data(out, rt, cfg(256))
    assert "warning" not in capsys.readouterr().err
    verdicts = []  # per block_size from 2: refused, warned, or fine
    for block in range(2, 64):
        try:
            check_data(out, rt, cfg(block))
        except TrainSetupError:
            verdicts.append("refused")
            continue
        verdicts.append("warned" if "of windows of block_size" in capsys.readouterr().err else "fine")
    # the shortest are refused, the next warned, the rest fine, each kind in one run
    assert verdicts == sorted(verdicts, key=["refused", "warned", "fine"].index)
    assert {"refused", "warned", "fine"} <= set(verdicts)
    # A typo'd block_size is the run's size checks' to refuse: the probe asked numpy for
    # 256 x (10**12 + 1) tokens (a MemoryError traceback); windows past the data reach what it holds.
    check_data(out, rt, cfg(10**12))
    assert "warning" not in capsys.readouterr().err


def test_a_tokenize_worker_dies_with_its_stage() -> None:
    """A kill -9 of the tokenize stage left its spawned workers running for ever (re-parented to
    pid 1), holding the stage's output pipe open: a `| tee` or CI log hung on them."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    worker = (
        "import time; from pipeline.workers import die_with_parent; die_with_parent(); "
        "print('ready', flush=True); time.sleep(120)"
    )
    stage = (
        "import subprocess, sys, time; "
        f"w = subprocess.Popen([sys.executable, '-c', {worker!r}], stdout=subprocess.PIPE, text=True); "
        "assert w.stdout.readline() == 'ready\\n'; print(w.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", stage],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        pid = int(parent.stdout.readline())
        assert psutil.pid_exists(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)

        def gone() -> bool:
            try:
                return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        deadline = time.monotonic() + 30
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(), "the worker outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(30)


# ---------------------------------------------------------------- pinned by mutation testing


def _ref_turn_rows(shards: TokenShards, picks, T: int) -> np.ndarray:
    offs = np.cumsum([0] + [s.n_tokens for s in shards.shards])
    out = []
    for p in picks.tolist():
        s = int(np.searchsorted(offs, p, side="right") - 1)
        shard = shards.shards[s]
        tok = np.asarray(shard.tokens, dtype=np.int64)
        local = p - int(offs[s])
        b = max(i for i in range(local + 1) if tok[i] in (ENDOFTEXT_ID, HUMAN_ID))
        row: list[int] = []
        if tok[b] == HUMAN_ID:
            conv = max(int(st) for st in shard.starts if st <= b)
            first = next(i for i in range(conv + 1, len(tok)) if tok[i] in (ENDOFTEXT_ID, HUMAN_ID))
            if first - conv <= (T + 1) // 2:
                row = tok[conv:first].tolist()
        row += tok[b : b + T + 1 - len(row)].tolist()
        row += [ENDOFTEXT_ID] * (T + 1 - len(row))
        out.append(row[:-1])
    return np.array(out)


def test_turn_rows_follow_the_drawn_token_in_every_shard(tmp_path: Path) -> None:
    d = tmp_path / "train"
    _write_shards(d, _rendered(_conversations(80, 3)), shard_tokens=400)
    shards = TokenShards(d)
    assert len(shards.shards) > 3
    T, B = 24, 600
    picks = np.random.default_rng(11).integers(0, shards.n_tokens, size=B)
    # every shard's first token is drawn too (boundary of the shard offsets)
    x, _, _ = shards.sample_batch(B, T, np.random.default_rng(11), align="turn")
    assert np.array_equal(x, _ref_turn_rows(shards, picks, T))


def _header_split(tmp_path: Path) -> tuple[TokenShards, int]:
    msgs = [{"role": "human" if i % 2 == 0 else "bot", "content": f"turn {i} words"} for i in range(8)]
    ids, mask = render(msgs, "a persona of several words here")
    h = ids.index(HUMAN_ID)  # <|endoftext|> + persona
    w = ShardWriter(tmp_path / "s", 10_000)
    w.add(np.array(ids), np.array(mask), np.array([len(ids)]))
    w.close()
    return TokenShards(tmp_path / "s"), h


def test_header_threshold_is_half_the_window(tmp_path: Path) -> None:
    shards, h = _header_split(tmp_path)
    x, _, _ = shards.sample_batch(300, 2 * h - 1, np.random.default_rng(0), align="turn")  # (T+1)//2 == h
    assert (x[:, 0] == ENDOFTEXT_ID).all()  # a header of exactly half the window is kept
    x, _, _ = shards.sample_batch(300, 2 * h - 2, np.random.default_rng(0), align="turn")  # half is h-1
    assert HUMAN_ID in x[:, 0]  # one token over half: left out


def test_eval_windows_when_the_shard_divides_evenly(tmp_path: Path) -> None:
    shards, _ = _header_split(tmp_path)
    n = shards.shards[0].n_tokens
    rows = sum(len(x) for x, _, _ in shards.iter_eval_batches(4, n - 1))
    assert rows == 1  # n-1 targets in one window of n-1: no all-padding window after it


def test_lengths_bins_hold_their_bounds_and_count_what_is_past_the_last() -> None:
    """A length equal to a bound counts in that bound's bin; the last bin takes everything longer."""
    lengths = np.array([1, 32, 33, 128, 129, 8192, 8193, 100_000])
    got = count_by_length(lengths)
    assert got.dtype == np.int64 and got.shape == (len(LENGTH_BOUNDS) + 1, 2)
    by_label = {length_label(i): tuple(row) for i, row in enumerate(got.tolist()) if row[0]}
    assert by_label == {
        "1-32": (2, 33),
        "33-64": (1, 33),
        "65-128": (1, 128),
        "129-256": (1, 129),
        "4097-8192": (1, 8192),
        "8193+": (2, 108_193),
    }
    assert count_by_length(np.zeros(0, dtype=np.int64)).sum() == 0


@pytest.mark.parametrize(
    ("part", "content", "numpy_says"),
    [
        (0, b"", "cannot mmap an empty file"),
        (0, b"\x00\x00\x00", "not a multiple"),
        (2, b"\x80\x04K\x01.", "pickle"),  # a pickle where starts-*.npy should be: never loaded
        (2, b"not an npy file", ""),
    ],
)
def test_a_shard_file_numpy_cannot_open_is_named(
    tmp_path: Path, part: int, content: bytes, numpy_says: str
) -> None:
    """numpy's refusal ("cannot mmap an empty file", a pickled .npy) said nothing of which of the
    split's files was at fault: the error names it, and keeps numpy's words."""
    from pipeline.shards import shard_files

    directory = tmp_path / "train"
    _write_shards(directory, _rendered(_conversations(6, 2)), shard_tokens=10_000)
    bad = directory / shard_files(0)[part]
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable shard file") as e:
        TokenShards(directory)
    assert str(e.value).startswith(f"{bad}: ") and numpy_says in str(e.value)
