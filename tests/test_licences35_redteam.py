"""Licence values as dataset cards and READMEs write them that forbid commercial use, but read as an
unlisted licence (a `commercial_reason` let their data into the commercial variant): a red-team of
the unsafe direction (session 35). Typos of "non-commercial", the CC legal code's own "You may not
use the material for commercial purposes", a use granted "for research" without a use word after
it, a soft hyphen pasted inside "Non-commercial". Each is barred now; the values beside them that
grant commercial use, or say nothing of it, read as before."""

from __future__ import annotations

import pytest

from pipeline.sources import licences
from tests.test_licence_names import assert_barred, assert_unlisted

TYPOS = [
    "Non-comercial",
    "NonCommerical",
    "noncomercial",
    "non-commerical",
    "non commerical use only",
    "Attribution-NonCommerical 4.0",
    "Not for comercial use",
    "No comercial use",
    "Comercial use prohibited",
    "CCBYNCSA",  # "BY NC" run into "SA": "nc" was followed by a letter
    "ccbyncnd4.0",
    "Non\u00adcommercial",  # a soft hyphen from a web page or PDF
    "CC BY-N\u200bC 4.0",  # a zero-width space
    "Mistral AI Non-Production License",
    "qwen-research",  # the Hub's id for the Qwen RESEARCH LICENSE AGREEMENT (non-commercial)
]

NEGATED_USE = [
    "You may not use the material for commercial purposes.",  # CC BY-NC's legal code, 3(a)
    "You may not use this dataset for commercial purposes.",
    "may not be used commercially",
    "must not be used for commercial purposes",
    "cannot be used for commercial purposes",
    "The dataset cannot be used for any commercial purpose",
    "can't be used commercially",
    "not to be used for commercial purposes",
    "Do not use for commercial purposes",
    "Don't use commercially",
    "does not allow commercial use",
    "The license does not permit commercial use",
    "It is forbidden to use this data for commercial purposes",
    "Prohibited: commercial use",
    "shall not be redistributed or used for commercial purposes",
]

GRANTED_FOR = [
    "Free for research",
    "Freely available for research",
    "Available free of charge for research",
    "Free to use for research",
    "Intended for research",
    "For academic research",
    "For use in academic research",
    "Distributed for research and teaching",
    "Permission is granted to use this dataset for research.",
    "CC BY 4.0, freely available for academic research",  # as "CC BY 4.0, free for academic use"
]

# Grant commercial use, or say nothing that limits it: unlisted, as before
STILL_UNLISTED = [
    "does not restrict commercial use",
    "You do not need permission for commercial use",
    "Attribution is not required for commercial use",
    "not only for research but also commercial use",
    "Free for research and commercial use",
    "Freely available for research, commercial use allowed",
    "Prohibited uses: none",
    "not prohibited: commercial use",
    "Released to the research community under CC-BY-4.0",
    "Data provided by researchers at X",
    "Freely available for research and development",
    "Collected for research",
    "Available for research; commercial use permitted",
    "Production-ready",
    "commerce data, no restrictions",
    "We do not charge for commercial use",
    "BSD-style licence as published by NCSA",  # "by NCSA" is no "BY-NC-SA"
    "University of Illinois/NCSA Open Source License",
]


@pytest.mark.parametrize("licence", TYPOS + NEGATED_USE + GRANTED_FOR)
def test_values_that_forbid_commercial_use_are_barred(licence: str) -> None:
    assert_barred(licence)


@pytest.mark.parametrize("licence", STILL_UNLISTED)
def test_values_that_do_not_forbid_it_stay_unlisted(licence: str) -> None:
    assert_unlisted(licence)


@pytest.mark.parametrize(
    "licence", ["MIT", "Apache-2.0", "CC-BY-4.0", "CC0-1.0", "BSD-3-Clause", "MIT License", "CC BY 4.0"]
)
def test_listed_permissive_licences_stay_known(licence: str) -> None:
    assert licences.standing(licence) == licences.Standing.KNOWN
    assert licences.licence_bar(licence) is None
