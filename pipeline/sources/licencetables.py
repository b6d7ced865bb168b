"""The licence lists the readers look names up in, and the lookups themselves.

Which values say "we do not know" (UNKNOWN_LICENCES, or a pointer elsewhere: `is_unknown`), which
licences (SPDX ids) allow training a commercial model (COMMERCIAL_OK) and the names people write them
with (`listed_id`: "MIT License", "CC BY 4.0", the Hub's "odc-by"), which exceptions only add
permissions (PERMISSIVE_EXCEPTIONS), and which ids and names forbid commercial use without saying so
(NON_COMMERCIAL_IDS, _NON_COMMERCIAL_NAMES). A module of its own because every reader needs it:
licences.py (the answers callers use, cards.py's among them) and licencetext.py (free text). Each list is
deliberately short: adding a licence to one is a statement about it, so add one only after reading it.
"""

from __future__ import annotations

import re

from pipeline.invisible import visible

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
    "tba",  # "to be announced / confirmed": not decided yet, so not known
    "tbc",
    # More of the same, as written in dataset cards: none names a licence, so none says what the
    # data allows. Read as names, each was unlisted, which a `commercial_reason` let through.
    "n.a",
    "not stated",
    "not provided",
    "not available",
    "none specified",
    "no license",
    "no licence",
    "unknown license",
    "unknown licence",
    "unlicensed",  # no licence at all (The Unlicense is `Unlicense`)
    "custom",  # the Hub's `other`: the terms are elsewhere
    "custom license",
    "custom licence",
    "various",
    "mixed",
    "multiple",
    "multiple licenses",
    "multiple licences",
    # Some Creative Commons licence: the Hub's `cc` does not say which, and four of them are NC.
    "cc",
    "creative commons",
)
# A value that points elsewhere for its terms ("see LICENSE", "same as upstream", "as per the
# original dataset") names no licence: unknown, as the Hub's `other` and `per-file` are.
# A pointer word ends at a space, a colon or the end ("See-Saw License" names a licence); "same-as-
# upstream" is one too.
_POINTER = re.compile(r"(see|refer[-_ ]to|same[-_ ]as|as[-_ ]per)(?:[\s:]|$)|(same|as)[-_](as|per)[-_]")

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

# The Hub's ids for licences on the list: each has one version, 1.0, so the id without it is the same
# licence (pipeline/cards.py maps the other way). Read as names, they were unlisted.
_HUB_IDS = {"odc-by": "odc-by-1.0", "odbl": "odbl-1.0", "pddl": "pddl-1.0"}


def _spelled_out() -> dict[str, str]:
    """Listed licences by the names people write for them ("MIT License", "Apache License, Version
    2.0", "CC BY 4.0", "Creative Commons Attribution 4.0 International"), as `_spelled` leaves them,
    to their SPDX ids. Read as names, each was unlisted. Whole values only: "CC BY-NC 4.0" is no key
    (and is barred before this is read), nor is "Creative Commons" (unknown)."""
    names = {
        "mit": ("mit license", "mit license (mit)", "expat license"),
        "apache-2.0": (
            *("apache 2.0", "apache license 2.0", "apache license version 2.0", "apache license v2.0"),
            "apache software license 2.0",
        ),
        "bsd-2-clause": ("bsd 2 clause", "bsd 2 clause license", "simplified bsd license"),
        "bsd-3-clause": ("bsd 3 clause", "bsd 3 clause license", "new bsd license", "revised bsd license"),
        "isc": ("isc license",),
        "zlib": ("zlib license",),
        "mpl-2.0": ("mpl 2.0", "mozilla public license 2.0"),
        # CC0 has one version, 1.0, as ODC-By has (_HUB_IDS)
        "cc0-1.0": ("cc0", "cc0 1.0", "cc0 1.0 universal", "creative commons zero v1.0 universal"),
        "unlicense": ("unlicense",),  # "The Unlicense"
    }
    table = {name: spdx for spdx, spelled in names.items() for name in spelled}
    kinds = {"by": ("attribution",), "by sa": ("attribution sharealike", "attribution share alike")}
    for version in ("2.0", "2.5", "3.0", "4.0"):
        for short, titles in kinds.items():
            spdx = f"cc-{short.replace(' ', '-')}-{version}"
            for title in (f"cc {short}", *(f"creative commons {t}" for t in titles), *titles):
                for edition in ("", " international", " unported", " generic"):
                    table[f"{title} {version}{edition}"] = spdx
                    table[f"{title} {version}{edition} license"] = spdx
    return {name: spdx for name, spdx in table.items() if spdx in COMMERCIAL_OK}  # CC-BY-SA-2.0 is not


