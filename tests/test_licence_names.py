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


def assert_barred(licence: str) -> None:
    """Barred by its wording (not as unknown): no `commercial_reason` lets it into the variant."""
    assert licences.is_non_commercial(licence)
    bar = licences.licence_bar(licence)
    assert bar is not None and not bar.unknown
    assert not licences.commercial_eligible(True, licence)


def assert_unlisted(licence: str) -> None:
    """Not barred, not listed: a `commercial_reason` lets it in."""
    assert not licences.is_non_commercial(licence)
    assert licences.standing(licence) == licences.Standing.UNLISTED
    assert licences.licence_bar(licence) is None
    assert licences.commercial_eligible(True, licence)


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
    # follow-up hunt (licE): wordings from dataset cards that read as unlisted, which a
    # `commercial_reason` let into the commercial variant. Other ways to say "contact":
    "get in touch for commercial use",
    "Email us for commercial use",
    "reach out to us for commercial licensing",
    "inquire about commercial use",
    # commercial use left to a paid agreement, or to a licence named after the permission
    "commercial use requires a fee",
    "commercial use is subject to a fee",
    "commercial use requires payment of royalties",
    "commercial use requires a commercial license",
    "commercial use: licence required",
    "commercial license required",
    "paid licence required for commercial use",
    "A separate license is required for commercial use",
    "written permission needed for any commercial use",
    # purposes that grant a look at the data, or private use, not training a commercial model
    "for testing and evaluation purposes",
    "testing purposes only",
    "for benchmarking only",
    "for demonstration purposes only",
    "for teaching use",
    "for private use only",
    "free for private use",
    # an offer of a commercial licence beside a restriction, or alone, is no dual licence
    "GPL-3.0; commercial licenses available; research use only",
    "MIT; commercial use requires permission",
    "Proprietary; commercial licenses available",
    "CC-BY-NC-4.0; commercial licenses available",
    # review (revL): the "no" looked back for belongs to another sentence
    "Free to use without a licence. A paid licence is required for commercial use.",
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
    # follow-up hunt (licE): what the new wordings must leave alone
    "No license fee required for commercial use",  # "no" before the permission grants it
    "no prior written permission required for commercial use",
    "commercial use requires no fee",
    "commercial use, no licence required",
    "Free for commercial use, email us with questions",  # the email is for questions
    "email: data@example.org for commercial questions",
    "contact us about commercial support",
    "free for private and commercial use",
    # they limit passing the data on, not commercial use (a company's internal use is commercial):
    # unlisted, so a person who read the terms may flag it, with a `commercial_reason`
    "internal use only",
    "for internal use",
    "not for resale",
    "not for redistribution",
    # dual licensing: the open licence allows commercial use; the offer is of other terms
    "GPL-3.0; commercial licenses available",
    "GPL-3.0-or-later (commercial licensing available on request)",
    "AGPL-3.0 or commercial",
    "AGPL-3.0; contact us for commercial licensing",
    "MIT; commercial licenses available",
    # review (revL): more words between the "no" and the permission, each read as required
    "No fee or permission required for commercial use",
    "Without any fee required for commercial use",
    "No author's permission is required for commercial use",
    # review (revL): a listed id as people write it ("cc0" is CC0-1.0, as "MIT" reads alone)
    "cc0; commercial licenses available",
    # review (revL): a copy of the licence is a credit, as "a licence copy" is
    "A copy of the license is required for commercial use",
    "CC-BY-4.0; a copy of the licence is needed for commercial redistribution",
]


@pytest.mark.parametrize("licence", FORBIDDING)
def test_wordings_that_forbid_commercial_use_bar_the_data(licence: str) -> None:
    assert_barred(licence)
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


# The purposes one word list names (licencetext._PURPOSES): each restricts in both rules that read it, as
# "X only" and as "for X purposes"; they were two near-copies of one list, and "researcher" and
# "academics" were in one only. Testing, benchmarking, demonstration, teaching and private use were
# in neither: "for testing and evaluation purposes" read as unlisted.
@pytest.mark.parametrize(
    "purpose",
    [
        *["research", "researcher", "researchers", "academic", "academics", "personal", "private"],
        *["educational", "teaching", "evaluation", "testing", "benchmarking", "demonstration"],
        *["scientific", "non-profit", "nonprofit", "not-for-profit"],
    ],
)
def test_each_restricting_purpose_bars_both_ways(purpose: str) -> None:
    assert licences.is_non_commercial(f"{purpose} only")
    assert licences.is_non_commercial(f"for {purpose} purposes")
    assert licences.is_non_commercial(f"{purpose} use")


