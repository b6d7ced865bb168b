"""Licence values a red team of session 37 found read unlisted though they restrict commercial use
(which a `commercial_reason` let into the commercial variant), and a few that barred though they
restrict nothing. Each restricting value below read unlisted at 9fe650a; each look-alike that now
reads unlisted barred there."""

from __future__ import annotations

import pytest
from test_licence_names import assert_barred, assert_unlisted

# Purpose words the readers did not know: "education", and "university" (or "college") before a
# purpose, who holds one, or a use
PURPOSE_WORDS_MISSING = [
    "Available to university staff",
    "Free for university students",
    "CC BY 4.0 (education)",
    "MIT License for research and education",
    "Free for education",
    "For education only",
    "Education use",
    "Licensed for education",
    "MIT licence for education",
    "Free for education and research",
    "Restricted to education",
    "MIT (education only)",
    "Available to university faculty",
    "Free for university researchers",
    "Free to university staff",
    "Free for university use",
    "University use only",
    "For university research",
    "Free for college students",
    "Only available to university researchers",
    "Available only to university researchers",
    "Available to university staff only",
]
# Who holds a purpose (or the purpose's people) followed by where, how, or more such people
HOLDER_GOES_ON = [
    "Available to research institutions and universities",
    "Available to academic users upon request",
    "Available to academic users on request",
    "Available to research institutions worldwide",
    "Available to research labs globally",
    "Provided to research institutions on request",
    "Provided to academic partners upon request",
    "Available to academic partners and universities",
    "Available to students upon request",
    "Available to researchers or students upon request",
    "Available to educators worldwide",
    # test_licences36 kept this unlisted; it limits use to researchers as "... institutions
    # worldwide" does, and bars with it
    "Available to researchers worldwide",
]
# A purpose as a note, set off by "+" or "&" without spaces, or by a comma after a listed licence
NOTES_SET_OFF = [
    "MIT+research use",
    "MIT+academic use",
    "MIT+research",
    "MIT & research use",
    "MIT & academic use",
    "MIT &research use",
    "MIT, academic",
    "MIT, academic.",
    "CC BY 4.0, academic",
]
# Commercial rights kept back by who made the data, in other words
RIGHTS_KEPT = [
    "Commercial rights remain with the authors",
    "Commercial rights remain with the author",
    "Commercial rights stay with the authors",
    "Commercial rights rest with us",
    "Commercial rights belong to the authors",
    "Commercial use rights belong to the creators",
    "Commercial use rights remain with the original creators",
    "Commercial exploitation rights remain with the authors",
    "Commercial rights are held by the authors",
    "Commercial rights held by the university",
    "All commercial rights are owned by the university",
    "The authors retain commercial rights",
    "The authors retain all commercial rights",
    "Authors retain commercial use rights",
    "The university retains all commercial rights",
    "Our company retains all commercial rights",
    "The authors hold commercial rights",
    "Commercial use \u2014 reserved",
    "Commercial use - reserved",
    "Reserved: commercial use",
    "Reserved: commercial rights",
    "Reserved \u2014 commercial use",
    "reserved - commercial use",
]


@pytest.mark.parametrize("licence", PURPOSE_WORDS_MISSING + HOLDER_GOES_ON + NOTES_SET_OFF + RIGHTS_KEPT)
def test_values_that_restrict_commercial_use_bar_it(licence: str) -> None:
    assert_barred(licence)


# Barred at 9fe650a, restricting nothing: a field's name before the purpose (what the data is about),
# a purpose alone after "|" (a table's next field), a pair granting both uses after "Licensed under" a
# listed licence
NOW_UNLISTED = [
    "Genre: academic",
    "Topic: research",
    "CC BY 4.0 | academic",
    "CC BY 4.0 | genre: academic",
    "Licensed under MIT for commercial and non-commercial use",
    "Released under MIT for commercial and non-commercial purposes",
]
# Look-alikes that were unlisted and must stay so: a university's name, a grant to the licensee, a
# pair naming commercial use, a list with a commercial recipient
STILL_UNLISTED = [
    "Created at Stanford University",
    "\u00a9 2021 University of X",
    "University of Edinburgh",
    "MIT (University of Oxford)",
    "MIT (University College London)",
    "Stanford University License",
    "University of Illinois/NCSA Open Source License",
    "Released by university staff under CC BY 4.0",
    "University staff annotated it; MIT",
    "Free for everyone, including university students",
    "Available to university students and companies",
    "Available to university staff, companies and the public",
    "Available to researchers and the public worldwide",
    "Available to researchers and",
    "Available to everyone on request",
    "Available to researchers on request; commercial use allowed",
    "Provided to research labs and companies upon request",
    "Education data under CC BY 4.0",
    "Education: CC BY 4.0",
    "Domain: education",
    "CC BY 4.0 (higher education)",
    "CC BY 4.0, education dataset",
    "commercial & research use",
    "commercial&research use",
    "commercial & academic use",
    "Free for commercial & research use",
    "MIT & commercial use",
    "MIT+commercial",
    "AT&T research use",
    "MIT, commercial",
    "MIT, Apache-2.0",
    "MIT, research and commercial use",
    "MIT, academic paper corpus",
    "You retain all commercial rights to your outputs",
    "You hold all commercial rights",
    "Users keep all commercial rights to generated text",
    "Commercial rights remain with you",
    "Commercial rights remain with the licensee",
    "Commercial rights belong to the user",
    "Commercial use rights are held by the user",
    "Reserved: commercial use allowed",
    "All rights reserved - commercial use allowed",
    "Free for education and commercial use",
    "Licensed under GPL-3.0 for commercial and non-commercial use",
    "Released under Apache-2.0 for commercial and non-commercial purposes",
]


@pytest.mark.parametrize("licence", NOW_UNLISTED + STILL_UNLISTED)
def test_look_alikes_that_restrict_nothing_are_unlisted(licence: str) -> None:
    assert_unlisted(licence)


# The relaxations stop where a restriction is written: a purpose with its use word after a label or a
# "|", a pair after "Licensed under" that goes on, or under a licence that is not listed
STILL_BARRED = [
    "Topic: research use",
    "Genre: academic; research use only",
    "Audience: researchers",
    "CC BY 4.0 | academic use",
    "CC BY 4.0 | research only",
    "Non-commercial & research use",
    "Licensed under MIT for commercial and non-commercial use. Fee required.",
    "Licensed under CC BY-NC 4.0 for commercial and non-commercial use",
    "Licensed under a custom licence for commercial and non-commercial use",
    "CC BY 4.0, research use",
]


@pytest.mark.parametrize("licence", STILL_BARRED)
def test_restrictions_beside_the_relaxations_still_bar(licence: str) -> None:
    assert_barred(licence)
