"""Fetch one source into data/raw/<name>/: the exact upstream bytes plus manifest.json.

The folder is written through pipeline.atomic.atomic_dir, so a failed download (no network,
missing token, missing files) leaves the previous folder, or none, never half of one. Every
failure a user can fix is a SourceError with one line naming the source, what is missing and
the `local_path:` override.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from pipeline.atomic import atomic_dir, json_bytes, remove_stale, sha256_file, write_json
from pipeline.params import project_root
from pipeline.sources import globs
from pipeline.sources.contrib import (
    LINK_RULE,
    ContribFile,
    contrib_entries,
    contrib_folder,
    scan_contrib,
    shown,
    shown_link,
)
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import (
    FETCH_SPECS,
    REGISTRY_FILE,
    SourceSpec,
    brief,
    check_licence_text,
    fetch_spec_file,
    local_target,
)

MANIFEST = "manifest.json"
# Where a download keeps the licence and notice files its upstream ships (a package's .dist-info
# LICENSE, say), listed in the manifest's `licence_files`. Hidden on purpose: adapters read every
# non-hidden file of the folder with their suffixes (readers.data_files; contrib reads only
# non-hidden top-level files), so a LICENSE.txt here can never become a conversation.
LICENCE_DIR = ".licence"
LICENCE_NAMES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")
# A licence or notice file is one of those names alone or followed by '.', '-' or '_' (LICENSE.md,
# LICENSE-MIT, notice_2020.txt), in any letter case, and not a data file: a bare prefix took
# authorship.csv, and NOTICE_2020.jsonl is data, which a notice would reproduce as licence text.
_LICENCE_NAME_RE = re.compile(rf"^(?:{'|'.join(LICENCE_NAMES)})(?:[._-].*)?$", re.IGNORECASE)
_DATA_SUFFIXES = (
    ".csv",
    ".tsv",
    ".json",
    ".jsonl",
    ".parquet",
    ".arrow",
    ".gz",
    ".bz2",
    ".xz",
    ".zst",
    ".zip",
    ".tar",
)
# Where a `licence_text:` file (the repository's copy of a source's licence) is recorded, below
# LICENCE_DIR: apart from the files the source itself ships, which keep their own paths there.
REPOSITORY_COPY = "repository"
# A Hub dataset's card: where its licence (front matter `license:`) and citation are stated. The
# download records it whole (pipeline/notices.py reproduces only those parts).
CARD = "README.md"


def _any_case(text: str) -> str:
    """An fnmatch pattern for `text` in any letter case (huggingface_hub matches case-sensitively)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)


# What a hub download also asks huggingface_hub for (allow_patterns, in the same call as the data):
# the repo's licence and notice files and its card. fnmatch's `*` crosses '/', so a LICENSES/ folder
# may arrive in the snapshot too; only files at the repo's root are recorded (`_record_licence`).
HUB_LICENCE_PATTERNS = (
    *(f"{_any_case(n)}{tail}" for n in LICENCE_NAMES for tail in ("", ".*", "-*", "_*")),
    CARD,
)


def raw_dir(name: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "data" / "raw" / name


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)  # follows symlinks (hub cache snapshots are links to blobs)


def _homes(folder: Path) -> list[Path]:
    """Where the files under `folder` may really be: the folder itself and, when it is (inside) a
    huggingface_hub cache snapshot (<repo>/snapshots/<commit>/), whose files are links to
    <repo>/blobs/<hash>, that repo's blobs folder."""
    real = folder.resolve()
    for up in (real, *real.parents):
        if up.parent.name == "snapshots" and (up.parent.parent / "blobs").is_dir():
            return [real, up.parent.parent / "blobs"]
    return [real]


def _refuse_outside_links(folder: Path, files: list[Path]) -> None:
    """Refuse a file under `folder` that is, or lies below, a symbolic link resolving outside it:
    a link planted in a dataset folder could otherwise copy any file of this machine
    (/proc/self/environ, ~/.ssh/...) into data/raw and on into the quarantine. Links that stay
    inside the folder are fine."""
    homes = _homes(folder)
    for f in files:
        if not any(f.resolve().is_relative_to(home) for home in homes):
            raise SourceError(
                f"{shown_link(f)}: links to {brief(str(f.resolve()), 150)}, outside {shown(folder)}; {LINK_RULE}"
            )


