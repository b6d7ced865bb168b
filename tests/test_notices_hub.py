"""NOTICE.md for the sources that are not packages: a Hugging Face dataset's root licence and notice
files and its card, a url archive's `licence_files:` members, a `local_path:` folder's licence files,
each recorded by the download in data/raw/<source>/.licence/ and reproduced from those bytes.

No test touches the network: the Hub is a local cache read with HF_HUB_OFFLINE=1 (the real
huggingface_hub.snapshot_download), or huggingface_hub's own matcher on a listed tree; an archive is
put in the download cache under its sha256, where a url download finds it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import polars as pl
import pytest
import yaml
from test_notices import _rows
from test_sources import _fake_hub, _fake_hub_cache

from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig, BuildError
from pipeline.cards import CardSource
from pipeline.notices import CARD_MAX, notice, source_notice
from pipeline.schema import TURN_SCHEMA
from pipeline.sources.download import download
from pipeline.sources.errors import SourceError
from pipeline.sources.fetchspec import fetch_spec
from pipeline.sources.readers import data_files
from pipeline.sources.registry import load_registry, parse_entry

REPO = Path(__file__).resolve().parents[1]
OASST_REV = "fdf72ae0827c1cda404aff25b6603abec9e3399b"
APACHE = (
    "                                 Apache License\n                           Version 2.0, January 2004\n"
)
NOTICE_TEXT = "OpenAssistant Conversations\nCopyright 2023 LAION e.V. and the OpenAssistant contributors\n"
CARD = """---
license: apache-2.0
dataset_info:
  features:
  - name: message_id
    dtype: string
language:
- en
- de
pretty_name: OpenAssistant Conversations
---

# OpenAssistant Conversations Dataset (OASST1)

## Dataset Structure

SCHEMA-DETAIL that is no part of the terms.

## Additional Information

### Licensing Information

The dataset is licensed under the Apache License 2.0 (LICENSING-SENTENCE).

### Citation Information

```bibtex
# not a heading: it is inside the fence
@misc{koepf2023openassistant,
  title={OpenAssistant Conversations},
}
```

## Contact

