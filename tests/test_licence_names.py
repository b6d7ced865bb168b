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


UNKNOWN = ["Unknown.", "unknown\u200b", "\ufeffN/A", " NONE. ", "\u200b", "unknown\u00ad", "TBA", "tbc."]


@pytest.mark.parametrize("licence", UNKNOWN)
def test_pasted_placeholders_are_unknown(licence: str) -> None:
    assert licences.is_unknown(licence)
    bar = licences.licence_bar(licence)
    assert bar is not None and bar.unknown
    assert not licences.commercial_eligible(True, licence)


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
