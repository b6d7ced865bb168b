"""CONTRIBUTING.md's "Add a registry source", as a contributor follows it offline: an entry whose
`local_path:` points at a copy of the upstream files. What the download records must not depend on
where the checkout lies, and a `files:` glob that matches nothing must stop the download, naming
the glob, rather than drop its files without a word."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from pipeline.sources.download import download, raw_dir
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import SourceSpec, parse_entry

_OASST = {
    "kind": "hf_dataset",
    "location": "OpenAssistant/oasst1",
    "revision": "fdf72ae0827c1cda404aff25b6603abec9e3399b",
    "adapter": "oasst1",
    "licence": "Apache-2.0",
    "commercial": True,
    "commercial_reason": "Apache-2.0",
}
_LINE = {"message_id": "m1", "parent_id": None, "role": "prompter", "text": "hi", "message_tree_id": "t"}


def _oasst_copy(root: Path) -> None:
    """A local copy of a hub repo, laid out as the Hub has it: data/*.jsonl and the card."""
    (root / "upstream" / "data").mkdir(parents=True)
    for split in ("train", "validation"):
        (root / "upstream" / "data" / f"{split}.jsonl").write_text(json.dumps(_LINE) + "\n")
    (root / "upstream" / "README.md").write_text("---\nlicense: apache-2.0\n---\n")


def _spec(**fields: object) -> SourceSpec:
    return parse_entry("oasst1", {**_OASST, **fields})


def test_a_relative_local_path_is_recorded_as_written(tmp_path: Path) -> None:
    """The same commit in two folders downloads the same bytes: a resolved path in the manifest
    would carry the checkout's folder into NOTICE.md and change data/raw's hash from one machine to
    the next."""
    manifests = []
    for checkout in ("alice", "bob"):
        root = tmp_path / checkout
        _oasst_copy(root)
        download(_spec(local_path="upstream", files=["data/*.jsonl"]), root)
        manifests.append((raw_dir("oasst1", root) / "manifest.json").read_text())
    assert manifests[0] == manifests[1]
    recorded = json.loads(manifests[0])
    assert (recorded["local_path"], recorded["location"]) == ("upstream", "upstream")
    assert str(tmp_path) not in manifests[0]


def test_a_contrib_local_path_is_recorded_as_written(tmp_path: Path) -> None:
    spec = parse_entry(
        "contrib",
        {
            "kind": "contrib",
            "location": "data/contrib",
            "adapter": "contrib",
            "licence": "per-file",
            "commercial": False,
            "local_path": "mine",
        },
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "chat.txt").write_text("<human> hi <endOfText>\n<bot> hello <endOfText>\n")
    (tmp_path / "mine" / "chat.yaml").write_text("licence: MIT\ncommercial: true\ndescription: x\n")
    text = (download(spec, tmp_path) / "manifest.json").read_text()
    assert json.loads(text)["local_path"] == "mine"
    assert str(tmp_path) not in text


def test_a_misspelt_glob_beside_a_good_one_stops_the_download(tmp_path: Path) -> None:
    """`data/valdiation-*` next to `data/train*`: before, the train file alone was copied and the
    validation split was lost without a word."""
    _oasst_copy(tmp_path)
    spec = _spec(local_path="upstream", files=["data/train*.jsonl", "data/valdiation*.jsonl"])
    with pytest.raises(SourceError, match=r"holds no files matching data/valdiation\*\.jsonl; fix") as e:
        download(spec, tmp_path)
    assert "data/train" not in str(e.value)
    assert not raw_dir("oasst1", tmp_path).exists()
    # every glob matching: the download runs, and `**/` may match no folder at all, as in pathlib
    both = _spec(local_path="upstream", files=["data/train*.jsonl", "**/validation.jsonl"])
    listed = json.loads((download(both, tmp_path) / "manifest.json").read_text())["files"]
    assert [f["path"] for f in listed if f["path"].startswith("data/")] == [
        "data/train.jsonl",
        "data/validation.jsonl",
    ]


def _tar(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"a,b"))
    return buf.getvalue()


def test_an_archive_member_glob_matching_nothing_is_refused(tmp_path: Path) -> None:
    from pipeline.sources.archive import extract

    archive = tmp_path / "corpus.tar.gz"
    archive.write_bytes(_tar(["ed/train.csv", "ed/valid.csv", "ed/LICENSE"]))
    with pytest.raises(SourceError, match=r"has no file matching ed/tset\.csv; fix `files:`"):
        extract(archive, ("ed/train.csv", "ed/tset.csv"), tmp_path / "out", name="demo", origin="x")
    # `licence_files:` globs may be listed in hope: one of them matching is enough
    done = extract(
        archive, ("ed/LICENSE*", "ed/NOTICE*"), tmp_path / "lic", name="demo", origin="x", key="licence_files"
    )
    assert done["members_extracted"] == 1
