"""What a licence says about commercial use, as far as this project can tell from its name.

A registry entry or sidecar claims `commercial: true`; this module keeps that claim honest where the
licence name speaks for itself: a non-commercial licence (CC-BY-NC-*, "research only", "free for
academic use", "commercial use requires permission", or an id whose terms say so, NON_COMMERCIAL_IDS)
can never claim it, a value that names no licence ("unknown", "see LICENSE") keeps its data out of
the commercial variant, and a licence outside the short list known to allow commercial use
(COMMERCIAL_OK, in licencetables.py) can claim it only with a `commercial_reason` (a person's stated
reason, shown by `nanochatgpt sources --reasons`). Names are compared case-insensitively. The list
is deliberately short: adding a licence to it is a statement about it, so add one only after reading
it.

A value with an upper-case AND, OR or WITH in it is an SPDX license expression (SPDX spec, annex
"SPDX license expressions": operators are upper case, ids any case; `+` binds tightest, then WITH,
AND, OR; parentheses group) and is read part by part (`expression`, `standing`):
- AND (every part's terms apply): barred if any part is; known-commercial only if every part is;
- OR (the recipient chooses): barred only if every alternative is; known-commercial if one is;
- WITH: the licence part decides, unless the exception may take something away: one whose name
  forbids commercial use bars it, and one not on PERMISSIVE_EXCEPTIONS leaves it unlisted at best
  (SPDX exceptions only add permissions, but `Apache-2.0 WITH Commons-Clause` is written in the wild);
- `X+` ("X or a later version"): X decides, since the recipient may keep to X;
- attribution: asked for if ANY part asks for it, alternatives included. The data is passed on (full
  variant, Hub) under whichever alternative its recipients choose, and a credit given when it was
  not needed costs a line, while one left out when it was needed breaks the licence.
A malformed expression (`MIT AND`, `(MIT`, `AND`) is refused where licences are validated
(registry.check_licence, for sources.yaml and sidecars); anywhere else it reads as unknown, which
keeps its data out of the commercial variant.
Anything else (one id, free text such as "research use only" or "CC BY 4.0", the placeholders)
is read whole, as one name (`_name_standing`): unknown, barred where its words forbid commercial use
(licencetext.py), known where it is listed (licencetables.py), unlisted otherwise.

This module is the answers callers use (`standing`, `licence_bar`, `commercial_eligible`,
`is_non_commercial`, `is_known_commercial`, `needs_attribution`), and the names they import from it;
the work is done in licencetables.py (the lists), licenceexpr.py (the expression parser) and
licencetext.py (the free-text reading).
"""

from __future__ import annotations

import enum
import functools
import re
from typing import NamedTuple

from pipeline.sources.licenceexpr import (
    MAX_NESTING,
    Expr,
    ExpressionError,
    Leaf,
    Op,
    _leaves,
    expression,
    expression_error,
    is_expression,
    operator_case_hint,
)
from pipeline.sources.licencetables import (
    COMMERCIAL_OK,
    NON_COMMERCIAL_IDS,
    PERMISSIVE_EXCEPTIONS,
    UNKNOWN_LICENCES,
    is_unknown,
    listed_id,
)
from pipeline.sources.licencetext import _name_non_commercial

__all__ = [
    "COMMERCIAL_OK",
    "MAX_NESTING",
    "NON_COMMERCIAL_IDS",
    "PERMISSIVE_EXCEPTIONS",
    "UNKNOWN_LICENCES",
    "Expr",
    "ExpressionError",
    "Leaf",
    "LicenceBar",
    "Op",
    "Standing",
    "commercial_eligible",
    "expression",
    "expression_error",
    "is_expression",
    "is_known_commercial",
    "is_non_commercial",
    "is_unknown",
    "licence_bar",
    "listed_id",
    "needs_attribution",
    "operator_case_hint",
    "standing",
]