def _select(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Files under `folder` matching any glob (all non-hidden files when there are none); one that
    is a link to a file outside the folder is refused (`_refuse_outside_links`)."""
    found: set[Path] = set()
    for pattern in patterns or globs.EVERYTHING:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    files = sorted(p for p in found if not globs.hidden(p.relative_to(folder).as_posix()))
    _refuse_outside_links(folder, files)
    return files


def _select_each(folder: Path, patterns: tuple[str, ...], where: str, fix: str) -> list[Path]:
    """`_select(folder, patterns)`, refused (SourceError: `where` holds no files matching ..., `fix`)
    when it is empty or when one of the globs selects nothing: a misspelt glob among several
    (`data/valdiation-*.parquet` beside `data/train-*.parquet`) would drop its files without a
    word, and a glob matching nothing is never what `files:` means (a package source's are checked
    the same way, `_package_files`)."""
    files = _select(folder, patterns)
    unmatched = globs.unmatched((f.relative_to(folder).as_posix() for f in files), patterns)
    if not files or unmatched:
        raise SourceError(f"{where} holds no files matching {', '.join(unmatched or patterns) or '*'}; {fix}")
    return files


def _is_licence_name(name: str) -> bool:
    """LICENSE, LICENCE, COPYING, NOTICE, AUTHORS, alone or with a '.', '-' or '_' tail, in any
    letter case (LICENSE.md, notice.txt, LICENSE-MIT), and not a data file (_LICENCE_NAME_RE)."""
    return bool(_LICENCE_NAME_RE.match(name)) and not name.lower().endswith(_DATA_SUFFIXES)


def _top_licence_files(folder: Path, card: bool) -> list[Path]:
    """The licence and notice files at the top of `folder` (a hub snapshot, a `local_path:` folder),
    and its dataset card when `card` and there is one, sorted; a link leading outside is refused."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and (_is_licence_name(p.name) or (card and p.name == CARD))
    )
    _refuse_outside_links(folder, files)
    return files


def _record_licence(base: Path, files: list[Path], out: Path) -> dict[str, Any]:
    """Copy `files` (under `base`) into out/.licence/ with their paths below `base`; what the manifest
    says of them: `licence_files` (texts the notice reproduces whole) and `card` (a top-level
    README.md, or None: the notice reproduces only its terms)."""
    kept, card = [], None
    for f in files:
        rel = (PurePosixPath(LICENCE_DIR) / f.relative_to(base).as_posix()).as_posix()
        _copy(f, out / rel)
        if f == base / CARD:
            card = rel
        else:
            kept.append(rel)
    return {"licence_files": kept, "card": card}


def _archive_licence(spec: SourceSpec, archive: Path, out: Path, origin: str) -> dict[str, Any]:
    """Extract the members `licence_files:` selects into out/.licence/ (the same safe extraction
    as the data, archive.extract); what the manifest lists of them."""
    if not spec.licence_files:
        return {"licence_files": []}
    from pipeline.sources.archive import extract

    dest = out / LICENCE_DIR
    extract(archive, spec.licence_files, dest, name=spec.name, origin=origin, key="licence_files")
    found = sorted(p.relative_to(out).as_posix() for p in dest.rglob("*") if p.is_file())
    return {"licence_files": found}


def _local_licence_files(spec: SourceSpec, root: Path) -> list[Path]:
    """What a `local_path:` folder holds of its terms, recorded like a download's: the licence and
    notice files at its top, a hub copy's card (README.md), and in an unpacked archive the files
    `licence_files:` selects. A `local_path:` naming one file has no such neighbours: none."""
    path = _local_path(spec, root)
    if not path.is_dir():
        return []
    found = set(_top_licence_files(path, card=spec.kind == "hf_dataset"))
    if spec.licence_files:
        chosen = _select(path, spec.licence_files)
        if not chosen:
            raise SourceError(
                f"{spec.name}: local_path {path} holds no files matching {', '.join(spec.licence_files)}; "
                f"fix `licence_files:` for {spec.name} in sources.yaml"
            )
        found.update(chosen)
    return sorted(found)


def _local_files(spec: SourceSpec, root: Path) -> tuple[Path, list[Path]]:
    """(base, files) that a `local_path:` download copies, each to its path relative to base."""
    path = _local_path(spec, root)
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        fix = f"fix `local_path:` or `files:` for {spec.name} in sources.yaml"
        return path, _select_each(path, spec.files, f"{spec.name}: local_path {path}", fix)
    raise SourceError(
        f"{spec.name}: local_path {path} does not exist; fix `local_path:` for {spec.name} in sources.yaml"
    )


