"""Benchmark the tokenize stage against raw tiktoken on the same text, at two corpus sizes.

    .venv/bin/python -m benchmarks.tokenize_throughput            # ~1 minute on 2 cores
    .venv/bin/python -m benchmarks.tokenize_throughput --sizes 1 8 --workers 2
    (`python benchmarks/tokenize_throughput.py` works too.)

The corpus is the chitchat-dataset package's conversations (real human dialogue, shipped with
the package, no network), repeated to each size, written as a dataset parquet like the build
stage's. For each size it measures, in the same run and on the same text pieces:
  raw batch   `enc.encode_ordinary_batch(texts)` (tiktoken's threaded batch call, default threads)
  raw loop    `[enc.encode_ordinary(t) for t in texts]` (one core, no Python overhead beyond the call)
  stage       `pipeline.encode.tokenize_dataset` in a fresh process (parquet read, workers, shards,
              meta.json; process start-up included), with the peak RSS of its whole process tree
and prints MB/s (UTF-8 bytes of text), tokens/s (text tokens, markers excluded) and the ratios.
The machine is shared: run it twice and trust the ratios more than the absolute figures.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder heads sys.path and the file itself would shadow the stdlib
# `tokenize` module (imported by linecache, inspect, ...): drop the folder before anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import polars as pl  # noqa: E402
import psutil  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.args import positive_int  # noqa: E402
from pipeline.tokenizer import get_encoding  # noqa: E402

CHILD = """
import json, resource, sys, time
from pipeline.encode import tokenize_dataset

def cpu():
    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
               for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

if __name__ == "__main__":
    t, c = time.perf_counter(), cpu()
    meta = tokenize_dataset(sys.argv[1], sys.argv[2], shard_tokens=16777216, workers=int(sys.argv[3]),
                            batch_conversations=int(sys.argv[4]))
    # the pool's workers are joined inside tokenize_dataset, so RUSAGE_CHILDREN counts them
    print(json.dumps({"wall": time.perf_counter() - t, "cpu": cpu() - c,
                      "tokens": sum(s["n_tokens"] for s in meta["splits"].values())}))
"""


@dataclass
class Row:
    copies: int
    mb: float
    text_tokens: int
    tokens: int
    batch: tuple[float, float]  # (wall s, cpu s) of each measurement
    loop: tuple[float, float]
    stage: tuple[float, float]
    rss_mb: float


def base_conversations() -> list[dict]:
    """chitchat-dataset's conversations as dataset rows (turns alternate human / bot)."""
    spec = importlib.util.find_spec("chitchat_dataset")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "benchmarks/tokenize_throughput.py needs the chitchat-dataset package (pip install chitchat-dataset)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for i, conv in enumerate(data.values()):
        messages = [
            {"role": "human" if t % 2 == 0 else "bot", "content": " ".join(u["text"] for u in turn)}
            for t, turn in enumerate(conv["messages"])
        ]
        context = "I love hiking and I have two dogs." if i % 10 == 0 else None  # some personas
        rows.append({"messages": messages, "context": context, "source": "chitchat"})
    return rows


def write_dataset(directory: Path, base: list[dict], copies: int) -> list[str]:
    """train = `copies` x base, val = 200 rows; returns every text piece the stage will encode."""
    directory.mkdir(parents=True, exist_ok=True)
    train = [{**r, "conversation_id": f"{c}:{i}"} for c in range(copies) for i, r in enumerate(base)]
    val = [{**r, "conversation_id": f"val:{i}"} for i, r in enumerate(base[:200])]
    texts = []
    for name, rows in (("train", train), ("val", val)):
        frame = pl.DataFrame(rows).with_columns(licence=pl.lit("MIT"), commercial=pl.lit(True))
        # several row groups at both sizes, so both runs are in the stage's steady state
        # (it decodes one row group while the next is read ahead)
        frame.write_parquet(directory / f"{name}.parquet", row_group_size=4096)
        for r in rows:
            texts += [r["context"]] if r["context"] else []
            texts += [m["content"] for m in r["messages"]]
    return texts


