"""`nanochatgpt check`: run contributed files through the real download and normalize code, now.

A contributor's question is "will my file go in, and what will be thrown out?". Without this, the
answer comes from `dvc repro` (every stage after it too) and then reading a quarantine parquet.
Here the named files (default: all of data/contrib/) are copied with their sidecars into a scratch
folder and passed through exactly what download@contrib and normalize@contrib run (same sidecar
checks, format detection, adapters and turn-table rules, params.yaml `normalize`), and each file
gets a short account: rows read, kept, filtered, quarantined by rule with the first examples
(file:line and reason), and whether the commercial variant will take it. A file the pipeline
would refuse (no sidecar, a bad sidecar, ...) gets its one-line error, and every other file is
still checked: a contributor sees all the problems of a folder in one run. Nothing in the project
changes. (It lives outside pipeline/sources, which the download and normalize stages depend on:
editing this command must not re-run them.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.params import load_params, project_root, settings
from pipeline.schema import empty_quarantine
from pipeline.sources.adapters.nanochatgpt import colon_turns
from pipeline.sources.contrib import (
    CONTRIB_DOC_SUFFIXES,
    ContribFile,
    contrib_entries,
    is_contrib_entry,
    refuse_link,
    scan_contrib,
    shown,
)
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import commercial_eligible, licence_bar, needs_attribution
from pipeline.sources.registry import SIDECAR_SUFFIXES, get_source, load_registry
from pipeline.terminal import printable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="*", type=Path, help="corpus files (default: every file in data/contrib/)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if any row is quarantined (for a contributor's CI)"
    )


def _by_folder(files: list[Path]) -> tuple[dict[Path, list[Path]], list[Path]]:
    """(the data files and each one's sidecar(s) beside it (any suffix case), grouped by folder,
    the arguments that name no file). A directory argument stands for its contrib files, as
    data/contrib/ does. Each folder is checked in its own scratch copy: same-named files from two
    folders would overwrite each other in one, and the messages name the folder a file is in."""
    groups: dict[Path, list[Path]] = {}
    missing: list[Path] = []
    for f in files:
        if f.is_dir():
            groups.setdefault(f.resolve(), []).extend(contrib_entries(f))
            continue
        if not f.is_file():
            missing.append(f)
            continue
        # Every file the pipeline pairs with this one by its stem: the sidecar(s) of a data file,
        # the data file of a named sidecar (else the check said "sidecar without a data file" beside
        # it), and another data file of the same stem (the pipeline refuses the pair; the check of
        # one of them alone said it goes in).
        siblings = [
            p for p in sorted(f.parent.iterdir()) if p != f and p.stem == f.stem and is_contrib_entry(p)
        ]
        for p in (f, *siblings):  # named one by one, as in a folder: no link is followed
            refuse_link(p)
        groups.setdefault(f.parent.resolve(), []).extend([f, *(p for p in siblings if p.is_file())])
    # One copy of each path (a file named twice, a sidecar of two data files), in a stable order.
    unique = {folder: sorted({p.resolve(): p for p in paths}.values()) for folder, paths in groups.items()}
    return unique, missing


def check_files(files: list[Path], root: Path) -> tuple[list[dict[str, Any]], Any]:
    """(one summary per contributed file, the quarantine frame) for `files` (files or folders;
    empty: data/contrib/). A summary with an `error` (the one line the pipeline would stop with)
    stands for a file it would refuse, or a name that is no file; the other files are checked all
    the same. A symbolic link is still refused outright (contrib.refuse_link), before any file is
    read, and so is a params.yaml that cannot be read."""
    spec = get_source("contrib", load_registry(root / "sources.yaml"))
    folder = root / spec.location
    if not files:  # data/contrib/ as committed: a link is refused (contrib.contrib_folder says why);
        refuse_link(folder, "folder")  # a folder named on the command line is the user's, link or not
    groups, missing = _by_folder(files) if files else ({folder: contrib_entries(folder)}, [])
    try:
        params = settings(load_params(root / "params.yaml"), "normalize")
    except ValueError as e:  # params.yaml that is not YAML (the message names file and line), a
        # `normalize:` that is no mapping: one line
        raise SourceError(str(e)) from None
    summaries: list[dict[str, Any]] = [{"file": str(f), "error": f"{f}: no such file"} for f in missing]
    quarantines = [empty_quarantine()]
    for where, chosen in groups.items():
        mine, q = _check_folder(spec, where, chosen, params)
        summaries += mine
        quarantines += q
    nonempty = [q for q in quarantines if q.height]
    quarantine = pl.concat(nonempty, how="diagonal_relaxed") if nonempty else quarantines[0]
    return summaries, quarantine


def _by_stem(chosen: list[Path]) -> list[list[Path]]:
    """`chosen` in groups of one stem (a data file with its sidecars, or files the pipeline would
    refuse together: two data files of one stem, a sidecar without its data file), by stem."""
    groups: dict[str, list[Path]] = {}
    for p in chosen:
        groups.setdefault(p.stem, []).append(p)
    return [groups[stem] for stem in sorted(groups)]


def _check_folder(
    spec: Any, folder: Path, chosen: list[Path], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """(summaries, quarantine frames) of `chosen` (files of `folder`); `params`: params.yaml
    `normalize`. Each file the pipeline would refuse gets its error and every other file its
    account, as if each file (with its sidecars) went through alone: a file's rows depend on no
    other file's (each is its own source), so alone it reads as it does among the others.

    Checking each file alone in a scratch copy of its own took 2,000 files ~200 s where the folder
    in one copy takes ~15 s, for one refused file among them. So the folder is copied once, each
    stem is scanned alone (scan_contrib's rules and words: no sidecar, a bad sidecar, ...), and the
    files that pass go through download and normalize together; where those refuse the batch (a
    file from which nothing is read, say), its halves go through again, down to the files refused
    alone (_account_parts)."""
    units = _by_stem(chosen)
    if len(units) < 2:  # one stem: the pipeline's error is the folder's, named by its first data file
        try:
            summaries, q = _check_scratch(spec, folder, chosen, params)
        except SourceError as e:
            return [_refused(folder, chosen, e, each=False)], []
        return summaries, [q]
    accounts: dict[str, list[dict[str, Any]]] = {}
    quarantines: list[Any] = []
    with _scratch(chosen) as inbox:
        passed = []
        for unit in units:
            # the copies scan_contrib would list of the scratch folder (which holds `chosen` alone)
            entries = sorted(inbox / p.name for p in unit if is_contrib_entry(p))
            try:
                passed.append((unit, _scan(spec, folder, inbox, entries)))
            except SourceError as e:
                accounts[unit[0].stem] = [_refused(folder, unit, e)]
        whole = _account_parts(spec, folder, inbox, passed, params, accounts, quarantines)
    summaries = [s for unit in units for s in accounts.get(unit[0].stem, [])]
    if whole is not None and not any("error" in s for s in summaries):
        # the files are refused together, and none alone: the folder's error then
        summaries.append(_refused(folder, chosen, whole, each=False))
    return summaries, quarantines


def _account_parts(
    spec: Any,
    folder: Path,
    inbox: Path,
    parts: list[tuple[list[Path], list[ContribFile]]],
    params: dict[str, Any],
    accounts: dict[str, list[dict[str, Any]]],
    quarantines: list[Any],
) -> SourceError | None:
    """Download and normalize `parts` (each a stem's files and their scan) of the scratch copy
    `inbox` together, adding each stem's summaries to `accounts` and the quarantine to
    `quarantines`; where they are refused together, each half again (a stem refused alone gets
    the error): a few runs for a few refused files among thousands, not one run a file. Returns
    the error of `parts` together (None when they went through)."""
    if not parts:  # every stem refused by its scan: an empty batch, whose halves are empty too
        return None
    scanned = sorted((cf for _, scan in parts for cf in scan), key=lambda cf: cf.path)  # as scanned whole
    try:
        summaries, q = _account(spec, folder, inbox, scanned, params)
    except SourceError as e:
        if len(parts) == 1:
            unit = parts[0][0]
            accounts[unit[0].stem] = [_refused(folder, unit, e)]
        else:
            half = len(parts) // 2
            for side in (parts[:half], parts[half:]):
                _account_parts(spec, folder, inbox, side, params, accounts, quarantines)
        return e
    for s in summaries:
        accounts.setdefault(Path(s["file"]).stem, []).append(s)
    quarantines.append(q)
    return None


def _refused(folder: Path, unit: list[Path], e: SourceError, each: bool = True) -> dict[str, Any]:
    """The summary of files the pipeline refuses: named by the data file (else the sidecar). Two
    data files of one stem are refused together: `also` names the others, so that the closing
    count and list take each refused data file (they named the first only, and a.txt beside a.jsonl
    read as not refused). `each=False`: a folder's own error, named by its first data file only."""
    named = [p for p in unit if p.suffix.lower() not in SIDECAR_SUFFIXES] or unit[:1]
    named = named if each else named[:1]
    paths = [str(Path(shown(folder), p.name)) for p in named]
    return {"file": paths[0], "also": paths[1:], "error": str(e)}


@contextlib.contextmanager
def _scratch(chosen: list[Path]) -> Iterator[Path]:
    """A scratch contrib folder holding a copy of `chosen`, deleted on leaving."""
    with tempfile.TemporaryDirectory(prefix="nanochatgpt-check-") as scratch:
        inbox = Path(scratch) / "contrib"
        inbox.mkdir()
        for p in chosen:
            shutil.copyfile(p, inbox / p.name)
        yield inbox


@contextlib.contextmanager
def _named(folder: Path, inbox: Path) -> Iterator[None]:
    """A SourceError raised inside names the contributor's `folder` (as typed, relative to here),
    not the scratch copy `inbox`."""
    try:
        yield
    except SourceError as e:
        raise SourceError(str(e).replace(str(inbox), shown(folder))) from None


def _scan(spec: Any, folder: Path, inbox: Path, entries: list[Path] | None = None) -> list[ContribFile]:
    """scan_contrib of the scratch copy `inbox` of `folder` (of `entries` only, when given)."""
    with _named(folder, inbox):
        return scan_contrib(inbox, spec.name, entries)


def _check_scratch(
    spec: Any, folder: Path, chosen: list[Path], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], Any]:
    """Copy `chosen` (files of `folder`) to a scratch contrib folder and run download + normalize
    (`params`: params.yaml `normalize`)."""
    with _scratch(chosen) as inbox:
        # One scan (every sidecar parsed, every data file's head read), handed to the download
        # and normalize, which scanned the folder again each (three times more, ~1 ms a file).
        return _account(spec, folder, inbox, _scan(spec, folder, inbox), params)


def _account(
    spec: Any, folder: Path, inbox: Path, scanned: list[ContribFile], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], Any]:
    """(a summary of each file of `scanned`, the quarantine frame): `scanned` (files of the scratch
    copy `inbox` of `folder`, scan_contrib's) through download + normalize (`params`: params.yaml
    `normalize`). The download's copy goes beside `inbox`, replacing any earlier one."""
    from pipeline.sources.download import download
    from pipeline.sources.normalize import normalize_source

    here = dataclasses.replace(spec, location=str(inbox), local_path=None)
    with _named(folder, inbox):
        # Nothing reads the download's copy once the check returns (the scratch folder is deleted)
        # or after a crash (no run looks for a temporary folder): fsyncing it, ~3 ms a file,
        # made durable what is thrown away either way.
        raw = download(here, root=inbox.parent, scanned=scanned, durable=False)
        result = normalize_source(here, raw, params, _copied(scanned, raw))
    by_source = result.report.get("by_source", {})
    q = result.quarantine
    # Each file's rows, split once: a filter per file read the whole quarantine once a file.
    quarantined = {key[0]: rows for key, rows in q.partition_by("source", as_dict=True).items()}
    summaries = []
    for cf in sorted(scanned, key=lambda cf: cf.source):
        source = cf.source
        counts = by_source.get(source, {})
        mine = quarantined.get(source, q.clear())
        summaries.append(
            {
                "file": str(Path(shown(folder)) / cf.path.name),
                "format": cf.format,
                "licence": cf.licence,
                "commercial": commercial_eligible(cf.commercial, cf.licence),
                "commercial_why_not": _why_not_commercial(cf.commercial, cf.licence),
                # as the report records it, whence the dataset card and NOTICE.md describe the file
                "description": counts.get("description"),
                "attribution": counts.get("attribution"),
                "rows_read": counts.get("rows_read", 0),
                "rows_kept": counts.get("rows_kept", 0),
                "conversations": counts.get("conversations_kept", 0),
                "rows_filtered": sum((counts.get("rows_filtered") or {}).values()),
                "rows_quarantined": counts.get("rows_quarantined", 0),
                "warnings": _style_warnings(cf) + _attribution_warnings(cf),
                "by_check": dict(mine.group_by("check").len().sort("check").iter_rows())
                if mine.height
                else {},
                # the first row each rule caught, in file order: every rule gets an example
                "examples": mine.select("origin", "check", "reason")
                .with_row_index("_at")
                .group_by("check")
                .first()
                .sort("_at")
                .select("origin", "check", "reason")
                .rows(),
            }
        )
    return summaries, q


