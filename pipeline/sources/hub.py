"""Hugging Face dataset snapshots through huggingface_hub, pinned to a revision.

Files land in the hub cache (HF_HUB_CACHE, or huggingface_hub's default) exactly as the hub
serves them; download.py then copies the selected files into data/raw/<name>/. The hub selects
with fnmatch, where `**/*.csv` misses a top-level file that pathlib's glob takes: the registry's
globs are rewritten for it (globs.hub_patterns) so that it sends every file the copy selects. With
HF_HUB_OFFLINE=1 (or no network) a snapshot already in the cache still resolves, which is also
how the tests exercise this path without a network. The repo's root licence and notice files and
its dataset card come in the same snapshot (download.py records them in data/raw/<name>/.licence/).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.sources.errors import SourceError
from pipeline.sources.globs import hub_patterns
from pipeline.sources.registry import SourceSpec


def offline() -> bool:
    """HF_HUB_OFFLINE is set: the Hub is read from its local cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def fetch_snapshot(spec: SourceSpec, also: tuple[str, ...] = ()) -> tuple[Path, str]:
    """(local snapshot folder, resolved commit) of `spec.location` at `spec.revision`, holding the
    files `spec.files` selects and those the fnmatch patterns `also` name (the repo's licence files
    and card, download.HUB_LICENCE_PATTERNS): one listing of the repo, by the same call, at the same
    commit, with the same token and offline rules as the data."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    token = os.environ.get(spec.token_env) or None
    where = f"dataset {spec.location}@{spec.revision} on the Hugging Face Hub"
    hint = f"or set `local_path:` for {spec.name} in sources.yaml to a folder holding {', '.join(spec.files) or 'its files'}"
    if spec.gated and token is None and not offline():
        raise SourceError(
            f"{spec.name}: {where} is gated and {spec.token_env} is not set; accept its terms on the Hub and "
            f"export {spec.token_env}=<your token>, {hint}"
        )
    from huggingface_hub.utils import logging as hf_logging

    # The hub logs each network retry as a warning; the user gets our one line instead.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        path = snapshot_download(
            spec.location,
            repo_type="dataset",
            revision=spec.revision,
            # fnmatch patterns taking at least what download._select takes (globs.hub_patterns)
            allow_patterns=[*hub_patterns(spec.files), *also] if spec.files else None,
            token=token,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline(),
        )
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
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise SourceError(
            f"{spec.name}: cannot fetch {where} ({type(e).__name__}: {first}); run with network access, {hint}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    snapshot = Path(path)
    return snapshot, snapshot.name
