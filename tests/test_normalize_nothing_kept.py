"""A source that reads rows but keeps none is warned about on stderr (exit 0 all the same): it
passed silently as `9 rows read, 0 kept ... 9 quarantined`, and the build's card said only
"Enabled but holding nothing"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.sources.normalize import nothing_kept_warning
from stages import normalize as normalize_stage

REPO = Path(__file__).resolve().parents[1]


def _project(root: Path, csv: str) -> None:
    for name in ("sources.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    raw = root / "data" / "raw" / "ubuntu"
    raw.mkdir(parents=True)
    (raw / "manifest.json").write_text("{}")
    (raw / "dialogueText.csv").write_text(csv)


def test_stage_warns_when_every_row_is_quarantined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = "".join(f"3,{i}.tsv,d,,,no speaker\n" for i in range(8)) + "3,9.tsv,d,a,,alone\n"
    _project(tmp_path, "folder,dialogueID,date,from,to,text\n" + rows)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    assert normalize_stage.main(["ubuntu"]) == 0
    out, err = capsys.readouterr()
    assert "9 rows read, 0 kept" in out
    assert "WARNING: normalize ubuntu: 9 rows read and none kept" in err
    assert "`missing_field` (8 rows)" in err and "nanochatgpt quarantine ubuntu" in err
    report = json.loads((tmp_path / "data" / "normalized" / "ubuntu.report.json").read_text())
    assert report["rows_kept"] == 0 and report["quarantined_by_check"] == {
        "has_bot_turn": 1,
        "missing_field": 8,
    }


def test_stage_says_nothing_more_when_rows_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(tmp_path, "folder,dialogueID,date,from,to,text\n3,1.tsv,d,a,,hi\n3,1.tsv,d,b,a,hello\n")
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    assert normalize_stage.main(["ubuntu"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def _report(**kw: object) -> dict:
    base = {"source": "s", "rows_read": 0, "rows_kept": 0, "rows_quarantined": 0, "rows_filtered": {}}
    return base | {"quarantined_by_check": {}} | kw


def test_warning_names_the_top_rule_or_filter() -> None:
    assert nothing_kept_warning(_report()) is None  # nothing read: nothing to warn about
    assert nothing_kept_warning(_report(rows_read=3, rows_kept=1, rows_quarantined=2)) is None
    tie = nothing_kept_warning(
        _report(rows_read=4, rows_quarantined=4, quarantined_by_check={"utf8": 2, "json_parse": 2})
    )
    assert tie is not None and "`json_parse` (2 rows)" in tie  # a tie goes to the first by name
    # all filtered (an option chose no row): still said, with the filter
    filtered = nothing_kept_warning(_report(rows_read=5, rows_filtered={"oasst1_lang": 5}))
    assert filtered is not None and "filtered as `oasst1_lang` (5 rows)" in filtered
    assert "nanochatgpt quarantine s" in filtered
