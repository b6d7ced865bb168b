"""One way to quote a library's error in a one-line report (pipeline/errortext.py)."""

from __future__ import annotations

import pytest

from pipeline.errortext import first_line, gist


@pytest.mark.parametrize(
    ("error", "line", "summary"),
    [
        (
            OSError("\n  No space left on device\nmore context"),
            "No space left on device",
            "OSError: No space left on device",
        ),
        (KeyError(), "KeyError", "KeyError"),  # an empty message still says something
        (ValueError("   \n \n"), "ValueError", "ValueError"),
        (RuntimeError("one line"), "one line", "RuntimeError: one line"),
    ],
)
def test_the_first_line_or_the_type(error: BaseException, line: str, summary: str) -> None:
    assert first_line(error) == line
    assert gist(error) == summary


def test_a_limit_cuts_a_foreign_message() -> None:
    e = RuntimeError("x" * 1000 + "\nsecond")
    assert first_line(e) == "x" * 1000
    assert first_line(e, 10) == "x" * 10
    assert gist(e) == "RuntimeError: " + "x" * 300
    assert gist(e, 5) == "RuntimeError: xxxxx"
