"""Session 34: the charts `dvc plots show` draws say what they show; a quarantine's byte offset counts
a file's byte-order mark.

Plots: DVC titles a chart with its file's path and labels an axis with a column's name when dvc.yaml
says nothing else; dvclive's folder of curves (`plots: - model/live/plots/metrics`) was drawn as five
charts titled `model/live/plots/metrics/train/loss.tsv` and so on, with train and val loss apart.
"""

from __future__ import annotations

import csv
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_messages34 import WHOLE_FILE_CASES

from pipeline.sources.normalize import normalize_rows
from pipeline.sources.readers import BOM
from pipeline.sources.registry import SourceSpec

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("title", "x_label", "y_label")


def _dvc_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def _entries(items: list[Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """(path or id, options) of each entry of an outs/metrics/plots list."""
    pairs = []
    for entry in items or []:
        if isinstance(entry, dict):
            ((name, options),) = entry.items()
            pairs.append((name, options or {}))
        else:
            pairs.append((entry, {}))
    return pairs


def _declared_plots() -> dict[str, dict[str, Any]]:
    """Every chart dvc.yaml declares: its stages' plots and the top-level `plots:`, by id."""
    spec = _dvc_yaml()
    plots = {}
    for stage in spec["stages"].values():
        plots.update(_entries(stage.get("do", stage).get("plots")))
    plots.update(_entries(spec.get("plots")))
    return plots


def _stage_outputs() -> list[re.Pattern[str]]:
    """What the stages write, a pattern each: the path itself or a file under it (a folder output),
    with a foreach stage's `${item}` standing for any one folder or file name."""
    patterns = []
    for stage in _dvc_yaml()["stages"].values():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for path, _ in _entries(body.get(kind)):
                pattern = re.escape(path).replace(re.escape("${item}"), "[^/]+")
                patterns.append(re.compile(rf"{pattern}(/.+)?"))
    return patterns


def _files_and_columns(plot_id: str, options: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(file, y column) of each file a chart draws: `y:` as {file: column} (one chart of several
    files), or else the id is the file."""
    y = options.get("y")
    if isinstance(y, dict):
        return [
            (path, column)
            for path, columns in y.items()
            for column in ([columns] if isinstance(columns, str) else columns)
        ]
    return [(plot_id, y if isinstance(y, str) else None)]


def test_every_declared_plot_has_a_title_and_axis_labels() -> None:
    missing = {
        plot_id: [key for key in LABELS if not options.get(key)]
        for plot_id, options in _declared_plots().items()
        if not all(options.get(key) for key in LABELS)
    }
    assert not missing, f"dvc.yaml: plots DVC would title with their path or label by column: {missing}"


def test_no_plot_is_a_folder() -> None:
    """A folder plot draws one chart per file, all under the folder's one title (or their paths)."""
    folders = [
        path
        for plot_id, options in _declared_plots().items()
        for path, _ in _files_and_columns(plot_id, options)
        if not Path(path).suffix
    ]
    assert not folders, f"dvc.yaml: folders declared as plots: {folders}"


def test_every_plotted_file_is_one_a_stage_writes() -> None:
    """A top-level plot names its files itself: a typo, or a file no stage writes any more, is drawn
    by no one (DVC only notes a failure to load it)."""
    outputs = _stage_outputs()
    unwritten = [
        path
        for plot_id, options in _declared_plots().items()
        for path, _ in _files_and_columns(plot_id, options)
        if not any(pattern.fullmatch(path) for pattern in outputs)
    ]
    assert not unwritten, f"dvc.yaml: plots of files no stage writes: {unwritten}"


def test_each_plotted_column_is_in_its_committed_file() -> None:
    """The x and y columns a plot names are in the file's header (the curves and counts in git; a
    file this checkout lacks, an output not checked out, is skipped)."""
    wrong = []
    for plot_id, options in _declared_plots().items():
        for path, y in _files_and_columns(plot_id, options):
            file = ROOT / path
            if "${" in path or not file.is_file():
                continue
            delimiter = "\t" if file.suffix == ".tsv" else ","
            with file.open(encoding="utf-8", newline="") as f:
                header = next(csv.reader(f, delimiter=delimiter))
            wrong += [(path, column) for column in (options.get("x"), y) if column and column not in header]
    assert not wrong, f"dvc.yaml: plotted columns missing from their files: {wrong}"


def test_train_and_val_loss_are_one_chart() -> None:
    charts = [
        {path for path, _ in _files_and_columns(plot_id, options)}
        for plot_id, options in _declared_plots().items()
    ]
    loss = {"model/live/plots/metrics/train/loss.tsv", "model/live/plots/metrics/val/loss.tsv"}
    assert loss in charts, "dvc.yaml: train and val loss are not drawn on one chart"


@pytest.mark.parametrize(("name", "adapter", "body"), WHOLE_FILE_CASES)
def test_an_invalid_utf8_byte_after_a_byte_order_mark_counts_from_the_file_as_stored(
    tmp_path: Path, name: str, adapter: str, body: bytes
) -> None:
    """chitchat and chatterbot drop a UTF-8 byte-order mark before decoding a file whole: the byte
    the reason named "of the file" was counted after it, 3 short of where an editor or `xxd` finds it."""
    module = importlib.import_module(f"pipeline.sources.adapters.{adapter}")
    stored = BOM + body
    (tmp_path / name).write_bytes(stored)
    spec = SourceSpec(adapter, "package", adapter, adapter, "MIT", True)
    q = normalize_rows(module.read(tmp_path, spec, {})).quarantine
    assert q.select("origin", "check", "reason").rows() == [
        (f"{name}:2", "utf8", f"invalid UTF-8 at byte {stored.index(0xE9)} of the file")
    ]


def test_a_run_that_never_logs_a_declared_metric_leaves_its_chart_empty_not_missing(tmp_path: Path) -> None:
    """dvc.yaml declares mfu.tsv, which only a CUDA run logs: a CPU run closes its logger with a
    header-only file (an empty chart), where a missing one made `dvc plots show` warn that it "failed
    to load" the workspace's plots. A file that is there (a run that logged it) keeps its rows."""
    from pipeline.runlog import RunLogger

    live = tmp_path / "live"
    logger = RunLogger(live, is_main=True, total=2, initial=0, resume=False, unlogged=("mfu",))
    logger.log(1, {"lr": 0.5})
    logger.close()
    plots = live / "plots" / "metrics"
    assert (plots / "mfu.tsv").read_text() == "step\tmfu\n"
    assert (plots / "lr.tsv").read_text().splitlines() == ["step\tlr", "1\t0.5"]

    logger = RunLogger(live, is_main=True, total=2, initial=0, resume=False, unlogged=("lr",))
    logger.log(1, {"lr": 0.25})
    logger.close()
    assert (plots / "lr.tsv").read_text().splitlines() == ["step\tlr", "1\t0.25"]
    assert not (plots / "mfu.tsv").exists()  # a new run (not resumed) starts dvclive's folder afresh
    declared = {entry_file for entry in _dvc_yaml()["plots"] for entry_file in entry}
    assert "model/live/plots/metrics/mfu.tsv" in declared
