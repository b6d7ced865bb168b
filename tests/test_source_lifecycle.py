"""A source's life in the registry as a user edits params.yaml `sources:` and sources.yaml: disabled,
renamed, enabled again. DVC drops download@<name> and normalize@<name> with the name but leaves their
outputs; both builds hash data/raw/ and data/normalized/ whole, so those leftovers went into the
hashes dvc.lock records and every fresh clone (which has none) saw both builds as changed. The
registry stage, first on every `dvc repro`, now removes them (pipeline/sources/leftovers.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.buildinputs import BuildError, resolve_sources
from pipeline.sources.leftovers import find_leftovers, normalize_outputs
from pipeline.sources.normalize import output_paths
from pipeline.sources.registry import load_registry
from stages import registry as registry_stage

_SHA = "0" * 64


def _entry(**fields: object) -> dict[str, object]:
    return {
        "kind": "url",
        "location": "https://example.org/chat.jsonl",
        "sha256": _SHA,
        "files": ["chat.jsonl"],
        "adapter": "sharegpt",
        "licence": "MIT",
        "commercial": True,
        **fields,
    }


def _project(root: Path, enabled: list[str], entries: dict[str, dict[str, object]]) -> None:
    (root / "sources.yaml").write_text(yaml.safe_dump(entries))
    (root / "params.yaml").write_text(yaml.safe_dump({"sources": enabled}))


def _outputs(root: Path, name: str, recorded: str | None = None) -> list[Path]:
    """What download@name and normalize@name write; the manifest records `recorded` (name by default)."""
    raw = root / "data" / "raw" / name
    (raw / ".licence").mkdir(parents=True)
    (raw / "chat.jsonl").write_text("{}\n")
    (raw / ".licence" / "LICENSE").write_text("MIT\n")
    (raw / "manifest.json").write_text(json.dumps({"source": recorded or name, "files": []}))
    files = [
        root / "data" / "normalized" / f"{name}.parquet",
        root / "data" / "normalized" / f"{name}.report.json",
        root / "data" / "quarantine" / f"{name}.parquet",
    ]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    return [raw, *files]


def _run_registry(root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(root))
    return registry_stage.main()


def test_disabling_a_source_removes_what_its_stages_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, data/raw/old and data/normalized/old.* stayed and entered the builds' hashes."""
    _project(tmp_path, ["kept"], {"kept": _entry(), "old": _entry()})
    kept = _outputs(tmp_path, "kept")
    old = _outputs(tmp_path, "old")
    assert _run_registry(tmp_path, monkeypatch) == 0
    assert all(p.exists() for p in kept)
    assert not any(p.exists() for p in old)
    assert sorted(p.name for p in (tmp_path / "data" / "raw").iterdir()) == ["kept"]
    assert sorted(p.name for p in (tmp_path / "data" / "normalized").iterdir()) == [
        "kept.parquet",
        "kept.report.json",
    ]
    out = capsys.readouterr().out
    assert "registry: old is no longer in params.yaml `sources:`: removed data/raw/old, " in out
    assert json.loads((tmp_path / "data" / "registry" / "kept.json").read_text())["source"] == "kept"
    assert not (tmp_path / "data" / "registry" / "old.json").exists()


def test_a_renamed_sources_old_outputs_go_even_though_sources_yaml_no_longer_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path, ["oasst"], {"oasst": _entry()})
    old = _outputs(tmp_path, "oasst1")
    new = _outputs(tmp_path, "oasst")
    assert _run_registry(tmp_path, monkeypatch) == 0
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in new)


def test_files_the_pipeline_did_not_write_stay(tmp_path: Path) -> None:
    """A folder of one's own in data/raw/ (no manifest, or another source's), a file that is no
    output of normalize, and a folder a `local_path:` names (a renamed source pointed at its old
    download) are not the pipeline's to remove."""
    entries = {"kept": _entry(), "renamed": _entry(local_path="data/raw/before")}
    _project(tmp_path, ["kept", "renamed"], entries)
    mine = tmp_path / "data" / "raw" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    copied = _outputs(tmp_path, "copied", recorded="elsewhere")[0]  # its manifest names another source
    before = _outputs(tmp_path, "before")[0]
    notes = tmp_path / "data" / "normalized" / "old.notes.md"
    notes.write_text("mine")
    found = find_leftovers(tmp_path, {"kept", "renamed"}, load_registry(tmp_path / "sources.yaml").values())
    removed = {p for paths in found.values() for p in paths}
    assert not {mine, copied, before, notes} & removed
    assert tmp_path / "data" / "normalized" / "before.parquet" in removed  # normalize's own files go


@pytest.mark.parametrize(
    ("enabled", "message"),
    [
        (
            ["kept", "oasst1"],
            "registry: params.yaml `sources:` lists oasst1, which is not in sources.yaml (known: kept, oasst); "
            "add its entry there, or fix the name (a source is renamed in both files)",
        ),
        ([], "registry: params.yaml: `sources:` is empty; enable at least one source"),
        (["kept", "oasst", "kept"], "registry: params.yaml `sources:` lists kept more than once"),
    ],
)
def test_a_wrong_sources_list_stops_the_stage_before_anything_is_removed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    enabled: list[str],
    message: str,
) -> None:
    """A name sources.yaml lacks (a rename made in one file only) says which file holds it; an
    emptied list would otherwise have removed every source's download; a name listed twice (one
    stage for DVC) is named here rather than by the build."""
    _project(tmp_path, enabled, {"kept": _entry(), "oasst": _entry()})
    outputs = _outputs(tmp_path, "oasst") + _outputs(tmp_path, "kept")
    assert _run_registry(tmp_path, monkeypatch) == 1
    assert capsys.readouterr().err.strip() == message
    assert all(p.exists() for p in outputs)


def test_every_file_normalize_writes_is_known_as_a_leftover(tmp_path: Path) -> None:
    """leftovers.py lists normalize's outputs itself (importing normalize would make the registry stage
    depend on the schema's code): a file normalize gains must be added there too."""
    assert set(output_paths("x", tmp_path).values()) <= set(normalize_outputs("x", tmp_path))


def test_the_build_names_a_source_listed_twice(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"^params.yaml: `sources` lists chitchat more than once$"):
        resolve_sources(tmp_path, ["chitchat", "contrib", "chitchat"], {})
