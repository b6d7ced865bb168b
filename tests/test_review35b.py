"""Review of session 35's last licence readings (_negated_commercial_use): a negation that is no
denial of commercial use. "whether or not" offers both; the "t" of "Flan-T5" or "AT&T" is no "n't".
Each read barred after the red-team's commit; unlisted before it, and again now."""

from __future__ import annotations

import pytest

from tests.test_licence_names import assert_barred, assert_unlisted


@pytest.mark.parametrize(
    "licence",
    [
        "Free for any use, whether or not commercial",
        "Attribution required whether or not used commercially",
        "Made with Flan-T5 for any commercial or research use",
        "Released by AT&T for commercial use",
    ],
)
def test_no_denial_of_commercial_use_stays_unlisted(licence: str) -> None:
    assert_unlisted(licence)


@pytest.mark.parametrize(
    "licence",
    ["can't be used commercially", "Don\u2019t use commercially", "won't be used for any commercial purpose"],
)
def test_a_contracted_not_still_denies(licence: str) -> None:
    assert_barred(licence)


@pytest.mark.parametrize(
    "licence",
    ["Flan-T5 restricted to research", "Outputs of Flan-T5 only for research", "AT&T only for research"],
)
def test_a_bare_t_is_no_negation_of_a_limit(licence: str) -> None:
    """The "t" of "Flan-T5" or "AT&T" read as "n't" before a limiting word, which then granted
    ("not restricted to research"): the limit went unread, and a `commercial_reason` let it in."""
    assert_barred(licence)
