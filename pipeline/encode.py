"""The tokenize stage's work: dataset parquet -> token shards, meta.json and metrics.json.

The parquet is read one row group (at most READ_ROWS rows) at a time and cut into batches of
`batch_conversations` rows, so memory does not grow with the corpus. This process checks each
batch and flattens it to plain columns (`to_batch`); a worker process renders the whole batch
(`pipeline.tokenizer.encode_conversations`: one encode pass over all its text pieces, then
numpy assembly). Results come back in submission order with at most `2 * workers` batches in
flight, so the written shards are byte-identical for any number of workers (0 = encode here).
The whole variant (both splits, meta.json, metrics.json, sources.csv, lengths.csv) is built in one
temporary sibling of its folder and renamed into place only when complete.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq  # parquet metadata only (row groups); installed with datasets
from tqdm import tqdm

from pipeline import atomic, paramcheck
from pipeline.errortext import first_line
from pipeline.invisible import blank
from pipeline.shards import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ConversationTooLong,
    ShardInfo,
    ShardWriter,
)
from pipeline.tokenizer import (
    ENCODING_NAME,
    N_VOCAB,
    PADDED_VOCAB,
    ROLES,
    SPECIAL_TOKENS,
    EncodedConversations,
    encode_conversations,
)
from pipeline.workers import start_worker

SPLITS = ("train", "val")
INPUT_COLUMNS = ("conversation_id", "messages", "context", "source")
READ_ROWS = 65_536  # rows decoded at a time (memory bound; a larger row group is read in slices)
# Upper bounds (tokens) of lengths.csv's bins: powers of two, among them the profiles' block sizes
# (cpu-tiny 128, gpt2-medium 1024), so the plot shows how many conversations one window holds whole.
LENGTH_BOUNDS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def tokenize_settings(params: Any) -> dict[str, int]:
    """params.yaml `tokenize` checked: {shard_tokens, workers, batch_conversations} as ints.

    A mistake is a ValueError naming the key (`params.yaml tokenize.workers: expected an integer
    >= 0, got -1`), which the stage prints as one line.
    """
    if not isinstance(params, dict):
        raise ValueError(f"params.yaml tokenize: expected a mapping of settings, got {params!r}")
    minimum = {"shard_tokens": 2, "workers": 0, "batch_conversations": 1}
    paramcheck.known_keys("tokenize", params, tuple(minimum))
    out = {}
    for key, low in minimum.items():
        if key not in params:
            raise ValueError(f"params.yaml tokenize.{key}: missing")
        out[key] = paramcheck.integer(f"tokenize.{key}", params[key], minimum=low)
    return out


@dataclass(frozen=True)
class Batch:
    """A validated batch of dataset rows as the flat columns `encode_conversations` takes."""

    row_offset: int  # row number of its first conversation in the parquet file
    sources: pl.Series  # source of each conversation (stays in the stage's process, for the metrics)
    columns: tuple  # (contexts, n_messages, is_bot, contents): plain lists / numpy, cheap to pickle


def _fail(origin: str, row: int, frame: pl.DataFrame, local: int, rule: str) -> ValueError:
    cid = frame["conversation_id"][local]
    return ValueError(f"{origin}: row {row} (conversation_id {cid!r}): {rule}")


def to_batch(frame: pl.DataFrame, origin: str = "<frame>", row_offset: int = 0) -> Batch:
    """Check a frame of dataset rows (columns INPUT_COLUMNS) and flatten it for encoding.

    Bad rows raise ValueError naming `origin`, the row number (`row_offset` + index) and the rule.
    """
    messages = frame["messages"]
    n_messages = messages.list.len()
    for rule, bad in (
        ("messages is null", n_messages.is_null()),
        ("conversation has no messages", n_messages == 0),
        ("conversation_id is null", frame["conversation_id"].is_null()),
        ("source is null", frame["source"].is_null()),
    ):
        if bad.any():
            i = int(bad.arg_true()[0])
            raise _fail(origin, row_offset + i, frame, i, rule)
    flat = messages.explode()
    roles, contents = flat.struct.field("role"), flat.struct.field("content")
    n_np = n_messages.to_numpy().astype(np.int64)
    for rule, bad in (
        (f"a message's role is not one of {list(ROLES)}", roles.is_null() | ~roles.is_in(ROLES)),
        ("a message's content is null", contents.is_null()),
        # The turn table's text is never empty (docs/contracts.md); a dataset made another way (an
        # OpenAI-style export, whose assistant messages may be "") trained <bot><endOfText>: the
        # empty reply evaluate counts as no clean stop. Empty as the schema's `text_present` means
        # it (invisible.blank, the one rule): whitespace or invisible characters alone ("\n", a
        # Hangul filler) train the same invisible reply.
        (
            "a message's content is empty (or only whitespace or invisible characters)",
            contents.to_frame("c").select(blank(pl.col("c"))).to_series(),
        ),
    ):
        if bad.any():
            i = int(np.searchsorted(np.cumsum(n_np), int(bad.arg_true()[0]), side="right"))
            raise _fail(origin, row_offset + i, frame, i, rule)
    # A conversation opens with the human (docs/contracts.md): a bot-first one would train the
    # model to speak unprompted. The build's schema refuses such rows; this guards other callers.
    bot_first = messages.list.first().struct.field("role") != "human"
    if bot_first.any():
        i = int(bot_first.arg_true()[0])
        raise _fail(origin, row_offset + i, frame, i, "its first message is a bot turn; turn 0 must be human")
    columns = (frame["context"].to_list(), n_np, (roles == "bot").to_numpy(), contents.to_list())
    return Batch(row_offset, frame["source"], columns)


def count_by_source(sources: pl.Series, encoded: EncodedConversations) -> dict[str, list[int]]:
    """source -> [conversations, tokens, loss tokens] of one encoded batch."""
    loss = np.add.reduceat(encoded.mask, encoded.starts, dtype=np.int64) if len(encoded.lengths) else []
    counts = (
        pl.DataFrame({"source": sources, "tokens": encoded.lengths, "loss": loss})
        .group_by("source")
        .agg(pl.len().alias("conversations"), pl.col("tokens").sum(), pl.col("loss").sum())
    )
    return {
        r[0]: [int(r[1]), int(r[2]), int(r[3])]
        for r in counts.select("source", "conversations", "tokens", "loss").iter_rows()
    }


def check_input(path: Path) -> int:
    """Fail early, with the file and rule, on a missing file or column of the wrong type; returns rows."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset split not found (run `dvc repro build` first)")
    try:
        schema = pl.scan_parquet(path, glob=False).collect_schema()
        rows = int(pq.read_metadata(path).num_rows)
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:  # pyarrow's ArrowInvalid: ValueError
        raise ValueError(f"{path}: not a readable parquet file ({first_line(e)})") from None
    for name in INPUT_COLUMNS:
        if name not in schema:
            raise ValueError(f"{path}: column '{name}' is missing (columns: {list(schema)})")
    messages = schema["messages"]
    fields = {f.name: f.dtype for f in messages.inner.fields} if _is_list_of_struct(messages) else {}
    if fields.get("role") != pl.String() or fields.get("content") != pl.String():
        raise ValueError(
            f"{path}: column 'messages' must be list[struct{{role: str, content: str}}], found {messages}"
        )
    for name, allowed in (
        ("conversation_id", (pl.String(),)),
        ("source", (pl.String(),)),
        ("context", (pl.String(), pl.Null())),
    ):
        if schema[name] not in allowed:
            raise ValueError(f"{path}: column '{name}' must be a string column, found {schema[name]}")
    return rows


