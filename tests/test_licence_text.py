"""`licence_text:` (sources.yaml): a licence text committed to this repository, for a source whose own
distribution carries none. parse_entry checks its form on load; the registry stage checks the file
(check_licence_text: one line naming the entry and the rule) and hashes it, so that editing it re-runs
that source's download, and the download checks it again as it copies it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from pipeline.atomic import sha256_file
from pipeline.sources.download import download
from pipeline.sources.errors import SourceError
from pipeline.sources.fetchspec import fetch_spec, write_fetch_specs
from pipeline.sources.registry import (
    LICENCE_TEXT_MAX,
    SourceSpec,
    check_licence_text,
    load_registry,
    parse_entry,
)

ENTRY = {
    "kind": "package",
    "location": "chatterbot_corpus",
    "files": ["data/english/*.yml"],
    "adapter": "chatterbot",
    "licence": "BSD-3-Clause",
    "commercial": True,
}
TEXT = "data/licences/pkg/LICENSE"


def _parse(root: Path, value: object, kind: str = "package") -> SourceSpec:
    """The entry with `licence_text: value`, loaded, and its file checked as the download does."""
    raw = {**ENTRY, "kind": kind, "licence_text": value}
    if kind == "contrib":
        raw.update(adapter="contrib", location="data/contrib", licence="per-file", commercial=False)
    spec = parse_entry("pkg", raw, "sources.yaml")
    assert spec.licence_text is not None
    check_licence_text("sources.yaml: pkg", spec.licence_text, root)
    return spec


def _write(root: Path, data: bytes, rel: str = TEXT) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_committed_utf8_text_is_taken(tmp_path: Path) -> None:
    _write(tmp_path, "Copyright (c) 2017, Ada Lovelace ©\n".encode())
    assert _parse(tmp_path, TEXT).licence_text == TEXT
    assert parse_entry("pkg", ENTRY, "sources.yaml").licence_text is None


@pytest.mark.parametrize(
    ("value", "setup", "rule"),
    [
        (TEXT, None, r"does not exist in the repository"),
        ("/etc/passwd", None, r"is outside the repository"),
        ("../LICENSE", None, r"is outside the repository"),
        ("data/licences", b"", r"is not a file"),
        (TEXT, b"x" * (LICENCE_TEXT_MAX + 1), r"is 65,537 bytes, more than the 65,536"),
        (TEXT, "Copyright © 2017".encode("latin-1"), r"is not UTF-8 text \(byte 10\)"),
        (["a"], None, r"must be the path of a licence file"),
        ("", None, r"must be the path of a licence file"),
    ],
)
def test_a_bad_licence_text_is_refused_naming_entry_and_rule(
    tmp_path: Path, value: object, setup: bytes | None, rule: str
) -> None:
    if setup is not None:
        _write(tmp_path, setup, f"{value}/x" if value == "data/licences" else str(value))
    with pytest.raises(SourceError, match=rf"^sources\.yaml: pkg: `licence_text:` .*{rule}") as e:
        _parse(tmp_path, value)
    assert "\n" not in str(e.value)


def test_a_link_leading_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "LICENSE"
    outside.parent.mkdir()
    outside.write_text("MIT\n")
    root = tmp_path / "repo"
    (root / "data/licences/pkg").mkdir(parents=True)
    os.symlink(outside, root / TEXT)
    with pytest.raises(SourceError, match=r"pkg: `licence_text:` .* is a link to .*outside the repository"):
        _parse(root, TEXT)


def test_a_contrib_source_takes_none(tmp_path: Path) -> None:
    _write(tmp_path, b"MIT\n")
    with pytest.raises(SourceError, match=r"pkg: `licence_text:` is not for a contrib source"):
        _parse(tmp_path, TEXT, kind="contrib")


def test_a_missing_file_stops_the_download_not_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """sources.yaml copied without data/licences/ still loads (`nanochatgpt sources`, the build); the
    registry stage writes the spec with no sha256 (as for missing local files), and the download
    stops with the one-line fix; once the file is there the spec changes, so the download re-runs."""
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"pkg": {**ENTRY, "licence_text": TEXT}}))
    (tmp_path / "params.yaml").write_text("sources: [pkg]\n")
    spec = load_registry(tmp_path / "sources.yaml")["pkg"]
    assert spec.licence_text == TEXT
    assert fetch_spec(spec, tmp_path)["licence_text"] == {"path": TEXT, "sha256": None}
    with pytest.raises(SourceError, match=r"^sources\.yaml: pkg: `licence_text:` .* does not exist") as e:
        download(spec, tmp_path)
    assert "\n" not in str(e.value) and not (tmp_path / "data/raw/pkg").exists()
    _write(tmp_path, b"MIT\n")
    assert fetch_spec(spec, tmp_path)["licence_text"] == {
        "path": TEXT,
        "sha256": sha256_file(tmp_path / TEXT),
    }
    manifest = json.loads((download(spec, tmp_path) / "manifest.json").read_text())
    assert manifest["licence_text"] == {"path": ".licence/repository/LICENSE", "from": TEXT}


def test_the_fetch_spec_hashes_the_text_so_an_edit_re_runs_the_download(tmp_path: Path) -> None:
    path = _write(tmp_path, b"BSD-3-Clause text\n")
    spec = _parse(tmp_path, TEXT)
    before = fetch_spec(spec, tmp_path)
    assert before["licence_text"] == {"path": TEXT, "sha256": sha256_file(path)}
    path.write_bytes(b"BSD-3-Clause text, edited\n")
    assert fetch_spec(spec, tmp_path)["licence_text"]["sha256"] != before["licence_text"]["sha256"]
    # an entry without it keeps its JSON as it was (no key): no other source re-runs
    assert "licence_text" not in fetch_spec(parse_entry("pkg", ENTRY, "sources.yaml"), tmp_path)


def test_the_repository_sources_yaml_names_the_sdist_text_of_chatterbot() -> None:
    """The committed copy is the sdist's license.md byte for byte (its sha256, as data/licences/README.md
    records), and the registry names it for chatterbot."""
    repo = Path(__file__).resolve().parents[1]
    spec = load_registry(repo / "sources.yaml")["chatterbot"]
    assert spec.licence_text == "data/licences/chatterbot_corpus-1.3.3/license.md"
    digest = sha256_file(repo / spec.licence_text)
    assert digest == "a3ef744f9a7ddfb090596aeabe99c145adfe0d14f3eafdfb6a70207caded8aea"
    assert digest in (repo / "data/licences/README.md").read_text(encoding="utf-8")


def test_the_download_refuses_a_text_edited_since_the_registry_stage_hashed_it(tmp_path: Path) -> None:
    """The registry stage hashes the text into data/registry/<name>.json, the file DVC re-runs the
    download by; the download copied whatever the file held when it ran, so a text edited between the
    two was recorded under the old text's spec (and the next repro, seeing the spec unchanged, never
    re-ran the download). It refuses in one line naming the file and both hashes."""
    path = _write(tmp_path, b"BSD-3-Clause text\n")
    spec = _parse(tmp_path, TEXT)
    write_fetch_specs([spec], tmp_path, tmp_path / "data/registry")
    recorded = sha256_file(path)
    path.write_bytes(b"BSD-3-Clause text, edited mid-repro\n")
    with pytest.raises(SourceError) as e:
        download(spec, tmp_path)
    assert str(e.value) == (
        f"pkg: `licence_text:` {TEXT} has sha256 {sha256_file(path)}, but the registry stage recorded "
        f"{recorded} in data/registry/pkg.json (edited during the repro?); run `dvc repro` again"
    )
    assert not (tmp_path / "data/raw/pkg").exists()
    write_fetch_specs([spec], tmp_path, tmp_path / "data/registry")  # the next repro's registry stage
    copy = download(spec, tmp_path) / ".licence/repository/LICENSE"
    assert copy.read_bytes() == path.read_bytes()