def _from_local(spec: SourceSpec, root: Path, out: Path) -> dict[str, Any]:
    local = _local_path(spec, root)
    path = str(local)
    fetched: dict[str, Any] = {"location": spec.local_path, "revision": None, "local_path": spec.local_path}
    base, files = _local_files(spec, root)
    one_file = files == [local]  # `local_path:` names the file itself, not a folder
    if spec.kind == "url" and spec.sha256 and one_file:
        # your copy of the pinned file (an archive, say): it must be that file, as a download would be
        got = sha256_file(files[0])
        if got != spec.sha256:
            pinned = PurePosixPath(urlparse(spec.location).path).name or spec.location
            where = f"`local_path:` at {pinned}"
            if spec.archive:  # a file unpacked from the archive is not it, but its folder serves
                where += f" or at the folder it was unpacked in (where {', '.join(spec.files) or '*'} match)"
            raise SourceError(
                f"{spec.name}: local_path {path} has sha256 {got}, not the pinned {spec.sha256} of "
                f"{pinned}; point {where}, or change `sha256:` for {spec.name} in sources.yaml"
            )
    if spec.archive and one_file:  # the archive itself, not its unpacked folder
        from pipeline.sources.archive import extract

        members = extract(files[0], spec.files, out, name=spec.name, origin=path)
        return {**fetched, "archive": members, **_archive_licence(spec, files[0], out, path)}
    for f in files:
        _copy(f, out / f.relative_to(base))
    return {**fetched, **_record_licence(local, _local_licence_files(spec, root), out)}


def _local_path(spec: SourceSpec, root: Path) -> Path:
    path = local_target(spec, root)
    assert path is not None, "called for a spec with local_path only"
    return path


def _distribution(module: str) -> tuple[str, importlib.metadata.Distribution] | None:
    """(name, distribution) of the installed distribution that provides the import package
    `module` (chitchat_dataset is the distribution chitchat-dataset), or None."""
    for name in _packages_distributions(tuple(sys.path)).get(module, ()):
        try:
            return name, importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@functools.lru_cache(maxsize=8)
