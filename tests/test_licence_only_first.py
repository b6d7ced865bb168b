"""Licence values that limit use to a restricting purpose with the limiting word FIRST ("Only academic
use permitted", "Restricted to personal use"): "Academic use only" was barred, but with `only` before
the purpose each read as an unlisted licence, which a `commercial_reason` let into the commercial
variant (session 34). Notes about the data that put `only` before a purpose word naming a thing
("only the research code is included") stay free text, unlisted."""

from __future__ import annotations

import pytest
from test_licence_names import assert_unlisted

from pipeline.sources import licences
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import Standing
from pipeline.sources.registry import check_licence

BARRED = [
    # the brief's examples
    "Only academic use permitted",
    "Only research use is permitted",
    "Only personal use allowed",
    "Use is limited to academic research",
    "Restricted to personal use",
    # `only` first, nothing or a few words of how the use is granted between
    "Only for research",
    "only research",
    "Only educational use",
    "Only non-profit use",
    "Only not-for-profit use",
    "Only for testing and evaluation",
    "Only for scientific research",
    "Only academics",
    "Only researchers may use this data",
    "Use only for teaching",
    "May be used only for research",
    "Can only be used for research",
    "only for use in research",
    "Only for evaluation of models",  # a preposition after a purpose that "for" led to
    # the other limiting words
    "Exclusively for research",
    "For use solely in research",
    "Solely for the purpose of research",
    "Strictly personal use",
    "Restricted to academic institutions",
    "Limited to research use",
    "Use limited to non-profit organisations",
    "Access restricted to researchers",
    "Redistribution is limited to research",
    "License restricted to educational use",
    "Reserved for research use",
    "Confined to academic settings",
    # beside an open licence, in a clause of its own or on a line of its own
    "MIT; only for research",
    "CC-BY-4.0; use restricted to academic research",
    "Apache-2.0\nOnly for research (see LICENSE)",
    "MIT; only the test split is restricted to research",  # a part of the data, restricted: barred
]


@pytest.mark.parametrize("licence", BARRED)
def test_a_limiting_word_before_a_purpose_bars_the_licence(licence: str) -> None:
    assert licences.is_non_commercial(licence)
    assert licences.standing(licence) == Standing.NON_COMMERCIAL
    bar = licences.licence_bar(licence)
    assert bar is not None and not bar.unknown
    assert not licences.commercial_eligible(True, licence)


@pytest.mark.parametrize("licence", ["Only academic use permitted", "Restricted to personal use"])
def test_the_registry_refuses_a_commercial_flag_whatever_the_reason(licence: str) -> None:
    with pytest.raises(SourceError, match="does not allow commercial use"):
        check_licence("sources.yaml: x", licence, True, "we read the terms")
    check_licence("sources.yaml: x", licence, False, None)  # not flagged: taken (full variant only)


NOT_BARRED = [
    # no purpose word after the `only` (session 33's notes, and more)
    "Only public posts were kept",
    "CC-BY-4.0 (private messages removed; only public posts)",
    "Apache-2.0; testing split only has 500 rows",
    "MIT; limited to 1000 rows",
    "MIT; restricted to English",
    "MIT; strictly for fun",
    # a purpose word naming a thing or a part of the data: the noun after it says so
    "MIT; only the research code is included",
    "MIT; only research papers were scraped",
    "CC-BY-4.0; only academic papers",
    "Apache-2.0; only personal names were removed",
    "MIT; only personal data removed",
    "MIT; strictly personal data removed",
    "MIT; only private messages were removed",
    "Only the research split",
    "CC-BY-4.0; restricted to the research subset",
    "Apache-2.0; only testing of the English subset was done",  # no "for" before "testing of"
    # "limited" and the like only before "to" ("reserved" before "for")
    "MIT; limited testing",
    "MIT; restricted access for researchers",
    # negated: the limit is denied
    "Not only for research",
    "Use is not limited to research",
    "Use isn't restricted to academic use",
    # the run goes on to commercial use
    "Only for research and commercial use",
    "Only for academic or commercial research",
    # `only` of an SPDX id
    "GPL-3.0 only",
    "GPL-3.0-only; research welcome",
]


@pytest.mark.parametrize("licence", NOT_BARRED)
def test_notes_with_only_before_a_word_that_is_no_purpose_stay_unlisted(licence: str) -> None:
    assert_unlisted(licence)


@pytest.mark.parametrize(
    ("licence", "expected"),
    [
        ("MIT AND LicenseRef-only-for-research", Standing.NON_COMMERCIAL),  # every part applies
        ("MIT OR LicenseRef-only-for-research", Standing.KNOWN),  # the recipient may choose MIT
    ],
)
def test_an_spdx_expression_reads_such_a_part_as_barred(licence: str, expected: Standing) -> None:
    assert licences.standing(licence) == expected


@pytest.mark.parametrize("licence", ["MIT", "BSD-3-Clause", "CC0-1.0"])
def test_the_default_data_licences_read_as_before(licence: str) -> None:
    assert licences.standing(licence) == Standing.KNOWN
    assert licences.licence_bar(licence) is None
