"""Licence values that grant commercial use beside another purpose, which session 36 found barred
(the safe direction, but their data never reached the commercial variant, whatever a person said):
"Free for commercial and non-commercial use" (the "non-commercial" of a pair that names both uses
barred it) and "Available to researchers, companies and the public" (the comma ended the "to"
clause after "researchers", so who else may have it went unread). Free text that grants commercial
use reads as unlisted, as "Free for research and commercial use" always has: a `commercial_reason`
lets it in. Values that restrict stay barred."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

# Each was barred.
NOW_UNLISTED = [
    # a pair that names both uses: either order, "and", "or", "and/or", "&", "as well as", misspelt
    "Free for commercial and non-commercial use",
    "for both commercial and non-commercial purposes",
    "Commercial and non-commercial use permitted",
    "Free for commercial and noncommercial use",
    "Can be used for commercial and non-commercial purposes",
    "Suitable for both commercial and non-commercial use",
    "Usable for non-commercial and commercial purposes",
    "Licensed for commercial and non-commercial applications",
    "Free for any purpose, commercial or non-commercial",
    "Free for non-commercial and commercial use",
    "Both commercial and non-commercial use is permitted",
    "Allowed for commercial and non commercial purposes",
    "Free for commercial and/or non-commercial use",
    "Free for commercial & non-commercial use",
    "For commercial as well as non-commercial use",
    "Free for comercial and non-comercial use",
    # who may have it: a comma list after "to" (or "for") that names a commercial recipient
    "Available to researchers, companies and the public",
    "Available to researchers, companies, and the public",
    "Available to researchers, industry and the public",
    "Freely available to academics, businesses and individuals",
    "Available to researchers, educators, companies and the public",
    "Free for researchers, companies and the public",
]


@pytest.mark.parametrize("licence", NOW_UNLISTED)
def test_values_that_grant_commercial_use_beside_another_are_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# Unlisted before, as they must stay.
STILL_UNLISTED = [
    "Free for research and commercial use",
    "Free for personal and commercial use",
    "You may use it for any purpose, including commercial",
    "research and commercial use allowed",
    "Free for academic, research and commercial use",
    "Free for any use, including commercial use",
    "Academic and commercial use permitted",
    "Available to researchers and companies",
    # "Available to researchers and students" was here: students are people of a purpose as
    # researchers are (session 37), so it limits who may have the data, and bars (test_licences37)
]


@pytest.mark.parametrize("licence", STILL_UNLISTED)
def test_grants_of_commercial_use_stay_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# Barred before, as they must stay: each restricts, or leaves commercial use to another licence.
STILL_BARRED = [
    "non-commercial and research use only",
    "for research and non-commercial purposes",
    "commercial use prohibited, research use allowed",
    "not for commercial and research use",
    "free for non-commercial use; commercial use requires a licence",
    "Free for research and non-commercial use",
    "research and non-commercial use only",
    "non-commercial and non-commercial use",  # no pair that names both
    "not for commercial and non-commercial use",
    "no commercial and non-commercial use",
    "commercial and non-commercial use prohibited",
    "commercial and non-commercial use requires a licence",
    "Non-commercial and commercial licenses available",
    "non-commercial and commercial use: contact us",
    "CC BY-NC 4.0, for commercial and non-commercial use",
    "for commercial and non-commercial research use only",
    # a pair that does not end its clause as a grant, or one whose clause sets the uses apart
    "Separate licences for commercial and non-commercial use",
    "Different terms for commercial and non-commercial use",
    "Fees apply for commercial and non-commercial use",
    "commercial and non-commercial use: see LICENSE",
    "Free for non-commercial and commercial users who obtain a licence",
    "Neither commercial nor non-commercial use is permitted",
    "You may not use it for commercial or non-commercial purposes",
    # a comma list with no commercial recipient, or one that is no list
    "Available to academic researchers",
    "Available to researchers, academics",
    "Available to researchers, students and teachers",
    "Available to researchers, not companies",
    "Available to researchers, but not to companies or the public",
    "Available to researchers, excluding companies",
    "Available to academic researchers, free of charge and companies",
    "Available to researchers, companies and the public for research purposes",
    "Free for research, commercial use requires a licence",
    "Free for research, industry use prohibited",
]


@pytest.mark.parametrize("licence", STILL_BARRED)
def test_values_that_restrict_stay_barred(licence: str) -> None:
    assert_barred(licence)
