"""A stage killed (or failing) while it writes sibling outputs that have to agree leaves the previous
set whole: never a new turn table beside the old quarantine and report, nor new eval transcripts
beside the old metrics. The crash is injected at a chosen write, in a subprocess for a real kill.

What a kill of every data stage at every filesystem step showed is in the helpers' report: the
folder outputs (download, build, tokenize, export) were already replaced in one exchange of names.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import yaml

from pipeline import atomic
from pipeline.sources.normalize import NormalizeResult, output_paths, write_outputs

ROOT = Path(__file__).resolve().parents[1]


class Boom(OSError):
    pass


def _result(tag: str, rows: int) -> NormalizeResult:
    turns = pl.DataFrame({"conversation_id": [f"{tag}:{i}" for i in range(rows)], "text": [tag] * rows})
    quarantine = pl.DataFrame({"reason": [f"{tag} bad"] * rows})
    counts = {"rows_read": rows, "rows_kept": rows, "rows_quarantined": 0, "rows_filtered": {}}
    counts |= {"rows_merged": 0, "turns_kept": rows, "conversations_kept": rows}  # metrics.json's
    return NormalizeResult(turns, quarantine, {**counts, "run": tag})


def _contents(paths: dict[str, Path]) -> dict[str, bytes]:
    return {key: path.read_bytes() for key, path in paths.items()}


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*"))


def test_normalize_killed_while_writing_the_quarantine_keeps_the_old_three(tmp_path: Path) -> None:
    old_paths = write_outputs(_result("old", 3), "demo", root=tmp_path)
    old = _contents(old_paths)
    # The child writes a new result and is killed (os._exit: no finally, no cleanup) when polars
    # starts the second table, the quarantine: the turn table is complete by then.
    child = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        import polars as pl
        import tests.test_crash_safety as t
        calls = []
        real = pl.DataFrame.write_parquet
        def write_parquet(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os._exit(137)
            return real(self, *args, **kwargs)
        pl.DataFrame.write_parquet = write_parquet
        t.write_outputs(t._result("new", 5), "demo", root=Path({str(tmp_path)!r}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 137, proc.stderr
    assert _contents(old_paths) == old  # not the new turn table beside the old quarantine and report
    # what the kill left is hidden (`.*.tmp`, which .dvcignore names) and the next write removes it
    assert _hidden(tmp_path) and all(name.endswith(".tmp") for name in _hidden(tmp_path))
    new_paths = write_outputs(_result("new", 5), "demo", root=tmp_path)
    assert pl.read_parquet(new_paths["turns"]).height == 5
    assert _hidden(tmp_path) == []


def test_normalize_write_error_keeps_the_old_three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while the quarantine is written (an exception, not a kill)."""
    old_paths = write_outputs(_result("old", 3), "demo", root=tmp_path)
    old = _contents(old_paths)
    calls: list[int] = []
    real = pl.DataFrame.write_parquet

    def write_parquet(self: pl.DataFrame, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise Boom(28, "No space left on device")
        real(self, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", write_parquet)
    with pytest.raises(Boom):
        write_outputs(_result("new", 5), "demo", root=tmp_path)
    assert _contents(output_paths("demo", tmp_path)) == old
    assert _hidden(tmp_path) == []


def _evaluate_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """stages.evaluate.main in `tmp_path` with the model and the evaluation replaced by a fixed result."""
    import stages.evaluate as stage

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"variant": "full", "device": "cpu"}}))
    result = SimpleNamespace(
        transcripts=["new"],
        sources=["new"],
        metrics={"run": "new"},
        warnings=[],
        loss=SimpleNamespace(loss=1.0, perplexity=2.7),
        figures={"replies": 1, "stop_rate": 1.0},
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stage, "project_root", lambda: tmp_path)
    monkeypatch.setattr(stage, "keep_freed_memory", lambda: None)
    monkeypatch.setattr(stage, "load_model", lambda *args: None)
    monkeypatch.setattr(stage, "check_vocab", lambda *args: None)  # no model to check
    monkeypatch.setattr(stage, "evaluate_model", lambda *args: result)
    monkeypatch.setattr(stage, "transcripts_markdown", lambda transcripts: "new transcripts\n")
    monkeypatch.setattr(stage, "source_loss_csv", lambda sources: "source,new\n")
    return stage


def test_evaluate_failing_after_the_transcripts_keeps_the_old_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = _evaluate_stage(tmp_path, monkeypatch)
    out = tmp_path / "model" / "eval"
    assert stage.main() == 0
    assert (out / "transcripts.md").read_text() == "new transcripts\n"
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(old) == ["metrics.json", "sources.csv", "transcripts.md"]

    def fail(sources: object) -> str:  # the per-source table fails after the transcripts rendered
        raise Boom(28, "No space left on device")

    monkeypatch.setattr(stage, "transcripts_markdown", lambda transcripts: "transcripts of another run\n")
    monkeypatch.setattr(stage, "source_loss_csv", fail)
    with pytest.raises(Boom):
        stage.main()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old


def test_atomic_paths_replaces_all_or_none(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "sub" / "b.bin"
    b.parent.mkdir()
    a.write_bytes(b"old a")
    b.write_bytes(b"old b")
    with pytest.raises(Boom), atomic.atomic_paths(a, b) as (ta, tb):
        ta.write_bytes(b"new a")
        raise Boom("between the two writes")
    assert (a.read_bytes(), b.read_bytes()) == (b"old a", b"old b")
    assert _hidden(tmp_path) == []
    with atomic.atomic_paths(a, b) as (ta, tb):
        ta.write_bytes(b"new a")
        tb.write_bytes(b"new b")
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"new b")
    assert _hidden(tmp_path) == []
    with pytest.raises(ValueError, match="named twice"), atomic.atomic_paths(a, a):
        pass
