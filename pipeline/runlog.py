"""A training run's logging: dvclive metrics and plots (rank 0 only) and a tqdm progress bar.

dvclive (and the scmrepo it brings) are imported lazily, on rank 0 when the logger starts: GPU images
that lack them can still import the trainer (tests/test_train_cuda.py stands in for them there).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline import atomic


class RunLogger:
    """dvclive metrics (model/live/plots/metrics/*.tsv, declared as DVC plots) and a tqdm bar; rank 0 only."""

    def __init__(
        self,
        live_dir: Path,
        is_main: bool,
        total: int,
        initial: int,
        resume: bool,
        history: Path | None = None,
        unlogged: tuple[str, ...] = (),
    ) -> None:
        """`history`: the checkpoint folder a resumed run starts from; its plot snapshot replaces what
        `live_dir` holds (DVC deletes a stage's plots before running it again). `unlogged`: metrics
        dvc.yaml plots that this run never logs (mfu off CUDA): close() leaves each a header-only
        file, an empty chart, where a missing one made `dvc plots show` say it "failed to load"."""
        self.live = None
        self.live_dir = live_dir
        self.unlogged = unlogged
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc="train",
            disable=not is_main,
            dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 10.0,
        )
        if is_main:
            if history is not None:
                restore_plots(history, live_dir)
            if resume:
                trim_plots(live_dir, initial)
            # dvc.yaml declares the plots itself; this run writes no dvc.yaml and no experiment.
            self.live = make_live(live_dir, resume)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.live.next_step()

    def advance(self, postfix: dict[str, float]) -> None:
        if postfix:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
        if self.live is not None:
            self.live.end()
            for name in self.unlogged:
                write_empty_plot(self.live_dir, name)


def write_empty_plot(live_dir: Path, name: str) -> None:
    """A metric's plot file with dvclive's header and no rows, unless the file is there (a run that
    did log it, resumed here on another device, keeps its rows)."""
    path = live_dir / "plots" / "metrics" / f"{name}.tsv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"step\t{Path(name).name}\n")


def make_live(live_dir: Path, resume: bool) -> Any:  # a dvclive.Live (imported lazily: rank 0 only)
    """A dvclive Live that also works in a git repository without commits (`git init; dvc repro`).

    dvclive 3.49 asks git for HEAD before checking whether there is one and fails with
    "Empty git repo"; such a repository has no experiment to link to, so log without one.
    """
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class _Live(Live):
        def _init_dvc(self) -> None:
            try:
                super()._init_dvc()
            except SCMError:
                self._dvc_repo = None
                self._save_dvc_exp = False

    return _Live(dir=str(live_dir), resume=resume, save_dvc_exp=False, dvcyaml=False)


PLOTS_SNAPSHOT = "plots"  # inside a run checkpoint folder: model/live/plots/metrics up to its step
SUMMARY = "metrics.json"  # dvclive's summary in the live folder (a DVC output of train, uncached)
SUMMARY_SNAPSHOT = "live-summary.json"  # inside a run checkpoint folder: that summary at its step


def _plots(live_dir: Path) -> Path:
    return live_dir / "plots" / "metrics"


def snapshot_plots(live_dir: Path, checkpoint: Path) -> None:
    """Copy the run's plot history and dvclive summary into a checkpoint folder being written: a run
    resumed from it, or only finalised, writes its whole curves and its last values, not just the
    steps after the checkpoint (DVC deletes both before the stage runs again)."""
    if _plots(live_dir).is_dir():
        shutil.copytree(_plots(live_dir), checkpoint / PLOTS_SNAPSHOT)
    if (live_dir / SUMMARY).is_file():
        shutil.copyfile(live_dir / SUMMARY, checkpoint / SUMMARY_SNAPSHOT)


def restore_plots(checkpoint: Path, live_dir: Path) -> None:
    """Put a checkpoint's plot and summary snapshots back in `live_dir` (what a checkpoint lacks is
    left as it is)."""
    snapshot = checkpoint / PLOTS_SNAPSHOT
    if snapshot.is_dir():
        shutil.rmtree(_plots(live_dir), ignore_errors=True)
        shutil.copytree(snapshot, _plots(live_dir))
    if (checkpoint / SUMMARY_SNAPSHOT).is_file():
        live_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint / SUMMARY_SNAPSHOT, live_dir / SUMMARY)


def trim_plots(live_dir: Path, step: int) -> None:
    """Drop plot rows after `step`: a resumed run redoes the steps after its checkpoint (no duplicates).
    An empty file is removed: dvclive creates a .tsv and writes its header and first row as it closes
    it, so a kill in between leaves it empty, and dvclive writes a header only into a file it creates."""
    for tsv in _plots(live_dir).rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        if not lines:
            tsv.unlink()
            continue
        header, *rows = lines
        kept = [r for r in rows if int(r.split("\t", 1)[0]) <= step]
        if len(kept) != len(rows):
            atomic.write_text(tsv, "\n".join([header, *kept]) + "\n")
