"""`nanochatgpt sources` and `nanochatgpt check` as a new user meets them: a slip in params.yaml is
one line on stderr and exit 1, never a traceback or a table that hides it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pipeline import check
from pipeline.sources import table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "contrib" / "nanochatgpt-sample"


def _project(tmp_path: Path, params: str) -> Path:
    """The repository's registry and sample contributed file, with `params` as params.yaml."""
    (tmp_path / "sources.yaml").write_text((ROOT / "sources.yaml").read_text())
    (tmp_path / "params.yaml").write_text(params)
    contrib = tmp_path / "data" / "contrib"
    contrib.mkdir(parents=True)
    for suffix in (".txt", ".yaml"):
        (contrib / f"nanochatgpt-sample{suffix}").write_bytes(SAMPLE.with_suffix(suffix).read_bytes())
    return tmp_path


def _sources(enabled: list[str]) -> str:
    return "sources:\n" + "".join(f"  - {n}\n" for n in enabled)


def test_sources_names_an_enabled_name_missing_from_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in params.yaml (`oasst` for `oasst1`) has no row of its own: the table showed oasst1
    as not enabled and exited 0, while `dvc repro` stopped at the registry stage."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(_project(tmp_path, _sources(["chitchat", "oasst"]))))

    rows, problems = table.source_rows(tmp_path)

    assert {r["name"]: r["enabled"] for r in rows}["oasst1"] is False
    assert len(problems) == 1
    assert problems[0].startswith("params.yaml `sources:` lists oasst, which is not in sources.yaml (known: ")
    assert table.run(argparse.Namespace(json=False, reasons=False)) == 1
    assert "sources: params.yaml `sources:` lists oasst" in capsys.readouterr().err


def test_sources_shows_no_row_count_for_a_table_its_report_was_not_written_with(tmp_path: Path) -> None:
    """A normalize killed between its renames leaves a new table beside the old report: the table
    printed the old report's count as this table's (the build refuses such a set)."""
    _project(tmp_path, _sources(["chitchat"]))
    normalized = tmp_path / "data" / "normalized"
    normalized.mkdir(parents=True)
    (normalized / "chitchat.parquet").write_bytes(b"a table of 23 bytes....")
    report = {"rows_kept": 5, "outputs": {"turns": {"bytes": 23, "sha256": "0" * 64}}}
    (normalized / "chitchat.report.json").write_text(json.dumps(report))
    rows, problems = table.source_rows(tmp_path)
    assert {r["name"]: r["rows"] for r in rows}["chitchat"] == 5 and problems == []

    (normalized / "chitchat.parquet").write_bytes(b"another run's table")
    rows, problems = table.source_rows(tmp_path)
    assert {r["name"]: r["rows"] for r in rows}["chitchat"] == "-"
    assert problems == [
        "data/normalized/chitchat.parquet is not the table its report was written with (a normalize "
        "killed between its renames?): its rows are not shown; run `dvc repro normalize@chitchat`"
    ]


def test_sources_shows_the_committed_reports_count_before_its_table_is_pulled(tmp_path: Path) -> None:
    """The reports are in git, the tables in DVC's cache: a fresh clone (or `dvc pull export`) has
    the report and no table. That is no mix: `nanochatgpt sources` exited 1 there, saying of every
    normalized source "is not the table its report was written with (a normalize killed ...)"."""
    _project(tmp_path, _sources(["chitchat"]))
    normalized = tmp_path / "data" / "normalized"
    normalized.mkdir(parents=True)
    report = {"rows_kept": 5, "outputs": {"turns": {"bytes": 23, "sha256": "0" * 64}}}
    (normalized / "chitchat.report.json").write_text(json.dumps(report))
    rows, problems = table.source_rows(tmp_path)
    assert {r["name"]: r["rows"] for r in rows}["chitchat"] == 5 and problems == []


@pytest.mark.parametrize(
    ("chitchat", "problem"),
    [
        (
            b'<<<<<<< HEAD\n{"rows_kept": 5}\n=======\n{"rows_kept": 6}\n>>>>>>> b\n',
            "cannot be read as JSON (line 1",
        ),
        (b"\xff\xfe{}", "cannot be read as JSON ("),
        (b"[1, 2]", "is not a normalize report (no whole-number rows_kept)"),
        (b'{"rows_kept": "5"}', "is not a normalize report (no whole-number rows_kept)"),
    ],
)
def test_sources_names_a_report_it_cannot_read(tmp_path: Path, chitchat: bytes, problem: str) -> None:
    """The reports are kept in git: a merge conflict left one that is not JSON, and the table showed
    "-" (as if never normalized) with no word and exit 0; a list or a text count was a traceback.
    A contrib report whose per-file entries are malformed shows those counts as unknown."""
    _project(tmp_path, _sources(["chitchat", "contrib"]))
    normalized = tmp_path / "data" / "normalized"
    normalized.mkdir(parents=True)
    (normalized / "chitchat.report.json").write_bytes(chitchat)
    contrib = {"rows_kept": 4, "by_source": {"contrib/nanochatgpt-sample": 4}}
    (normalized / "contrib.report.json").write_text(json.dumps(contrib))
    rows, problems = table.source_rows(tmp_path)
    shown = {r["name"]: r["rows"] for r in rows}
    assert shown["chitchat"] == "-" and shown["contrib"] == 4 and shown["contrib/nanochatgpt-sample"] == "-"
    assert len(problems) == 1 and problems[0].startswith(f"data/normalized/chitchat.report.json {problem}")
    assert problems[0].endswith("or run `dvc repro normalize@chitchat`")


def test_sources_with_registry_names_only_has_no_problem(tmp_path: Path) -> None:
    _project(tmp_path, _sources(["chitchat", "chatterbot", "contrib"]))
    assert table.source_rows(tmp_path)[1] == []


@pytest.mark.parametrize(
    ("command", "args"),
    [
        (table, argparse.Namespace(json=False, reasons=False)),
        (check, argparse.Namespace(files=[], strict=False)),
    ],
)
def test_params_that_are_not_yaml_are_one_line_not_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: object,
    args: argparse.Namespace,
) -> None:
    """An unclosed list in params.yaml made both commands end in a ValueError traceback."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(_project(tmp_path, "sources: [chitchat,\n")))

    assert command.run(args) == 1  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{tmp_path / 'params.yaml'}:2: not valid YAML" in err
    assert len(err.strip().splitlines()) == 1
