"""The CSV header's line, given by iter_csv (`CsvRecords.header_line`) rather than found again.

ubuntu refuses a file whose header lacks a column at the header's line. iter_csv knew that line and
did not say it, so ubuntu read the file twice more to find it (cr_only, then iter_lines): three
passes over a dump of a million rows, or over a .gz that is unpacked each time, where one does.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.sources import readers
from pipeline.sources.adapters import get_adapter
from pipeline.sources.registry import load_registry

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"a,b\n1,2\n", 1),
        (b"\n  \r\n\na,b\n1,2\n", 4),  # empty lines and a line of spaces before it are skipped
        (b"\r\ra,b\r1,2\r", 3),  # an old Mac file: csv ends a line at a lone CR
        (b'\n"a\nb",c\n1,2\n', 2),  # a header whose quoted name spans lines: the line it starts on
        (b'""\n\n""\na,b\n1,2\n', 4),  # lines holding an empty field alone hold no header (pandas too)
    ],
    ids=["first", "after-blank-lines", "lone-cr", "multi-line", "empty-quoted-fields"],
)
def test_iter_csv_gives_the_header_line(tmp_path: Path, data: bytes, line: int) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    records = readers.iter_csv(path)
    assert records.header_line is None  # not read before the first record is asked for
    first = next(records)
    assert first.ok and records.header_line == line
    assert list(records) == [] and records.header_line == line


def test_iter_csv_header_line_of_a_refused_header_is_the_refusal_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'\n\n"a,b\n1,2\n')  # a quote never closed takes the header to the end
    records = readers.iter_csv(path)
    (refused,) = records
    assert refused.check == "csv_parse" and records.header_line == refused.line == 3


def test_iter_csv_has_no_header_line_in_a_file_without_text(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\n  \n")
    records = readers.iter_csv(path)
    assert list(records) == [] and records.header_line is None


def test_iter_table_records_and_a_damaged_gzip_still_read_as_records(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    path.write_bytes(b"not gzip")
    records = readers.iter_table_records(path)
    (only,) = records
    assert only.check == "gzip" and records.header_line is None


def _ubuntu(folder: Path):
    spec = load_registry(REPO / "sources.yaml")["ubuntu"]
    return get_adapter("ubuntu")(folder, spec, {})


def test_ubuntu_refuses_a_header_reading_the_file_once(tmp_path: Path, monkeypatch) -> None:
    """It opened the file three times (iter_csv, cr_only, iter_lines); the refusal is as before."""
    path = tmp_path / "dialogueText.csv.gz"
    path.write_bytes(
        gzip.compress(b"\n\nfolder,dialogueID,date,from,to,message\n3,1,d,a,,hi\n3,1,d,b,a,yo\n")
    )
    opened: list[Path] = []
    real = readers.open_binary

    def counting(p: Path):
        opened.append(p)
        return real(p)

    monkeypatch.setattr(readers, "open_binary", counting)
    rows = _ubuntu(tmp_path)
    assert opened == [path]
    (bad,) = rows.filter(rows["check"].is_not_null()).iter_rows(named=True)
    assert (bad["origin"], bad["check"]) == ("dialogueText.csv.gz:3", "csv_header")
    assert "file not read (2 record(s) under it)" in bad["reason"]


@pytest.mark.parametrize(
    ("data", "line"),
    [(b"\r\r\nH\r\r\n3,1,d,a,,hi\r\r\n", 3), (b" \r \nH\n3,1,d,a,,hi\n", 3), (b'""\nH\n3,1,d,a,,hi\n', 2)],
    ids=["cr-cr-lf", "lone-cr-in-an-lf-file", "empty-quoted-field"],
)
def test_ubuntu_names_the_header_line_as_iter_csv_numbers_its_records(
    tmp_path: Path, data: bytes, line: int
) -> None:
    """The refusal's line was found by a second reader that split lines otherwise (a CR CR LF, or a
    lone CR in an LF file, ended one line there and two for csv, whose numbers every other row of
    the file carries), and that took a line of `""` for the header."""
    header = b"folder,dialogueID,date,from,to,message"
    (tmp_path / "dialogueText.csv").write_bytes(data.replace(b"H", header))
    rows = _ubuntu(tmp_path)
    assert rows.filter(rows["check"].is_not_null()).select("origin", "check").rows() == [
        (f"dialogueText.csv:{line}", "csv_header")
    ]