def _is_list_of_struct(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct)


def _row_ranges(path: Path, max_rows: int) -> list[tuple[int, int]]:
    """(first row, rows) slices of the file that follow its row groups, none over `max_rows` rows.

    Parquet decodes whole row groups: a slice inside one costs the whole group, and a slice
    over several holds them all. Following the groups keeps both bounded.
    """
    metadata = pq.read_metadata(path)
    ranges, start = [], 0
    for g in range(metadata.num_row_groups):
        n = metadata.row_group(g).num_rows
        ranges += [(start + a, min(max_rows, n - a)) for a in range(0, n, max_rows)]
        start += n
    return ranges


def _batches(
    path: Path, batch_conversations: int, read_rows: int = READ_ROWS
) -> Iterator[tuple[pl.DataFrame, str, int]]:
    """(frame of <= batch_conversations rows, file name, first row) over the file, in order.

    Memory holds two slices of at most `read_rows` rows: the one being cut into batches and the
    next, read meanwhile by a thread (polars releases the GIL while it decodes). Not
    `collect_batches`: it reads ahead without bound (measured: RSS grew with the file).
    """
    # an all-null context column may be stored as type Null
    lazy = pl.scan_parquet(path, glob=False).select(
        "conversation_id", "messages", pl.col("context").cast(pl.String), "source"
    )
    ranges = _row_ranges(path, read_rows)
    with ThreadPoolExecutor(1) as reader:
        pending = [reader.submit(lazy.slice(a, n).collect) for a, n in ranges[:1]]
        for k, (start, _) in enumerate(ranges):
            frame = pending.pop().result()
            if k + 1 < len(ranges):
                a, n = ranges[k + 1]
                pending.append(reader.submit(lazy.slice(a, n).collect))
            for offset in range(0, frame.height, batch_conversations):
                yield frame.slice(offset, batch_conversations), str(path), start + offset


