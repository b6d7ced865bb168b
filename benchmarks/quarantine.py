"""Benchmark: `nanochatgpt quarantine --check RULE --rows N` on a large quarantine, against reading
the quarantine's columns whole (what it did before it scanned lazily).

    python -m benchmarks.quarantine                 # ~400 MB quarantine (400,000 rows of ~1 kB)
    python -m benchmarks.quarantine --rows-k 50     # smaller

Generates data/quarantine/bench.parquet (random text: it does not compress away) beside the report
that counts it, then runs, each in its own process so that its peak RSS is its own:

  eager    pl.read_parquet of check, reason, origin and text, then the rule's first N rows (baseline)
  command  pipeline.quarantine.read_source: the counts from the small columns, and the text of the
           N rows listed only (a lazy scan, the filter before the head)

and prints the read's seconds (in the process), the process's seconds and peak RSS, and the ratios. Both list the same rows (checked).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.args import positive_int
from benchmarks.child import (
    generate_in_child,
    measure_steps,
    parser_with_children,
    ran_as_child,
    rows_asked,
    work_folder,
)

SOURCE = "bench"
RULES = ("text_length", "has_bot_turn", "text_present")
LISTED = 10  # --rows
CHECK = RULES[-1]  # --check


def generate(root: Path, rows: int, seed: int = 0) -> int:
    """Write the quarantine and its report under `root`; return the quarantine's bytes."""
    from pipeline.sources.normalize import output_paths

    rng = np.random.default_rng(seed)
    paths = output_paths(SOURCE, root)
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    checks = np.array(RULES)[rng.integers(0, len(RULES), rows)]
    table = pl.DataFrame(
        {
            "check": checks,
            "reason": [f"rule {c} caught this row" for c in checks],
            "origin": [f"bench.jsonl:{i + 1}" for i in range(rows)],
            "text": [rng.bytes(500).hex() for _ in range(rows)],  # ~1 kB that compresses no smaller
        }
    )
    table.write_parquet(paths["quarantine"], row_group_size=10_000)
    counts = table.group_by("check").len()
    report = {
        "source": SOURCE,
        "rows_read": rows,
        "rows_quarantined": rows,
        "quarantined_by_check": dict(counts.iter_rows()),
    }
    paths["report"].write_text(json.dumps(report))
    return paths["quarantine"].stat().st_size


def child_eager(root: Path) -> dict:
    from pipeline.sources.normalize import output_paths

    t0 = time.perf_counter()
    path = output_paths(SOURCE, root)["quarantine"]
    table = pl.read_parquet(path, columns=["check", "reason", "origin", "text"])
    rows = table.filter(pl.col("check") == CHECK).head(LISTED)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "origins": rows["origin"].to_list(), "counted": table.height}


def child_command(root: Path) -> dict:
    from pipeline.quarantine import read_source

    t0 = time.perf_counter()
    q = read_source(SOURCE, root, check=CHECK, rows=LISTED)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "origins": [r["origin"] for r in q.rows], "counted": q.rows_quarantined}


def child_generate(root: Path) -> dict:
    # In a child too: a forked process starts from its parent's peak RSS, and the generated table
    # (~1 GB of Python strings at the default size) would set both measured steps' floor.
    return {"bytes": generate(root, rows_asked(root))}


CHILDREN = {"generate": child_generate, "eager": child_eager, "command": child_command}
MEASURED = ("eager", "command")


def main(argv: list[str] | None = None) -> int:
    parser = parser_with_children(__doc__, CHILDREN)
    parser.add_argument(
        "--rows-k", type=positive_int, default=400, help="quarantined rows, in thousands (default 400)"
    )
    args = parser.parse_args(argv)
    if ran_as_child(args, CHILDREN):
        return 0

    with work_folder(args.workdir, "bench-quarantine-") as work:
        size = generate_in_child("benchmarks.quarantine", work, args.rows_k * 1000)
        print(f"quarantine: {args.rows_k * 1000:,} rows, {size / 1e6:.0f} MB parquet -> {work}")
        print(f"\n--check {CHECK} --rows {LISTED}")
        results = measure_steps("benchmarks.quarantine", MEASURED, work)
        (_, rss_eager, eager), (_, rss_cmd, cmd) = results["eager"], results["command"]
        same = {k: v for k, v in eager.items() if k != "seconds"} == {
            k: v for k, v in cmd.items() if k != "seconds"
        }
        print(
            f"\ncommand vs eager: {eager['seconds'] / cmd['seconds']:.1f}x faster reading, "
            f"{rss_eager / rss_cmd:.1f}x less peak memory (the process includes Python's start and imports); "
            f"same rows and count: {'yes' if same else 'NO'}"
        )
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
