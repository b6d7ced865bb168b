"""NOTICE.md (pipeline/notices.py): each dataset variant carries the licence and copyright text of
exactly the sources it includes, taken from the bytes the download recorded in data/raw/."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.atomic import sha256_file
from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig, BuildError
from pipeline.cards import CardSource
from pipeline.notices import notice, source_notice
from pipeline.schema import TURN_SCHEMA
from pipeline.sources.download import download
from pipeline.sources.readers import data_files
from pipeline.sources.registry import load_registry, parse_entry

REPO = Path(__file__).resolve().parents[1]
CHITCHAT_LICENCE = Path(
    importlib.metadata.distribution("chitchat_dataset").locate_file(
        "chitchat_dataset-0.9.0.dist-info/LICENSE"
    )
)
# The BSD-3-Clause text of chatterbot-corpus's sdist, committed here (data/licences/README.md)
BSD_COPY = "data/licences/chatterbot_corpus-1.3.3/license.md"
REGISTRY = {
    "chitchat": {"kind": "package", "licence": "MIT", "commercial": True, "location": "chitchat_dataset"},
    "chatterbot": {
        "kind": "package",
        "licence": "BSD-3-Clause",
        "commercial": True,
        "location": "chatterbot_corpus",
    },
    "persona": {"kind": "url", "licence": "CC-BY-NC-4.0", "commercial": False, "location": "https://x.org/p"},
    "contrib": {"kind": "contrib", "licence": "per-file", "commercial": False, "location": "data/contrib"},
}
SIDECARS = {
    "ok": {"licence": "CC-BY-4.0", "commercial": True, "description": "Chats by Ada Example, CC-BY"},
    "nc": {"licence": "CC-BY-NC-4.0", "commercial": False, "description": "Chats by Nils Example, NC only"},
}


def _rows(source: str, n: int, licence: str, commercial: bool) -> list[dict]:
    return [
        {
            "conversation_id": f"{source}:{i}",
            "turn": t,
            "role": "human" if t == 0 else "bot",
            "text": f"{source} says hi {i}" if t == 0 else f"reply {i}",
            "source": source,
            "licence": licence,
            "commercial": commercial,
            "context": None,
        }
        for i in range(n)
        for t in range(2)
    ]


def _project(root: Path) -> None:
    """Downloads of chitchat, chatterbot and two contributed files (one non-commercial) as the
    pipeline makes them, and turn tables for those plus `persona`, which has no download record."""
    for stem, sidecar in SIDECARS.items():
        (root / "data/contrib" / f"{stem}.txt").write_text(
            f"<human> hi {stem} <endOfText>\n<bot> yo <endOfText>\n"
        )
        (root / "data/contrib" / f"{stem}.yaml").write_text(yaml.safe_dump(sidecar, sort_keys=False))
    registry = load_registry(root / "sources.yaml")
    for name in ("chitchat", "chatterbot", "contrib"):
        download(registry[name], root)
    tables = {
        "chitchat": _rows("chitchat", 4, "MIT", True),
        "chatterbot": _rows("chatterbot", 4, "BSD-3-Clause", True),
        "persona": _rows("persona", 4, "CC-BY-NC-4.0", False),
        "contrib": _rows("contrib/ok", 3, "CC-BY-4.0", True) + _rows("contrib/nc", 3, "CC-BY-NC-4.0", False),
    }
    out = root / "data" / "normalized"
    out.mkdir(parents=True)
    for name, rows in tables.items():
        pl.DataFrame(rows, schema=TURN_SCHEMA).write_parquet(out / f"{name}.parquet")


def _build(root: Path, variant: str) -> str:
    build_variant(root, list(REGISTRY), REGISTRY, BuildConfig(variant=variant, val_fraction=0.2))
    return (root / "data/dataset" / variant / "NOTICE.md").read_text(encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_a_package_download_records_its_licence_files_where_no_adapter_reads_them(root: Path) -> None:
    registry = load_registry(root / "sources.yaml")
    chitchat = download(registry["chitchat"], root)
    manifest = json.loads((chitchat / "manifest.json").read_text())
    assert manifest["licence_files"] == [".licence/LICENSE"]
    assert (chitchat / ".licence/LICENSE").read_bytes() == CHITCHAT_LICENCE.read_bytes()
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert listed[".licence/LICENSE"] == sha256_file(CHITCHAT_LICENCE)
    assert manifest["upstream"]["distribution"] == "chitchat-dataset"
    # every adapter reads data files through data_files (or contrib's scan), which skip hidden paths
    assert [p.name for p in data_files(chitchat, ("",))] == ["dataset.json"]
    chatterbot = download(registry["chatterbot"], root)
    manifest = json.loads((chatterbot / "manifest.json").read_text())
    assert manifest["licence_files"] == []  # the wheel ships none
    assert manifest["upstream"]["author"] == "Gunther Cox"
    assert "License :: OSI Approved :: BSD License" in manifest["upstream"]["license_classifiers"]
    # ... so sources.yaml names the sdist's text committed to this repository (`licence_text:`)
    assert manifest["licence_text"] == {"path": ".licence/repository/license.md", "from": BSD_COPY}
    recorded = chatterbot / ".licence/repository/license.md"
    assert recorded.read_bytes() == (REPO / BSD_COPY).read_bytes()
    assert {f["path"]: f["sha256"] for f in manifest["files"]}[
        recorded.relative_to(chatterbot).as_posix()
    ] == (sha256_file(REPO / BSD_COPY))
    assert all(".licence" not in p.parts for p in data_files(chatterbot, ("",)))


def test_each_variants_notice_lists_exactly_its_sources_with_their_recorded_texts(root: Path) -> None:
    _project(root)
    full, commercial = _build(root, "full"), _build(root, "commercial")
    assert set(_sections(full)) == {"chitchat", "chatterbot", "persona", "contrib/ok", "contrib/nc"}
    assert set(_sections(commercial)) == {"chitchat", "chatterbot", "contrib/ok"}
    for text in (full, commercial):
        sections = _sections(text)
        # chitchat: the MIT text, whole, as recorded (the copyright line with it)
        assert CHITCHAT_LICENCE.read_text(encoding="utf-8").rstrip("\n") in sections["chitchat"]
        assert "Copyright (c) 2019 Perception, Control and Cognition Lab" in sections["chitchat"]
        # chatterbot: its wheel ships no licence text, so the repository's copy (`licence_text:`) is
        # reproduced whole, saying where it came from, with what the metadata says
        bot = sections["chatterbot"]
        assert "shipped no licence file" not in bot and "`BSD-3-Clause`" in bot
        assert "Gunther Cox" in bot and "https://github.com/gunthercox/chatterbot-corpus" in bot
        assert "this repository's copy of the source's licence text" in bot and f"`{BSD_COPY}`" in bot
        assert (REPO / BSD_COPY).read_text(encoding="utf-8").rstrip("\n") in bot
        assert "Copyright (c) 2017, Gunther Cox All rights reserved." in bot
        # a contributed file: its sidecar as contributed
        assert "Chats by Ada Example, CC-BY" in sections["contrib/ok"]
    assert "Chats by Nils Example" in full and "Chats by Nils Example" not in commercial
    assert "CC-BY-NC-4.0" not in commercial
    # a source without a download record says so rather than pass in silence
    assert "No download record" in _sections(full)["persona"]
    card = (root / "data/dataset/commercial/README.md").read_text(encoding="utf-8")
    assert "`NOTICE.md`" in card
    # The export copies this file beside the weights (model/hf): it must not speak of "this folder".
    intro = full.split("\n## ")[0]
    assert "this folder" not in intro and "with a model trained on it" in intro


def test_the_notice_is_taken_from_the_recorded_bytes_not_the_installed_package(root: Path) -> None:
    """The build reads data/raw (a DVC output), never site-packages: a recorded text is what
    appears, and one whose bytes no longer match the manifest stops the build."""
    _project(root)
    raw = root / "data/raw/chitchat"
    recorded = raw / ".licence/LICENSE"
    recorded.write_text("MIT License\n\nCopyright (c) 2024 Someone Recorded\n")
    with pytest.raises(BuildError, match=r"\.licence/LICENSE: its bytes are not the ones .*manifest\.json"):
        _build(root, "commercial")
    manifest = json.loads((raw / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"] == ".licence/LICENSE":
            f["sha256"] = sha256_file(recorded)
    (raw / "manifest.json").write_text(json.dumps(manifest))
    text = _sections(_build(root, "commercial"))["chitchat"]
    assert "Someone Recorded" in text and "Perception, Control" not in text


def test_a_package_without_licence_text_says_so_honestly(root: Path) -> None:
    """Without `licence_text:`, a wheel that ships no licence file gets the plain "No licence text"
    paragraph, and no copyright line is invented."""
    entries = yaml.safe_load((root / "sources.yaml").read_text())
    del entries["chatterbot"]["licence_text"]
    (root / "sources.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    _project(root)
    bot = _sections(_build(root, "commercial"))["chatterbot"]
    assert "shipped no licence file" in bot and "`BSD-3-Clause`" in bot and "Gunther Cox" in bot
    assert "copyright (c)" not in bot.lower() and "```" not in bot
    assert "repository's copy" not in bot


def test_a_tampered_repository_copy_stops_the_build(root: Path) -> None:
    """The repository's copy is read from data/raw like any recorded text: bytes that no longer
    match the manifest stop the build, and the committed file is never read by it."""
    _project(root)
    (root / BSD_COPY).write_text("Copyright (c) 2099, Nobody\n")  # the build never reads it
    assert "Copyright (c) 2017, Gunther Cox" in _sections(_build(root, "commercial"))["chatterbot"]
    recorded = root / "data/raw/chatterbot/.licence/repository/license.md"
    recorded.write_text("Copyright (c) 2099, Someone Else\n")
    with pytest.raises(
        BuildError, match=r"\.licence/repository/license\.md: its bytes are not the ones .*manifest\.json"
    ):
        _build(root, "commercial")
    recorded.unlink()
    with pytest.raises(BuildError, match=r"repository/license\.md: named by .*manifest\.json but missing"):
        _build(root, "commercial")
    manifest_path = root / "data/raw/chatterbot/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "licence_text": "license.md"}))
    with pytest.raises(BuildError, match=r"manifest\.json: `licence_text` must be \{path, from\}"):
        _build(root, "commercial")


def test_a_text_with_backtick_fences_stays_inside_its_block(root: Path) -> None:
    """A sidecar (or licence text) holding ``` cannot close the block it is shown in."""
    (root / "data/contrib/odd.txt").write_text("<human> hi <endOfText>\n<bot> yo <endOfText>\n")
    (root / "data/contrib/odd.yaml").write_text(
        'licence: MIT\ncommercial: true\ndescription: "```\\n# Fake"\n'
    )
    download(parse_entry("contrib", yaml.safe_load((REPO / "sources.yaml").read_text())["contrib"]), root)
    text = notice("full", [source_notice(root, CardSource("contrib/odd", "MIT", True, "contrib"))])
    assert "\n````yaml\n" in text and text.rstrip().endswith("````")
    assert not re.search(r"^## Fake", text, flags=re.MULTILINE)


