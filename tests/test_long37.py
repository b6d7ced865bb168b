"""Found while splitting archive.extract into steps (session 37): two hard-link members of one
name were extracted as one file, the last link's target silently winning, where two regular files
of one name are refused (the module's promise: a second member of a name is never laid over the
first)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_archive import _extract

from pipeline.sources.errors import SourceError


@pytest.mark.parametrize("last", ["d/t.csv", "d/u.csv"])
def test_two_hard_links_of_one_name_are_refused_before_writing(tmp_path: Path, last: str) -> None:
    first = "d/u.csv" if last == "d/t.csv" else "d/t.csv"
    entries = [
        ("d/t.csv", "file", b"T\n"),
        ("d/u.csv", "file", b"U\n"),
        ("d/x.csv", "link", first),
        ("d/x.csv", "link", last),
    ]
    with pytest.raises(SourceError, match=r"holds 'd/x\.csv' twice; refused"):
        _extract(tmp_path, entries, ["d/x.csv"])
    assert not (tmp_path / "out" / "d").exists()


def test_one_hard_link_of_a_name_is_still_a_copy_of_its_target(tmp_path: Path) -> None:
    entries = [("d/t.csv", "file", b"T\n"), ("d/x.csv", "link", "d/t.csv")]
    got = _extract(tmp_path, entries, ["d/x.csv"])
    assert got == {"members_extracted": 1, "members_skipped": {}}
    assert (tmp_path / "out/d/x.csv").read_bytes() == b"T\n"