UNRELATED contact details.
"""


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _table(root: Path, source: str, licence: str, commercial: bool) -> None:
    rows = _rows(source, 4, licence, commercial)
    out = root / "data" / "normalized"
    out.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=TURN_SCHEMA).write_parquet(out / f"{source}.parquet")


OASST = {
    "kind": "hf_dataset",
    "licence": "Apache-2.0",
    "commercial": True,
    "location": "OpenAssistant/oasst1",
}


def _oasst_project(root: Path) -> Path:
    """oasst1 downloaded through the real huggingface_hub path (offline cache) with a LICENSE, a
    NOTICE and a card at the repo root, and its turn table."""
    _fake_hub_cache(
        root / "hf-cache",
        "OpenAssistant/oasst1",
        OASST_REV,
        {
            "data/train-00000-of-00001.parquet": b"PAR1 not read here",
            "LICENSE": APACHE.encode(),
            "NOTICE": NOTICE_TEXT.encode(),
            "README.md": CARD.encode(),
        },
    )
    raw = download(load_registry()["oasst1"], root)
    _table(root, "oasst1", "Apache-2.0", True)
    return raw


def _build(root: Path, variant: str) -> str:
    build_variant(root, ["oasst1"], {"oasst1": OASST}, BuildConfig(variant=variant, val_fraction=0.2))
    return (root / "data/dataset" / variant / "NOTICE.md").read_text(encoding="utf-8")


def test_a_hub_download_asks_for_the_root_licence_files_and_card_in_the_same_call(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = {
        "data/train-00000-of-00001.parquet": b"p",
        "License.md": b"MIT License\n\nCopyright (c) 2024 Ada\n",
        "notice.txt": b"Attribution: Ada\n",
        "README.md": b"---\nlicense: mit\n---\n",
        "COPYING": b"copying terms\n",
        "sub/LICENSE": b"a subfolder's licence\n",
        "LICENSES/extra.txt": b"a folder, not a root file\n",
        "LICENSE_dir_x/y": b"",
        "2023_oasst_ready.trees.jsonl.gz": b"big",
    }
    calls = _fake_hub(monkeypatch, tmp_path, tree)
    raw = download(load_registry()["oasst1"], root)
    assert len(calls) == 1  # one listing of the repo: the data and the licence files together
    assert "data/*.parquet" in calls[0]["allow_patterns"]
    manifest = _manifest(raw)
    assert manifest["licence_files"] == [".licence/COPYING", ".licence/License.md", ".licence/notice.txt"]
    assert manifest["card"] == ".licence/README.md"
    for rel in (*manifest["licence_files"], manifest["card"]):
        assert (raw / rel).read_bytes() == tree[rel.removeprefix(".licence/")]
    listed = {f["path"] for f in manifest["files"]}
    assert {".licence/README.md", ".licence/License.md", "data/train-00000-of-00001.parquet"} <= listed
    assert not any("sub" in p or "LICENSES" in p or "trees" in p for p in listed)
    # no adapter reads them: data files skip hidden folders
    assert [p.name for p in data_files(raw, ("",))] == ["train-00000-of-00001.parquet"]


def test_a_hub_repo_without_licence_files_records_none_and_the_notice_says_so(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the fake Hub answers as the Hub itself would
    _fake_hub(monkeypatch, tmp_path, {"data/a.parquet": b"p"})
    raw = download(load_registry()["oasst1"], root)
    assert _manifest(raw)["licence_files"] == [] and _manifest(raw)["card"] is None
    assert "read_offline" not in _manifest(raw)
    assert not (raw / ".licence").exists()
    n = source_notice(root, CardSource("oasst1", "Apache-2.0", True, "hf_dataset", "OpenAssistant/oasst1"))
    assert (
        not n.texts
        and "the repository holds no LICENSE, LICENCE, COPYING or NOTICE file at its root" in n.missing
    )


def test_an_offline_cache_without_licence_files_does_not_speak_for_the_repository(root: Path) -> None:
    """Read offline, the Hub cache holds what some earlier download fetched, perhaps one that asked
    for no licence files: the notice said "the repository holds no LICENSE", which may be false."""
    _fake_hub_cache(root / "hf-cache", "OpenAssistant/oasst1", OASST_REV, {"data/a.parquet": b"p"})
    raw = download(load_registry()["oasst1"], root)
    assert _manifest(raw)["read_offline"] is True and _manifest(raw)["licence_files"] == []
    n = source_notice(root, CardSource("oasst1", "Apache-2.0", True, "hf_dataset", "OpenAssistant/oasst1"))
    assert "the repository holds no" not in n.missing
    assert "read only the local Hub cache" in n.missing and "dvc repro download@oasst1" in n.missing


def test_a_hub_sources_licence_notice_and_card_terms_reach_the_full_notice(root: Path) -> None:
    raw = _oasst_project(root)
    assert _manifest(raw)["revision"] == OASST_REV
    for variant in ("full", "commercial"):
        text = _build(root, variant)
        assert "## oasst1" in text and f"pinned at `{OASST_REV}`" in text
        assert APACHE.rstrip("\n") in text  # whole, verbatim
        assert NOTICE_TEXT.rstrip("\n") in text
        assert "```yaml\nlicense: apache-2.0\n```" in text
        assert "LICENSING-SENTENCE" in text and "@misc{koepf2023openassistant," in text
        assert "# not a heading: it is inside the fence" in text  # the citation's fence did not end it
        # the rest of the card states no terms and stays out
        for other in ("SCHEMA-DETAIL", "UNRELATED", "dataset_info", "pretty_name"):
            assert other not in text, other
        assert "`data/raw/oasst1/.licence/README.md`" in text
        assert "No licence text" not in text


@pytest.mark.parametrize("rel", [".licence/NOTICE", ".licence/README.md"])
def test_a_tampered_recorded_hub_file_stops_the_build(root: Path, rel: str) -> None:
    raw = _oasst_project(root)
    (raw / rel).write_text("license: mit\nCopyright nobody\n")
    with pytest.raises(
        BuildError, match=rf"{rel}: its bytes are not the ones .*manifest\.json.*download@oasst1"
    ):
        _build(root, "full")


def test_a_long_card_is_cut_and_a_card_without_terms_says_so(root: Path) -> None:
    long_card = "# Card\n\n## License\n\n" + "terms line\n" * 5000 + "\n## Other\n\nx\n"
    _fake_hub_cache(
        root / "hf-cache",
        "OpenAssistant/oasst1",
        OASST_REV,
        {"data/a.parquet": b"p", "README.md": long_card.encode()},
    )
    download(load_registry()["oasst1"], root)
    source = CardSource("oasst1", "Apache-2.0", True, "hf_dataset", "OpenAssistant/oasst1")
    n = source_notice(root, source)
    (card,) = n.texts
    assert len(card.body) == CARD_MAX and f"its first {CARD_MAX:,} of" in card.caption
    assert "holds no LICENSE" in n.missing  # the card is no licence text
    shutil.rmtree(root / "hf-cache")
    _fake_hub_cache(
        root / "hf-cache",
        "OpenAssistant/oasst1",
        OASST_REV,
        {"data/a.parquet": b"p", "README.md": b"---\npretty_name: x\n---\n# Card\n\n## Usage\n\nread it\n"},
    )
    download(load_registry()["oasst1"], root)
    n = source_notice(root, source)
    assert not n.texts and any("it states no licence" in fact for fact in n.facts)


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ED_LICENCE = b"Attribution-NonCommercial 4.0 International\n\nCopyright (c) Facebook, Inc.\n"


def _ed_spec(root: Path, archive: bytes, **changes: object) -> object:
    """An EmpatheticDialogues-like url source whose archive is already in the download cache."""
    sha = hashlib.sha256(archive).hexdigest()
    (root / "dl-cache").mkdir(exist_ok=True)
    (root / "dl-cache" / sha).write_bytes(archive)
    fields = {
        "kind": "url",
        "location": "https://example.invalid/empatheticdialogues.tar.gz",
        "sha256": sha,
        "archive": True,
        "files": ["empatheticdialogues/*.csv"],
        "licence_files": ["empatheticdialogues/LICENSE*"],
        "adapter": "empathetic_dialogues",
        "licence": "CC-BY-NC-4.0",
        "commercial": False,
        **changes,
    }
    return parse_entry("ed", {k: v for k, v in fields.items() if v is not None})


def test_an_archive_member_chosen_by_licence_files_reaches_the_notice(root: Path) -> None:
    archive = _tar(
        {
            "empatheticdialogues/train.csv": b"conv_id,utterance\n",
            "empatheticdialogues/LICENSE": ED_LICENCE,
            "empatheticdialogues/README.txt": b"not selected\n",
        }
    )
    spec = _ed_spec(root, archive)
    raw = download(spec, root)
    manifest = _manifest(raw)
    assert manifest["licence_files"] == [".licence/empatheticdialogues/LICENSE"]
    assert (raw / ".licence/empatheticdialogues/LICENSE").read_bytes() == ED_LICENCE
    assert not (raw / "empatheticdialogues/LICENSE").exists()  # not a data file
    source = CardSource("ed", "CC-BY-NC-4.0", False, "url", spec.location)
    text = notice("full", [source_notice(root, source)])
    assert "The archive member `empatheticdialogues/LICENSE`" in text
    assert ED_LICENCE.decode().rstrip("\n") in text and "No licence text" not in text
    # the archive named by `local_path:` is extracted by the same code, licence members too
    local = dataclasses.replace(spec, local_path=str(root / "dl-cache" / spec.sha256))
    assert _manifest(download(local, root))["licence_files"] == [".licence/empatheticdialogues/LICENSE"]
    assert ED_LICENCE.decode().rstrip("\n") in notice("full", [source_notice(root, source)])
    download(dataclasses.replace(local, licence_files=()), root)
    assert "no `licence_files:`" in source_notice(root, source).missing
    # without `licence_files:` nothing is recorded, and the notice says how to choose them
    download(dataclasses.replace(spec, licence_files=()), root)
    n = source_notice(root, source)
    assert not n.texts and "`licence_files:`" in n.missing


def test_licence_files_refuse_a_traversal_member_and_an_empty_selection(root: Path) -> None:
    evil = _tar({"empatheticdialogues/train.csv": b"x\n", "empatheticdialogues/../../LICENSE": ED_LICENCE})
    with pytest.raises(SourceError, match=r"would be written outside data/raw/ed; the archive is refused"):
        download(_ed_spec(root, evil), root)
    assert not (root / "data/raw/ed").exists() and not (root / "LICENSE").exists()
    plain = _tar({"empatheticdialogues/train.csv": b"x\n"})
    with pytest.raises(
        SourceError, match=r"^ed: .*no file matching empatheticdialogues/LICENSE\*; fix `licence_files:`"
    ):
        download(_ed_spec(root, plain), root)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"licence_files": ["../LICENSE"]}, r"`licence_files:` entry '\.\./LICENSE' must be a path inside"),
        ({"licence_files": ["/etc/passwd"]}, r"`licence_files:` entry '/etc/passwd' must be a path inside"),
        ({"licence_files": {"a": 1}}, r"`licence_files:` must be a list of file names or globs"),
        ({"licence_files": [3]}, r"`licence_files:` must be a list of file names or globs"),
        (
            {"licence_files": ["a**/L"]},
            r"`licence_files:` entry 'a\*\*/L': '\*\*' can only be a whole path part",
        ),
        (
            {"archive": None},
            r"`licence_files:` selects the members of a downloaded archive .* `archive: true`",
        ),
        (
            {"kind": "hf_dataset", "archive": None, "sha256": None, "revision": "main"},
            r"`licence_files:` selects .* for url sources with `archive: true`",
        ),
    ],
)
def test_a_bad_licence_files_value_is_refused_at_load_naming_the_source(
    root: Path, changes: dict, rule: str
) -> None:
    entry = {
        "kind": "url",
        "location": "https://example.invalid/a.tar.gz",
        "sha256": "0" * 64,
        "archive": True,
        "files": ["a/*.csv"],
        "licence_files": ["a/LICENSE"],
        "adapter": "empathetic_dialogues",
        "licence": "CC-BY-NC-4.0",
        "commercial": False,
        **changes,
    }
    entry = {k: v for k, v in entry.items() if v is not None}
    (root / "sources.yaml").write_text(yaml.safe_dump({"mine": entry}))
    with pytest.raises(SourceError, match=rf"^{root / 'sources.yaml'}: mine: {rule}"):
        load_registry(root / "sources.yaml")


def test_licence_files_are_in_the_fetch_spec_only_when_set(root: Path) -> None:
    """Which members go to .licence/ decides data/raw: a changed list re-runs the download; unset,
    the key is absent, so every other source's JSON (and its DVC hash) is as it was."""
    specs = load_registry(root / "sources.yaml")
    for spec in specs.values():
        assert "licence_files" not in fetch_spec(spec, root), spec.name
    ed = dataclasses.replace(specs["empathetic_dialogues"], licence_files=("empatheticdialogues/LICENSE*",))
    assert fetch_spec(ed, root)["licence_files"] == ["empatheticdialogues/LICENSE*"]
    assert fetch_spec(ed, root) != fetch_spec(dataclasses.replace(ed, licence_files=("x",)), root)


