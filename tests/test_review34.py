"""Session 34's review (revP): behaviour the session's changes got wrong, each found by a probe."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

# "no commercial licence required" grants commercial use only where nothing qualifies it: a comma
# goes on with the same sentence, so ", for research" limits it as "for research" without one does
# (test_licence_readings34's "No commercial license required for research" stays barred).
QUALIFIED_AFTER_A_COMMA = [
    "no commercial license needed, for research",
    "no commercial licence required, personal use",
    "No commercial license required, but commercial use must be approved by the authors",
]


@pytest.mark.parametrize("licence", QUALIFIED_AFTER_A_COMMA)
def test_no_licence_needed_then_a_comma_and_a_qualifier_stays_barred(licence: str) -> None:
    assert_barred(licence)


@pytest.mark.parametrize("licence", ["no commercial licence required.", "MIT; no commercial licenses needed"])
def test_no_licence_needed_at_a_sentence_end_still_grants(licence: str) -> None:
    assert_unlisted(licence)


# A negation before the limiting word grants ("not limited to research"), also across the words that
# only say how the limit is put: read as limits, these barred the data.
NEGATED_ACROSS_A_WORD = [
    "Use is not strictly limited to research",
    "Use shall not be limited to research",
    "Use isn't strictly limited to research",
    "not be restricted to personal use",
]


@pytest.mark.parametrize("licence", NEGATED_ACROSS_A_WORD)
def test_a_negated_limit_does_not_bar(licence: str) -> None:
    assert_unlisted(licence)


@pytest.mark.parametrize(
    "licence", ["Strictly limited to research", "Use is not commercial, strictly research only"]
)
def test_an_unnegated_limit_still_bars(licence: str) -> None:
    assert_barred(licence)