def _copied(scanned: list[ContribFile], folder: Path) -> list[ContribFile]:
    """`scanned` (ContribFiles) as the scan of `folder`, the download's copy of their folder: the
    same names and bytes (the download copies each data file and sidecar as it is), so the same
    sidecars and formats; only the paths move."""
    return [
        dataclasses.replace(cf, path=folder / cf.path.name, sidecar=folder / cf.sidecar.name)
        for cf in scanned
    ]


def _style_warnings(cf: Any) -> list[str]:
    """What in a file reads, but not as its writer meant (the rows are kept as they are): turns
    of a nanochatgpt file that start with a colon (`<bot>: reply`), which the model would learn."""
    if cf.format != "nanochatgpt":
        return []
    colons = colon_turns(cf.path, cf.path.name)
    if not colons:
        return []
    return [
        f"{_count(len(colons), 'turn')} {'starts' if len(colons) == 1 else 'start'} with ':' right after "
        f"the marker (first: {colons[0]}); "
        "the colon is read as the turn's text, so the model learns to begin its replies with it: "
        "remove it (`<bot> reply`, not `<bot>: reply`)"
    ]


def _attribution_warnings(cf: Any) -> list[str]:
    """A file under an attribution licence (CC-BY-*, ODC-By, ODbL: licences.needs_attribution)
    whose sidecar names no one to credit: the card shows only the start of a description, and
    passing the data on without the credit the licence asks for breaks it."""
    if cf.attribution or not needs_attribution(cf.licence):
        return []
    return [
        f"the licence {printable(cf.licence.strip())} asks for a credit wherever the data goes, and the "
        "sidecar has no `attribution:`: add who to credit and where the data comes from "
        '(`attribution: "© 2025 Jane Doe, https://example.org/chats"`), which NOTICE.md and the '
        "dataset card give in full"
    ]


