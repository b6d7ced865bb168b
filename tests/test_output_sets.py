"""normalize@<source>'s three outputs are one set: the report, renamed last, records the size and
sha256 of the turn table and quarantine it was written with, and the build refuses a table or
quarantine that is not the one its report describes (a normalize killed between its final renames,
or a file replaced by hand) with one line naming both files and `dvc repro normalize@<source>`.

evaluate's three outputs get no such record, only the order: metrics.json, the file DVC compares,
is renamed last. A kill while the files are written is tests/test_crash_safety.py's: it leaves the
previous set whole.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig, BuildError, resolve_sources
from pipeline.schema import QUARANTINE_SCHEMA, TURN_SCHEMA
from pipeline.sources.normalize import OUTPUTS_KEY, NormalizeResult, output_paths, write_outputs

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = {"demo": {"kind": "url", "licence": "MIT", "commercial": True}}
FIX = "run `dvc repro normalize@demo`"


def _result(tag: str, conversations: int, quarantined: int = 1) -> NormalizeResult:
    """A valid normalize result: `conversations` two-turn conversations, `quarantined` rows."""
    turns = pl.DataFrame(
        [
            {
                "conversation_id": f"demo:{tag}{i}",
                "turn": t,
                "role": ("human", "bot")[t],
                "text": f"{tag} {('question', 'answer')[t]} {i}",
                "source": "demo",
                "licence": "MIT",
                "commercial": True,
                "context": None,
            }
            for i in range(conversations)
            for t in (0, 1)
        ],
        schema=TURN_SCHEMA,
    )
    quarantine = pl.DataFrame(
        [
            {
                "source": "demo",
                "text": f"{tag} bad {i}",
                "check": "text_present",
                "reason": tag,
                "origin": "x:1",
            }
            for i in range(quarantined)
        ],
        schema=QUARANTINE_SCHEMA,
    )
    report = {
        "source": "demo",
        "rows_read": 2 * conversations + quarantined,
        "rows_kept": 2 * conversations,
        "rows_quarantined": quarantined,
        "rows_filtered": {},
        "quarantined_by_check": {"text_present": quarantined},
        "turns_kept": 2 * conversations,
        "rows_merged": 0,
        "conversations_kept": conversations,
    }
    return NormalizeResult(turns, quarantine, report)


def _build(root: Path) -> dict:
    return build_variant(root, ["demo"], REGISTRY, BuildConfig(variant="full", val_fraction=0.2)).stats


def test_the_report_records_the_two_tables_it_was_written_with(tmp_path: Path) -> None:
    paths = write_outputs(_result("a", 4), "demo", tmp_path)
    report = json.loads(paths["report"].read_text(encoding="utf-8"))
    for key in ("turns", "quarantine"):
        data = paths[key].read_bytes()
        assert report[OUTPUTS_KEY][key] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_an_intact_set_builds_and_the_stats_carry_the_counts_not_the_hashes(tmp_path: Path) -> None:
    write_outputs(_result("a", 4), "demo", tmp_path)
    stats = _build(tmp_path)
    normalize = stats["sources"]["demo"]["normalize"]
    assert normalize["turns_kept"] == 8 and "outputs" not in normalize
    assert stats["sources"]["demo"]["matches_normalize_report"] is True


@pytest.mark.parametrize("key", ["turns", "quarantine"])
def test_a_file_of_another_run_beside_the_report_is_refused(tmp_path: Path, key: str) -> None:
    """The mix a kill between the renames leaves, made by hand: one table of run b beside run a's
    report. Both runs have the same counts, so nothing but the record tells them apart (the build's
    own count check passed such a mix with no word)."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_outputs(_result("a", 4), "demo", a)
    write_outputs(_result("b", 4), "demo", b)
    shutil.copyfile(output_paths("demo", b)[key], output_paths("demo", a)[key])
    shown = f"data/{'normalized' if key == 'turns' else 'quarantine'}/demo.parquet"
    with pytest.raises(BuildError) as e:
        _build(a)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{shown} is not the file data/normalized/demo.report.json was written with (")
    assert message.endswith(FIX)
    assert not (a / "data" / "dataset" / "full").exists()


def test_a_missing_quarantine_is_refused(tmp_path: Path) -> None:
    paths = write_outputs(_result("a", 4), "demo", tmp_path)
    paths["quarantine"].unlink()
    with pytest.raises(BuildError) as e:
        resolve_sources(tmp_path, ["demo"], REGISTRY)
    assert str(e.value) == (
        f"data/quarantine/demo.parquet: missing, but data/normalized/demo.report.json was written with it; {FIX}"
    )


def test_a_record_without_a_table_is_refused(tmp_path: Path) -> None:
    """A record that lost an entry (edited by hand) vouches for nothing: refused, not skipped."""
    paths = write_outputs(_result("a", 4), "demo", tmp_path)
    report = json.loads(paths["report"].read_text(encoding="utf-8"))
    del report[OUTPUTS_KEY]["quarantine"]
    paths["report"].write_text(json.dumps(report), encoding="utf-8")
    with pytest.raises(BuildError) as e:
        resolve_sources(tmp_path, ["demo"], REGISTRY)
    assert str(e.value) == (
        "data/normalized/demo.report.json: `outputs.quarantine` records no size and sha256 of "
        f"data/quarantine/demo.parquet; {FIX}"
    )


def test_a_report_without_the_record_is_read_as_before(tmp_path: Path) -> None:
    """A report written before it recorded the tables (or by hand, as the benchmarks do): nothing to
    check against, so it is taken as it stands (the build's count check still warns when the
    report's turns_kept is not the table's row count)."""
    paths = write_outputs(_result("a", 4), "demo", tmp_path)
    report = json.loads(paths["report"].read_text(encoding="utf-8"))
    del report[OUTPUTS_KEY]
    paths["report"].write_text(json.dumps(report), encoding="utf-8")
    [source] = resolve_sources(tmp_path, ["demo"], REGISTRY)
    assert source.report == report


def _second_run(renames: int) -> NormalizeResult:
    """Run b for a kill after `renames` renames: what it renamed differs from run a, so the mix
    left is a real one; the rest (and every count) is run a's."""
    a = _result("a", 4)
    if renames == 1:  # the turn table alone is renamed: its text differs
        return NormalizeResult(a.turns.with_columns(text=pl.col("text") + " (b)"), a.quarantine, a.report)
    # the quarantine too: the turn table is run a's, byte for byte, so only the quarantine tells
    return NormalizeResult(a.turns, _result("b", 4).quarantine, a.report)


@pytest.mark.parametrize(("renames", "named"), [(1, "data/normalized"), (2, "data/quarantine")])
def test_normalize_killed_between_its_renames_is_refused_then_repaired(
    tmp_path: Path, renames: int, named: str
) -> None:
    """A real kill (os._exit in a child) after the first or the second of the three final renames
    (turn table, quarantine, report): run b's files beside run a's report."""
    write_outputs(_result("a", 4), "demo", tmp_path)
    child = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        import tests.test_output_sets as t
        real, calls = os.replace, []
        def replace(src, dst):
            calls.append(dst)
            if len(calls) > {renames}:
                os._exit(137)
            real(src, dst)
        os.replace = replace
        t.write_outputs(t._second_run({renames}), "demo", Path({str(tmp_path)!r}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr
    paths = output_paths("demo", tmp_path)
    assert pl.read_parquet(paths["quarantine"])["reason"].to_list() == ["a" if renames == 1 else "b"]
    assert json.loads(paths["report"].read_text(encoding="utf-8"))["turns_kept"] == 8  # run a's, as run b's
    with pytest.raises(BuildError, match=rf"^{named}/demo\.parquet is not the file .*; {re.escape(FIX)}$"):
        _build(tmp_path)
    write_outputs(_second_run(renames), "demo", tmp_path)  # what `dvc repro normalize@demo` does
    assert _build(tmp_path)["sources"]["demo"]["normalize"]["turns_kept"] == 8


def test_the_file_that_vouches_for_the_others_is_renamed_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """normalize: the report (it records the tables); evaluate: metrics.json, the file DVC compares
    (evaluate's outputs are small, kept in git and read by people and `make report`, so a kill
    between its renames is left to `dvc status`: new transcripts beside the previous metrics)."""
    import os
    from types import SimpleNamespace

    import stages.evaluate as evaluate_stage

    renamed: list[str] = []
    real = os.replace

    def replace(src: str, dst: str) -> None:
        renamed.append(Path(dst).name)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_outputs(_result("a", 2), "demo", tmp_path)
    assert renamed == ["demo.parquet", "demo.parquet", "demo.metrics.json", "demo.report.json"]
    renamed.clear()
    evaluate_stage.write_outputs(tmp_path / "eval", SimpleNamespace(transcripts=[], sources=[], metrics={}))
    assert renamed == ["transcripts.md", "sources.csv", "metrics.json"]