_SPELLED_OUT = _spelled_out()
_SPELLING_SEP = re.compile(r"[\s,_-]+")


def _spelled(name: str) -> str:
    """A name as _SPELLED_OUT keys it: lower case, one space for each run of spaces, dashes, commas
    and underscores, "licence" spelled "license", without a leading "The"."""
    words = _SPELLING_SEP.sub(" ", name.strip().lower()).strip().replace("licence", "license")
    return words.removeprefix("the ")


def listed_id(name: str) -> str:
    """The SPDX id (lower case) of a listed licence written as the Hub or people write it ("odc-by",
    "MIT License", "CC BY 4.0"); any other name, lower-cased."""
    key = name.strip().lower()
    return _SPELLED_OUT.get(_spelled(key), _HUB_IDS.get(key, key))


# Exceptions (SPDX ids) known to add permissions only: a licence WITH one of them stands as the
# licence alone does. Any other may restrict it (a LicenseRef-..., the Commons Clause).
PERMISSIVE_EXCEPTIONS = frozenset(s.lower() for s in ("LLVM-exception",))

# Licences whose name does not say it, but whose terms allow non-commercial use only: the Hub's
# deepfloyd-if-license (non-commercial research), intel-research and apple-amlr ("solely for research
# purposes", "non-commercial scientific research"), h-research (a research licence by its name);
# SPDX's NCGL-UK-2.0 (Non-Commercial Government Licence), Prosperity-3.0.0 and PolyForm-Strict-1.0.0
# (non-commercial use only). Each was unlisted, which a `commercial_reason` let into the variant.
NON_COMMERCIAL_IDS = frozenset(
    s.lower()
    for s in (
        "deepfloyd-if-license",
        "intel-research",
        "h-research",
        "apple-amlr",
        "qwen-research",  # the Qwen RESEARCH LICENSE AGREEMENT: non-commercial use, as h-research
        "NCGL-UK-2.0",
        "Prosperity-3.0.0",
        "PolyForm-Strict-1.0.0",
    )
)
# Licences by their names (a version after it too), as _spelled leaves them, whose terms allow
# non-commercial use only: the Academic Public License (openCARP's text, for one) grants use "for any
# non-commercial purpose" and asks commercial users to contact its makers for a licence. Read as a
# name, it was unlisted.
_NON_COMMERCIAL_NAMES = re.compile(r"academic public license(?: v(?:ersion)?)?(?: ?\d+(?:\.\d+)?)?")


def is_unknown(licence: str) -> bool:
    """True when the licence value as a whole says "we do not know" (`unknown`, empty, NOASSERTION,
    ...), or points elsewhere for its terms ("see LICENSE", "unknown (see README)"). An expression
    with an unknown part is not one: `standing` says what it allows."""
    plain = _plain(licence)
    if plain in UNKNOWN_LICENCES or _POINTER.match(plain):
        return True
    # a placeholder with a note: "other (see LICENSE)", "per-file (see NOTICE)"; found with str
    # methods, not a regex: `\s*\(` from every space of a long run of spaces is quadratic
    note = plain.rfind("(")
    if plain.endswith(")") and note > 0:
        return plain[:note].strip().removesuffix(".").strip() in UNKNOWN_LICENCES
    return False


def _plain(licence: str) -> str:
    """The value as a placeholder is compared: invisible characters dropped (a zero-width space
    pasted after "unknown" made it a licence name, which a `commercial_reason` let into the
    commercial variant), then stripped of spaces and a closing full stop ("Unknown."), lower case."""
    return visible(licence).strip().removesuffix(".").strip().lower()