def timed(fn) -> tuple[tuple[float, float], object]:
    """((wall seconds, CPU seconds of this process, all threads), result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t, time.process_time() - c), out


def run_stage(dataset: Path, out: Path, workers: int, batch: int) -> tuple[tuple[float, float], int, float]:
    """((wall s, CPU s of the stage call incl. workers), tokens written, peak RSS of the process tree, MB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = psutil.Popen(
        [sys.executable, "-c", CHILD, str(dataset), str(out), str(workers), str(batch)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.02)
    stdout = proc.stdout.read()
    if proc.returncode != 0:
        sys.exit(f"stage run failed with exit code {proc.returncode}")
    result = json.loads(stdout)
    return (result["wall"], result["cpu"]), result["tokens"], peak / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=positive_int,
        nargs=2,
        default=[1, 4],
        help="the two corpus sizes, in copies of chitchat's conversations (default 1 4)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="the stage's tokenize.workers (default 2)"
    )
    parser.add_argument(
        "--batch", type=positive_int, default=512, help="tokenize.batch_conversations (default 512)"
    )
    args = parser.parse_args(argv)

    enc = get_encoding()
    base = base_conversations()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        for copies in args.sizes:
            dataset = Path(tmp) / f"x{copies}" / "dataset"
            texts = write_dataset(dataset, base, copies)
            mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
            t_batch, encoded = timed(lambda texts=texts: enc.encode_ordinary_batch(texts))
            n_text_tokens = sum(map(len, encoded))
            del encoded
            t_loop, _ = timed(lambda texts=texts: [enc.encode_ordinary(t) for t in texts])
            t_stage, n_tokens, rss = run_stage(
                dataset, Path(tmp) / f"x{copies}" / "tokens", args.workers, args.batch
            )
            rows.append(Row(copies, mb, n_text_tokens, n_tokens, t_batch, t_loop, t_stage, rss))
    print_table(rows, args.workers, args.batch)


def print_table(rows: list[Row], workers: int, batch: int) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ntokenize benchmark: {os.cpu_count()} cores (load avg {load}), stage workers={workers}, batch={batch}"
    )
    header = (
        f"{'corpus':>7} {'MB':>6} {'text tok':>9} | {'wall MB/s:':>10} {'raw batch':>9} {'raw loop':>8} {'stage':>6} "
        f"{'stage Mtok/s':>12} {'stage/batch':>11} | {'CPU s:':>6} {'raw loop':>8} {'stage':>6} "
        f"{'loop/stage':>10} | {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.copies:>6}x {r.mb:>6.1f} {r.text_tokens / 1e6:>8.2f}M | {'':>10} {r.mb / r.batch[0]:>9.2f} "
            f"{r.mb / r.loop[0]:>8.2f} {r.mb / r.stage[0]:>6.2f} {r.text_tokens / r.stage[0] / 1e6:>12.2f} "
            f"{r.batch[0] / r.stage[0]:>10.2f}x | {'':>6} {r.loop[1]:>8.2f} {r.stage[1]:>6.2f} "
            f"{r.loop[1] / r.stage[1]:>9.2f}x | {r.rss_mb:>11.0f}"
        )
    print(
        "\nraw batch: tiktoken encode_ordinary_batch (a thread per text, default 8 threads); raw loop: encode_ordinary,"
        "\none core. stage: tokenize_dataset, parquet in -> shards + meta.json out, worker start-up included; it"
        f"\nalso writes the {rows[-1].tokens - rows[-1].text_tokens:,} marker tokens of the largest corpus."
        "\nloop/stage = CPU-second efficiency of the stage against the bare loop (load-independent); on an idle"
        "\nmachine stage wall ~ stage CPU / workers + start-up."
    )


if __name__ == "__main__":
    main()