def _encode_in_order(
    batches: Iterable[Batch], executor: Executor | None, max_in_flight: int
) -> Iterator[tuple[Batch, EncodedConversations]]:
    """(batch, its encoding) in input order; on `executor` with at most `max_in_flight` pending.

    Workers run `pipeline.tokenizer.encode_conversations` (numpy + tiktoken only): a worker
    never imports polars, and only plain columns travel to it.
    """
    if executor is None:
        for batch in batches:
            yield batch, encode_conversations(*batch.columns)
        return
    pending: deque = deque()
    for batch in batches:
        pending.append((batch, executor.submit(encode_conversations, *batch.columns)))
        if len(pending) >= max_in_flight:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


@dataclass
class SplitResult:
    rows: int
    shards: list[ShardInfo]
    by_source: dict[str, list[int]]
    by_length: np.ndarray  # (len(LENGTH_BOUNDS) + 1, 2): conversations and tokens per length bin


def count_by_length(lengths: np.ndarray) -> np.ndarray:
    """Conversations and tokens per LENGTH_BOUNDS bin (a length equal to a bound is in its bin; the
    last row is every conversation longer than the last bound), as an int64 (bins, 2) array."""
    lengths = np.asarray(lengths, dtype=np.int64)
    bins = np.searchsorted(LENGTH_BOUNDS, lengths, side="left")
    size = len(LENGTH_BOUNDS) + 1
    return np.stack(
        [
            np.bincount(bins, minlength=size),
            np.bincount(bins, weights=lengths, minlength=size).astype(np.int64),
        ],
        axis=1,
    )


def tokenize_split(
    parquet: Path,
    split_dir: Path,
    *,
    shard_tokens: int,
    batch_conversations: int,
    executor: Executor | None,
    max_in_flight: int,
    desc: str = "tokenize",
    progress: bool = False,
) -> SplitResult:
    """Encode one dataset split into shards under `split_dir` (a temporary directory)."""
    rows = check_input(parquet)
    writer = ShardWriter(split_dir, shard_tokens)
    by_source: dict[str, list[int]] = {}
    by_length = count_by_length(np.zeros(0, dtype=np.int64))
    done = tokens = 0
    try:
        with tqdm(total=rows, desc=desc, unit="conv", disable=not progress, dynamic_ncols=True) as bar:
            batches = (to_batch(*args) for args in _batches(parquet, batch_conversations))
            for batch, enc in _encode_in_order(batches, executor, max_in_flight):
                try:
                    writer.add(enc.ids, enc.mask, enc.lengths)
                except ConversationTooLong as e:
                    row = batch.row_offset + e.index
                    cid = (
                        pl.scan_parquet(parquet, glob=False)
                        .select("conversation_id")
                        .slice(row, 1)
                        .collect()
                        .item()
                    )
                    raise ValueError(
                        f"{parquet}: row {row} (conversation_id {cid!r}) renders to {e.n_tokens} tokens, "
                        f"more than tokenize.shard_tokens={e.shard_tokens}"
                    ) from None
                for source, counts in count_by_source(batch.sources, enc).items():
                    acc = by_source.setdefault(source, [0, 0, 0])
                    for k, v in enumerate(counts):
                        acc[k] += v
                by_length += count_by_length(enc.lengths)
                done += len(enc.lengths)
                tokens += len(enc.ids)
                bar.update(len(enc.lengths))
                bar.set_postfix(tokens=tokens, refresh=False)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    if done != rows:
        raise RuntimeError(f"{parquet}: read {done} conversations but the file has {rows}")
    return SplitResult(rows, shards, by_source, by_length)


