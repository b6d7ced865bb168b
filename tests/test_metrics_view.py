"""How a person reads the pipeline's numbers with DVC (README: `dvc metrics show`, `dvc metrics diff
--all`, `dvc exp diff`, `dvc exp show --only-changed --drop '.*/'`).

DVC makes a column of every key of every file declared as a metric, one row per file. The normalize
reports were declared metrics: their strings (a contributed file's description and licence, the
tables' sha256s) and their keys per contributed file and per check made `dvc metrics show` 2,436
characters wide (84 columns) with the default sources. A report is now a plain output kept in git,
and normalize's metric is metrics.json beside it: the report's totals, numbers only.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.schema import QUARANTINE_SCHEMA, TURN_SCHEMA
from pipeline.sources.normalize import METRICS_COUNTS, NormalizeResult, summary_metrics, write_outputs

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Short labels of the run, not numbers; the model card reads init_from (pipeline/hfexport.py), the export
# stage the variant (stages/export.py).
LABELS = {"model/metrics.json": {"device", "init_from", "variant"}}
# Per-source token counts (docs/shards.md): 3 numbers per source and split. Moving them would change
# data/tokens/<variant>, which train depends on as a whole folder, and so retrain.
PER_SOURCE = re.compile(r"data/tokens/[^/]+/metrics\.json")
MAX_NUMBERS_PER_FILE = 20
# The columns of `dvc metrics show`, per-source token counts aside: a fixed set, whatever the sources
# (50 with the default ones; 68 while the normalize reports were metrics).
MAX_COLUMNS = 55


@pytest.fixture(scope="module")
def dvc_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_NO_ANALYTICS", "1")
        yield


@pytest.fixture(scope="module")
def stages(dvc_env: None) -> dict[str, Any]:
    """dvc.yaml's stages as DVC reads them (foreach expanded), by name."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.addressing: s for s in repo.index.stages}


@pytest.fixture(scope="module")
def metric_paths(stages: dict[str, Any]) -> list[str]:
    return sorted(o.def_path for s in stages.values() for o in s.outs if o.is_metric)


def _leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf: what DVC turns into a column of `dvc metrics show`."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, tree


