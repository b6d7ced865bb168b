"""Benchmark: normalize(ish) + build of a large generated corpus vs a plain polars read.

    python -m benchmarks.build                  # ~1 GB of OpenAI-messages JSONL (two sources)
    python -m benchmarks.build --size-mb 150    # smaller, for a shared machine

(Run it with -m from the repo root, like every benchmark.)

Generates two sources of OpenAI `{"messages": [...]}` JSONL (with exact and trivial-variant
duplicates inside each, and exact copies across them), then runs, each in its own child process
so that its peak RSS is its own (os.wait4 rusage):

  read-jsonl     pl.read_ndjson of the JSONL files (baseline: the raw format, in memory)
  normalize      JSONL -> turn table parquet (streaming explode; a stand-in for normalize)
  read-parquet   pl.read_parquet of the turn tables (baseline)
  build          pipeline.build.build_variant("full"), with its own phase timings

and prints seconds, MB/s of JSONL input and peak RSS for each. Target: build peak RSS <= 2 GB.

The `normalize` step is a streaming stand-in, so its RSS says nothing of the real stage's, which holds
a source in memory: measured (s29, polars 2.1, short OpenAI-messages conversations) at a peak of
~11-12x the input file (770 MB for a 64 MB JSONL, 728 MB for the same as a .json list; ~13-14x
before RawRows wrote its rows into polars in chunks and normalize let go of each frame it was done
with). The floor is the rows frame (~3.4x: twelve string columns of 16-byte views a row) beside the
turn table being grouped from it. s30 made the repeated columns Categorical (~2x) and took the rules
a slice of whole conversations at a time: 120 MB of mixed contrib files 1070 -> 760 MB; near 30 MB
the interpreter, pandera and the parquet writer (~250 MB) dominate and little changed. s34 let the
rows frame go a chunk at a time as the slices are done and gave pandera's gate a slice at a time:
this child (which had held every row to the end) 32 / 64 / 194 MB: 373 -> 289, 505 -> 375,
1056 -> 633 MB (the child alone letting go of its rows: 339, 476, 817). To measure
it: `--memory` (the real rules on the first source's file), or `/usr/bin/time -f %M nanochatgpt
check FILE`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.args import positive_int
from benchmarks.child import parser_with_children, ran_as_child, run_child

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("bench_a", "bench_b")
RSS_TARGET_MB = 2048
_WORD_TEXT = (
    "the a of to and in is it you that he was for on are with as I his they be at one have this from "
    "or had by hot word but what some we can out other were all there when up use your how said an "
    "each she which do their time if will way about many then them write would like so these her long "
    "make thing see him two has look more day could go come did number sound no most people my over"
)


# ----------------------------------------------------------------------------- generate


def _sentences(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(4, 24, size=n)
    words = np.array(_WORD_TEXT.split())
    return [" ".join(words[rng.integers(0, len(words), size=k)]).capitalize() + "." for k in lengths]


def generate(raw: Path, size_mb: int, seed: int = 0) -> dict[str, int]:
    """Write raw/<source>.jsonl, ~size_mb MB in all; ~3% duplicates within a source (exact and
    trivial variants), and 1% of each later source's conversations copy one of the first source's
    first chunk (cross-source duplicates, which dedup walks a different path for)."""
    rng = np.random.default_rng(seed)
    pool = pl.Series(_sentences(rng, 20_000))
    raw.mkdir(parents=True, exist_ok=True)
    target = size_mb * (1 << 20) // len(SOURCES)
    sizes = {}
    offset = 0
    shared: pl.Series | None = None  # the first source's first chunk of conversations
    for name in SOURCES:
        path = raw / f"{name}.jsonl"
        with open(path, "wb") as f:
            while f.tell() < target:
                chunk = _chunk(rng, pool, offset, 4_000)
                offset += 4_000
                if shared is None:
                    shared = chunk["messages"]
                elif name != SOURCES[0]:
                    k = len(chunk) // 100
                    copied = shared.gather(rng.integers(0, len(shared), size=k))
                    chunk = pl.concat(
                        [chunk.head(len(chunk) - k), chunk.tail(k).with_columns(messages=copied)]
                    )
                chunk.write_ndjson(f)
        sizes[name] = path.stat().st_size
    return sizes


def _chunk(rng: np.random.Generator, pool: pl.Series, offset: int, n: int) -> pl.DataFrame:
    n_turns = rng.integers(2, 9, size=n)
    conv = np.repeat(np.arange(offset, offset + n), n_turns)
    turn = np.concatenate([np.arange(k) for k in n_turns])
    picks = rng.integers(0, len(pool), size=(len(conv), 2))
    turns = pl.DataFrame({"conv": conv, "turn": turn}).with_columns(
        role=pl.when(pl.col("turn") % 2 == 0).then(pl.lit("user")).otherwise(pl.lit("assistant")),
        content=pl.concat_str(pool.gather(picks[:, 0]), pl.lit(" "), pool.gather(picks[:, 1])),
    )
    # ~3% of conversations copy the one before them: half exactly, half as a trivial variant.
    dup = rng.random(n) < 0.03
    variant = rng.random(n) < 0.5
    source_conv = np.where(
        dup, np.maximum(np.arange(offset, offset + n) - 1, offset), np.arange(offset, offset + n)
    )
    copies = pl.DataFrame(
        {"conv": np.arange(offset, offset + n), "src": source_conv, "variant": variant & dup}
    )
    turns = (
        turns.join(copies, on="conv")
        .join(
            turns.select(pl.col("conv").alias("src"), "turn", pl.col("content").alias("src_content")),
            on=["src", "turn"],
            how="left",
        )
        .with_columns(
            content=pl.when(pl.col("src") != pl.col("conv"))
            .then(
                pl.when(pl.col("variant"))
                .then(pl.col("src_content").str.to_uppercase().str.replace_all(" ", "  ") + "!!")
                .otherwise(pl.col("src_content"))
            )
            .otherwise(pl.col("content"))
        )
        .filter(pl.col("content").is_not_null())
    )
    return (
        turns.sort("conv", "turn")
        .group_by("conv", maintain_order=True)
        .agg(messages=pl.struct("role", "content"))
        .select(id=pl.col("conv").cast(pl.String), messages="messages")
    )


# ----------------------------------------------------------------------------- children


def child_normalize(work: Path) -> dict:
    """OpenAI messages JSONL -> turn table (streaming): the shape of normalize, not its rules."""
    out = work / "data" / "normalized"
    out.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        # when/then, not replace_strict: replace_strict does not stream in polars 2.1 (all rows in RAM).
        role = pl.when(pl.col("role") == "user").then(pl.lit("human")).when(pl.col("role") == "assistant")
        role = role.then(pl.lit("bot"))
        (
            pl.scan_ndjson(work / "raw" / f"{name}.jsonl")
            # Turn numbers before the explode: int_ranges is elementwise, so this streams.
            .with_columns(turn=pl.int_ranges(pl.col("messages").list.len(), dtype=pl.Int32))
            .explode("messages", "turn")
            .unnest("messages")
            .select(
                conversation_id=pl.lit(f"{name}:") + pl.col("id"),
                turn="turn",
                role=role,
                text=pl.col("content").str.normalize("NFC").str.strip_chars(),
                source=pl.lit(name),
                licence=pl.lit("MIT"),
                commercial=pl.lit(True),
                context=pl.lit(None, dtype=pl.String),
            )
            .sink_parquet(out / f"{name}.parquet", engine="streaming")
        )
        rows = pl.scan_parquet(out / f"{name}.parquet").select(pl.len()).collect().item()
        report = {
            "source": name,
            "rows_read": rows,
            "rows_kept": rows,
            "turns_kept": rows,
            "rows_quarantined": 0,
            "rows_filtered": {},
            "quarantined_by_check": {},
        }
        (out / f"{name}.report.json").write_text(json.dumps(report))
    return {}


def child_normalize_rules(work: Path) -> dict:
    """The real normalize (pipeline.sources.normalize: RawRows, every rule, pandera's gate) of the
    first source's file, as the contrib adapter reads it: its peak RSS is the stage's (--memory)."""
    from pipeline.sources.adapters import openai_messages
    from pipeline.sources.normalize import normalize_rows
    from pipeline.sources.rows import RawRows

    path = work / "raw" / f"{SOURCES[0]}.jsonl"

    def read() -> pl.DataFrame:
        # As an adapter does: its RawRows goes once the frame is returned, so that normalize_rows
        # can let go of the rows it is done with (a RawRows held here kept every row to the end).
        rows = RawRows(f"contrib/{SOURCES[0]}", "MIT", True)
        openai_messages.read_file(path, path.name, rows)
        return rows.frame()

    result = normalize_rows(read())  # inline, as normalize_source passes it
    return {"file_mb": path.stat().st_size / (1 << 20), "turns": result.turns.height}


def child_build(work: Path) -> dict:
    from pipeline.build import build_variant
    from pipeline.buildinputs import BuildConfig

    registry = {name: {"kind": "url", "licence": "MIT", "commercial": True} for name in SOURCES}
    for name in SOURCES:
        # The download record the build reads for NOTICE.md (one data file, no licence text), as the
        # download stage leaves it: without one the build warned, once per source, in every run.
        record = work / "data" / "raw" / name / "manifest.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"source": name, "files": []}))
    result = build_variant(work, list(SOURCES), registry, BuildConfig(variant="full"))
    t = result.stats["totals"]
    return {
        "phases": result.timings,
        "conversations": t["conversations"],
        "rows_read": t["rows_read"],
        "duplicates": t["duplicates_removed"],
    }


def child_read_jsonl(work: Path) -> dict:
    return {"rows": sum(pl.read_ndjson(work / "raw" / f"{n}.jsonl").height for n in SOURCES)}


def child_read_parquet(work: Path) -> dict:
    return {"rows": sum(pl.read_parquet(work / "data/normalized" / f"{n}.parquet").height for n in SOURCES)}


CHILDREN = {
    "read-jsonl": child_read_jsonl,
    "normalize": child_normalize,
    "read-parquet": child_read_parquet,
    "build": child_build,
    "normalize-rules": child_normalize_rules,  # with --memory only
}


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = parser_with_children(__doc__, CHILDREN)
    parser.add_argument(
        "--size-mb", type=positive_int, default=1024, help="JSONL to generate, in MB (default 1024)"
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also run the real normalize on the first source's file and print its peak RSS against the "
        "file's size (it holds the file in memory: use a --size-mb of a few hundred at most)",
    )
    args = parser.parse_args(argv)
    if ran_as_child(args, CHILDREN):
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        t0 = time.perf_counter()
        sizes = generate(work / "raw", args.size_mb)
        mb = sum(sizes.values()) / (1 << 20)
        print(
            f"generated {mb:.0f} MB of OpenAI-messages JSONL ({len(SOURCES)} sources) in "
            f"{time.perf_counter() - t0:.1f}s -> {work}"
        )
        steps = [step for step in CHILDREN if step != "normalize-rules" or args.memory]
        results = {step: run_child("benchmarks.build", step, work) for step in steps}
        parquet_mb = sum(p.stat().st_size for p in (work / "data/normalized").glob("*.parquet")) / (1 << 20)
        print(f"turn tables: {parquet_mb:.0f} MB parquet\n")
        print(f"{'step':<14}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}")
        for step, (seconds, rss, _) in results.items():
            print(f"{step:<14}{seconds:>9.2f}{mb / seconds:>9.1f}{rss:>13.0f}")
        if args.memory:
            _, rss, info = results["normalize-rules"]
            print(
                f"\nnormalize (real rules) of {SOURCES[0]}.jsonl ({info['file_mb']:.0f} MB): peak RSS "
                f"{rss:.0f} MB = {rss / info['file_mb']:.1f}x the file (s29 measured ~11x)"
            )
        seconds, rss, info = results["build"]
        print(f"\nbuild phases (s): {info['phases']}")
        print(
            f"build: {info['rows_read']} rows -> {info['conversations']} conversations; "
            f"duplicates removed {info['duplicates']}"
        )
        verdict = "OK" if rss <= RSS_TARGET_MB else "OVER TARGET"
        print(f"build peak RSS {rss:.0f} MB vs target {RSS_TARGET_MB} MB: {verdict}")
        return 0 if rss <= RSS_TARGET_MB else 1
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
