"""Session 36 review: what the session's changes misread.

iter_csv's open-quote record named the line after the record before it as where the quote opened,
and counted from there: blank lines between the two (DictReader skips them) were taken for the
record's. Licences: "not a commercial product" (what a thing is) ended the negation's reach, so
"This is not a commercial product or for commercial use" read as unlisted; "commercial rights with
the license" read as the rights coming with it when a clause followed that may say how to get that
licence ("; contact us for a quote"); "Commercial rights remain reserved" read as unlisted.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from test_licence_names import assert_barred, assert_unlisted

from pipeline.sources.readers import iter_csv

OPEN_AFTER_BLANKS = 'a,b\n1,2\n\n\n"open,x\ny\n'  # the quote opens on line 5; lines 5-6 are read into it


@pytest.mark.parametrize("gz", [False, True])
def test_an_open_quote_after_blank_lines_names_the_line_it_opens_on(tmp_path: Path, gz: bool) -> None:
    path = tmp_path / ("f.csv.gz" if gz else "f.csv")
    data = OPEN_AFTER_BLANKS.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    records = list(iter_csv(path))
    assert [(r.line, r.check) for r in records] == [(2, None), (5, "csv_parse")]
    assert "at line 5 is never closed: the 2 line(s)" in records[1].reason


def test_an_open_quote_with_crlf_lines_after_a_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a,b\r\n1,2\r\n\r\n3,"x\r\ny\r\nz\r\n')
    records = list(iter_csv(path))
    assert records[-1].line == 4 and records[-1].check == "csv_parse"
    assert "at line 4 is never closed: the 3 line(s)" in records[-1].reason


@pytest.mark.parametrize(
    "licence",
    [
        # a description first, then a use denied within the negation's reach
        "This is not a commercial product or for commercial use",
        # a clause after "with the license" may say how that licence is had
        "Commercial rights with the license; contact us for a quote",
        "Commercial rights with the license; license fee applies",
        "commercial rights with the licence;",
        # the rights kept back, in other words
        "Commercial rights remain reserved",
        "Commercial use rights remains strictly reserved",
    ],
)
def test_commercial_use_denied_is_barred(licence: str) -> None:
    assert_barred(licence)


@pytest.mark.parametrize(
    "licence",
    [
        "It is not a commercial product or service",
        "This data is not a commercial product and may be used by anyone",
        "MIT; commercial rights with the license",
        "Apache-2.0. Commercial rights with the licence.",
    ],
)
def test_what_limits_nothing_stays_unlisted(licence: str) -> None:
    assert_unlisted(licence)
