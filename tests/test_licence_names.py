"""Licence names a person writes rather than an SPDX id: the non-commercial wordings beside
CC-BY-NC ("no commercial use", "commercial use prohibited", "CC-BYNC-4.0") and the "unknown"
placeholders as they get pasted ("Unknown.", "unknown" with a zero-width space). Read as a licence
one knows nothing of, each let flagged data into the commercial variant once a `commercial_reason`
was given (a commercial audit found them)."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.schema import licence_known
from pipeline.sources import licences
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import parse_entry

FORBIDDING = [
    "no commercial use",
    "No-Commercial",
    "Commercial use prohibited",
    "commercial use is not allowed",
    "free, but commercial redistribution forbidden",
    "commercial use: not permitted",
    "CCBYNC4.0",
    "CC-BYNC-4.0",
    "cc by nc 4.0",
    "Redistribution commercially is prohibited",  # "commercially" was no "commercial" word
    "for researchers only",  # the people: "researchers" was no restricting word
    "Academics only",
    # licence audit (licids): Hub and SPDX ids whose terms allow non-commercial use only, though
    # the id does not say so; each was unlisted, which a `commercial_reason` let through
    "deepfloyd-if-license",
    "intel-research",
    "h-research",
    "apple-amlr",
    "NCGL-UK-2.0",
    "Prosperity-3.0.0",
    "PolyForm-Strict-1.0.0",
    "MIT AND apple-amlr",
    # use granted for a restricting purpose, without an "only"
    "free for academic use",
    "For research use",
    "Research and educational use",
    "Free for academic and research use",
    "released for research purposes",
    "Intel Research Use License Agreement",
    "H Research License",
    "Free for non-profit use",
    "Non-profit use only",
    "for not-for-profit purposes only",
    "scientific use only",
    # the terms as written leave commercial use to a separate licence
    "commercial use requires permission",
    "Commercial use requires written permission",
    "commercial use requires a license",
    "commercial use subject to prior written approval",
    "commercial use: contact the authors",
    "contact us for commercial licensing",
    "Contact the authors for commercial use",
    "Commercial licenses available",
    "commercial licensing available on request",
    # a restricted purpose beside a mention of commercial use that does not grant it (the review)
    "Free for academic use. Commercial users must obtain a licence",
    "For academic use. Commercial use: see website",
    # review (licrev): close variants the rules above missed
    "For commercial use, please contact us",  # "please" before "contact"
    "commercial use: please contact the authors",
    "commercial use (contact us)",
    "commercial use \u2014 contact us",  # an em dash
    "commercial use requires the authors' permission",  # a possessive before the permission
    "commercial use requires a paid license",
    "LicenseRef-academic-use",  # as "academic use", behind SPDX's prefix for a custom licence
    "LicenseRef-research-use",
]
ALLOWING = [
    "MIT",
    "CC-BY-4.0",
    "commercial use allowed",
    "commercial use permitted (see LICENSE)",
    "prohibited words list, commercial",  # the forbidding word comes before "commercial"
    "No commercial restrictions",
    "no-commercial-limitation",
    "Commercial use is not prohibited",
    "Commercial use permitted; modifications not allowed",
    "Apache-2.0 (no warranty)",
    "CC-BY-SA-4.0",
    "free for TV commercials; resale prohibited",  # advertisements, and another clause
    "used commercially worldwide",
    "researchers welcome, commercial use allowed",
    # licence audit (licids): what the new rules must leave alone
    "Academic Free License v3.0",  # AFL-3.0: permissive
    "Educational Community License 2.0",  # ECL-2.0: Apache-like
    "research use welcome",  # welcomes one use, restricts none
    "Free for research and commercial use",
    "for research use and commercial use",
    "commercial use requires attribution",  # a credit, not a permission
    "Commercial use subject to the terms of CC-BY-4.0",
    "Contact: data@example.org, free for commercial use",
    "commercially available",
    "No permission required for commercial use",
    "released by a non-profit under MIT",
    "commercial use requires licence attribution",  # a credit, not a permission (the review)
    # review (licrev): each was barred as non-commercial, which no `commercial_reason` can undo
    "Apache-2.0; contact us for commercial support",  # support, not use
    "CC-BY-4.0 (contact: data@example.org for commercial questions)",
    "Free for commercial use, contact us with questions",
    "commercial use with a licence notice",  # a notice, not a permission
    "free for personal use\ncommercial use allowed",  # read as on one line
]


@pytest.mark.parametrize("licence", FORBIDDING)
def test_wordings_that_forbid_commercial_use_bar_the_data(licence: str) -> None:
    assert licences.is_non_commercial(licence)
    bar = licences.licence_bar(licence)
    assert bar is not None and not bar.unknown
    assert not licences.commercial_eligible(True, licence)
    with pytest.raises(SourceError, match="does not allow commercial use"):
        parse_entry("web", _entry(licence, reason="our lawyer says so"))


@pytest.mark.parametrize("licence", ALLOWING)
def test_wordings_that_do_not_forbid_it_stay_as_they_were(licence: str) -> None:
    assert not licences.is_non_commercial(licence)
    assert licences.licence_bar(licence) is None


UNKNOWN = [
    *["Unknown.", "unknown\u200b", "\ufeffN/A", " NONE. ", "\u200b", "unknown\u00ad", "TBA", "tbc."],
    # licence audit (licids): placeholders and pointers as written in dataset cards, each read as an
    # unlisted name, which a `commercial_reason` let into the commercial variant
    *["N.A.", "Unknown license", "No license", "not stated", "none specified", "Not provided"],
    *["unlicensed", "Custom", "custom license", "various", "Mixed", "Multiple licenses", "cc"],
    "Creative Commons",
    *["see LICENSE", "See LICENSE file", "see below", "same as upstream", "as per the original dataset"],
    *["other (see LICENSE)", "unknown (see README)", "per-file (see NOTICE)"],
]


@pytest.mark.parametrize("licence", UNKNOWN)
def test_pasted_placeholders_are_unknown(licence: str) -> None:
    assert licences.is_unknown(licence)
    bar = licences.licence_bar(licence)
    assert bar is not None and bar.unknown
    assert not licences.commercial_eligible(True, licence)


NOT_UNKNOWN = [
    *["(MIT)", "MIT (see LICENSE)", "Unlicense", "seeds licence", "CC-BY-4.0", "cc0-1.0"],
    "See-Saw License",  # a name that starts with a pointer word (the review)
]


@pytest.mark.parametrize("licence", NOT_UNKNOWN)
def test_names_beside_the_placeholders_are_not_unknown(licence: str) -> None:
    assert not licences.is_unknown(licence)
    assert licences.standing(licence) != licences.Standing.UNKNOWN


# The Hub's ids for ODC-By-1.0, ODbL-1.0 and PDDL-1.0 (each licence has one version): read as names,
# they were unlisted while the SPDX ids were known.
@pytest.mark.parametrize(("licence", "attribution"), [("odc-by", True), ("odbl", True), ("pddl", False)])
def test_the_hubs_ids_for_listed_licences_are_known(licence: str, attribution: bool) -> None:
    assert licences.is_known_commercial(licence)
    assert licences.needs_attribution(licence) is attribution


# Attribution licences by their titles (as a card's text or a sidecar spells them out) and the
# government open licences that ask for the source to be acknowledged: none asked for a credit.
ATTRIBUTION = [
    "Creative Commons Attribution 4.0",
    "Creative Commons Attribution 4.0 International",
    "Attribution 4.0 International",
    "Attribution-ShareAlike 4.0 International",
    "Attribution-NonCommercial 4.0 International",
    "Creative Commons BY-NC",
    "Open Data Commons Attribution License",
    "Open Data Commons Open Database License (ODbL)",
    "OGL-UK-3.0",
    "OGL-Canada-2.0",
    "DL-DE-BY-2.0",
    "etalab-2.0",
    "NLOD-2.0",
    "MIT AND OGL-UK-3.0",
    "Open Government Licence v3.0",  # review (licrev): the OGL's title, beside its ids
    "MIT AND LicenseRef-Creative-Commons-Attribution-4.0",  # a part by its title, as one name is
]
NO_ATTRIBUTION = [
    *["MIT", "No attribution required", "Apache-2.0, without attribution", "DL-DE-ZERO-2.0"],
    # review (licrev): "attribution" followed by what says it is not asked for
    *["Attribution not required", "CC0-1.0 (attribution optional)", "attribution: none"],
    "MIT (attribution appreciated)",
]


@pytest.mark.parametrize("licence", ATTRIBUTION)
def test_attribution_licences_by_title_ask_for_a_credit(licence: str) -> None:
    assert licences.needs_attribution(licence)


@pytest.mark.parametrize("licence", NO_ATTRIBUTION)
def test_names_that_ask_for_no_credit_stay_so(licence: str) -> None:
    assert not licences.needs_attribution(licence)


def test_the_row_wise_known_rule_is_the_python_one() -> None:
    """schema.licence_known used polars' strip_chars, which keeps U+001C..U+001F (str.strip drops
    them) and zero-width spaces: the two disagreed on such values."""
    values = [*UNKNOWN, "\x1cunknown\x1f", "MIT", "CC-BY-4.0", "unknown", "", None, "unknowns"]
    got = pl.DataFrame({"licence": values}).select(licence_known())["licence"].to_list()
    assert got == [v is not None and not licences.is_unknown(v) for v in values]
    assert got[-1] is True and got[-2] is False


def _entry(licence: str, reason: str) -> dict[str, object]:
    return {
        "kind": "url",
        "location": "https://x",
        "adapter": "openai",
        "licence": licence,
        "commercial": True,
        "commercial_reason": reason,
    }


def test_a_barred_wording_is_quoted_and_the_way_out_named() -> None:
    """Free text ran into the sentence (`licence commercial use requires permission does not allow
    ...`), and a person holding a separate commercial licence was told only `commercial: false`."""
    with pytest.raises(SourceError) as e:
        parse_entry("web", _entry("commercial use requires permission", reason="we asked"))
    assert "licence 'commercial use requires permission' does not allow commercial use" in str(e.value)
    assert "where a separate licence grants commercial use, name that one" in str(e.value)
    with pytest.raises(SourceError, match="licence CC-BY-NC-4.0 does not allow commercial use"):
        parse_entry("web", _entry("CC-BY-NC-4.0", reason="we asked"))


def test_an_unknown_licence_is_shown_short_with_the_advice_that_works() -> None:
    """A pointer ("see LICENSE ...") is unknown whatever its length, and its whole text went into the
    one-line error, line breaks and all; the advice (add a reason) could not work, since the build
    keeps data of an unknown licence out of the commercial variant whatever the reason says."""
    entry = {**_entry("see LICENSE\nline two\n" + "x" * 300, reason=""), "commercial_reason": None}
    with pytest.raises(SourceError) as e:
        parse_entry("web", entry)
    message = str(e.value)
    assert "\n" not in message and len(message) < 400, message
    assert "(unknown) but commercial is true; name the licence you established (an SPDX id)" in message