def test_a_local_path_folder_records_its_top_licence_files(root: Path) -> None:
    mine = root / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "train.parquet").write_bytes(b"p")
    (mine / "LICENSE.txt").write_text("Copyright 2024 Local Holder\n")
    (mine / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    (mine / "data" / "LICENSE").write_text("not at the top\n")
    spec = dataclasses.replace(load_registry()["oasst1"], local_path="mine")
    contents = [c["path"] for c in fetch_spec(spec, root)["contents"]]
    assert contents == ["data/train.parquet", "LICENSE.txt", "README.md"]  # an edit re-runs the download
    raw = download(spec, root)
    manifest = _manifest(raw)
    assert manifest["licence_files"] == [".licence/LICENSE.txt"] and manifest["card"] == ".licence/README.md"
    source = CardSource("oasst1", "Apache-2.0", True, "hf_dataset", "OpenAssistant/oasst1")
    text = notice("full", [source_notice(root, source)])
    assert "Copyright 2024 Local Holder" in text and "license: apache-2.0" in text
    assert "read from a local copy" in text and "not at the top" not in text
    # a `local_path:` naming one file has no folder of its own: nothing, and the notice says so
    one = dataclasses.replace(spec, local_path="mine/data/train.parquet")
    download(one, root)
    n = source_notice(root, source)
    assert not n.texts and "No licence text" in n.missing


def test_a_licence_file_is_its_name_alone_or_with_a_tail_and_never_a_data_file() -> None:
    """A bare prefix took a root `authorship.csv` or `NOTICE_2020.jsonl` as licence text: the Hub
    call fetched it and NOTICE.md reproduced it (up to 64 KB of data)."""
    from huggingface_hub.utils import filter_repo_objects

    from pipeline.sources.download import HUB_LICENCE_PATTERNS, _is_licence_name

    licences = ["LICENSE", "license.md", "LICENSE-MIT", "Licence.txt", "COPYING", "NOTICE", "notice_2020.txt"]
    others = ["authorship.csv", "NOTICE_2020.jsonl", "LICENSES", "licensed.txt", "copying_data.parquet"]
    others += ["license.json", "AUTHORS.csv", "data/LICENSE", "README.txt"]
    assert [n for n in licences + ["AUTHORS"] if not _is_licence_name(n)] == []
    assert [n for n in others if "/" not in n and _is_licence_name(n)] == []
    # What the Hub call asks for holds every licence name and none of the look-alikes' prefixes.
    fetched = set(
        filter_repo_objects(
            [*licences, "authorship.csv", "LICENSES", "licensed.txt"],
            allow_patterns=list(HUB_LICENCE_PATTERNS),
        )
    )
    assert fetched == set(licences)
