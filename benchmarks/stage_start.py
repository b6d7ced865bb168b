"""Benchmark: the registry and download stages' own cost, as they run now and as they ran before
pandera and pyarrow were imported lazily and the installed-distribution index was read once.

    python -m benchmarks.stage_start              # 7 runs of each step
    python -m benchmarks.stage_start --runs 3

Both stages are short (a second or two), and most of it was fixed cost: `pipeline.schema` imported
pandera (~0.5 s, with pandas) for a registry stage that never validates a table,
`pipeline.sources.readers` pyarrow (~0.2 s) for stages that read no parquet file, and
importlib.metadata.packages_distributions() (~0.3 s: every installed distribution's RECORD) was
read once per call of `download._distribution`, three times in a package download and once per
package source in the registry. The registry runs on every `dvc repro` (always_changed).

Each step runs in its own process, in a copy of the project's params.yaml, sources.yaml and
data/contrib/ (NANOCHATGPT_ROOT), alternating `before` and `now` so that a busy machine slows both
alike:

  registry-before / registry-now    python -m stages.registry
  download-before / download-now    python -m stages.download chitchat (a package source)

`before` replaces the cached index with the uncached call and imports pyarrow (and, for the
registry, pandera.polars) first: what the stages did until then. Prints the median process
seconds, the spread (min-max) and the ratio per stage, and checks that both wrote the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.args import positive_int
from benchmarks.child import ROOT, work_folder

STAGES = {"registry": [], "download": ["chitchat"]}
# `before`: what the stages did until now, put back in the child before the stage runs
_BEFORE = """
import importlib.metadata
import pipeline.sources.download as d
d._packages_distributions = lambda path: importlib.metadata.packages_distributions()  # no cache
"""
# both imported pipeline.sources.readers (download -> contrib), which imported pyarrow at its top, and
# the registry pipeline.schema (trainchoice -> buildinputs), which imported pandera at its top
_PYARROW = "import pyarrow, pyarrow.compute, pyarrow.parquet\n"  # pipeline.sources.readers, at its top
_EAGER_IMPORTS = {"registry": "import pandera.polars\n" + _PYARROW, "download": _PYARROW}
_RUN = """
import runpy, sys
sys.argv = [{module!r}, *{args!r}]
try:
    runpy.run_module({module!r}, run_name="__main__")
except SystemExit as e:
    sys.exit(e.code)
"""


def _project_copy(work: Path) -> None:
    """What the two stages read: the registry, the params and the contributed files."""
    for name in ("params.yaml", "sources.yaml"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "data" / "contrib", work / "data" / "contrib", dirs_exist_ok=True)


def time_stage(work: Path, stage: str, before: bool) -> float:
    """Seconds of one run of the stage, in a fresh process."""
    code = (_EAGER_IMPORTS[stage] + _BEFORE if before else "") + _RUN.format(
        module=f"stages.{stage}", args=STAGES[stage]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NANOCHATGPT_ROOT": str(work)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def outputs_digest(work: Path) -> str:
    """sha256 over the registry's JSON and the download's files (paths and bytes)."""
    h = hashlib.sha256()
    for path in sorted((work / "data").rglob("*")):
        if path.is_file() and "contrib" not in path.relative_to(work / "data").parts[:1]:
            h.update(path.relative_to(work).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=positive_int, default=7, help="runs of each step (default 7)")
    args = parser.parse_args(argv)
    digests: dict[bool, str] = {}
    times: dict[tuple[str, bool], list[float]] = {}
    with work_folder(None, "bench-stage-start-") as work:
        _project_copy(work)
        for before in (True, False):  # warm the page cache and record each side's outputs
            for stage in STAGES:
                time_stage(work, stage, before)
            digests[before] = outputs_digest(work)
        for _ in range(args.runs):
            for stage in STAGES:
                for before in (True, False):
                    times.setdefault((stage, before), []).append(time_stage(work, stage, before))
    print(f"{'stage':<10}{'before s':>10}{'now s':>8}{'ratio':>7}   spread before / now (min-max)")
    for stage in STAGES:
        old, new = times[(stage, True)], times[(stage, False)]
        mo, mn = statistics.median(old), statistics.median(new)
        print(
            f"{stage:<10}{mo:>10.2f}{mn:>8.2f}{mo / mn:>7.2f}   "
            f"{min(old):.2f}-{max(old):.2f} / {min(new):.2f}-{max(new):.2f}"
        )
    same = digests[True] == digests[False]
    print(f"outputs identical: {same} ({digests[False][:16]})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
