"""What each download depends on: one small JSON per enabled source, data/registry/<source>.json.

DVC re-runs a stage when a dependency's bytes change. Were every download@<source> to depend on
the whole sources.yaml and data/contrib/, flipping one source's commercial flag or dropping a file
into data/contrib/ would re-run every download (and a changed manifest, every normalize). The
registry stage writes, per source, only what decides its raw bytes and its turn table: kind,
location, pin, files, adapter and options, licence, and for contributed files the sha256 of each
file in data/contrib/. download@<source> depends on its own JSON alone, so a commercial flag is a
re-mix (build onwards: the build reads flags from sources.yaml), never a re-download or a
re-normalize (docs/contracts.md), and a contributed file re-runs only download@contrib.

Files read from this machine are part of the spec too: the sha256 of each file a `local_path:`
or a `kind: package` download copies (a `local_path:` folder's LICENSE/NOTICE files and card, which
it records for NOTICE.md, among them), and for a package, under `recorded`, of its .dist-info licence
files and METADATA, which the download records for NOTICE.md; and, under `licence_text`, of the
licence text committed to this repository that a `licence_text:` names. DVC cannot list those
paths in dvc.yaml (they differ per source and per machine), so the registry stage is
`always_changed`: it runs on every `dvc repro`, and a download re-runs exactly when its JSON's
bytes change, that is when an edited local file, or an upgraded package, changes what it would copy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.sources.download import files_on_disk, package_records
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import REGISTRY_FILE, SourceSpec, check_licence_text, fetch_spec_file

# SourceSpec fields that decide the download or the normalized table; what is left out
# (commercial, commercial_reason, description) only matters from the build on.
FETCH_FIELDS = (
    "kind",
    "location",
    "revision",
    "sha256",
    "files",
    "local_path",
    "gated",
    "token_env",
    "adapter",
    "options",
    "licence",
)


def fetch_spec(spec: SourceSpec, root: Path) -> dict[str, Any]:
    """The JSON-able part of `spec` its download and normalize depend on."""
    out: dict[str, Any] = {"source": spec.name}
    for name in FETCH_FIELDS:
        value = getattr(spec, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    # written only when set: every other source's JSON (and DVC's hash of it) stays as it was
    if spec.archive:
        out["archive"] = True
    # which members go to .licence/ (the archive's sha256 pins their bytes); absent when unset
    if spec.licence_files:
        out["licence_files"] = list(spec.licence_files)
    if spec.licence_text:
        # the committed licence text the download records: editing it must re-run the download
        out["licence_text"] = {"path": spec.licence_text, "sha256": _licence_text_sha256(spec, root)}
    try:
        on_disk = files_on_disk(spec, root)
    except SourceError:
        # missing files: the download fails on its own, with the one-line fix; until they
        # appear this JSON stays the same, and once they do it changes and the download runs
        on_disk = (root, [])
    if on_disk is not None:
        base, files = on_disk
        out["contents"] = [
            {"path": p.relative_to(base).as_posix(), "sha256": atomic.sha256_file(p)} for p in files
        ]
    if spec.kind == "package" and not spec.local_path:
        # what the download records from the .dist-info beside the data: licence texts and the
        # metadata (version, authors, licence fields) NOTICE.md reproduces. Written for package
        # sources only, so that a hub, url or contrib source's JSON stays as it was.
        out["recorded"] = [
            {"path": recorded, "sha256": atomic.sha256_file(path)} for recorded, path in package_records(spec)
        ]
    return out


def _licence_text_sha256(spec: SourceSpec, root: Path) -> str | None:
    """sha256 of the file `licence_text:` names, or None while it is missing or unfit: as for missing
    local files, the download then fails on its own with the one-line fix (check_licence_text), and
    once the file is mended this JSON changes and the download runs."""
    assert spec.licence_text is not None
    try:
        return hashlib.sha256(
            check_licence_text(f"{REGISTRY_FILE}: {spec.name}", spec.licence_text, root)
        ).hexdigest()
    except SourceError:
        return None


def write_fetch_specs(specs: list[SourceSpec], root: Path, out_dir: Path) -> list[Path]:
    """Write one <name>.json per spec into `out_dir` (replaced as a whole, atomically)."""
    with atomic.atomic_dir(out_dir) as tmp:
        for spec in specs:
            atomic.write_json(fetch_spec_file(tmp, spec.name), fetch_spec(spec, root))
    return [fetch_spec_file(out_dir, spec.name) for spec in specs]
