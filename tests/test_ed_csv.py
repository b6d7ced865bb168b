"""EmpatheticDialogues CSV (pipeline/sources/adapters/empathetic_dialogues.py): fields are read by
position from lines split on plain commas, so a file in another CSV shape (a quoted export, a
header missing a column) is refused whole: one quarantined row naming the file, the line and the
rule, and no turn from it; the upstream format (`_comma_` escapes, the 8-column header) reads
exactly as before."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from pipeline.sources.adapters import get_adapter
from pipeline.sources.normalize import normalize_rows
from pipeline.sources.registry import SourceSpec

FIXTURE = Path(__file__).parent / "fixtures" / "sources" / "empathetic_dialogues"
HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
# The committed fixture's rows as the adapter read them before the format checks existed:
# (conv_key, speaker, text, origin, check); the utf8 row's text is the raw line, left out here. An
# unreadable line names its conversation (its first field), so that losing it cuts that conversation.
FIXTURE_ROWS = [
    (
        "hit:0_conv:1",
        "1",
        "I remember going to see the fireworks with my best friend., It was fun.",
        "empatheticdialogues/train.csv:2",
        None,
    ),
    (
        "hit:0_conv:1",
        "0",
        "Was this a friend you were in love with, or just a best friend?",
        "empatheticdialogues/train.csv:3",
        None,
    ),
    ("hit:0_conv:1", "1", "This was a best friend. I miss her.", "empatheticdialogues/train.csv:4", None),
    ("hit:0_conv:1", "0", "Where has she gone?", "empatheticdialogues/train.csv:5", None),
    ("hit:1_conv:2", "2", "I was scared", "empatheticdialogues/train.csv:6", None),
    ("hit:1_conv:2", "3", "", "empatheticdialogues/train.csv:7", None),
    ("hit:1_conv:2", "2", "of the dark", "empatheticdialogues/train.csv:8", None),
    ("hit:1_conv:2", "3", "That's normal.", "empatheticdialogues/train.csv:9", None),
    ("hit:2_conv:3", None, "hit:2_conv:3,1,proud", "empatheticdialogues/train.csv:10", "csv_fields"),
    ("hit:2_conv:3", "5", "Thanks!", "empatheticdialogues/train.csv:11", None),
    ("hit:3_conv:4", None, None, "empatheticdialogues/train.csv:12", "missing_field"),
    ("hit:3_conv:4", "7", "Hi", "empatheticdialogues/train.csv:13", None),
    (
        "hit:4_conv:5",
        None,
        "hit:4_conv:5,1,x,p,1,a,b,c,d,e",
        "empatheticdialogues/train.csv:14",
        "csv_fields",
    ),
    ("hit:5_conv:6", None, None, "empatheticdialogues/train.csv:15", "utf8"),
    (
        "hit:6_conv:12",
        "5",
        "A car nearly hit me this morning, on my way to work.",
        "empatheticdialogues/valid.csv:2",
        None,
    ),
    ("hit:6_conv:12", "6", "Oh no! Are you fine now?", "empatheticdialogues/valid.csv:3", None),
    ("hit:6_conv:12", "5", "Yes, just shaken.", "empatheticdialogues/valid.csv:4", None),
]


def _spec() -> SourceSpec:
    return SourceSpec("empathetic_dialogues", "url", "x/y", "empathetic_dialogues", "CC-BY-NC-4.0", False)


def _read(raw_dir: Path) -> pl.DataFrame:
    return get_adapter("empathetic_dialogues")(raw_dir, _spec(), {})


def _write(raw_dir: Path, body: str, name: str = "train.csv") -> Path:
    folder = raw_dir / "empatheticdialogues"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body, encoding="utf-8")
    return path


def _turns(raw_dir: Path) -> dict[str, list[str]]:
    turns = normalize_rows(_read(raw_dir)).turns.sort("conversation_id", "turn")
    out: dict[str, list[str]] = {}
    for conv, text in turns.select("conversation_id", "text").rows():
        out.setdefault(conv, []).append(text)
    return out


def _refused(raw_dir: Path) -> tuple[str, str, str]:
    """(origin, rule, reason) of the one row a refused file leaves: nothing else is read from it."""
    frame = _read(raw_dir)
    assert frame.height == 1, frame
    origin, check, reason = frame.select("origin", "check", "reason").row(0)
    assert check is not None and "\n" not in reason
    return origin, check, reason


def _rows(frame: pl.DataFrame) -> list[tuple]:
    return [
        (key, speaker, None if check == "utf8" else text, origin, check)
        for key, speaker, text, origin, check in frame.select(
            "conv_key", "speaker", "text", "origin", "check"
        ).rows()
    ]


def test_committed_fixture_reads_as_before() -> None:
    """The format checks leave the upstream format alone: the fixture gives the very same rows."""
    assert _rows(_read(FIXTURE)) == FIXTURE_ROWS


def test_quoted_csv_export_is_refused(tmp_path: Path) -> None:
    """A standard quoted export (`"Oh no, are you fine now?"`, no `_comma_`) still splits into 6 to 9
    fields, so each line passed `csv_fields` and the text was cut at its first comma (`"Oh no`)."""
    _write(
        tmp_path,
        HEADER + "hit:6_conv:12,1,terrified,A car nearly hit me,5,A car nearly hit me this morning.,,\n"
        'hit:6_conv:12,2,terrified,A car nearly hit me,6,"Oh no, are you fine now?",,\n'
        "hit:6_conv:12,3,terrified,A car nearly hit me,5,Yes.,,\n",
    )
    origin, check, reason = _refused(tmp_path)
    assert (origin, check) == ("empatheticdialogues/train.csv:3", "csv_quoted")
    assert "quoted CSV export" in reason and "_comma_" in reason
    assert reason.endswith("the file is not read (4 lines)")  # the header and three rows


def test_fully_quoted_export_is_refused(tmp_path: Path) -> None:
    """A fully quoted export (every field quoted) is refused as well: split on commas, each kept
    turn would carry its quotes."""
    _write(
        tmp_path,
        HEADER + '"hit:1_conv:1","1","x","p","1","hi","",""\n"hit:1_conv:1","2","x","p","0","yo","",""\n',
    )
    assert _refused(tmp_path)[:2] == ("empatheticdialogues/train.csv:2", "csv_quoted")


def test_a_quote_in_an_upstream_file_is_text(tmp_path: Path) -> None:
    """Upstream never quotes: in a file holding `_comma_`, a `"` is a character of the text, read
    by plain commas as before (a CSV reader would drop it)."""
    _write(
        tmp_path,
        HEADER + 'hit:1_conv:1,1,x,p_comma_ q,1,"Run" she said_comma_ so I ran,,\n'
        'hit:1_conv:1,2,x,p_comma_ q,0,"Why?",,\n',
    )
    assert _turns(tmp_path) == {"empathetic_dialogues:hit:1_conv:1": ['"Run" she said, so I ran', '"Why?"']}


def test_header_missing_a_column_is_refused(tmp_path: Path) -> None:
    """Without `prompt` every field moved left by one: the kept turns were `selfeval` (`5|5|5_2|2|5`)."""
    found = "conv_id,utterance_idx,context,speaker_idx,utterance,selfeval,tags"
    _write(
        tmp_path,
        f"{found}\nhit:0_conv:1,1,sentimental,1,I remember the fireworks.,5|5|5_2|2|5,\n"
        "hit:0_conv:1,2,sentimental,0,Was it fun_comma_ then?,5|5|5_2|2|5,\n",
    )
    origin, check, reason = _refused(tmp_path)
    assert (origin, check) == ("empatheticdialogues/train.csv:1", "csv_header")
    assert f"header '{found}'" in reason and f"expected {HEADER.strip()}" in reason


@pytest.mark.parametrize(
    "header",
    [
        "conv_id,utterance_idx,context,prompt,utterance,speaker_idx,selfeval,tags",  # moved
        "conv_id,utterance_idx,context,prompt,speaker_idx,text,selfeval,tags",  # renamed
        "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,tags",  # selfeval gone
        ",conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags",  # an index column
    ],
)
def test_other_headers_are_refused(tmp_path: Path, header: str) -> None:
    _write(tmp_path, f"{header}\nhit:0_conv:1,1,x,p,1,hi,,\nhit:0_conv:1,2,x,p,0,yo,,\n")
    assert _refused(tmp_path)[:2] == ("empatheticdialogues/train.csv:1", "csv_header")


@pytest.mark.parametrize(
    "header",
    [
        HEADER.strip(),
        "conv_id,utterance_idx,context,prompt,speaker_idx,utterance",  # selfeval and tags left off
        HEADER.strip() + ",",  # an unnamed 9th field (the label candidates)
        None,  # no header line at all
    ],
)
def test_headers_that_shift_nothing_are_read(tmp_path: Path, header: str | None) -> None:
    body = "hit:0_conv:1,1,x,p,1,hi,,\nhit:0_conv:1,2,x,p,0,yo,,\n"
    _write(tmp_path, body if header is None else f"{header}\n{body}")
    assert _turns(tmp_path) == {"empathetic_dialogues:hit:0_conv:1": ["hi", "yo"]}


def test_gzipped_quoted_export_is_refused(tmp_path: Path) -> None:
    """The check reads a .gz as the reader does."""
    folder = tmp_path / "empatheticdialogues"
    folder.mkdir()
    body = HEADER + 'hit:1_conv:1,1,x,p,1,"a, b",,\nhit:1_conv:1,2,x,p,0,c,,\n'
    (folder / "train.csv.gz").write_bytes(gzip.compress(body.encode()))
    assert _refused(tmp_path)[:2] == ("empatheticdialogues/train.csv.gz:2", "csv_quoted")


def test_a_refused_file_leaves_the_others_read_and_the_counts_reconcile(tmp_path: Path) -> None:
    """Refusing a file is a quarantined row, not a stopped stage: the file beside it is read."""
    _write(tmp_path, HEADER + 'hit:1_conv:1,1,x,p,1,"a, b",,\nhit:1_conv:1,2,x,p,0,c,,\n', "train.csv")
    _write(
        tmp_path, HEADER + "hit:2_conv:2,1,x,p,1,hi_comma_ you,,\nhit:2_conv:2,2,x,p,0,yo,,\n", "valid.csv"
    )
    assert _turns(tmp_path) == {"empathetic_dialogues:hit:2_conv:2": ["hi, you", "yo"]}
    result = normalize_rows(_read(tmp_path))
    assert result.quarantine.get_column("check").to_list() == ["csv_quoted"]
    assert result.report["rows_read"] == result.report["rows_kept"] + result.report["rows_quarantined"]
