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
    it, so a kill in between leaves it empty, and dvclive writes a header only into a file it creates.
    A file that is only a header without its line end (a write cut short) is removed for that reason.

    A row that is not a whole dvclive row (_row_step) is dropped where it lies after the last row kept
    by its step: the end of a write cut short (a kill, a full disk), or garbage a power loss left
    there. Its step would be after the checkpoint's (dvclive logs a step before its checkpoint is
    written), and dvclive's next rows would follow it on its line. One in the middle, before a row
    that is kept, was not left by a cut write (rows were appended after it): it stays, as it is.
    What cannot be read is not ours to judge, the history around it is the checkpoint's, and trimming
    must not drop anything that was there before the step resumed from."""
    for tsv in _plots(live_dir).rglob("*.tsv"):
        lines = tsv.read_bytes().splitlines(keepends=True)
        if not lines or (len(lines) == 1 and not lines[0].endswith(b"\n")):
            tsv.unlink()
            continue
        header, *rows = lines
        fields = header.count(b"\t") + 1
        steps = [_row_step(row, fields) for row in rows]
        # Everything after the last row kept by its step is the part the resume redoes (or a torn end).
        last = max((i for i, s in enumerate(steps) if s is not None and s <= step), default=-1)
        kept = [
            r
            for i, (r, s) in enumerate(zip(rows, steps, strict=True))
            if (i < last if s is None else s <= step)
        ]
        if len(kept) != len(rows):
            atomic.write_bytes(tsv, b"".join([header, *kept]))


def _row_step(row: bytes, fields: int) -> int | None:
    """The step of a whole dvclive row (its line end, the header's number of tab-separated fields, an
    integer step, numbers after it), else None: dvclive writes a row and its line end in one write."""
    if not row.endswith(b"\n"):
        return None
    values = row.rstrip(b"\r\n").split(b"\t")
    if len(values) != fields:
        return None
    try:
        for value in values[1:]:
            float(value)
        return int(values[0])
    except ValueError:
        return None
