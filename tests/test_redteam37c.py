"""A red-team of the command lines' bad input (session 37, cliQ37): each case was a traceback, an
escape code reaching the terminal or a message naming no file, and is now one plain line."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import polars as pl
import pytest
from test_hf import _export_inputs
from test_quarantine_cli import _hand_made, contrib_project
from test_tokenview import write_project

from pipeline import cli, hfexport, report
from pipeline.argtypes import whole_number, whole_number_or
from pipeline.params import load_yaml
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import load_registry

HUGE = str(10**20)  # past a C long: torch and polars raised OverflowError on it
ESC = "\x1b[2J"


@pytest.fixture
def tokens_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(write_project(tmp_path)))
    return tmp_path


def test_a_count_past_a_c_int_is_a_usage_error_naming_the_bound() -> None:
    """`chat --threads 99999999999999999999` reached torch: "Overflow when unpacking long long"."""
    for kind in (whole_number(1), whole_number_or("auto", 1)):
        with pytest.raises(argparse.ArgumentTypeError, match=r"must be 2,147,483,647 or less, got 1"):
            kind(HUGE)
    with pytest.raises(argparse.ArgumentTypeError, match=r"got a number of 4000 digits"):
        whole_number(1)("9" * 4000)
    assert whole_number(0, maximum=5)("5") == 5
    with pytest.raises(argparse.ArgumentTypeError, match="must be 5 or less, got 6"):
        whole_number(0, maximum=5)("6")


def test_more_windows_than_the_bound_are_refused_before_any_is_drawn(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokens --windows 100000000` drew them all at once: a MemoryError traceback (or the machine's
    memory). The bound is checked before params.yaml is read (this project has no train profiles)."""
    assert cli.main(["tokens", "--windows", "100000000"]) == 2
    assert capsys.readouterr().err == "tokens: --windows takes 1,000 at most, got 100,000,000\n"


