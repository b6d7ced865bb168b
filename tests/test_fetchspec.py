"""data/registry/<source>.json: what each download depends on, so DVC re-runs only what changed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from pipeline import atomic
from pipeline.sources.download import download
from pipeline.sources.errors import SourceError
from pipeline.sources.fetchspec import fetch_spec, write_fetch_specs
from pipeline.sources.registry import load_registry
from pipeline.sources.table import source_rows

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


def test_archive_flag_is_part_of_a_url_download_only_when_set(tmp_path: Path) -> None:
    """`archive: true` changes what lands in data/raw (members, not the file), so it is in the spec;
    unset, the key is absent, so the JSON of every other source (and DVC's hash of it) is unchanged."""
    specs = _specs()
    for name in ("chitchat", "chatterbot", "contrib", "twitter", "oasst1"):
        assert "archive" not in fetch_spec(specs[name], tmp_path), name
    ed = fetch_spec(specs["empathetic_dialogues"], tmp_path)
    assert ed["archive"] is True and ed["files"] == ["empatheticdialogues/*.csv"]
    assert fetch_spec(dataclasses.replace(specs["empathetic_dialogues"], archive=False), tmp_path) != ed


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


def test_local_path_spec_follows_the_files_it_copies(tmp_path: Path) -> None:
    spec = dataclasses.replace(_specs()["oasst1"], local_path="mine")
    before = fetch_spec(spec, tmp_path)
    assert before["contents"] == []  # nothing there yet: the download fails, and says why
    data = tmp_path / "mine" / "data"
    data.mkdir(parents=True)
    (data / "train.parquet").write_bytes(b"one")
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")  # not matched by files: data/*.parquet
    first = fetch_spec(spec, tmp_path)
    assert [c["path"] for c in first["contents"]] == ["data/train.parquet"]
    assert first != before
    (tmp_path / "mine" / "notes.txt").write_text("edited\n")
    assert fetch_spec(spec, tmp_path) == first
    # the card (and a LICENSE) at the top of a hub copy are recorded for NOTICE.md: they count
    (tmp_path / "mine" / "README.md").write_text("---\nlicense: mit\n---\n")
    carded = fetch_spec(spec, tmp_path)
    assert [c["path"] for c in carded["contents"]] == ["data/train.parquet", "README.md"]
    (tmp_path / "mine" / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    assert fetch_spec(spec, tmp_path) != carded
    (tmp_path / "mine" / "README.md").unlink()
    assert fetch_spec(spec, tmp_path) == first
    (data / "train.parquet").write_bytes(b"two")
    assert fetch_spec(spec, tmp_path) != first
    single = dataclasses.replace(spec, local_path=str(data / "train.parquet"))  # absolute, one file
    assert [c["path"] for c in fetch_spec(single, tmp_path)["contents"]] == ["train.parquet"]


def test_package_spec_hashes_the_installed_files(tmp_path: Path) -> None:
    import chitchat_dataset

    spec = _specs()["chitchat"]
    (content,) = fetch_spec(spec, tmp_path)["contents"]
    shipped = Path(chitchat_dataset.__file__).parent / "dataset.json"
    assert content == {"path": "dataset.json", "sha256": atomic.sha256_file(shipped)}
    gone = dataclasses.replace(spec, location="no_such_package_here")
    assert fetch_spec(gone, tmp_path)["contents"] == []


def test_local_path_download_copies_what_the_spec_hashed(tmp_path: Path) -> None:
    spec = dataclasses.replace(_specs()["oasst1"], local_path="mine")
    (tmp_path / "mine" / "data").mkdir(parents=True)
    (tmp_path / "mine" / "data" / "a.parquet").write_bytes(b"x")
    (tmp_path / "mine" / "data" / "b.parquet").write_bytes(b"y")
    raw = download(spec, tmp_path)
    manifest = json.loads((raw / "manifest.json").read_text())
    spec_files = {(c["path"], c["sha256"]) for c in fetch_spec(spec, tmp_path)["contents"]}
    assert {(f["path"], f["sha256"]) for f in manifest["files"]} == spec_files


def test_registry_stage_runs_on_every_repro() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["registry"]["always_changed"] is True  # local files cannot be dvc.yaml deps


def test_contrib_local_path_is_watched_and_read_like_data_contrib(tmp_path: Path) -> None:
    """A contrib folder elsewhere keeps contrib's rules: sidecars decide the terms, docs are skipped,
    and a flipped sidecar changes the spec (else stale commercial flags would reach the build)."""
    spec = dataclasses.replace(_specs()["contrib"], local_path="elsewhere")
    mine = tmp_path / "elsewhere"
    mine.mkdir()
    (tmp_path / "data" / "contrib").mkdir(parents=True)
    (tmp_path / "data" / "contrib" / "ignored.txt").write_text("not this folder\n")
    (mine / "chat.txt").write_text("<human> hi <endOfText>\n<bot> hello <endOfText>\n")
    (mine / "chat.yaml").write_text("licence: MIT\ncommercial: true\ndescription: x\n")
    (mine / "README.md").write_text("how to contribute\n")
    before = fetch_spec(spec, tmp_path)
    assert [c["path"] for c in before["contents"]] == ["chat.txt", "chat.yaml"]
    (mine / "chat.yaml").write_text("licence: CC-BY-NC-4.0\ncommercial: false\ndescription: x\n")
    assert fetch_spec(spec, tmp_path) != before
    raw = download(spec, tmp_path)
    assert sorted(p.name for p in raw.iterdir()) == ["chat.txt", "chat.yaml", "manifest.json"]
    # as sources.yaml writes it: the checkout's folder stays out of the manifest and NOTICE.md
    assert json.loads((raw / "manifest.json").read_text())["local_path"] == "elsewhere"


def test_sources_table_lists_the_contrib_files_under_local_path(tmp_path: Path) -> None:
    registry = yaml.safe_load((ROOT / "sources.yaml").read_text())
    registry["contrib"]["local_path"] = "elsewhere"
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(registry))
    (tmp_path / "params.yaml").write_text("sources: [contrib]\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "chat.txt").write_text("<human> hi <endOfText>\n<bot> yo <endOfText>\n")
    (tmp_path / "elsewhere" / "chat.yaml").write_text(
        "licence: CC-BY-NC-4.0\ncommercial: false\ndescription: x\n"
    )
    rows, problems = source_rows(tmp_path)
    assert problems == []
    (row,) = [r for r in rows if r["name"] == "contrib/chat"]
    assert row["licence"] == "CC-BY-NC-4.0" and row["commercial"] is False


def test_local_path_links_outside_the_folder_are_refused(tmp_path: Path) -> None:
    """A link planted in a local_path folder could copy any file of this machine into data/raw: the
    download and the registry stage's hashes refuse it alike (links inside the folder are fine)."""
    secret = tmp_path / "secret.env"
    secret.write_text("HF_TOKEN=hf_FAKE\n")
    spec = dataclasses.replace(_specs()["oasst1"], local_path="mine")
    data = tmp_path / "mine" / "data"
    data.mkdir(parents=True)
    (data / "train.parquet").write_bytes(b"mine")
    (data / "alias.parquet").symlink_to("train.parquet")  # a link inside the folder is fine
    (data / "evil.parquet").symlink_to(secret)
    with pytest.raises(SourceError) as err:
        download(spec, tmp_path)
    assert str(err.value) == (
        f"{tmp_path}/mine/data/evil.parquet: links to '{secret}', outside {tmp_path}/mine; "
        "commit the file itself, not a link"
    )
    assert not (tmp_path / "data" / "raw" / "oasst1").exists()
    assert fetch_spec(spec, tmp_path)["contents"] == []  # nothing of the secret hashed either
    (tmp_path / "mine" / "data" / "evil.parquet").unlink()
    raw = download(spec, tmp_path)
    assert (raw / "data" / "alias.parquet").read_bytes() == b"mine"


def test_local_path_folder_linked_from_inside_is_refused(tmp_path: Path) -> None:
    """`data/` itself a link to a folder elsewhere: each file found through it lies outside."""
    spec = dataclasses.replace(_specs()["oasst1"], local_path="mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.parquet").write_bytes(b"x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data").symlink_to(elsewhere)
    with pytest.raises(SourceError, match=r"mine/data/x\.parquet: links to .*elsewhere/x\.parquet'"):
        download(spec, tmp_path)


def test_local_path_into_a_hub_cache_snapshot_still_reads(tmp_path: Path) -> None:
    """A hub cache snapshot's files are links to ../../blobs/<sha>: pointing local_path at one
    (files you already have) is no planted link."""
    blob = tmp_path / "hub" / "datasets--a--b" / "blobs" / "0123abcd"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"parquet bytes")
    snapshot = tmp_path / "hub" / "datasets--a--b" / "snapshots" / "rev"
    (snapshot / "data").mkdir(parents=True)
    (snapshot / "data" / "train.parquet").symlink_to("../../../blobs/0123abcd")
    spec = dataclasses.replace(_specs()["oasst1"], local_path=str(snapshot))
    raw = download(spec, tmp_path)
    assert (raw / "data" / "train.parquet").read_bytes() == b"parquet bytes"


def test_package_data_linked_outside_the_package_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `kind: package` source copies its files through the same selection, under the same rule."""
    package = tmp_path / "site" / "linkedpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    secret = tmp_path / "secret.env"
    secret.write_text("HF_TOKEN=hf_FAKE\n")
    (package / "dataset.json").symlink_to(secret)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = dataclasses.replace(_specs()["chitchat"], location="linkedpkg")
    with pytest.raises(SourceError, match=r"linkedpkg/dataset\.json: links to .*secret\.env', outside"):
        download(spec, tmp_path)
    assert fetch_spec(spec, tmp_path)["contents"] == []


def test_the_installed_distributions_are_read_once_per_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """importlib.metadata.packages_distributions() parses every installed RECORD (~0.3 s): a package
    download asked for it three times, the registry once per package source. A folder put on
    sys.path afterwards is still seen (the index is per path)."""
    import importlib.metadata

    from pipeline.sources import download as dl

    calls = []
    real = importlib.metadata.packages_distributions

    def counted() -> dict:
        calls.append(1)
        return real()

    monkeypatch.setattr(importlib.metadata, "packages_distributions", counted)
    monkeypatch.syspath_prepend(str(tmp_path))  # a path no earlier test cached
    spec = _specs()["chitchat"]
    fetch_spec(spec, tmp_path)
    download(spec, tmp_path)
    assert len(calls) == 1
    site = tmp_path / "site"
    (site / "gapdata-1.0.dist-info").mkdir(parents=True)
    (site / "gapdata-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: gapdata\nVersion: 1.0\n"
    )
    (site / "gapdata-1.0.dist-info" / "top_level.txt").write_text("gapdata\n")
    monkeypatch.syspath_prepend(str(site))
    assert dl._package_version("gapdata") == "gapdata==1.0" and len(calls) == 2
