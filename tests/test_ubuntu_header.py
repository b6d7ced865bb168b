"""Ubuntu CSVs whose header lacks a column their layout needs are refused once, as one quarantined
row naming the file, the missing column(s) and the header found, not read row by row: a
dialogueText file with `message` for `text` was one identical `missing_field` row per record (a
million on the real dump), and a v2 train file without Label read its wrong answers as replies."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.sources.adapters import get_adapter
from pipeline.sources.adapters.ubuntu import header_problem
from pipeline.sources.normalize import normalize_rows
from pipeline.sources.registry import load_registry

REPO = Path(__file__).resolve().parents[1]


def _read(folder: Path):
    spec = load_registry(REPO / "sources.yaml")["ubuntu"]
    return normalize_rows(get_adapter("ubuntu")(folder, spec, {}), max_turn_chars=16_000)


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


def test_dialogue_text_without_its_text_column_is_one_row_naming_the_header(tmp_path: Path) -> None:
    lines = [f"3,{i}.tsv,2008-04-23,alice,,hello {i}" for i in range(50)]
    (tmp_path / "dialogueText.csv").write_text(
        "folder,dialogueID,date,from,to,message\n" + "\n".join(lines) + "\n"
    )
    good = "folder,dialogueID,date,from,to,text\n3,1.tsv,d,alice,,hi\n3,1.tsv,d,bob,alice,hello\n"
    (tmp_path / "other.csv").write_text(good)
    result = _read(tmp_path)
    assert result.quarantine.select("origin", "check").rows() == [("dialogueText.csv:1", "csv_header")]
    reason = result.quarantine["reason"][0]
    assert "`text`" in reason and "folder,dialogueID,date,from,to,message" in reason
    assert "50 record(s)" in reason
    # the file with the right header is read as before
    assert result.turns["text"].to_list() == ["hi", "hello"]
    assert result.report["rows_read"] == 3 and _reconciles(result.report)


def test_v2_train_without_label_is_refused_not_trained_on(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(
        "Context,Utterance\nhi __eou__ __eot__,right __eou__\nhi __eou__ __eot__,wrong answer __eou__\n"
    )
    result = _read(tmp_path)
    assert result.turns.height == 0
    assert result.quarantine.select("origin", "check").rows() == [("train.csv:1", "csv_header")]
    reason = result.quarantine["reason"][0]
    assert "`Label`" in reason and "header found: Context,Utterance" in reason and "2 record(s)" in reason


def test_v2_valid_and_test_need_no_label(tmp_path: Path) -> None:
    """valid/test answer with `Ground Truth Utterance` beside Distractor_N columns: no Label, and
    their response is the right one."""
    (tmp_path / "valid.csv").write_text(
        "Context,Ground Truth Utterance,Distractor_0\nq __eou__ __eot__,a __eou__,nope __eou__\n"
    )
    result = _read(tmp_path)
    assert result.turns["text"].to_list() == ["q", "a"]
    assert result.report["rows_filtered"] == {"ubuntu_distractor": 1}


def test_header_problem_by_layout() -> None:
    assert header_problem(["folder", "dialogueID", "date", "from", "to", "text"]) is None
    assert header_problem(["dialogueID", "from", "text"]) is None  # folder only qualifies the id
    assert header_problem(["Context", "Utterance", "Label"]) is None
    assert header_problem(["Context", "Ground Truth Utterance", "Distractor_0"]) is None
    assert "`from`, `text`" in (header_problem(["dialogueID", "speaker", "message"]) or "")
    assert "Utterance" in (header_problem(["Context", "Response", "Label"]) or "")
    assert "`Label`" in (header_problem(["Context", "Utterance"]) or "")


def test_unreadable_records_before_the_header_check_still_count(tmp_path: Path) -> None:
    """A bad record ahead of the first readable one is quarantined as before; the refusal counts the rest."""
    (tmp_path / "d.csv").write_bytes(b"dialogueID,from,message\n1,a,\xff\xfe\n1,b,ok\n1,a,ok\n")
    result = _read(tmp_path)
    assert result.quarantine.select("origin", "check").rows() == [
        ("d.csv:2", "utf8"),
        ("d.csv:1", "csv_header"),
    ]
    assert "2 record(s)" in result.quarantine.filter(pl.col("check") == "csv_header")["reason"][0]
    assert _reconciles(result.report)
