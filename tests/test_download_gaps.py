"""Two gaps between what a download records for NOTICE.md and what decides whether it runs.

1. A Hub source read from a huggingface_hub cache filled before the download asked for the repo's
   licence files (HF_HUB_OFFLINE=1, or no network): huggingface_hub 2.4.0 refuses a snapshot its
   cached listing of the commit (trees/<commit>.json, written by every call that reached the Hub)
   shows lacking a requested file, so the licence patterns failed a download the data alone allows.
   Without that listing it returned the cache silently, and with the network merely down (no
   HF_HUB_OFFLINE) the notice then said the repository held no licence file.
2. A `kind: package` source's registry JSON hashed its data files only, not the .dist-info licence
   files and metadata the download records: an upgrade or edit changing only them re-ran nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import sys
import types
from pathlib import Path

import pytest
from test_sources import _fake_hub_cache

from pipeline.cards import CardSource
from pipeline.notices import source_notice
from pipeline.sources.download import download
from pipeline.sources.errors import SourceError
from pipeline.sources.fetchspec import fetch_spec
from pipeline.sources.registry import load_registry

OASST = "OpenAssistant/oasst1"
OASST_REV = "fdf72ae0827c1cda404aff25b6603abec9e3399b"
DATA = {"data/train-00000-of-00001.parquet": b"parquet bytes"}
# the repo at that commit, as the Hub lists it
REPO_FILES = {
    **DATA,
    "LICENSE": b"Apache License 2.0\n",
    "NOTICE": b"Copyright OpenAssistant\n",
    "README.md": b"---\nlicense: apache-2.0\n---\n",
}


def _cache(root: Path, cached: dict[str, bytes], listing: bool) -> None:
    """The hub cache holding `cached` of the repo, and when `listing`, huggingface_hub's listing of
    the whole repo at that commit (the format _tree_cache.py documents), as any call that reached the
    Hub leaves it, whichever files it asked for."""
    cache = root / "hf-cache"
    _fake_hub_cache(cache, OASST, OASST_REV, cached)
    if listing:
        files = {p: {"size": len(b), "blob_id": hashlib.sha1(b).hexdigest()} for p, b in REPO_FILES.items()}
        trees = cache / f"datasets--{OASST.replace('/', '--')}" / "trees"
        trees.mkdir()
        (trees / f"{OASST_REV}.json").write_text(json.dumps({"format_version": 1, "files": files}))


def _manifest(raw: Path) -> dict:
    return json.loads((raw / "manifest.json").read_text())


def _notice_missing(root: Path) -> str:
    """What the notice says of the licence texts it lacks: its line that none was recorded, or its
    caveat on those that were (a caveat stays beside a repository copy, pipeline/notices.py)."""
    n = source_notice(root, CardSource("oasst1", "Apache-2.0", True, "hf_dataset", OASST))
    return n.missing or n.caveat


@pytest.mark.parametrize("listing", [True, False], ids=["listed", "unlisted"])
def test_offline_a_cache_with_the_data_only_still_downloads(root: Path, listing: bool) -> None:
    """Listed, this failed: "The cached snapshot ... is incomplete: 3 file(s) are missing (LICENSE, ...)"."""
    _cache(root, DATA, listing)
    raw = download(load_registry()["oasst1"], root)
    assert (raw / "data/train-00000-of-00001.parquet").read_bytes() == b"parquet bytes"
    manifest = _manifest(raw)
    assert manifest["licence_files"] == [] and manifest["card"] is None
    assert manifest["read_offline"] is True  # not read, rather than "the repository holds none"
    missing = _notice_missing(root)
    assert "read only the local Hub cache" in missing and "the repository holds no" not in missing


@pytest.mark.parametrize("listing", [True, False], ids=["listed", "unlisted"])
def test_offline_the_licence_files_the_cache_holds_are_recorded(root: Path, listing: bool) -> None:
    _cache(root, {**DATA, "LICENSE": REPO_FILES["LICENSE"]}, listing)
    raw = download(load_registry()["oasst1"], root)
    manifest = _manifest(raw)
    assert manifest["licence_files"] == [".licence/LICENSE"] and manifest["card"] is None
    assert (raw / ".licence/LICENSE").read_bytes() == REPO_FILES["LICENSE"]
    assert manifest["read_offline"] is True  # NOTICE and the card were not read
    # The LICENSE is reproduced, and the notice says the cache may lack others (it said nothing).
    missing = _notice_missing(root)
    assert missing.startswith("**Perhaps not every licence file:**")
    assert "holds no other LICENSE" in missing and "no dataset card" in missing
    assert "dvc repro download@oasst1" in missing


def test_offline_a_cache_without_the_data_still_fails_with_huggingface_hubs_reason(root: Path) -> None:
    _cache(root, {"LICENSE": REPO_FILES["LICENSE"]}, listing=True)
    with pytest.raises(SourceError) as err:
        download(load_registry()["oasst1"], root)
    msg = str(err.value)
    assert msg.startswith(f"oasst1: cannot fetch dataset {OASST}@{OASST_REV}") and "\n" not in msg
    assert "IncompleteSnapshotError" in msg and "run with network access" in msg
    assert not (root / "data" / "raw" / "oasst1").exists()


@pytest.fixture
def no_network(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub out of reach with HF_HUB_OFFLINE unset: its endpoint is a closed local port."""
    import huggingface_hub.constants as hub_constants
    import huggingface_hub.utils._http as hub_http

    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    # huggingface_hub reads HF_HUB_OFFLINE once, at its import: `root` had set it when this file ran
    # alone, so the Hub was never tried (offline mode), and unset when an earlier test had imported it.
    # Unset here whatever the order: each request meets the closed port.
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    # Its retries of a refused connection still all run, without their 1+2+4+8+8 s of back-off waits
    # (time.sleep is the only use of `time` in that module).
    monkeypatch.setattr(hub_http, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    monkeypatch.setattr(hub_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )


def test_without_network_an_unlisted_cache_does_not_speak_for_the_repository(
    root: Path, no_network: None
) -> None:
    """huggingface_hub returns the cached snapshot without a word: the notice said "the repository
    holds no LICENSE, LICENCE, COPYING or NOTICE file at its root", of a repo that holds two."""
    _cache(root, DATA, listing=False)
    raw = download(load_registry()["oasst1"], root)
    assert _manifest(raw)["read_offline"] is True and _manifest(raw)["licence_files"] == []
    assert "the repository holds no" not in _notice_missing(root)


def test_without_network_a_listed_cache_with_the_data_still_downloads(root: Path, no_network: None) -> None:
    """huggingface_hub tries to fetch the licence files the listing names and the cache lacks, and
    failed the download ("cannot fetch ... LocalEntryNotFoundError")."""
    _cache(root, {**DATA, "README.md": REPO_FILES["README.md"]}, listing=True)
    raw = download(load_registry()["oasst1"], root)
    manifest = _manifest(raw)
    assert manifest["card"] == ".licence/README.md" and manifest["licence_files"] == []
    assert manifest["read_offline"] is True


def test_without_network_a_hub_client_closed_by_a_sibling_worker_does_not_fail_the_download(
    root: Path, no_network: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub fetches a snapshot's files on parallel workers sharing one httpx client, and a
    worker whose connection is refused closes it (close_session): a sibling that had just taken it
    from get_session failed the download ("RuntimeError: Cannot send a request, as the client has
    been closed"), in about 1 run in 10 of the test above, where LICENSE and NOTICE are both fetched.
    Here that interleaving every time: the one file to fetch gets a client closed before its use."""
    import huggingface_hub.utils._http as hub_http

    get_session = hub_http.get_session
    handed: list = []  # the clients the file requests' retry loop took

    def get_session_then_a_sibling_closes_it():
        client = get_session()
        # only the file requests (LICENSE's, the one file to fetch): not, say, huggingface_hub's
        # first-use fetch of its agent registry, which goes through here too
        if sys._getframe(1).f_code is hub_http._http_backoff_base.__code__:
            if not handed:
                hub_http.close_session()  # what a sibling's refused connection does meanwhile
            handed.append(client)
        return client

    monkeypatch.setattr(hub_http, "get_session", get_session_then_a_sibling_closes_it)
    _cache(root, {**DATA, "NOTICE": REPO_FILES["NOTICE"], "README.md": REPO_FILES["README.md"]}, listing=True)
    raw = download(load_registry()["oasst1"], root)
    manifest = _manifest(raw)
    assert manifest["licence_files"] == [".licence/NOTICE"] and manifest["card"] == ".licence/README.md"
    assert manifest["read_offline"] is True
    # the first request met the closed client; the later ones each a fresh one (their refused
    # connections closed it in turn)
    assert handed[0].is_closed and len({id(c) for c in handed}) > 1


@pytest.mark.parametrize("race", [True, False], ids=["client-emptied", "another-error"])
def test_only_a_lost_race_on_the_hub_client_is_retried_and_one_file_at_a_time(
    root: Path, monkeypatch: pytest.MonkeyPatch, race: bool
) -> None:
    """The other face of that race: close_session() empties the global between get_session()'s
    check and its return, and the worker calls None.request. Retried one file at a time (no sibling
    left to race); any other error is the download's, reported at once."""
    import huggingface_hub

    snapshot_download = huggingface_hub.snapshot_download
    workers: list = []  # each call's max_workers

    def first_call_fails(repo_id: str, **kwargs: object) -> str:
        workers.append(kwargs.get("max_workers"))
        if len(workers) == 1 and race:
            raise AttributeError("'NoneType' object has no attribute 'request'", name="request", obj=None)
        if len(workers) == 1:
            raise RuntimeError("dictionary changed size during iteration")
        return snapshot_download(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", first_call_fails)
    _cache(root, REPO_FILES, listing=True)
    if race:
        raw = download(load_registry()["oasst1"], root)
        assert _manifest(raw)["licence_files"] == [".licence/LICENSE", ".licence/NOTICE"]
        assert workers[1:] == [1]  # the retry ran one file at a time
    else:
        with pytest.raises(SourceError, match="RuntimeError: dictionary changed size"):
            download(load_registry()["oasst1"], root)
        assert len(workers) == 1  # not retried


def _installed_package(site: Path, licence: bytes, version: str = "1.0") -> None:
    """A package `gapdata` installed in `site` from a wheel: its data file, and a .dist-info holding
    METADATA, LICENSE and the RECORD that lists them (what importlib.metadata reads)."""
    package, info = site / "gapdata", site / f"gapdata-{version}.dist-info"
    package.mkdir(parents=True, exist_ok=True)
    info.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "dataset.json").write_text("{}")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: gapdata\nVersion: {version}\nAuthor: Ada\n")
    (info / "LICENSE").write_bytes(licence)
    (info / "top_level.txt").write_text("gapdata\n")
    listed = [
        "gapdata/__init__.py",
        "gapdata/dataset.json",
        *(f"{info.name}/{n}" for n in ("METADATA", "LICENSE", "top_level.txt", "RECORD")),
    ]
    (info / "RECORD").write_text("".join(f"{p},,\n" for p in listed))


def test_a_package_spec_changes_with_its_licence_text_and_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _installed_package(site, b"MIT License, Copyright Ada\n")
    monkeypatch.syspath_prepend(str(site))
    spec = dataclasses.replace(load_registry()["chitchat"], location="gapdata")
    first = fetch_spec(spec, tmp_path)
    (site / "gapdata-1.0.dist-info" / "LICENSE").write_bytes(b"MIT License, Copyright Ada and Bo\n")
    second = fetch_spec(spec, tmp_path)
    assert second != first and second["contents"] == first["contents"]  # the data is the same
    (site / "gapdata-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: gapdata\nVersion: 1.0\nAuthor: Ada and Bo\n"
    )
    third = fetch_spec(spec, tmp_path)
    assert third != second and third["contents"] == first["contents"]
    assert fetch_spec(spec, tmp_path) == third  # and nothing else moves it
    # what the spec hashes is what the download records
    assert [r["path"] for r in third["recorded"]] == [".licence/LICENSE", "METADATA"]
    manifest = _manifest(download(spec, tmp_path))
    assert (
        manifest["licence_files"] == [".licence/LICENSE"] and manifest["upstream"]["author"] == "Ada and Bo"
    )
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert listed[".licence/LICENSE"] == third["recorded"][0]["sha256"]


def test_only_package_specs_gain_the_recorded_key(tmp_path: Path) -> None:
    """Hub, url and contrib sources' registry JSON stays byte-identical (no re-download)."""
    registry = load_registry()
    kinds = {spec.kind: "recorded" in fetch_spec(spec, tmp_path) for spec in registry.values()}
    assert kinds == {"package": True, "hf_dataset": False, "url": False, "contrib": False}


@pytest.mark.parametrize("cached", [{"LICENSE": REPO_FILES["LICENSE"]}, {}], ids=["licence", "none"])
def test_a_repository_copy_replaces_the_no_licence_line_and_keeps_the_offline_caveat(
    root: Path, cached: dict[str, bytes]
) -> None:
    """`licence_text:` on a hub source: the repository's copy comes first; it stands in for "no
    licence text recorded", while the caveat that the cache may lack some of the repo's files stays."""
    _cache(root, {**DATA, **cached}, True)
    spec = dataclasses.replace(
        load_registry()["oasst1"], licence_text="data/licences/chatterbot_corpus-1.3.3/license.md"
    )
    download(spec, root)
    n = source_notice(root, CardSource("oasst1", "Apache-2.0", True, "hf_dataset", OASST))
    assert "this repository's copy" in n.texts[0].caption and "Gunther Cox" in n.texts[0].body
    assert n.missing == ""
    assert n.caveat.startswith("**Perhaps not every licence file:**") == bool(cached)
    assert len(n.texts) == 1 + len(cached)
