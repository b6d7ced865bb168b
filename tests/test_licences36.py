"""Licence values session 36 found misread (leftovers of session 35's red-team). Wordings that limit use
to a purpose read as unlisted, which a `commercial_reason` let into the commercial variant: who may
have the data ("Available to academic researchers"), a purpose as a note beside a listed licence
("CC BY 4.0 (academic use)"), a custom id naming only a purpose (`LicenseRef-academic`), commercial
rights kept back ("Commercial rights reserved") and the Academic Public License, whose terms grant
non-commercial use only. The other way, notes that limit nothing barred the data: "This is not a
commercial product" (what it is), "production and non-production use" (both), "commercial rights
with the license" (they come with it) and "annotated by research groups only" (who made it)."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

from pipeline.sources import licences

# Each was unlisted.
NOW_BARRED = [
    # who may have it: "to" leads to a run of purpose words that ends the clause
    "Available to academic researchers",
    "Freely available to researchers",
    "Data is distributed to academic researchers.",
    # a purpose and its use word alone, as a note beside a licence
    "CC BY 4.0 International (academic use)",
    "CC BY 4.0 / personal use",
    "MIT (research use)",
    "MIT, academic use",
    "Apache-2.0 - research and educational use",
    "CC-BY-4.0: non-profit use",
    "Purpose: research use",
    # a custom id that names only the purpose, as `LicenseRef-academic-use` does
    "LicenseRef-academic",
    "LicenseRef-research",
    "MIT AND LicenseRef-personal",
    # the rights to commercial use kept back
    "Commercial rights reserved",
    "All commercial rights are reserved",
    "CC-BY-4.0; commercial use rights reserved",
    # its terms grant use "for any non-commercial purpose" only (openCARP's text, for one)
    "Academic Public License",
    "The Academic Public Licence",
    "Academic Public License v1.0",
    "Academic Public License version 2",
]
# Already barred, beside the new readings: they must stay so.
STILL_BARRED = [
    "For personal use only",
    "CC BY 4.0 (for academic use)",
    "LicenseRef-academic-use",
    "LicenseRef-academic-only",
    "Mistral AI Non-Production License",
    "non-production use only",
    "This is not a commercial license",  # the licence, not the product: non-commercial
    "may not be used in a commercial product",
    "This dataset is not for commercial use",
    "commercial use with a license",
    "commercial use only with the license",
    "commercial use with the license fee",
    "MIT; commercial use with the license",  # which licence is unclear: one to be bought, perhaps
    "MIT; commercial use requires the license holder's permission",
    "collected by researchers for research use only",
    "may be translated by research institutions only",  # who may translate it: a use
    "annotated by research groups; research use only",
    "used by researchers only",
    "Free for research",
    # the `only` is in another clause than who made the data: a limit, as before
    "Annotated by researchers; use only with permission",
    "annotated by research groups only, academic use only",
]


@pytest.mark.parametrize("licence", NOW_BARRED + STILL_BARRED)
def test_values_that_limit_use_to_a_purpose_are_barred(licence: str) -> None:
    assert_barred(licence)


# Each was barred.
NOW_UNLISTED = [
    "This is not a commercial product",
    "It is not a commercial project",
    "Free for production and non-production use",
    "MIT; commercial rights with the license",
    "Apache-2.0. Commercial rights with the licence.",
    "annotated by research groups only",
    "annotated by academic research groups only",
    "collected in research settings only",
    "annotated by researchers only",
]
# Unlisted before, as they must stay: a person decides what these terms allow.
STILL_UNLISTED = [
    "Internal use only",
    "Proprietary",
    "All rights reserved",
    "Restricted",
    "LDC User Agreement for Non-Members",
    "C-UDA",
    "Microsoft Research Data License Agreement",
    "Academic Free License",  # AFL: allows commercial use
    "Released to the research community",
    "Available to researchers and companies",
    "CC-BY-4.0 (research use welcome)",
    "CC BY 4.0 research use",  # a version's "." ends no clause: no note set off
    # a label before what is allowed: a list of uses, not a limit to one
    "Research use: allowed",
    "Personal use: yes, commercial use: yes",
    "Academic Public License (openCARP)",  # more than the name: a person reads it
]


@pytest.mark.parametrize("licence", NOW_UNLISTED + STILL_UNLISTED)
def test_notes_that_limit_nothing_are_unlisted(licence: str) -> None:
    assert_unlisted(licence)


def test_a_listed_licence_alone_stays_known() -> None:
    for licence in ("CC BY 4.0 International", "MIT", "LicenseRef-academic-use OR MIT"):
        assert licences.standing(licence) == licences.Standing.KNOWN
