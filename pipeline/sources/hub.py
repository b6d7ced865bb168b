"""Hugging Face dataset snapshots through huggingface_hub, pinned to a revision.

Files land in the hub cache (HF_HUB_CACHE, or huggingface_hub's default) exactly as the hub
serves them; download.py then copies the selected files into data/raw/<name>/. The hub selects
with fnmatch, where `**/*.csv` misses a top-level file that pathlib's glob takes: the registry's
globs are rewritten for it (globs.hub_patterns) so that it sends every file the copy selects. With
HF_HUB_OFFLINE=1 (or no network) a snapshot already in the cache still resolves, which is also
how the tests exercise this path without a network. The repo's root licence and notice files and
its dataset card come in the same snapshot (download.py records them in data/raw/<name>/.licence/);
a cache filled before they were asked for still serves the data (`fetch_snapshot`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from pipeline.errortext import gist
from pipeline.sources.errors import SourceError
from pipeline.sources.globs import hub_patterns
from pipeline.sources.registry import SourceSpec


def offline() -> bool:
    """HF_HUB_OFFLINE is set: the Hub is read from its local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class Snapshot(NamedTuple):
    """A local snapshot of a Hub repo at one commit (`fetch_snapshot`)."""

    folder: Path
    commit: str
    # the folder holds every file the fetch's `also` patterns name that the repo holds at that commit:
    # the Hub answered, or its cached listing of that commit vouched for the cache (see `_listed`)
    complete: bool


def fetch_snapshot(spec: SourceSpec, also: tuple[str, ...] = ()) -> Snapshot:
    """The local snapshot of `spec.location` at `spec.revision`, holding the files `spec.files`
    selects and those the fnmatch patterns `also` name (the repo's licence files and card,
    download.HUB_LICENCE_PATTERNS): one listing of the repo, by the same call, at the same commit,
    with the same token and offline rules as the data.

    The `also` files never stop a download the data alone would allow: read from a cache filled
    before they were asked for (offline, or with the Hub out of reach), the snapshot holds those the
    cache has and `complete` is False. huggingface_hub refuses such a snapshot when its cached
    listing of the commit names files the cache lacks (IncompleteSnapshotError, or a
    LocalEntryNotFoundError from the file it could not fetch); the data is then read from the cache
    alone, and only a failure of that is the user's."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = os.environ.get(spec.token_env) or None
    where = f"dataset {spec.location}@{spec.revision} on the Hugging Face Hub"
    hint = f"or set `local_path:` for {spec.name} in sources.yaml to a folder holding {', '.join(spec.files) or 'its files'}"
    if spec.gated and token is None and not offline():
        raise SourceError(
            f"{spec.name}: {where} is gated and {spec.token_env} is not set; accept its terms on the Hub and "
            f"export {spec.token_env}=<your token>, {hint}"
        )
    from huggingface_hub.utils import logging as hf_logging

    # fnmatch patterns taking at least what download._select takes (globs.hub_patterns)
    data = hub_patterns(spec.files) if spec.files else None
    # The hub logs each network retry as a warning; the user gets our one line instead.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        try:
            path = _snapshot_download(spec, token, None if data is None else [*data, *also], offline())
            # offline, the cache is all there is, even where its listing vouches for it (read_offline)
            complete = not offline()
        except LocalEntryNotFoundError as missing:
            if data is None or not also:  # only the data was asked for (or the whole repo)
                raise
            try:
                path = _snapshot_download(spec, token, data, local_files_only=True)
            except Exception:
                raise missing from None  # the first answer says why (no network, say), not this one
            complete = False
    except GatedRepoError:
        if token is None:  # not marked `gated: true`, so nothing asked for a token before the call
            raise SourceError(
                f"{spec.name}: {where} is gated and {spec.token_env} is not set; set `gated: true` for "
                f"{spec.name} in sources.yaml, accept its terms on the Hub and export "
                f"{spec.token_env}=<your token>, {hint}"
            ) from None
        raise SourceError(
            f"{spec.name}: {where} is gated and the token in {spec.token_env} has no access; accept its terms "
            f"on the Hub, {hint}"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise SourceError(
            f"{spec.name}: {where} not found ({type(e).__name__}); fix sources.yaml {hint}"
        ) from None
    except Exception as e:  # no network, offline cache miss, HTTP errors: all the same to the user
        raise SourceError(
            f"{spec.name}: cannot fetch {where} ({gist(e, 200)}); run with network access, {hint}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    snapshot = Path(path)
    return Snapshot(snapshot, snapshot.name, complete and _listed(spec, snapshot.name))


# huggingface_hub's own default for snapshot_download's parallel file fetches
_HUB_WORKERS = 8


def _snapshot_download(
    spec: SourceSpec, token: str | None, patterns: list[str] | None, local_files_only: bool
) -> str:
    """huggingface_hub's snapshot_download, once more one file at a time when its parallel fetch
    tripped over its own shared HTTP client (`_shared_client_race`). Files already fetched stay in
    the cache, so the second call only asks for those the first did not get."""
    try:
        return _snapshot(spec, token, patterns, local_files_only, workers=_HUB_WORKERS)
    except (RuntimeError, AttributeError) as e:
        if not _shared_client_race(e):
            raise
        # One worker: no sibling can close the client between its get_session() and its request.
        return _snapshot(spec, token, patterns, local_files_only, workers=1)


def _snapshot(
    spec: SourceSpec, token: str | None, patterns: list[str] | None, local_files_only: bool, workers: int
) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(
        spec.location,
        repo_type="dataset",
        revision=spec.revision,
        allow_patterns=patterns,
        token=token,
        cache_dir=_cache_dir(),
        local_files_only=local_files_only,
        max_workers=workers,
    )


def _shared_client_race(e: BaseException) -> bool:
    """`e` is huggingface_hub (2.4.0) losing a race on its process-wide httpx client: a worker whose
    connection failed (the Hub out of reach) calls close_session(), which closes the client a sibling
    worker has just taken from get_session() and not yet sent on ("Cannot send a request, as the
    client has been closed"), or empties the global between get_session()'s check and its return
    (None.request). Neither says anything of the Hub or the cache: the files were never asked for."""
    if isinstance(e, RuntimeError):
        return "client has been closed" in str(e)
    return isinstance(e, AttributeError) and e.obj is None and e.name in ("request", "stream")


def _cache_dir() -> str | None:
    return os.environ.get("HF_HUB_CACHE") or None


def _listed(spec: SourceSpec, commit: str) -> bool:
    """The hub cache holds huggingface_hub's listing of the repo at `commit` (trees/<commit>.json):
    written by every snapshot_download that reached the Hub, read by those that did not to refuse a
    snapshot lacking requested files. Without it, a snapshot the call returned may be whatever an
    earlier download left in the cache, the Hub being out of reach without a word (no network and
    HF_HUB_OFFLINE unset): what it lacks says nothing of the repository."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        get_cached_repo_tree(spec.location, repo_type="dataset", revision=commit, cache_dir=_cache_dir())
    except CachedRepoTreeNotFoundError:
        return False
    return True
