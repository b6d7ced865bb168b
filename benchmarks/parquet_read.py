"""Benchmark: reading an upstream parquet file the way normalize's adapters do
(`pipeline.sources.readers.iter_parquet`, PARQUET_BATCH_ROWS rows at a time) against reading it
whole and then row by row (what it did before).

    python -m benchmarks.parquet_read               # ~300 MB parquet (1,000,000 rows of ~300 B)
    python -m benchmarks.parquet_read --rows-k 100  # smaller

Generates one parquet file shaped like EmpatheticDialogues' (conv_id, speaker_idx, utterance of
random words that compress like text), then runs each read in its own process, so that its peak
RSS is its own:

  whole    pl.read_parquet, then iter_rows(named=True) into Records (the reader before; baseline)
  batched  readers.iter_parquet

and prints the read's seconds, the process's seconds and peak RSS, and the ratios. Both must see
the same rows (count and a checksum of the text, checked).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from benchmarks.args import positive_int
from benchmarks.child import (
    generate_in_child,
    measure_steps,
    parser_with_children,
    ran_as_child,
    rows_asked,
    work_folder,
)
from pipeline.sources.readers import Record, iter_parquet

FILE = "train.parquet"
WORDS = [
    "the",
    "a",
    "to",
    "and",
    "of",
    "you",
    "i",
    "it",
    "is",
    "that",
    "in",
    "what",
    "do",
    "not",
    "was",
    "for",
    "on",
    "my",
    "have",
    "be",
]


def generate(path: Path, rows: int, seed: int = 0) -> int:
    """Write `rows` rows (50 words of a random vocabulary each) to `path`; return its bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocab = np.array([rng.bytes(4).hex() for _ in range(20_000)] + list(WORDS))
    with pq.ParquetWriter(
        path, pa.schema({"conv_id": pa.string(), "speaker_idx": pa.int64(), "utterance": pa.string()})
    ) as w:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            words = vocab[rng.integers(0, len(vocab), (n, 50))]
            w.write_table(
                pa.table(
                    {
                        "conv_id": [f"hit:{(start + i) // 8}" for i in range(n)],
                        "speaker_idx": [(start + i) % 2 for i in range(n)],
                        "utterance": [" ".join(row) for row in words],
                    }
                )
            )
    return path.stat().st_size


def _summary(rows: Iterable[dict], t0: float) -> dict:
    digest, count = hashlib.sha256(), 0
    for row in rows:
        digest.update(row["utterance"].encode())
        count += 1
    return {"seconds": time.perf_counter() - t0, "rows": count, "sha256": digest.hexdigest()}


def _records_read_whole(path: Path) -> Iterator[Record]:
    """readers.iter_parquet as it was before it read in batches (the baseline)."""
    import polars as pl

    frame = pl.read_parquet(path, glob=False)
    for i, row in enumerate(frame.iter_rows(named=True), start=1):
        yield Record(i, row, "")


def child_whole(work: Path) -> dict:
    t0 = time.perf_counter()
    return _summary((rec.value for rec in _records_read_whole(work / FILE)), t0)


def child_batched(work: Path) -> dict:
    t0 = time.perf_counter()
    return _summary((rec.value for rec in iter_parquet(work / FILE)), t0)


def child_generate(work: Path) -> dict:
    # In a child: a forked process starts from its parent's peak RSS, which generating would set.
    return {"bytes": generate(work / FILE, rows_asked(work))}


CHILDREN = {"generate": child_generate, "whole": child_whole, "batched": child_batched}
MEASURED = ("whole", "batched")


def main(argv: list[str] | None = None) -> int:
    parser = parser_with_children(__doc__, CHILDREN)
    parser.add_argument("--rows-k", type=positive_int, default=1000, help="rows, in thousands (default 1000)")
    args = parser.parse_args(argv)
    if ran_as_child(args, CHILDREN):
        return 0

    with work_folder(args.workdir, "bench-parquet-") as work:
        size = generate_in_child("benchmarks.parquet_read", work, args.rows_k * 1000)
        print(f"parquet: {args.rows_k * 1000:,} rows, {size / 1e6:.0f} MB -> {work}")
        results = measure_steps("benchmarks.parquet_read", MEASURED, work)
        (_, rss_whole, whole), (_, rss_batched, batched) = results["whole"], results["batched"]
        same = (whole["rows"], whole["sha256"]) == (batched["rows"], batched["sha256"])
        print(
            f"\nbatched vs whole: {whole['seconds'] / batched['seconds']:.2f}x the speed, "
            f"{rss_whole / rss_batched:.1f}x less peak memory (the process includes Python's start and "
            f"imports); same rows and text: {'yes' if same else 'NO'}"
        )
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