def test_a_typed_source_holding_an_escape_code_is_shown_inert(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tokens", "--source", f"x{ESC}"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "no conversation from x\\x1b[2J in data/dataset/full/train.parquet" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("term", "green"), [("xterm-256color", True), ("dumb", False)])
def test_a_dumb_terminal_gets_the_marks_not_colour(
    tokens_project: Path, monkeypatch: pytest.MonkeyPatch, term: str, green: bool
) -> None:
    """TERM=dumb (an editor's shell buffer) got ESC[32m written out as text around the loss."""
    out = _Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", term)
    assert cli.main(["tokens"]) == 0
    assert ("\x1b[32m" in out.getvalue()) is green
    assert ("⟦" in out.getvalue()) is not green


def test_dataset_rows_of_other_types_do_not_name_the_conversations(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dataset parquet with a null source (or numeric ids) stopped `--source` at a TypeError
    traceback sorting the sources it holds."""
    rows = pl.DataFrame({"conversation_id": ["a", "b", "c"], "source": ["s", None, "s"]})
    rows.write_parquet(tokens_project / "data" / "dataset" / "full" / "train.parquet")
    assert cli.main(["tokens", "--source", "x"]) == 1
    assert capsys.readouterr().err == (
        "tokens: --source needs the dataset rows: data/dataset/full/train.parquet does not hold the 3 "
        "conversations these shards were made from (missing, unreadable or rebuilt since)\n"
    )


def test_quarantine_rows_past_a_c_long_and_escaped_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--rows 10**20` was polars' OverflowError traceback: it lists every row, as a count past them
    does; an unknown name (or contributed file) typed with an escape code printed it raw."""
    contrib_project(tmp_path, monkeypatch)
    assert cli.main(["quarantine", "contrib", "--rows", HUGE]) == 0
    out = capsys.readouterr().out
    assert out.startswith("contrib: 4 of") and out.count("      text: ") == 4
    assert cli.main(["quarantine", f"n{ESC}", f"contrib/f{ESC}"]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert err.startswith("quarantine: n\\x1b[2J: not in sources.yaml")
    assert cli.main(["quarantine", f"contrib/f{ESC}"]) == 1
    assert "quarantine: contrib/f\\x1b[2J: not a source of" in capsys.readouterr().err


def test_a_hand_made_quarantines_huge_rule_and_reason_are_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 100,000-character rule padded every rule's line to its width, and a reason as long was
    printed whole on each line naming it (a 1 MB reason: megabytes of one line)."""
    project = contrib_project(tmp_path, monkeypatch)
    rule, reason = "r" * 100_000, "R" * 100_000
    table = {"check": [rule, "b"], "reason": [reason, "short"], "origin": ["o", "p"], "text": ["t", "u"]}
    _hand_made(project, pl.DataFrame(table))
    assert cli.main(["quarantine", "contrib", "--rows", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) < 1200
    assert lines[1] == f"  {'b'.ljust(500 + len('... (100,000 characters)'))}          1  first: p: short"
    assert lines[4].endswith(f"first: o: {'R' * 500}... (100,000 characters)")


def test_yaml_that_is_not_utf8_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A Latin-1 sources.yaml was a UnicodeDecodeError traceback from `nanochatgpt sources`, and a
    params.yaml one codecs' message naming no file."""
    path = tmp_path / "x.yaml"
    path.write_bytes(b"chitchat: caf\xe9\n")
    with pytest.raises(SourceError, match=r"x\.yaml: not UTF-8 text \(a byte 0xe9\): save it as UTF-8"):
        load_registry(path)
    with pytest.raises(ValueError, match=r"x\.yaml: not UTF-8 text \(a byte 0xe9\)"):
        load_yaml(path)


def test_sources_with_a_latin1_registry_exits_1_without_a_traceback(
    tokens_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tokens_project / "sources.yaml").write_bytes(b"chitchat: caf\xe9\n")
    assert cli.main(["sources"]) == 1
    assert capsys.readouterr().err.endswith("sources.yaml: not UTF-8 text (a byte 0xe9): save it as UTF-8\n")


def test_the_report_says_which_file_it_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A metrics.json cut short, one that is no object, and transcripts that are not UTF-8 were
    tracebacks ending `make repro`'s report; a string metric's escape code reached the terminal."""
    monkeypatch.chdir(tmp_path)
    metrics = tmp_path / "model" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text('{"val_loss": ')
    assert report._metric("model/metrics.json", "val_loss").startswith(
        "(model/metrics.json is unreadable: Expecting value"
    )
    metrics.write_text("[1]")
    assert report._metric("model/metrics.json", "val_loss") == "(model/metrics.json is not a JSON object)"
    metrics.write_text(json.dumps({"val_loss": f"{ESC}red"}))
    assert report._metric("model/metrics.json", "val_loss") == "\\x1b[2Jred"
    transcripts = tmp_path / "transcripts.md"
    transcripts.write_bytes(b"# T\n\n## Conversation 1\n\n**human:** hi \xff\n")
    (line,) = report.sample_exchange(transcripts)
    assert line.startswith(f"({transcripts} is unreadable: 'utf-8' codec can't decode byte 0xff")


class _LeftPipe(io.StringIO):
    """stdout whose reader has left (`python -m pipeline.report | head -1`)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_the_report_piped_to_a_reader_that_left_exits_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It printed a BrokenPipeError traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdout", _LeftPipe())
    assert report.run() == cli.EXIT_BROKEN_PIPE


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"source,tokens,loss_tokens,conversations\na," + b"x" * 200_000 + b",1,1\n", "field larger than"),
        (b"source,tokens,loss_tokens,conversations\ncaf\xe9,1,1,1\n", "can't decode byte 0xe9"),
        (b"source,tokens,loss_tokens,conversations\na,zz,1,1\n", "line 2: tokens 'zz' is not what"),
        (b"source,tokens\na,1\n", "line 2: loss_tokens None is not what"),
    ],
)
def test_a_damaged_sources_csv_is_one_error_naming_it(tmp_path: Path, content: bytes, said: str) -> None:
    """The export stage read a sources.csv with a field past csv's limit as a csv.Error traceback,
    and a non-UTF-8 one or a count that is no number as a message naming no file."""
    tokens = _export_inputs(tmp_path, "scratch", {"a": ({"licence": "MIT", "commercial": True}, "10,4,1")})
    (tokens / "sources.csv").write_bytes(content)
    limit = csv.field_size_limit(131_072)  # the export stage's (a process of its own): csv's default
    try:
        with pytest.raises(ValueError, match=r"sources\.csv: ") as error:
            hfexport.export_run(tmp_path / "ckpt", tmp_path / "hf", tmp_path / "metrics.json", tokens)
    finally:
        csv.field_size_limit(limit)  # pipeline.sources.readers.iter_csv sets it for the process
    assert said in str(error.value)
    assert not (tmp_path / "hf").exists()  # refused before a file of the export is written