# A contributed file's name is its file stem and its licence its sidecar's text: either may hold a
# line break, HTML or Markdown, which the card and NOTICE.md must show as typed, not act on.
ODD_STEM = "odd\n---\n<img src=x onerror=alert(1)>"
ODD_LICENCE = "LicenseRef-Own <b>terms</b> | **x**"


def _odd_project(root: Path) -> None:
    """Downloads and turn tables of a commercial file with a line break and HTML in its name and
    a non-commercial one with HTML in its licence (and, for the card's lists, in its name)."""
    files = {
        ODD_STEM: ("MIT", True),
        "nc_<i>x": (ODD_LICENCE, False),  # a file name holds no `/`
    }
    rows: list[dict] = []
    for stem, (licence, commercial) in files.items():
        (root / "data/contrib" / f"{stem}.txt").write_text("<human> hi <endOfText>\n<bot> yo <endOfText>\n")
        sidecar = {"licence": licence, "commercial": commercial, "description": "odd"}
        (root / "data/contrib" / f"{stem}.yaml").write_text(yaml.safe_dump(sidecar))
        rows += _rows(f"contrib/{stem}", 3, licence, commercial)
    download(load_registry(root / "sources.yaml")["contrib"], root)
    out = root / "data" / "normalized"
    out.mkdir(parents=True)
    pl.DataFrame(rows, schema=TURN_SCHEMA).write_parquet(out / "contrib.parquet")