class Standing(enum.IntEnum):
    """What a licence allows for commercial use, worst first: AND takes the worst of its parts, OR
    the best of its alternatives (an order, so that both are min / max)."""

    NON_COMMERCIAL = 0  # its name forbids commercial use: barred, and no reason can flag it
    UNKNOWN = 1  # unknown (or a malformed expression): barred from the commercial variant
    UNLISTED = 2  # not barred, but not on COMMERCIAL_OK: flagging it needs a `commercial_reason`
    KNOWN = 3  # on COMMERCIAL_OK


def _name_standing(name: str) -> Standing:
    """One name's standing: the rules a licence value that is not an expression has always had."""
    if is_unknown(name):
        return Standing.UNKNOWN
    if _name_non_commercial(name):
        return Standing.NON_COMMERCIAL
    if listed_id(name) in COMMERCIAL_OK:
        return Standing.KNOWN
    return Standing.UNLISTED


def _leaf_standing(leaf: Leaf) -> Standing:
    """One licence of an expression: `+` leaves it to the licence; an exception may lower it. Read
    as the licence part alone, `MIT WITH no-commercial-use` was known to allow commercial use."""
    own = _name_standing(leaf.name)
    if not leaf.exception or leaf.exception.lower() in PERMISSIVE_EXCEPTIONS:
        return own
    if _name_non_commercial(leaf.exception):
        return Standing.NON_COMMERCIAL
    return min(own, Standing.UNLISTED)


def _expr_standing(expr: Expr) -> Standing:
    if isinstance(expr, Leaf):
        return _leaf_standing(expr)
    standings = [_expr_standing(part) for part in expr.parts]
    return min(standings) if expr.op == "AND" else max(standings)


@functools.lru_cache(maxsize=256)
def standing(licence: str) -> Standing:
    """What the licence value allows for commercial use (an expression read part by part; a
    malformed one as unknown, so that its data stays out of the commercial variant)."""
    try:
        expr = expression(licence)
    except ExpressionError:
        return Standing.UNKNOWN
    return _name_standing(licence) if expr is None else _expr_standing(expr)


def _culprits(licence: str, worst: Standing) -> str:
    """Which parts of a (valid) expression bar it, for a message: " (through CC-BY-NC-4.0)"; ""
    for one name."""
    expr = expression(licence)
    if expr is None:
        return ""
    parts = sorted({_shown(leaf) for leaf in _leaves(expr) if _leaf_standing(leaf) == worst})
    return f" (through {', '.join(parts)})"


def _shown(leaf: Leaf) -> str:
    return f"{leaf.name} WITH {leaf.exception}" if leaf.exception else leaf.name


def commercial_eligible(flag: bool, licence: str) -> bool:
    """What the commercial variant takes: flagged commercial AND under a known licence that does not
    forbid commercial use (licence_bar: by its name, or by the parts of an SPDX expression; the
    row-wise form is pipeline.schema.commercial_ok). The registry and sidecar checks refuse such a
    flag already; the build re-applies it, so a turn table they did not check (written by hand or
    by an older normalize) cannot carry one in."""
    return flag and licence_bar(licence) is None


class LicenceBar(NamedTuple):
    """Why a licence keeps flagged data out of the commercial variant."""

    unknown: bool  # True: the licence is unknown (or malformed); False: it forbids commercial use
    words: str  # for a message: "the licence is unknown", "the licence CC-BY-NC-4.0 forbids commercial use"