def _committed(path: str) -> dict[str, Any]:
    file = ROOT / path
    assert file.is_file(), f"{path}: declared a metric in dvc.yaml but missing (run `dvc repro`, commit it)"
    data = json.loads(file.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: a metrics file is a JSON object"
    return data


def test_every_declared_metric_holds_numbers(metric_paths: list[str]) -> None:
    assert metric_paths
    bad = [
        f"{path}: {key} = {json.dumps(value)[:70]}"
        for path in metric_paths
        for key, value in _leaves(_committed(path))
        if not (value is None or isinstance(value, int | float))  # bool is an int
        and key not in LABELS.get(path, set())
    ]
    assert not bad, "a metric that is no number is a column of text in `dvc metrics show`:\n" + "\n".join(bad)


def test_the_metrics_table_has_a_bounded_number_of_columns(metric_paths: list[str]) -> None:
    columns: set[str] = set()
    for path in metric_paths:
        keys = [
            k for k, _ in _leaves(_committed(path)) if not (PER_SOURCE.fullmatch(path) and ".sources." in k)
        ]
        assert len(keys) <= MAX_NUMBERS_PER_FILE, (
            f"{path}: {len(keys)} numbers, at most {MAX_NUMBERS_PER_FILE}"
        )
        columns.update(keys)
    assert len(columns) <= MAX_COLUMNS, (
        f"`dvc metrics show` would have {len(columns)} columns: {sorted(columns)}"
    )


def test_the_normalize_report_is_a_plain_output_and_its_totals_the_metric(stages: dict[str, Any]) -> None:
    """The report stays in git (`cache: false`): the build, `nanochatgpt sources` and `nanochatgpt
    quarantine` read it, and a fresh clone has it without `dvc pull`."""
    normalize = sorted(name for name in stages if name.startswith("normalize@"))
    assert normalize
    for name in normalize:
        source = name.removeprefix("normalize@")
        outs = {o.def_path: o for o in stages[name].outs}
        report = outs[f"data/normalized/{source}.report.json"]
        metrics = outs[f"data/normalized/{source}.metrics.json"]
        assert not report.use_cache and not report.is_metric and not report.is_plot, name
        assert metrics.is_metric and not metrics.use_cache, name


def _result(rows_filtered: dict[str, int]) -> NormalizeResult:
    turns = pl.DataFrame(
        [
            {
                "conversation_id": "demo:0",
                "turn": t,
                "role": ("human", "bot")[t],
                "text": ("hello", "hi\nthere")[t],
                "source": "demo",
                "licence": "MIT",
                "commercial": True,
                "context": None,
            }
            for t in (0, 1)
        ],
        schema=TURN_SCHEMA,
    )
    report = {
        "source": "demo",
        "rows_read": 4 + sum(rows_filtered.values()),
        "rows_kept": 3,
        "rows_quarantined": 1,
        "rows_filtered": rows_filtered,
        "quarantined_by_check": {"text_present": 1},
        "turns_kept": 2,
        "rows_merged": 1,
        "conversations_kept": 1,
        "by_source": {"demo/a": {"description": "a file", "licence": "MIT", "commercial": True}},
    }
    return NormalizeResult(turns, pl.DataFrame(schema=QUARANTINE_SCHEMA), report)


def test_normalize_writes_its_totals_beside_the_report(tmp_path: Path) -> None:
    paths = write_outputs(_result({"oasst_lang": 2, "deleted": 3}), "demo", tmp_path)
    assert paths["metrics"] == tmp_path / "data/normalized/demo.metrics.json"
    metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert metrics == {
        "rows_read": 9,
        "rows_kept": 3,
        "rows_quarantined": 1,
        "rows_filtered": 5,  # summed, as the build's metrics.json sums it
        "rows_merged": 1,
        "turns_kept": 2,
        "conversations_kept": 1,
    }
    assert (
        metrics["rows_read"] == metrics["rows_kept"] + metrics["rows_quarantined"] + metrics["rows_filtered"]
    )
    report = json.loads(paths["report"].read_text(encoding="utf-8"))
    assert report["by_source"]["demo/a"]["description"] == "a file"  # the report is whole, as before


@pytest.mark.parametrize("report", sorted((ROOT / "data" / "normalized").glob("*.report.json")), ids=str)
def test_committed_normalize_metrics_are_their_reports_totals(report: Path) -> None:
    metrics = report.with_name(report.name.replace(".report.json", ".metrics.json"))
    assert metrics.is_file(), f"{metrics.relative_to(ROOT)}: missing beside its report (run `dvc repro`)"
    expected = summary_metrics(json.loads(report.read_text(encoding="utf-8")))
    assert json.loads(metrics.read_text(encoding="utf-8")) == expected
    assert set(expected) == {*METRICS_COUNTS, "rows_filtered"}


def _readme_commands(prefix: str) -> list[list[str]]:
    """README's inline commands that start with `prefix`, split as a shell would (no quotes in
    them but single ones)."""
    found = [c for c in re.findall(r"`([^`\n]+)`", README) if c.startswith(prefix)]
    return [[part.strip("'") for part in re.findall(r"'[^']*'|\S+", c)] for c in found]


def test_readmes_metrics_commands_name_declared_metrics(metric_paths: list[str]) -> None:
    shows = [c[3:] for c in _readme_commands("dvc metrics show ")]
    assert shows, "README no longer shows how to narrow `dvc metrics show`"
    for targets in shows:
        for target in targets:
            assert fnmatch.filter(metric_paths, target), (
                f"README: `dvc metrics show {target}` names no metric"
            )
    normalize = [p for p in metric_paths if p.startswith("data/normalized/")]
    assert normalize and all(any(fnmatch.fnmatch(p, t) for ts in shows for t in ts) for p in normalize)


@pytest.mark.parametrize(
    "command", ["dvc metrics diff --all", "dvc exp diff", "dvc exp show --only-changed --drop '.*/'"]
)
def test_readmes_comparison_commands_parse(command: str, dvc_env: None) -> None:
    """Each is in README as written, and DVC's own parser takes its options."""
    from dvc.cli import parse_args

    assert f"`{command}`" in README
    parse_args(re.findall(r"'[^']*'|\S+", command)[1:])


def test_model_metrics_keep_their_own_names_in_exp_show(metric_paths: list[str]) -> None:
    """`dvc exp show` prefixes a metric with its file (`path:key`) when another file has the same
    key; `--drop '.*/'` (README) would then drop it with the dependencies' columns."""
    model = {"model/metrics.json", "model/eval/metrics.json"}
    keys = {path: {k for k, _ in _leaves(_committed(path))} for path in metric_paths}
    for path in model:
        others = set().union(*(keys[p] for p in metric_paths if p != path))
        assert not keys[path] & others, (
            f"{path}: shared with another metrics file: {sorted(keys[path] & others)}"
        )
        assert not [k for k in keys[path] if re.match(".*/", k)]