def test_odd_names_and_licences_of_contributed_files_stay_inert(root: Path) -> None:
    _odd_project(root)
    registry = {"contrib": REGISTRY["contrib"]}
    texts = {}
    for variant in ("full", "commercial"):
        build_variant(root, ["contrib"], registry, BuildConfig(variant=variant, val_fraction=0.2))
        folder = root / "data/dataset" / variant
        texts[variant] = {f.name: f.read_text(encoding="utf-8") for f in folder.glob("*.md")}
        yaml.safe_load(texts[variant]["README.md"].split("---\n")[1])  # the Hub header still parses
    # NOTICE.md: one heading per source it holds, its name on one line and no tag in it
    for variant, held in (("full", 2), ("commercial", 1)):
        headings = re.findall(r"^## .*$", texts[variant]["NOTICE.md"], flags=re.MULTILINE)
        assert len(headings) == held, headings
        assert "## contrib/odd --- \\<img src=x onerror=alert(1)>" in headings
        assert not re.search(r"^(---|<img)", texts[variant]["NOTICE.md"], flags=re.MULTILINE)
    # the full card's non-commercial warning and the commercial card's left-out list: no raw HTML
    for variant in ("full", "commercial"):
        card = texts[variant]["README.md"]
        line = next(x for x in card.splitlines() if "contrib/nc" in x and "(" in x and not x.startswith("|"))
        assert not re.search(r"(?<!\\)<", line), line  # every `<` escaped: no tag opens
        shown = "contrib/nc\\_\\<i>x (LicenseRef-Own \\<b>terms\\</b> | \\*\\*x\\*\\*"
        assert shown + ("; flagged `commercial: false`)" if variant == "commercial" else ")") in line


