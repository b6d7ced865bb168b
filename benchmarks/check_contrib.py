"""Benchmark: `nanochatgpt check` on a folder of many contributed files of which one is refused,
against checking each file alone (what `check` fell back to whenever any file was refused).

    python -m benchmarks.check_contrib                       # 500 files, 1 without a sidecar
    python -m benchmarks.check_contrib --files 2000 --refused 3

Writes `--files` small files (OpenAI and ShareGPT JSONL, nanochatgpt text; each with a sidecar) to
a scratch folder, takes the sidecar away from `--refused` of them, then times in this process,
alternating, `--repeats` times each:

  per-file  each file with its sidecar through download + normalize in a scratch copy of its own
            (the baseline: check's fallback before session 30)
  folder    pipeline.check's folder check: one scratch copy, each file scanned alone, the rest
            through download + normalize together

and prints the median seconds of each and their ratio. Both give the same accounts (checked).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.args import positive_int

TURNS = {
    "messages": [{"role": "user", "content": "hi {i}"}, {"role": "assistant", "content": "hello {i}"}],
    "conversations": [{"from": "human", "value": "hi {i}"}, {"from": "gpt", "value": "hello {i}"}],
}


def generate(folder: Path, files: int, refused: int) -> None:
    """`files` files of two conversations each, a third of each format; the first `refused` of
    them (spread through the folder) lose their sidecar, which the pipeline refuses."""
    folder.mkdir(parents=True)
    step = max(1, files // max(1, refused))
    without = {i * step for i in range(refused)}
    for i in range(files):
        stem = folder / f"f{i:05d}"
        if i % 3 == 2:
            stem.with_suffix(".txt").write_text(f"<human> hi {i}\n<bot> hello {i}\n\n" * 2)
        else:
            key = "messages" if i % 3 == 0 else "conversations"
            record = json.dumps({key: json.loads(json.dumps(TURNS[key]).replace("{i}", str(i)))})
            stem.with_suffix(".jsonl").write_text(f"{record}\n{record}\n")
        if i not in without:
            stem.with_suffix(".yaml").write_text("licence: CC0-1.0\ncommercial: true\n")


def per_file(spec: Any, folder: Path, chosen: list[Path], params: dict[str, Any]) -> list[dict[str, Any]]:
    """The baseline's accounts: each stem's files through a scratch copy of their own."""
    from pipeline import check
    from pipeline.sources.errors import SourceError

    summaries = []
    for unit in check._by_stem(chosen):
        try:
            summaries += check._check_scratch(spec, folder, unit, params)[0]
        except SourceError as e:
            summaries.append(check._refused(folder, unit, e))
    return summaries


def folder_check(spec: Any, folder: Path, chosen: list[Path], params: dict[str, Any]) -> list[dict[str, Any]]:
    from pipeline import check

    return check._check_folder(spec, folder, chosen, params)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=positive_int, default=500, help="contributed files (default 500)")
    parser.add_argument("--refused", type=int, default=1, help="files without a sidecar (default 1)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs of each (default 3)")
    args = parser.parse_args(argv)
    if not 0 <= args.refused <= args.files:
        parser.error(f"--refused must be between 0 and --files ({args.files}), not {args.refused}")

    from pipeline.params import load_params, project_root, settings
    from pipeline.sources.contrib import contrib_entries
    from pipeline.sources.registry import get_source, load_registry

    root = project_root()
    spec = get_source("contrib", load_registry(root / "sources.yaml"))
    params = settings(load_params(root / "params.yaml"), "normalize")
    with tempfile.TemporaryDirectory(prefix="bench-check-") as work:
        folder = Path(work) / "contrib"
        generate(folder, args.files, args.refused)
        chosen = contrib_entries(folder)
        ways = {"per-file": per_file, "folder": folder_check}
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        accounts: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeats):
            for name, way in ways.items():  # alternating: a load that comes and goes hits both
                t0 = time.perf_counter()
                accounts[name] = way(spec, folder, chosen, params)
                seconds[name].append(time.perf_counter() - t0)
    if accounts["per-file"] != accounts["folder"]:
        print("the two ways gave different accounts", file=sys.stderr)
        return 1
    refused = sum("error" in s for s in accounts["folder"])
    print(f"{args.files} files, {refused} refused; median of {args.repeats} runs each\n")
    print(f"{'way':<10}{'seconds':>9}{'files/s':>9}")
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    for name, median in medians.items():
        print(f"{name:<10}{median:>9.2f}{args.files / median:>9.1f}")
    ratio = medians["per-file"] / medians["folder"]
    print(f"\nfolder check: {ratio:.1f}x the per-file baseline, the same accounts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