# Dual licensing: an open licence (on the list, or a GNU one) beside an offer of a commercial licence
# was barred as "commercial licenses available" alone is, though the work is usable under the open
# licence. It reads as unlisted now: a `commercial_reason` lets it in, as it does for GPL-3.0 alone.
@pytest.mark.parametrize(
    "licence", ["GPL-3.0; commercial licenses available", "MIT (commercial licenses available)"]
)
def test_a_dual_licence_reads_as_unlisted_and_a_reason_lets_it_in(licence: str) -> None:
    assert licences.standing(licence) == licences.Standing.UNLISTED
    assert licences.commercial_eligible(True, licence)
    with pytest.raises(SourceError, match="is not one this project knows to allow commercial use"):
        parse_entry("web", {**_entry(licence, reason=""), "commercial_reason": None})
    assert parse_entry("web", _entry(licence, reason="GPL-3.0 allows commercial use")).commercial


# Listed licences by the names people write for them: each read as unlisted (a reason was asked for
# MIT's own name). Whole values only: what restricts, or names no licence, stays as it was.
SPELLED_OUT = {
    "MIT License": "MIT",
    "The MIT License": "MIT",
    "MIT Licence": "MIT",
    "Apache License 2.0": "Apache-2.0",
    "Apache License, Version 2.0": "Apache-2.0",
    "Apache 2.0": "Apache-2.0",
    "BSD 3-Clause License": "BSD-3-Clause",
    "BSD 2-Clause License": "BSD-2-Clause",
    "CC BY 4.0": "CC-BY-4.0",
    "CC BY-SA 4.0": "CC-BY-SA-4.0",
    "CC BY 3.0 Unported": "CC-BY-3.0",
    "Creative Commons Attribution 4.0 International": "CC-BY-4.0",
    "Creative Commons Attribution-ShareAlike 4.0 International": "CC-BY-SA-4.0",
    "Attribution 4.0 International": "CC-BY-4.0",
    "CC0": "CC0-1.0",
    "CC0 1.0 Universal": "CC0-1.0",
    "Creative Commons Zero v1.0 Universal": "CC0-1.0",
    "The Unlicense": "Unlicense",
    "Mozilla Public License 2.0": "MPL-2.0",
}


@pytest.mark.parametrize(("name", "spdx"), SPELLED_OUT.items())
def test_a_listed_licence_by_its_spelled_out_name_reads_as_its_id(name: str, spdx: str) -> None:
    assert licences.standing(name) == licences.Standing.KNOWN == licences.standing(spdx)
    assert licences.needs_attribution(name) == licences.needs_attribution(spdx)
    assert parse_entry("web", {**_entry(name, reason=""), "commercial_reason": None}).commercial


@pytest.mark.parametrize(
    ("licence", "standing_of"),
    [
        ("CC BY-NC 4.0", licences.Standing.NON_COMMERCIAL),
        ("Creative Commons Attribution-NonCommercial 4.0 International", licences.Standing.NON_COMMERCIAL),
        ("Creative Commons", licences.Standing.UNKNOWN),
        ("CC BY 4.0 (attribution)", licences.Standing.UNLISTED),  # more than the name: read whole
        ("CC BY-SA 2.0", licences.Standing.UNLISTED),  # CC-BY-SA-2.0 is not on the list
        ("CC BY-ND 4.0", licences.Standing.UNLISTED),  # no derivatives: not on the list
        ("Public Domain", licences.Standing.UNLISTED),  # a claim to check, not a licence's name
        ("MIT-like License", licences.Standing.UNLISTED),
        ("Apache License", licences.Standing.UNLISTED),  # which version?
    ],
)
def test_names_beside_the_spelled_out_ones_stay_as_they_were(
    licence: str, standing_of: licences.Standing
) -> None:
    assert licences.standing(licence) == standing_of


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