def test_notice_reads_the_contrib_manifest_once_for_all_its_files(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTICE.md re-read and re-scanned data/raw/contrib/manifest.json for each contributed file:
    time quadratic in the files (2,000 of them: 60 s of a 4 s build). Counted, not timed."""
    import pipeline.notices as notices

    stems = [f"f{i}" for i in range(30)]
    for stem in stems:
        (root / "data/contrib" / f"{stem}.txt").write_text("<human> hi <endOfText>\n<bot> yo <endOfText>\n")
        (root / "data/contrib" / f"{stem}.yaml").write_text(
            f'licence: MIT\ncommercial: true\ndescription: "{stem}"\n'
        )
    download(load_registry(root / "sources.yaml")["contrib"], root)
    reads = 0
    read = notices.read_json_object

    def counted(*args: object) -> object:
        nonlocal reads
        reads += 1
        return read(*args)

    monkeypatch.setattr(notices, "read_json_object", counted)
    held = {"conversations": {"train": 1, "val": 0}}
    stats = {"sources": {"contrib": {"parts": {f"contrib/{s}": held for s in stems}}}}
    notices.write_notice(
        root, root, "full", stats, [CardSource(f"contrib/{s}", "MIT", True, "contrib") for s in stems]
    )
    text = (root / "NOTICE.md").read_text()
    assert all(f"The sidecar `{s}.yaml`" in text for s in stems)
    assert reads == 1
