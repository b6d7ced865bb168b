"""Licence values session 33 found barred for no reason (the data was lost from the commercial
variant): a note about the data beside an open licence read as a restriction, a listed licence's
spelled-out name before an offer of a commercial licence was not read as a dual licence, "email" as a
noun read as a request to be contacted, and "no commercial licence required" read as "no commercial
use". Each reads as free text now, unlisted (a `commercial_reason` may flag it); the restrictive
wordings beside them stay barred."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

from pipeline.sources import licences
from pipeline.sources.licences import Standing

NOT_BARRED = [
    # a purpose word naming a part of the data, then an `only` about something else
    "CC-BY-4.0 (private messages removed; only public posts)",
    "Apache-2.0; testing split only has 500 rows",
    # a listed licence's spelled-out name, then an offer of a commercial licence (as its id reads)
    "MIT License; commercial licenses available",
    "MIT License (commercial licenses available)",
    "Apache License, Version 2.0; commercial licenses available",
    "CC BY 4.0; commercial licenses available",
    # "email" as a noun: what was removed, not a request to write
    "email addresses removed for commercial use",
    "MIT; email addresses removed for commercial use",
    "Email addresses were removed for commercial use",
    # "no commercial licence required" grants commercial use
    "no commercial license required",
    "No commercial licence is required.",
    "MIT; no commercial licenses needed",
]


@pytest.mark.parametrize("licence", NOT_BARRED)
def test_notes_beside_an_open_licence_do_not_bar_it(licence: str) -> None:
    assert_unlisted(licence)


STILL_BARRED = [
    # the brief's restrictive wordings
    "research purposes only",
    "for private use only",
    "testing only",
    "non-commercial use only",
    "contact us for commercial use",
    "email us for commercial use",
    # a purpose word that names no part of the data, beside one that does
    "private messages removed; research use only",
    "testing split only; research use only",
    "research data only",  # "data" may mean the research use of it
    "Research use; only with written permission",
    # a spelled-out name before anything but an offer alone, or an offer beside a restriction
    "MIT License; commercial use requires permission",
    "MIT License; commercial licenses available; research use only",
    "CC BY-NC 4.0; commercial licenses available",
    "Proprietary License; commercial licenses available",
    # "email" asking to be written to, or a noun for something other than what was removed
    "Email address for commercial licensing: licensing@example.org",
    "email: licensing@example.org for commercial use",
    "email addresses removed, email us for commercial use",
    "email addresses removed; contact us for commercial use",
    # "no commercial licence required" for some purpose implies one is needed for commercial use
    "No commercial license required for research",
    "no commercial license required for research use",
    "no commercial license",
    "no commercial use",
]


@pytest.mark.parametrize("licence", STILL_BARRED)
def test_restrictive_wordings_beside_them_stay_barred(licence: str) -> None:
    assert_barred(licence)


@pytest.mark.parametrize("licence", ["MIT", "BSD-3-Clause", "CC0-1.0"])
def test_the_default_data_licences_read_as_before(licence: str) -> None:
    assert licences.standing(licence) == Standing.KNOWN
    assert licences.licence_bar(licence) is None
