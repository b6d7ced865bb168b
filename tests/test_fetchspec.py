"""data/registry/<source>.json: what each download depends on, so DVC re-runs only what changed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pipeline.sources.fetchspec import fetch_spec, write_fetch_specs
from pipeline.sources.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]


def _specs() -> dict:
    return load_registry(ROOT / "sources.yaml")


def test_commercial_terms_are_not_part_of_a_download(tmp_path: Path) -> None:
    spec = _specs()["chatterbot"]
    flipped = dataclasses.replace(
        spec, commercial=not spec.commercial, commercial_reason="x", description="y"
    )
    assert fetch_spec(flipped, tmp_path) == fetch_spec(spec, tmp_path)
    for field, value in (("location", "elsewhere"), ("licence", "CC0-1.0"), ("adapter", "contrib")):
        assert fetch_spec(dataclasses.replace(spec, **{field: value}), tmp_path) != fetch_spec(spec, tmp_path)


def test_contrib_spec_follows_the_files_but_not_their_docs(tmp_path: Path) -> None:
    spec = _specs()["contrib"]
    folder = tmp_path / spec.location
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("<human> hi <endOfText>\n<bot> hello <endOfText>\n")
    before = fetch_spec(spec, tmp_path)
    assert [c["path"] for c in before["contents"]] == ["a.txt"]
    (folder / "README.md").write_text("how to contribute\n")
    (folder / ".a.txt.swp").write_text("editor state\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.md").write_text("later\n")
    assert fetch_spec(spec, tmp_path) == before  # what the download does not copy does not count
    (folder / "a.txt").write_text("<human> hi <endOfText>\n<bot> hello there <endOfText>\n")
    assert fetch_spec(spec, tmp_path) != before


def test_written_specs_change_only_for_the_source_that_changed(tmp_path: Path) -> None:
    specs = _specs()
    chosen = [specs["chitchat"], specs["chatterbot"], specs["contrib"]]
    (tmp_path / "data" / "contrib").mkdir(parents=True)
    out = tmp_path / "data" / "registry"
    write_fetch_specs(chosen, tmp_path, out)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["chatterbot.json", "chitchat.json", "contrib.json"]
    assert json.loads(first["chitchat.json"])["location"] == "chitchat_dataset"
    (tmp_path / "data" / "contrib" / "new.txt").write_text("x\n")
    chosen[1] = dataclasses.replace(chosen[1], commercial=False)
    write_fetch_specs(chosen, tmp_path, out)
    second = {p.name: p.read_bytes() for p in out.iterdir()}
    changed = sorted(name for name in first if first[name] != second[name])
    assert changed == ["contrib.json"]
