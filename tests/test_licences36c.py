"""A red-team of session 36's licence relaxations (licK): values that restrict commercial use but read
like the permitted patterns. Each below was barred before the relaxations (2a6ff31) or is a hole
they share, and read as unlisted, which a `commercial_reason` let into the commercial variant: a
"production and non-production" pair that goes on ("... by non-profits only", "... research use"),
a negation after "This is not a commercial product" ("nor for commercial use", "or service for
commercial use"), "not licensed for commercial use", and "non-commercial" spelt with a Unicode
hyphen or dash (U+2010, U+2011, U+2013, U+2014, U+2212), as text pasted from a web page has it."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

# Each was unlisted at HEAD before this fix.
NOW_BARRED = [
    # the production pair, as the commercial one (_BOTH_USES), grants both only where it ends its clause
    "Free for production and non-production use by non-profits only",
    "production or non-production research use",
    "production and non-production use by academic institutions",
    "Free for production and non-production use within universities",
    # what the thing is, then a denial of use
    "This is not a commercial product or service for commercial use",
    "This is not a commercial product, nor for commercial use",
    "This is not a commercial product and nor for commercial use",
    "This is not a commercial product nor commercially usable",
    "This is not a commercial product \u2014 not licensed for commercial use",
    "nor for commercial use",
    "MIT, nor for commercial use",
    "not licensed for commercial use",
    "Not licenced for commercial purposes",
    # "non-commercial" with a Unicode hyphen or dash
    "non\u2011commercial use",
    "non\u2010commercial",
    "Non\u2013commercial use only",
    "non\u2014commercial",
    "NON\u2212COMMERCIAL",
    "Free for non\u2011production use",
    "Free for commercial and non\u2013commercial use for research",
]


@pytest.mark.parametrize("licence", NOW_BARRED)
def test_values_that_restrict_commercial_use_behind_a_relaxed_pattern_are_barred(licence: str) -> None:
    assert_barred(licence)


# Unlisted, as they must stay: the relaxations themselves, and a Unicode hyphen in a pair of both uses.
STILL_UNLISTED = [
    "Free for production and non-production use",
    "production and non-production use permitted",
    "This is not a commercial product",
    "This is not a commercial product or service",
    "Free for commercial and non\u2011commercial use",
    "Free for production and non\u2011production use",
    "MIT; commercial rights with the license",
]


@pytest.mark.parametrize("licence", STILL_UNLISTED)
def test_relaxed_patterns_that_grant_commercial_use_stay_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# The last review's leftovers: "neither" did not head a negation, and "permitted" stopped one
# ("not licenced or permitted for commercial use" read unlisted).
NEGATIONS_NOW_READ = [
    "Not licenced or permitted for commercial use",
    "Not permitted for commercial use",
    "Neither for commercial use nor for resale",
    "Neither commercial use nor redistribution is allowed",
]


@pytest.mark.parametrize("licence", NEGATIONS_NOW_READ)
def test_neither_and_not_permitted_reach_commercial(licence: str) -> None:
    assert_barred(licence)


def test_bsd_neither_clause_is_not_a_commercial_ban() -> None:
    """BSD-3-Clause's own sentence opens with "Neither": it names no commercial use."""
    assert_unlisted("Neither the name of the copyright holder nor the names of its contributors may be used")