def licence_bar(licence: str) -> LicenceBar | None:
    """Why the licence alone keeps flagged data out of the commercial variant, or None when it does
    not: commercial_eligible's rule, so that what `sources`, `check` and the build say is what the
    build does. Which of the two cases it is comes with the words: a caller's advice differs."""
    if is_unknown(licence):
        return LicenceBar(unknown=True, words="the licence is unknown")
    error = expression_error(licence)
    if error is not None:
        return LicenceBar(
            unknown=True, words=f"the licence {licence.strip()} is not a valid SPDX expression ({error})"
        )
    rank = standing(licence)
    if rank == Standing.UNKNOWN:  # an expression with an unknown part (or only unknown alternatives)
        return LicenceBar(
            unknown=True,
            words=f"the licence {licence.strip()} is unknown in part{_culprits(licence, rank)}",
        )
    if rank == Standing.NON_COMMERCIAL:
        return LicenceBar(
            unknown=False,
            words=f"the licence {licence.strip()} forbids commercial use{_culprits(licence, rank)}",
        )
    return None


def is_non_commercial(licence: str) -> bool:
    """True when the licence forbids commercial use: its name says so, or (an SPDX expression) a
    part of an AND or every alternative of an OR does (`standing`)."""
    try:
        if expression(licence) is not None:
            return standing(licence) == Standing.NON_COMMERCIAL
    except ExpressionError:
        pass  # malformed: read whole, as a name (standing calls it unknown, which bars it too)
    return _name_non_commercial(licence)


def is_known_commercial(licence: str) -> bool:
    """True when the licence is on the list of those known to allow commercial use (an expression:
    every part of an AND, some alternative of an OR that is not barred)."""
    return standing(licence) == Standing.KNOWN


# Licences whose terms ask whoever passes the data on to credit its creator and source by name:
# Creative Commons' BY family (CC-BY-4.0, CC-BY-SA-4.0, CC-BY-NC-4.0, CC-BY-NC-SA-4.0, CC-BY-ND-4.0;
# "CC BY 4.0" as people write it too) and the Open Data Commons attribution licences (ODC-By,
# ODbL). `nanochatgpt check` asks for a sidecar's `attribution:` under them.
_ATTRIBUTION = re.compile(
    r"cc[-_ ]?by(?![a-z])|odc[-_ ]?by(?![a-z])|odbl(?![a-z])"
    # government open licences, which ask for the source to be acknowledged: the UK's and Canada's
    # OGL, Germany's DL-DE-BY, France's Etalab (Licence Ouverte), Norway's NLOD
    r"|ogl[-_]|dl[-_]de[-_]by(?![a-z])|etalab(?![a-z])|licence[-_ ]ouverte|nlod(?![a-z])",
    re.IGNORECASE,
)
# The same licences by their titles, anywhere in a name: "Creative Commons Attribution 4.0",
# "Attribution-NonCommercial 4.0 International", "Open Data Commons Open Database License".
# "Open Government Licence v3.0". Not "no attribution required", "attribution not required",
# "attribution optional".
_ATTRIBUTION_TITLE = re.compile(
    r"(?<!\bno[-_ ])(?<!\bwithout[-_ ])\battribution\b"
    r"(?![-_ :]*+(?:is[-_ ])?(?:not|none|optional|appreciated|unnecessary)\b)"
    r"|\bopen[-_ ](?:database|government)[-_ ]licen[cs]e\b|\bcreative[-_ ]commons[-_ ]by\b",
    re.IGNORECASE,
)


def needs_attribution(licence: str) -> bool:
    """True when the licence's name says it asks for a credit (creator, copyright notice, licence,
    link to the source) from whoever passes the data on; an expression when any of its licences
    does, alternatives included (the module docstring says why). A malformed expression when an
    attribution licence is named anywhere in it."""
    try:
        expr = expression(licence)
    except ExpressionError:
        return _ATTRIBUTION.search(licence) is not None
    if expr is None:
        return _name_needs_attribution(licence.strip())
    return any(_name_needs_attribution(leaf.name) for leaf in _leaves(expr))


def _name_needs_attribution(name: str) -> bool:
    """One name (or an expression's licence): an attribution licence's id, or its title anywhere
    ("LicenseRef-Creative-Commons-Attribution-4.0" as a part reads as it does alone)."""
    return _ATTRIBUTION.match(name) is not None or _ATTRIBUTION_TITLE.search(name) is not None