def _why_not_commercial(flag: bool, licence: str) -> str | None:
    """Why the commercial variant leaves a file out (None when it takes it), by licences.licence_bar,
    the build's rule. (scan_contrib refuses a flagged sidecar under a licence that forbids
    commercial use before this is asked; the wording is for any caller that has not.)"""
    if not flag:
        return "its sidecar says commercial: false"
    bar = licence_bar(licence)
    if bar is None:
        return None
    if bar.unknown:
        return "licence unknown: name its SPDX id in the sidecar"
    return f"{bar.words}: set commercial: false in the sidecar"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def format_summary(s: dict[str, Any]) -> str:
    # A file's name is the contributor's (or an archive's) and is quoted by origins, reasons and
    # errors: ESC or a line break in it must not reach the terminal, so every such field is shown
    # printable (one line, inert), as `quarantine` shows origins and reasons.
    if "error" in s:  # a file the pipeline would refuse: its one line
        return f"check: {printable(s['error'])}"
    said = s.get("description")
    lines = [
        f"{printable(s['file'])} ({s['format']}, {printable(s['licence'])}; commercial variant: "
        f"{'yes' if s['commercial'] else 'no, ' + (s.get('commercial_why_not') or 'not eligible')})",
        # what the dataset card and NOTICE.md will describe the file by, on one line, inert here
        f"  described as: {printable(' '.join(said.split()))}"
        if said
        else "  no description: the dataset card will name the file only (add `description:` to its sidecar)",
        *([f"  credited as: {printable(s['attribution'])}"] if s.get("attribution") else []),
        f"  rows read {s['rows_read']}: {s['rows_kept']} kept ({_count(s['conversations'], 'conversation')}), "
        f"{s['rows_filtered']} filtered, {s['rows_quarantined']} quarantined",
    ]
    if s["by_check"]:
        lines.append("  quarantined by rule: " + ", ".join(f"{k} {v}" for k, v in s["by_check"].items()))
        lines += [
            f"    {printable(origin)}  {check}: {printable(reason)}"
            for origin, check, reason in s["examples"]
        ]
    lines += [f"  warning: {w}" for w in s.get("warnings", [])]
    return "\n".join(lines)