def _packages_distributions(path: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """importlib.metadata.packages_distributions() for this `sys.path`, read once: it parses every
    installed distribution's RECORD (~0.3 s in this venv), and a package download asked for it three
    times, the registry stage once per package source. Keyed by the path, so that a folder put on
    sys.path later (a test's site folder) is seen."""
    return {module: tuple(names) for module, names in importlib.metadata.packages_distributions().items()}


def _package_version(module: str) -> str | None:
    found = _distribution(module)
    return None if found is None else f"{found[0]}=={found[1].version}"


def _is_licence_file(rel: PurePosixPath) -> bool:
    """A licence or notice file of a .dist-info folder (rel is relative to it): LICENSE*, LICENCE*,
    COPYING, NOTICE, AUTHORS (as _is_licence_name takes them), or anything under licenses/ (where
    PEP 639 puts them)."""
    return rel.parts[0] == "licenses" or _is_licence_name(rel.name)


def _dist_info_files(dist: importlib.metadata.Distribution) -> list[tuple[PurePosixPath, Path]]:
    """(path relative to the .dist-info folder, installed file) of each file of `dist`'s .dist-info
    that is there, sorted by its path in the distribution's RECORD."""
    found = []
    for f in sorted(dist.files or [], key=str):
        parts = PurePosixPath(str(f)).parts
        if len(parts) < 2 or not parts[0].endswith(".dist-info"):
            continue
        path = Path(dist.locate_file(f))
        if path.is_file():
            found.append((PurePosixPath(*parts[1:]), path))
    return found


def package_records(spec: SourceSpec) -> list[tuple[str, Path]]:
    """What a `kind: package` download records besides the package's data: (recorded path, installed
    file) of each .dist-info licence file it copies into .licence/ (`_package_licence`), and of the
    METADATA its `upstream` and `revision` are read from (recorded as "METADATA": not copied). []
    when the package has no installed distribution. The registry stage hashes these, so that an
    upgrade or an edit that changes only them still re-runs the download (NOTICE.md reads them)."""
    found = _distribution(spec.location)
    if found is None:
        return []
    records = []
    for rel, path in _dist_info_files(found[1]):
        if _is_licence_file(rel):
            records.append(((PurePosixPath(LICENCE_DIR) / rel).as_posix(), path))
        elif rel == PurePosixPath("METADATA"):
            records.append(("METADATA", path))
    return records


def _package_licence(spec: SourceSpec, out: Path) -> dict[str, Any]:
    """Copy the licence files the package's distribution ships (in its .dist-info) into
    out/.licence/ and return what its metadata says about authorship and terms: the build writes
    the variant's NOTICE.md from these recorded bytes, never from site-packages."""
    found = _distribution(spec.location)
    if found is None:
        return {"upstream": None, "licence_files": []}
    dist = found[1]
    meta = dist.metadata
    kept: list[str] = []
    for recorded, path in package_records(spec):
        if recorded != "METADATA":  # read below, not copied
            _copy(path, out / recorded)
            kept.append(recorded)
    upstream = {
        "distribution": meta["Name"],
        "version": dist.version,
        "author": meta.get("Author"),
        "author_email": meta.get("Author-email"),
        "home_page": meta.get("Home-page"),
        "project_urls": meta.get_all("Project-URL") or [],
        "license": meta.get("License"),  # free text in older metadata
        "license_expression": meta.get("License-Expression"),
        "license_classifiers": [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")],
    }
    return {"upstream": upstream, "licence_files": kept}


def _package_files(spec: SourceSpec) -> tuple[Path, list[Path]]:
    """(package folder, files) that a `kind: package` download copies."""
    hint = f"or set `local_path:` for {spec.name} in sources.yaml to a folder holding {', '.join(spec.files)}"
    try:
        found = importlib.util.find_spec(spec.location)  # locates the package without importing it
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise SourceError(
            f"{spec.name}: Python package {spec.location} is not installed (pip install it), {hint}"
        )
    package_dir = Path(next(iter(found.submodule_search_locations)))
    for pattern in spec.files:
        if not any(p.is_file() for p in package_dir.glob(pattern)):
            raise SourceError(
                f"{spec.name}: package {spec.location} ({package_dir}) has no file {pattern}, {hint}"
            )
    return package_dir, _select(package_dir, spec.files)


def files_on_disk(spec: SourceSpec, root: Path) -> tuple[Path, list[Path]] | None:
    """(base, files) the download of `spec` reads from this machine: a contrib folder's entries
    (every corpus file and sidecar, a broken one too, so that mending it re-runs the download), a
    `local_path:`, an installed package; None for the other kinds (a hub commit or a URL's sha256
    pins their bytes). Raises SourceError when the files are missing, or one is a link the download
    would refuse (contrib.refuse_link, `_refuse_outside_links`): the registry stage hashes nothing
    that the download would not copy."""
    if spec.kind == "contrib":
        folder = contrib_folder(spec, root)
        return folder, contrib_entries(folder)
    if spec.local_path:
        base, files = _local_files(spec, root)
        # the licence files it records too: an edited LICENSE must re-run the download
        return base, files + [f for f in _local_licence_files(spec, root) if f not in files]
    if spec.kind == "package":
        return _package_files(spec)
    return None


def _from_package(spec: SourceSpec, root: Path, out: Path) -> dict[str, Any]:
    package_dir, files = _package_files(spec)
    for f in files:
        _copy(f, out / f.relative_to(package_dir))
    return {
        "location": spec.location,
        "revision": _package_version(spec.location),
        **_package_licence(spec, out),
    }


def _from_contrib(
    spec: SourceSpec, root: Path, out: Path, scanned: list[ContribFile] | None = None
) -> dict[str, Any]:
    """Contributed files and their sidecars, from data/contrib/ or the folder `local_path:` names.
    `scanned`: the caller's scan_contrib of that folder, which is then not read again."""
    folder = contrib_folder(spec, root)
    if spec.local_path and not folder.is_dir():
        raise SourceError(
            f"{spec.name}: local_path {folder} is not a folder; fix `local_path:` for {spec.name} in sources.yaml"
        )
    # refuses a data file without a valid sidecar
    for cf in scan_contrib(folder, spec.name) if scanned is None else scanned:
        _copy(cf.path, out / cf.path.name)
        _copy(cf.sidecar, out / cf.sidecar.name)
    fetched: dict[str, Any] = {"location": spec.location, "revision": None}
    as_written = {"location": spec.local_path, "local_path": spec.local_path}
    return fetched if not spec.local_path else {**fetched, **as_written}


def _from_hub(spec: SourceSpec, root: Path, out: Path) -> dict[str, Any]:
    from pipeline.sources.hub import fetch_snapshot

    snapshot, commit, complete = fetch_snapshot(spec, HUB_LICENCE_PATTERNS)
    where = f"{spec.name}: {spec.location}@{spec.revision}"
    fix = f"fix `files:` or set `local_path:` for {spec.name} in sources.yaml"
    for f in _select_each(snapshot, spec.files, where, fix):
        _copy(f, out / f.relative_to(snapshot))
    recorded = _record_licence(snapshot, _top_licence_files(snapshot, card=True), out)
    # Read from the cache alone (offline, or the Hub out of reach), the snapshot holds only what was
    # fetched into it before, perhaps by a download that asked for no licence files: those it holds
    # are recorded, and the absence of the others says nothing of the repository.
    read = {} if complete else {"read_offline": True}
    return {"location": spec.location, "revision": commit, **recorded, **read}


def _from_url(spec: SourceSpec, root: Path, out: Path) -> dict[str, Any]:
    from pipeline.sources.http import cached_url, fetch_url

    if not spec.sha256:
        raise SourceError(
            f"{spec.name}: url source has no pinned `sha256:`; add it to sources.yaml, "
            f"or set `local_path:` for {spec.name} to the file you already have"
        )
    if spec.archive:
        from pipeline.sources.archive import extract

        kept = cached_url(spec.location, spec.sha256, name=spec.name)
        members = extract(kept, spec.files, out, name=spec.name, origin=spec.location)
        licence = _archive_licence(spec, kept, out, spec.location)
        return {"location": spec.location, "revision": spec.sha256, "archive": members, **licence}
    filename = spec.files[0] if spec.files else Path(urlparse(spec.location).path).name or "download"
    dest = out / filename
    # parse_entry refuses absolute paths and '..' parts in `files:`; this holds whatever built the spec
    if not dest.resolve().is_relative_to(out.resolve()) or dest.resolve() == out.resolve():
        raise SourceError(
            f"{spec.name}: file name {brief(filename)} would be written outside data/raw/{spec.name}; "
            f"name a file inside it in `files:` for {spec.name} in sources.yaml"
        )
    fetch_url(spec.location, spec.sha256, dest, name=spec.name)
    return {"location": spec.location, "revision": spec.sha256}


def _repository_licence(spec: SourceSpec, root: Path, out: Path) -> dict[str, Any]:
    """Copy the file `licence_text:` names (committed to this repository, for a source whose own
    distribution carries no licence text) into out/.licence/repository/; what the manifest says of
    it: `licence_text`, {"path": recorded path, "from": the path sources.yaml gives}. {} when unset.
    Recorded like the source's own licence files, so that the build reads it from data/raw alone."""
    if not spec.licence_text:
        return {}
    data = check_licence_text(f"{REGISTRY_FILE}: {spec.name}", spec.licence_text, root)
    _check_registered_hash(spec, root, hashlib.sha256(data).hexdigest())
    rel = (PurePosixPath(LICENCE_DIR) / REPOSITORY_COPY / PurePosixPath(spec.licence_text).name).as_posix()
    if (out / rel).exists():  # an archive member or a hub file of that path: never overwrite upstream's
        raise SourceError(
            f"{spec.name}: the download already holds {rel}, where the `licence_text:` copy is recorded; "
            f"rename the file `licence_text:` names for {spec.name} in sources.yaml"
        )
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_bytes(data)  # the bytes checked, not a second read of a file that may change
    return {"licence_text": {"path": rel, "from": spec.licence_text}}


def _check_registered_hash(spec: SourceSpec, root: Path, got: str) -> None:
    """Refuse a `licence_text:` file whose bytes are not those the registry stage hashed into
    data/registry/<name>.json (fetchspec), the file DVC re-runs this download by: a copy edited
    between the two stages would be recorded under the spec of the text before, and the next repro,
    seeing that spec unchanged, would never re-run the download to record the edit. A download run
    without that file (by hand, or by a test) has nothing to compare with."""
    rel = fetch_spec_file(Path(FETCH_SPECS), spec.name).as_posix()
    try:
        registered = json.loads((root / rel).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(
            f"{spec.name}: {rel} cannot be read ({e}); run `dvc repro` (its registry stage rewrites it)"
        ) from None
    entry = registered.get("licence_text") if isinstance(registered, dict) else None
    recorded = entry.get("sha256") if isinstance(entry, dict) else None
    if recorded != got:
        raise SourceError(
            f"{spec.name}: `licence_text:` {spec.licence_text} has sha256 {got}, but the registry stage "
            f"recorded {recorded or 'none'} in {rel} (edited during the repro?); "
            "run `dvc repro` again"
        )


FETCHERS = {"package": _from_package, "contrib": _from_contrib, "hf_dataset": _from_hub, "url": _from_url}


def manifest(spec: SourceSpec, folder: Path, fetched: dict[str, Any]) -> dict[str, Any]:
    """What was fetched, from where, under which licence; sha256 + size of every file (no timestamps,
    so that an unchanged source gives a byte-identical folder and DVC re-runs nothing). A
    `local_path:` is recorded as sources.yaml writes it, not resolved: a relative one resolved would
    put the checkout's own folder (/home/<user>/...) into the manifest, and from it into every
    NOTICE.md, and make two checkouts of one commit build different bytes."""
    files = [
        {"path": p.relative_to(folder).as_posix(), "sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p != folder / MANIFEST
    ]
    return {
        "source": spec.name,
        "kind": spec.kind,
        "adapter": spec.adapter,
        "licence": spec.licence,  # provenance; the commercial flag is the build's business (docs/contracts.md)
        # how the adapter reads the files: normalize's only dep on sources.yaml is this folder, so an
        # edited option must change it (else `dvc repro` keeps the table the old options made)
        "options": spec.options,
        **fetched,
        "files": files,
    }


_COMMIT = re.compile(r"[0-9a-f]{40}")  # a Hub (git) commit sha


def unpinned_notice(spec: SourceSpec, folder: Path) -> str | None:
    """For a Hub download whose `revision:` names a branch or tag (`main`: it moves, so the next
    clone's `dvc repro` may download other files), the line naming the commit this one is and how
    to pin it; None for a pinned or any other source. Read from the download's manifest.json."""
    if spec.kind != "hf_dataset" or spec.local_path:  # a local folder's manifest names no commit
        return None
    try:
        commit = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("revision")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit) or commit == spec.revision:
        return None
    return (
        f"{spec.name}: `revision: {spec.revision}` is a branch or tag, which moves: this download is "
        f"commit {commit}; for the same files in every clone, pin it in sources.yaml "
        f"(`revision: {commit}` for {spec.name})"
    )


def download(
    spec: SourceSpec,
    root: Path | None = None,
    *,
    scanned: list[ContribFile] | None = None,
    durable: bool = True,
) -> Path:
    """Fetch `spec` into data/raw/<name>/ (atomically) and return that folder. For a contrib
    source, `scanned` is the caller's scan_contrib of its folder (not scanned again); `durable=False`
    (a throwaway `root`: atomic_dir says why) writes without fsyncs."""
    root = root or project_root()
    target = raw_dir(spec.name, root)
    # a contrib folder keeps its own rules (sidecars, no documentation) wherever it is
    fetch = _from_local if spec.local_path and spec.kind != "contrib" else FETCHERS[spec.kind]
    if scanned is not None:
        if spec.kind != "contrib":
            raise ValueError(f"{spec.name}: a contrib scan passed for a {spec.kind} source")
        fetch = functools.partial(_from_contrib, scanned=scanned)
    remove_stale(target)  # a killed download's partial copy (a hub snapshot can be gigabytes)
    with atomic_dir(target, durable=durable) as tmp:
        fetched = fetch(spec, root, tmp)
        fetched.update(_repository_licence(spec, root, tmp))
        if (tmp / MANIFEST).exists():  # an upstream file of that name would be silently replaced
            raise SourceError(
                f"{spec.name}: the download holds a top-level {MANIFEST}, the name of the pipeline's own "
                f"record of it; narrow `files:` for {spec.name} in sources.yaml to leave it out"
            )
        record = manifest(spec, tmp, fetched)
        if durable:
            write_json(tmp / MANIFEST, record)
        else:  # the same bytes, unsynced: atomic_dir publishes the folder whole in any case
            (tmp / MANIFEST).write_bytes(json_bytes(record))
    return target
