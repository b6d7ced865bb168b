"""Licence values session 37 found misread (gaps session 36 left). Wordings that limit use to a purpose
read as unlisted, which a `commercial_reason` let into the commercial variant: who may have the data
where they are people a purpose names ("Available to students") or a purpose and who holds it
("Available to academic institutions"), a purpose alone as a note beside a licence ("CC BY 4.0
(academic)", "MIT + research use"), commercial rights kept back in other words ("Rights for commercial
use reserved", "The authors reserve all commercial rights") and a use granted for a purpose after a
note on who made the data ("annotated by research groups only, use for research"). The other way, a
pair granting both uses beside a listed licence barred the data: "MIT licence for commercial and
non-commercial use", "Free for commercial and non-commercial use under CC BY 4.0" read as free text
now, unlisted, as "MIT; free for commercial use" does."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

# Each was unlisted.
NOW_BARRED = [
    # who may have it: people a purpose names, or a purpose and who holds it, after "to" or "for"
    "Available to academic institutions",
    "Available to students",
    "Available to educational institutions",
    "Access granted to academic users",
    "Licensed to academic institutions",
    "Distributed to academic institutions",
    "Provided to research labs",
    "Available to non-profit organisations",
    "Available to universities and research institutes",
    "Available to students and teachers",
    "Available to academia",
    "Available to scholars",
    "Free for students",
    "Available for students",
    "Free for students and educators",
    "Available to researchers and students",
    # a purpose alone (or after "+") as a note beside a licence
    "CC BY 4.0 (academic)",
    "MIT (research)",
    "CC BY-SA 4.0 [research]",
    "Apache-2.0 / academic",
    "CC BY 4.0 - research",
    "MIT (academic and research)",
    "CC BY 4.0 (non-profit)",
    "CC BY 4.0 (educational)",
    "MIT: research",
    "MIT + research use",
    "MIT + academic use",
    "CC BY 4.0 + research use",
    "MIT licence for research",
    # commercial rights kept back, in other words
    "Rights for commercial use reserved",
    "Rights to commercial use are reserved",
    "Rights of commercial exploitation reserved",
    "Commercial use reserved",
    "Commercial exploitation is reserved",
    "Commercial use is reserved to the authors",
    "The authors reserve all commercial rights",
    "The authors reserve the right to commercial use",
    "Commercial rights retained by the authors",
    # a use granted for a purpose after a note on who made the data
    "annotated by research groups only, use for research",
    "collected by researchers only; use for academic research",
    "annotated by research groups only, to be used for research",
    "annotated by research groups only, may be used for research",
    "Annotated by students only. Use for research.",
]


@pytest.mark.parametrize("licence", NOW_BARRED)
def test_values_that_limit_use_to_a_purpose_are_barred(licence: str) -> None:
    assert_barred(licence)


# Each was barred: a pair granting both uses beside a listed licence.
NOW_UNLISTED = [
    "Free for commercial and non-commercial use under CC BY 4.0",
    "Free for commercial and non-commercial use under the MIT License",
    "Free for commercial and non-commercial use under CC BY 4.0 licence",
    "Commercial and non-commercial use permitted under CC BY 4.0.",
    "MIT licence for commercial and non-commercial use",
    "MIT License for commercial and non-commercial use",
    "Apache 2.0 licence for commercial and non-commercial use",
    "MIT: free for commercial and non-commercial purposes",
]


@pytest.mark.parametrize("licence", NOW_UNLISTED)
def test_a_pair_granting_both_uses_beside_a_listed_licence_is_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# Unlisted before, as they must stay: grants, and who made or was given the data.
STILL_UNLISTED = [
    "MIT; free for commercial use",
    "CC BY 4.0, free for commercial and non-commercial use",
    # a purpose alone is a note only beside something: the whole value, or one item of a comma list
    "research",
    "Available to researchers, educators, companies and the public",
    "commercial and non-commercial use permitted",
    "Free for commercial and non-commercial use",
    "released to the research community",
    "Available to researchers, students and companies",
    "Available to students, companies and the public",
    "annotated by research groups only",
    "Annotated by students only",
    "Free for research and commercial use",
    "MIT License for research and commercial use",
    "Research use: allowed",
    "CC BY 4.0 (research split only has 500 rows)",
    "Commercial use permitted; all rights reserved",
]


@pytest.mark.parametrize("licence", STILL_UNLISTED)
def test_grants_and_notes_stay_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# Barred before, as they must stay: each restricts, or names a licence that does.
STILL_BARRED = [
    "for non-commercial use under CC BY-NC 4.0",
    "Free for commercial and non-commercial use under CC BY-NC 4.0",
    "commercial and non-commercial use require separate licences",
    "MIT licence for commercial and non-commercial use requires separate licences",
    "MIT licence for commercial and non-commercial research",
    "MIT licence not for commercial and non-commercial use",
    "No MIT licence for commercial and non-commercial use",
    "Free for commercial and non-commercial use under CC BY 4.0; research only",
    "Free for commercial and non-commercial use under a separate licence",
    "Free for commercial and non-commercial use under LicenseRef-research",
    "Ask the authors for commercial and non-commercial use under CC BY 4.0",
    "Apache 2.0 licence, ask for commercial and non-commercial use",
    "Available to academic researchers",
    "CC BY 4.0 (academic use)",
]


@pytest.mark.parametrize("licence", STILL_BARRED)
def test_values_that_restrict_stay_barred(licence: str) -> None:
    assert_barred(licence)
