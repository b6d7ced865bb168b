"""CSV headers (readers.iter_csv and the CSV adapters, ubuntu and empathetic_dialogues).

* Blank lines before the header are let be, as pandas and polars skip them: the header is the first
  line holding text. DictReader took the blank line as an empty header, so every record came back
  as {None: [...]} and ubuntu refused the file (`header found: `, empty); empathetic_dialogues
  checked line 1 alone, so a header after a blank line was read as a conversation's row and a
  header with moved columns shifted every field unseen.
* A header holding a field over the field limit refuses the file (one `csv_parse` record at the
  header's line): it was quarantined as a record, and the next record became the header.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.sources import readers
from pipeline.sources.adapters import get_adapter
from pipeline.sources.normalize import NormalizeResult, normalize_rows
from pipeline.sources.registry import load_registry

REPO = Path(__file__).resolve().parents[1]
DIALOGUE = b"folder,dialogueID,date,from,to,text\n3,1.tsv,d,alice,,hi\n3,1.tsv,d,bob,alice,hello\n"
ED_HEADER = b"conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
ED_ROWS = b"hit:0_conv:1,1,sad,p,1,hello_comma_ you,,\nhit:0_conv:1,2,sad,p,0,hi there,,\n"


def _run(name: str, folder: Path) -> NormalizeResult:
    spec = load_registry(REPO / "sources.yaml")[name]
    return normalize_rows(get_adapter(name)(folder, spec, {}), max_turn_chars=16_000)


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


def _texts(result: NormalizeResult) -> list[tuple[str, str]]:
    return result.turns.select("role", "text").rows()


# --- blank lines before the header ----------------------------------------------------------------


@pytest.mark.parametrize("blank", [b"\n", b"\n\n", b"\r\n\r\n"], ids=["lf", "two-lf", "crlf"])
def test_iter_csv_reads_the_header_from_the_first_line_holding_text(tmp_path: Path, blank: bytes) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(blank + b"a,b\n1,2\n\n3,4\n")
    records = list(readers.iter_csv(path))
    skipped = blank.count(b"\n")
    assert [(r.line, r.value, r.check) for r in records] == [
        (skipped + 2, {"a": "1", "b": "2"}, None),
        (skipped + 4, {"a": "3", "b": "4"}, None),
    ]


def test_a_file_of_blank_lines_has_no_record(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\n\r\n\n")
    assert list(readers.iter_csv(path)) == []


def test_ubuntu_reads_a_file_with_blank_lines_before_its_header(tmp_path: Path) -> None:
    """It was refused whole (`csv_header`, `header found: ` with nothing after it)."""
    (tmp_path / "dialogueText.csv").write_bytes(b"\n\n" + DIALOGUE)
    result = _run("ubuntu", tmp_path)
    assert _texts(result) == [("human", "hi"), ("bot", "hello")]
    assert result.quarantine.height == 0
    assert result.report["rows_read"] == 2 and _reconciles(result.report)


def test_empathetic_dialogues_skips_a_header_after_blank_lines(tmp_path: Path) -> None:
    """The header was read as a conversation `conv_id` of one turn (`utterance`), quarantined."""
    (tmp_path / "train.csv").write_bytes(b"\n\n" + ED_HEADER + ED_ROWS)
    result = _run("empathetic_dialogues", tmp_path)
    assert _texts(result) == [("human", "hello, you"), ("bot", "hi there")]
    assert result.quarantine.height == 0
    assert result.report["rows_read"] == 2 and _reconciles(result.report)


def test_empathetic_dialogues_checks_a_header_after_blank_lines(tmp_path: Path) -> None:
    """A header with speaker_idx and utterance swapped, after a blank line: it was neither checked
    nor skipped, and every row was read with its speaker for text and its text for speaker."""
    header = b"conv_id,utterance_idx,context,prompt,utterance,speaker_idx\n"
    rows = b"hit:0_conv:1,1,sad,p,hello,1\nhit:0_conv:1,2,sad,p,hi there,0\n"
    (tmp_path / "train.csv").write_bytes(b"\n" + header + rows)
    result = _run("empathetic_dialogues", tmp_path)
    assert result.turns.height == 0
    assert result.quarantine.select("origin", "check").rows() == [("train.csv:2", "csv_header")]
    assert "the file is not read (3 lines)" in result.quarantine["reason"][0]
    assert result.report["rows_read"] == 1 and _reconciles(result.report)


# --- a header field over the field limit ---------------------------------------------------------


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """A 1,000-character field limit, so that an over-long header takes a few KB, not 64 MiB."""
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    return 1000


@pytest.mark.parametrize("blank", [b"", b"\n\n"], ids=["line-1", "after-blank-lines"])
def test_a_header_field_over_the_limit_refuses_the_file(
    tmp_path: Path, small_limit: int, blank: bytes
) -> None:
    """The header was quarantined as a record and the next record became the header: its values
    were the column names of every later record ({'3': '3', 'alice': 'bob', 'hi': 'hello'})."""
    path = tmp_path / "dialogueText.csv"
    long_name = b"t" * (small_limit + 500)
    path.write_bytes(
        blank + b"folder,dialogueID,date,from,to," + long_name + b"\n" + DIALOGUE.split(b"\n", 1)[1]
    )
    records = list(readers.iter_csv(path))
    header_line = blank.count(b"\n") + 1
    assert [(r.line, r.value, r.check) for r in records] == [(header_line, None, "csv_parse")]
    reason = str(records[0].reason)
    assert f"CSV header (line {header_line})" in reason and "1,000 characters a field" in reason
    assert "the file is not read" in reason


def test_ubuntu_refuses_a_file_whose_header_is_over_the_limit(tmp_path: Path, small_limit: int) -> None:
    """One quarantined row naming the file, line 1 and the rule; before, the first record became the
    header and the file was refused for it (`header found: 3,1.tsv,d,alice,,hi`)."""
    header = b"folder,dialogueID,date,from,to,text" + b"," + b"x" * (small_limit + 1) + b"\n"
    (tmp_path / "dialogueText.csv").write_bytes(header + DIALOGUE.split(b"\n", 1)[1] * 3)
    result = _run("ubuntu", tmp_path)
    assert result.turns.height == 0
    assert result.quarantine.select("origin", "check").rows() == [("dialogueText.csv:1", "csv_parse")]
    assert "CSV header (line 1) cannot be read" in result.quarantine["reason"][0]
    assert result.report["rows_read"] == 1 and _reconciles(result.report)


def test_a_quote_left_open_in_a_header_after_blank_lines_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'\n\na,"b\n1,2\n3,4\n')
    records = list(readers.iter_csv(path))
    assert [(r.line, r.value, r.check) for r in records] == [(3, None, "csv_parse")]
    assert "at line 3 is never closed: the 3 line(s)" in str(records[0].reason)


# --- lines of spaces and lone CRs before the header (the final review) --------------------------


def test_iter_csv_skips_a_line_of_spaces_before_the_header(tmp_path: Path) -> None:
    """A line of spaces was taken for the header (`{'  ': 'a', None: ['b']}`), where
    empathetic_dialogues skips it: the header is the first line holding text in both."""
    path = tmp_path / "x.csv"
    path.write_bytes(b"  \n\t\na,b\n1,2\n")
    assert [(r.line, r.value, r.check) for r in readers.iter_csv(path)] == [(4, {"a": "1", "b": "2"}, None)]


def test_ubuntu_reads_a_file_with_a_line_of_spaces_before_its_header(tmp_path: Path) -> None:
    """It was refused whole (`csv_header`, the line of spaces named as the header)."""
    (tmp_path / "dialogueText.csv").write_bytes(b"   \n" + DIALOGUE)
    result = _run("ubuntu", tmp_path)
    assert _texts(result) == [("human", "hi"), ("bot", "hello")]
    assert result.quarantine.height == 0 and _reconciles(result.report)


def test_ubuntu_names_the_header_line_of_a_lone_cr_file(tmp_path: Path) -> None:
    """csv splits lines at a lone CR (an old Mac file) and the header-line lookup did not: a refused
    header on line 3 was named line 1."""
    (tmp_path / "dialogueText.csv").write_bytes(b"\r\rdialogueID,date\rd1,x\r")
    result = _run("ubuntu", tmp_path)
    assert result.quarantine.select("origin", "check").rows() == [("dialogueText.csv:3", "csv_header")]
