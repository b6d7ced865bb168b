"""A Hub source downloaded at a branch (`revision: main`, which moves) is told which commit it got
and how to pin it; a pinned one, and every other kind, is not (pipeline.sources.download.unpinned_notice)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_sources import OASST_REV, _fake_hub_cache

from pipeline.sources.download import download, unpinned_notice
from pipeline.sources.registry import load_registry
from stages import download as download_stage

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_a_download_at_a_branch_names_its_commit_and_the_pin(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ubuntu: `revision: main` in sources.yaml; the (offline) Hub cache's main is COMMIT
    _fake_hub_cache(
        root / "hf-cache",
        "rojagtap/ubuntu_dialogs_corpus",
        COMMIT,
        {f: b"a,b\n" for f in ("train.csv", "validation.csv", "test.csv")},
    )
    assert download_stage.main(["ubuntu"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "download: warning: ubuntu: `revision: main` is a branch or tag, which moves: this download is "
        f"commit {COMMIT}; for the same files in every clone, pin it in sources.yaml "
        f"(`revision: {COMMIT}` for ubuntu)\n"
    )


def test_a_pinned_download_a_local_path_and_a_package_say_nothing(root: Path, tmp_path: Path) -> None:
    registry = load_registry()
    _fake_hub_cache(root / "hf-cache", "OpenAssistant/oasst1", OASST_REV, {"data/train-0.parquet": b"p"})
    pinned = registry["oasst1"]
    assert unpinned_notice(pinned, download(pinned, root)) is None
    # the same commit asked for by branch name is the notice's case
    assert OASST_REV in unpinned_notice(dataclasses.replace(pinned, revision="main"), download(pinned, root))
    local = tmp_path / "mine"
    (local / "data").mkdir(parents=True)
    (local / "data" / "train-0.parquet").write_bytes(b"p")
    at_branch = dataclasses.replace(pinned, revision="main", local_path=str(local))
    assert unpinned_notice(at_branch, download(at_branch, root)) is None  # no commit: its own files
    chitchat = registry["chitchat"]
    assert unpinned_notice(chitchat, download(chitchat, root)) is None