def not_read_by_the_pipeline(files: list[Path], contrib: Path) -> list[str]:
    """Files inside data/contrib/ that download@contrib does not copy and that `check` would check:
    a file named on the command line (in a subfolder, hidden, a note), or the corpus files of a
    subfolder named; checking them alone would say they go in. One line for each. (data/contrib/
    itself named: its README, .gitkeep and notes are skipped by both, nothing to say.)"""
    taken = {p.resolve() for p in contrib_entries(contrib)}
    home = contrib.resolve()
    lines = []
    for f in files:
        named = contrib_entries(f) if f.is_dir() else [f]
        for p in named:
            if p.is_file() and p.resolve().is_relative_to(home) and p.resolve() not in taken:
                lines.append(
                    f"{shown(p)}: `dvc repro` will not read it: data/contrib/ takes the files at its top "
                    f"level only, not those in a subfolder, hidden ones or notes "
                    f"({', '.join(CONTRIB_DOC_SUFFIXES)}, README, LICENSE)"
                )
    return lines


def subfolders_not_read(contrib: Path) -> list[str]:
    """A line for each subfolder of data/contrib/ that holds files: `dvc repro` reads none of them,
    and `check` with no argument passed over them in silence, so a corpus put in its own folder
    looked checked. A note only: CONTRIBUTING.md lets subfolders sit there, skipped."""
    if not contrib.is_dir() or contrib.is_symlink():  # a linked folder is refused by check_files
        return []
    lines = []
    for d in sorted(contrib.iterdir()):
        if d.name.startswith(".") or d.is_symlink() or not d.is_dir():
            continue
        n = sum(1 for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        if n:
            lines.append(
                f"note: {shown(d)}/ holds {_count(n, 'file')} that `dvc repro` will not read: data/contrib/ "
                "takes the files at its top level only; move a corpus file and its sidecar up to add it"
            )
    return lines


def run(args: argparse.Namespace) -> int:
    root = project_root()
    try:
        spec = get_source("contrib", load_registry(root / "sources.yaml"))
        skipped = not_read_by_the_pipeline(list(args.files), root / spec.location)
        summaries, _ = check_files(list(args.files), root)
    except SourceError as e:
        print(f"check: {printable(str(e))}", file=sys.stderr)
        return 1
    if not args.files:  # (a folder named on the command line is the user's choice)
        for line in subfolders_not_read(root / spec.location):
            print(f"check: {printable(line)}", file=sys.stderr)
    for line in skipped:
        print(f"check: {printable(line)}", file=sys.stderr)
    if not summaries:
        if not skipped:
            print(
                "check: no contributed files (add one to data/contrib/ with a sidecar, see CONTRIBUTING.md)"
            )
        return 1 if skipped else 0
    for s in summaries:  # in file order; a refused file's line goes to stderr, as before
        print(format_summary(s), file=sys.stderr if "error" in s else sys.stdout)
    refused = [s for s in summaries if "error" in s]
    checked = [s for s in summaries if "error" not in s]
    quarantined = sum(s["rows_quarantined"] for s in checked)
    # A file that keeps nothing is lost to the dataset whatever --strict says: a contributor (or
    # their CI) must not read exit 0 as "it goes in".
    empty = [s["file"] for s in checked if s["rows_kept"] == 0]
    for name in empty:
        print(
            f"check: {printable(name)}: no row kept, so nothing from it reaches the dataset", file=sys.stderr
        )
    files = sum(1 + len(s.get("also", [])) for s in summaries)
    if refused and files > 1:  # the lines above may have scrolled by
        names = [name for s in refused for name in (s["file"], *s.get("also", []))]
        print(
            f"check: {len(names)} of {_count(files, 'file')} refused: " + ", ".join(map(printable, names)),
            file=sys.stderr,
        )
    return 1 if skipped or refused or empty or (args.strict and quarantined) else 0
