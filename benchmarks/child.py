"""One benchmark step in its own process, so that its peak RSS is its own (os.wait4's rusage)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(module: str, step: str, work: Path) -> tuple[float, float, dict]:
    """(seconds, peak RSS MB, the child's JSON result: its last stdout line) of `python -m module
    --child step --workdir work`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--child", step, "--workdir", str(work)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step} failed (exit {os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024, json.loads(out.decode().strip().splitlines()[-1])


ROWS_FILE = "rows"  # in the work folder: how a `generate` step hears its row count


def generate_in_child(module: str, work: Path, rows: int) -> int:
    """The bytes `module`'s `generate` step reports, run for `rows` rows in its own process (a forked
    one starts from its parent's peak RSS, which generating would set). A child takes only
    `--workdir`, so the count goes through the work folder (read back with rows_asked)."""
    work.joinpath(ROWS_FILE).write_text(str(rows))
    return run_child(module, "generate", work)[2]["bytes"]


def rows_asked(work: Path) -> int:
    """In a `generate` child: the row count generate_in_child passed."""
    return int(work.joinpath(ROWS_FILE).read_text())


Children = Mapping[str, Callable[[Path], dict]]


def parser_with_children(doc: str | None, children: Children) -> argparse.ArgumentParser:
    """The benchmark's parser, with `--workdir` and the hidden `--child STEP` its steps run under."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temp dir, removed after)")
    parser.add_argument("--child", choices=sorted(children), help=argparse.SUPPRESS)
    return parser


def ran_as_child(args: argparse.Namespace, children: Children) -> bool:
    """Run the `--child` step asked for, printing its JSON result for run_child; False if none was."""
    if not args.child:
        return False
    print(json.dumps(children[args.child](args.workdir)))
    return True


@contextlib.contextmanager
def work_folder(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """`--workdir` if given (kept), else a temp folder removed afterwards, even on failure."""
    work = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        work.mkdir(parents=True, exist_ok=True)
        yield work
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def measure_steps(
    module: str, steps: tuple[str, ...], work: Path, timed: str = "read"
) -> dict[str, tuple[float, float, dict]]:
    """Run each step in its own process and print a table of its `timed` part (the child's
    `seconds`), the whole process's seconds and its peak RSS; returns run_child's figures per step."""
    results = {step: run_child(module, step, work) for step in steps}
    print(f"{timed:<10}{timed + ' s':>8}{'process s':>11}{'peak RSS MB':>13}")
    for step, (seconds, rss, info) in results.items():
        print(f"{step:<10}{info['seconds']:>8.2f}{seconds:>11.2f}{rss:>13.0f}")
    return results