def _split_meta(parquet: Path, result: SplitResult) -> dict:
    return {
        "input": {"file": parquet.name, "rows": result.rows},
        "n_tokens": sum(s.n_tokens for s in result.shards),
        "n_conversations": sum(s.n_conversations for s in result.shards),
        "n_loss_tokens": sum(s.n_loss_tokens for s in result.shards),
        "shards": [s.to_json() for s in result.shards],
        "sha256": {name: digest for s in result.shards for name, digest in s.sha256.items()},
    }


def _split_metrics(result: SplitResult) -> dict:
    def entry(c: list[int]) -> dict[str, int]:
        return {"conversations": c[0], "tokens": c[1], "loss_tokens": c[2]}

    total = [sum(v[k] for v in result.by_source.values()) for k in range(3)]
    return {**entry(total), "sources": {s: entry(c) for s, c in sorted(result.by_source.items())}}


def tokenize_dataset(
    dataset_dir: str | Path,
    out_dir: str | Path,
    *,
    shard_tokens: int,
    workers: int,
    batch_conversations: int,
    progress: bool = False,
) -> dict:
    """Tokenize data/dataset/<variant> into data/tokens/<variant>; returns meta.json's content."""
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    if batch_conversations < 1 or workers < 0:
        raise ValueError(
            f"tokenize: need batch_conversations >= 1 and workers >= 0, got {batch_conversations}, {workers}"
        )
    for split in SPLITS:
        check_input(dataset_dir / f"{split}.parquet")
    results: dict[str, SplitResult] = {}
    with ExitStack() as stack:
        executor = None
        if workers > 0:
            # spawn, not fork: polars' thread pool does not survive a fork
            ctx = multiprocessing.get_context("spawn")
            # the initializer loads (and hash-checks) the BPE files once per worker, up front
            executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=start_worker)
            stack.callback(executor.shutdown, wait=True, cancel_futures=True)
        # The whole variant (both splits, meta.json that hashes their files, metrics and plots) is
        # built in one temporary directory that replaces out_dir in one rename when the stack
        # unwinds without error (atomic_dir): a failure or a kill at any point leaves the previous
        # output as it was, never new shards beside an old meta.json.
        tmp = stack.enter_context(atomic.atomic_dir(out_dir))
        for split in SPLITS:
            results[split] = tokenize_split(
                dataset_dir / f"{split}.parquet",
                tmp / split,
                shard_tokens=shard_tokens,
                batch_conversations=batch_conversations,
                executor=executor,
                max_in_flight=max(2, 2 * workers),
                desc=f"tokenize {out_dir.name}/{split}",
                progress=progress,
            )
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "encoding": ENCODING_NAME,
            "n_vocab": N_VOCAB,
            "padded_vocab": PADDED_VOCAB,
            "special_ids": dict(SPECIAL_TOKENS),
            "dtypes": {"tokens": "<u2", "mask": "u1", "starts": "<i8"},
            "shard_tokens": shard_tokens,
            "splits": {
                split: _split_meta(dataset_dir / f"{split}.parquet", r) for split, r in results.items()
            },
        }
        atomic.write_json(tmp / "meta.json", meta)
        atomic.write_json(tmp / "metrics.json", {split: _split_metrics(r) for split, r in results.items()})
        atomic.write_text(tmp / "sources.csv", _sources_csv(results["train"]))
        atomic.write_text(tmp / "lengths.csv", _lengths_csv(results["train"]))
    return meta


def _sources_csv(result: SplitResult) -> str:
    """The training split's make-up, one row per source, largest first (a DVC bar plot)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # quotes a contributed file name with a comma
    writer.writerow(["source", "tokens", "loss_tokens", "conversations"])
    for source, c in sorted(result.by_source.items(), key=lambda kv: (-kv[1][1], kv[0])):
        writer.writerow([source, c[1], c[2], c[0]])
    return out.getvalue()


def length_label(index: int) -> str:
    """lengths.csv's name of bin `index`, in tokens: `1-32`, `33-64`, ..., `8193+`."""
    if index == len(LENGTH_BOUNDS):
        return f"{LENGTH_BOUNDS[-1] + 1}+"
    low = LENGTH_BOUNDS[index - 1] + 1 if index else 1
    return f"{low}-{LENGTH_BOUNDS[index]}"


def _lengths_csv(result: SplitResult) -> str:
    """The training split's conversations by length in tokens, shortest bin first, every bin
    listed (a DVC bar plot beside the profiles' block sizes)."""
    rows = [f"{length_label(i)},{c},{t}" for i, (c, t) in enumerate(result.by_length.tolist())]
    return "\n".join(["length,conversations,tokens", *rows]) + "\n"
