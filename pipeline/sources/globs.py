"""`files:` globs, matched on path names rather than on a folder.

A source's `files:` globs are matched by pathlib's `Path.glob` once its files are on disk
(download._select). Two places only have names: a Hugging Face repo, whose files
huggingface_hub selects with `fnmatch` before downloading, and an archive's members. The two
rules differ: in pathlib `*` stays inside one path part and `**/` also matches no folder at all, so
`**/*.csv` takes a `train.csv` at the top; in fnmatch `*` also crosses `/` and `**/*.csv` needs at
least one `/`, so the Hub never sends a top-level `train.csv`. Here:

* `matches(path, pattern)`: pathlib's rule (Python 3.11 `Path.glob`) on a file's relative path;
* `select(paths, patterns)`: what download._select would pick from a folder holding `paths`;
* `hub_patterns(patterns)`: fnmatch patterns for huggingface_hub's `allow_patterns` that take every
  file `select` takes (a few more at most, where fnmatch's `*` crosses a `/`; download._select then
  leaves those out), never fewer.

Names match case-sensitively, as pathlib's do on POSIX (and as `files:` is documented): a source is
pinned (a Hub revision, an archive's checksum), so its file names cannot change under its globs. A
data file's suffix in another letter case (X.JSONL) is read by the adapters (readers.has_suffix).
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import PurePosixPath

RECURSIVE = "**"
EVERYTHING = ("**/*",)  # what no `files:` at all means


def _parts(pattern: str) -> tuple[str, ...]:
    """The pattern's path parts as pathlib parses them ('.' and empty parts dropped), with a trailing
    '' when it ends in '/' (pathlib then matches folders only, so no file)."""
    parts = tuple(p for p in PurePosixPath(pattern).parts if p not in ("", "."))
    if any(RECURSIVE in p and p != RECURSIVE for p in parts):
        raise ValueError(f"invalid pattern {pattern!r}: '**' can only be an entire path component")
    return (*parts, "") if pattern.endswith("/") else parts


@lru_cache(maxsize=256)
def _part_regex(part: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(part))  # case-sensitive, as pathlib on POSIX


def _match_parts(names: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether the file whose path parts are `names` is selected by the pattern `parts`."""
    if not parts:
        return not names
    head, rest = parts[0], parts[1:]
    if head == RECURSIVE:
        if not rest:
            return False  # a trailing `**` selects folders only
        # zero or more folders, each a part of the path before its file name
        return any(_match_parts(names[i:], rest) for i in range(len(names)))
    if not names or head == "":
        return False
    if not _part_regex(head).match(names[0]):
        return False
    if not rest:
        return len(names) == 1
    return len(names) > 1 and _match_parts(names[1:], rest)


def matches(path: str, pattern: str) -> bool:
    """Whether `Path(folder).glob(pattern)` yields the file at relative POSIX path `path`."""
    return _match_parts(PurePosixPath(path).parts, _parts(pattern))


def hidden(path: str) -> bool:
    """A path with a part starting with '.' (download._select never copies those)."""
    return any(part.startswith(".") for part in PurePosixPath(path).parts)


def select(paths: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The paths (relative, POSIX) matching any pattern (every file when there is none), hidden ones
    left out, sorted: download._select's choice among files named `paths`."""
    pats = tuple(patterns) or EVERYTHING
    return sorted({p for p in paths if not hidden(p) and any(matches(p, pat) for pat in pats)})


def unmatched(paths: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The patterns that match none of `paths` (relative, POSIX): a `files:` glob selecting nothing,
    misspelt beside one that matches, would drop its files without a word."""
    chosen = list(paths)
    return [pat for pat in patterns if not any(matches(p, pat) for p in chosen)]


def hub_patterns(patterns: Iterable[str]) -> list[str]:
    """fnmatch patterns (huggingface_hub `allow_patterns`) covering every file `select` takes.

    Each `**` part may stand for no folder at all, which fnmatch cannot say: every combination of
    dropping `**/` parts is listed (`**/*.csv` -> `**/*.csv`, `*.csv`). A pattern that selects folders
    only (trailing `**` or `/`) adds nothing."""
    out: list[str] = []
    for pattern in tuple(patterns) or EVERYTHING:
        parts = _parts(pattern)
        if not parts or parts[-1] in (RECURSIVE, ""):
            continue
        slots = [i for i, p in enumerate(parts) if p == RECURSIVE]
        for dropped in itertools.product((False, True), repeat=len(slots)):
            gone = {i for i, drop in zip(slots, dropped, strict=True) if drop}
            variant = "/".join(p for i, p in enumerate(parts) if i not in gone)
            if variant not in out:
                out.append(variant)
    return out
