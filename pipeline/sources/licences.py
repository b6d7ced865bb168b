"""What a licence says about commercial use, as far as this project can tell from its name.

A registry entry or sidecar claims `commercial: true`; this module keeps that claim honest where the
licence name speaks for itself: a non-commercial licence (CC-BY-NC-*, "research only") can never
claim it, and a licence outside the short list below, which is known to allow commercial use, can
claim it only with a `commercial_reason` (a person's stated reason, shown by `nanochatgpt sources
--reasons`). Names are compared case-insensitively. The list is deliberately short: adding a
licence here is a statement about it, so add one only after reading it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Licence values that say "we do not know": such data never enters the commercial variant. The
# placeholders people type into a form field (N/A, ?, TBD) say it too: taken as names, they were
# treated as an unlisted licence, which a `commercial_reason` let into the commercial variant.
UNKNOWN_LICENCES = (
    "",
    "unknown",
    "noassertion",
    "none",
    "other",
    "per-file",
    "n/a",
    "na",
    "?",
    "-",
    "tbd",
    "todo",
    "unspecified",
    "not specified",
)

# Licences (SPDX ids) that allow use of the data to train a commercial model.
COMMERCIAL_OK = frozenset(
    s.lower()
    for s in (
        "MIT",
        "MIT-0",
        "Apache-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "ISC",
        "Zlib",
        "Unlicense",
        "CC0-1.0",
        "CC-BY-2.0",
        "CC-BY-2.5",
        "CC-BY-3.0",
        "CC-BY-4.0",
        "CC-BY-SA-3.0",
        "CC-BY-SA-4.0",
        "CDLA-Permissive-1.0",
        "CDLA-Permissive-2.0",
        "CDLA-Sharing-1.0",
        "ODC-By-1.0",
        "ODbL-1.0",
        "PDDL-1.0",
        "MPL-2.0",
    )
)

# "NC" as a part of the name, not inside a word (CC-BY-NC-4.0, CC-BY-NC-SA-4.0, CC-BY-NC4.0), or
# words that limit use to non-commercial purposes ("non-commercial", "not for commercial use",
# "research use only", "academic use only", "personal use only").
_NAMED_PATTERN = r"(^|[^a-z])nc([^a-z]|$)|non[-_ ]?commercial|not[-_ ]for[-_ ]commercial"
_RESTRICTING_PATTERN = r"\b(research|academic|personal|educational|evaluation)\b"
NON_COMMERCIAL_PATTERN = rf"{_NAMED_PATTERN}|{_RESTRICTING_PATTERN}.*\bonly\b"
# NON_COMMERCIAL_PATTERN in parts, for Python's backtracking engine (polars' engine, schema.py, is
# linear): the whole of it tried `.*\bonly\b` after every restricting word, so a licence of
# "research " repeated over a megabyte (a sidecar's field) took twenty minutes. The first such word
# of a line is enough: an `only` after a later one is after the first too (`.` stops at a line
# break, so per line).
_NAMED_NON_COMMERCIAL = re.compile(_NAMED_PATTERN, re.IGNORECASE)
_RESTRICTING_WORD = re.compile(_RESTRICTING_PATTERN, re.IGNORECASE)
_ONLY = re.compile(r"\bonly\b", re.IGNORECASE)
# Licences whose terms ask whoever passes the data on to credit its creator and source by name:
# Creative Commons' BY family (CC-BY-4.0, CC-BY-SA-4.0, CC-BY-NC-4.0, CC-BY-NC-SA-4.0, CC-BY-ND-4.0;
# "CC BY 4.0" as people write it too) and the Open Data Commons attribution licences (ODC-By,
# ODbL). `nanochatgpt check` asks for a sidecar's `attribution:` under them.
_ATTRIBUTION = re.compile(r"cc[-_ ]?by(?![a-z])|odc[-_ ]?by(?![a-z])|odbl(?![a-z])", re.IGNORECASE)


def is_unknown(licence: str) -> bool:
    """True when the licence value says "we do not know" (`unknown`, empty, NOASSERTION, ...)."""
    return licence.strip().lower() in UNKNOWN_LICENCES


def commercial_eligible(flag: bool, licence: str) -> bool:
    """What the commercial variant takes: flagged commercial AND under a known licence that does not
    forbid commercial use by its name (the row-wise form is pipeline.schema.commercial_ok). The
    registry and sidecar checks refuse such a flag already; the build re-applies it, so a turn table
    they did not check (written by hand or by an older normalize) cannot carry one in."""
    return flag and licence_bar(licence) is None


class LicenceBar(NamedTuple):
    """Why a licence keeps flagged data out of the commercial variant."""

    unknown: bool  # True: the licence is unknown; False: its name forbids commercial use
    words: str  # for a message: "the licence is unknown", "the licence CC-BY-NC-4.0 forbids commercial use"


def licence_bar(licence: str) -> LicenceBar | None:
    """Why the licence alone keeps flagged data out of the commercial variant, or None when it does
    not: commercial_eligible's rule, so that what `sources`, `check` and the build say is what the
    build does. Which of the two cases it is comes with the words: a caller's advice differs."""
    if is_unknown(licence):
        return LicenceBar(unknown=True, words="the licence is unknown")
    if is_non_commercial(licence):
        return LicenceBar(unknown=False, words=f"the licence {licence.strip()} forbids commercial use")
    return None


def is_non_commercial(licence: str) -> bool:
    """True when the licence's name says it forbids commercial use."""
    name = licence.strip()
    if _NAMED_NON_COMMERCIAL.search(name):
        return True
    for line in name.split("\n"):
        word = _RESTRICTING_WORD.search(line)
        if word and _ONLY.search(line, word.end()):
            return True
    return False


def is_known_commercial(licence: str) -> bool:
    """True when the licence is on the list of those known to allow commercial use."""
    return licence.strip().lower() in COMMERCIAL_OK


def needs_attribution(licence: str) -> bool:
    """True when the licence's name says it asks for a credit (creator, copyright notice, licence,
    link to the source) from whoever passes the data on."""
    return _ATTRIBUTION.match(licence.strip()) is not None
