"""Review of session 35's changes. `_says_who_made` read "annotated only by research groups" as who
made the data, not a limit on its use; the same words after "be" ("may be translated only by research
institutions", "can be collected only in research settings") say who may do it, a use, and were
barred before that change: read as provenance they let the data into the commercial variant."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

PERMISSIONS = [
    "Data may be scraped only by academic researchers",
    "Data may be translated only by research institutions",
    "May be annotated only by research groups",
    "Data can be collected only in research settings",
]
# Who made it, or where: still no limit (session 35's reading).
PROVENANCE = [
    "The data was annotated only by research groups",
    "Data were collected only in research settings",
]


@pytest.mark.parametrize("licence", PERMISSIONS)
def test_a_made_word_after_be_is_a_permission_and_bars(licence: str) -> None:
    assert_barred(licence)


@pytest.mark.parametrize("licence", PROVENANCE)
def test_a_made_word_after_was_says_who_made_it(licence: str) -> None:
    assert_unlisted(licence)
