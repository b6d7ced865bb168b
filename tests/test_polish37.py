"""Session 37's polish: small user-facing flaws its reviewers found, each fixed and tested here. No
model is trained: the scripted engine of test_chat, request parsing, tiny files and tables."""

from __future__ import annotations

import ast
import csv
import io
import re
import sys
from pathlib import Path

import pytest
from test_chat import scripted_engine
from test_quarantine_cli import project  # noqa: F401 - the fixture, reused

from pipeline import cards, cli, datasetcard, quarantine
from pipeline.chat import chat_loop
from pipeline.chatrequest import ChatRequest, RequestError
from pipeline.chatsession import ChatSession
from pipeline.sources import readers
from pipeline.tokenizer import get_encoding

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", ["chat", "serve", "sources", "tokens"])
def test_a_command_run_outside_the_root_says_so_first(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """From /tmp, `chat` opened with "no checkpoint at model/ckpt: `dvc checkout model/ckpt`
    restores..." and named the cause (paths read from /tmp) last: a newcomer ran dvc checkout in
    /tmp. The cause now leads, the missing path follows."""
    monkeypatch.delenv("NANOCHATGPT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = [command, "--device", "cpu"] if command in ("chat", "serve") else [command]
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert err.startswith(
        f"{command}: paths are read from {tmp_path.resolve()}, not the project's root: run the command "
        "from the project's root, where params.yaml is ("
    ), err
    missing = "no checkpoint at model/ckpt" if command in ("chat", "serve") else "no such file"
    if command == "sources":
        missing = "the source registry is missing"
    assert missing in err and err.count("paths are read from") == 1


def test_a_check_that_is_no_rule_is_said_to_be_none(
    project: Path,  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--check nope` said "no row was quarantined by `nope`", as if `nope` were a rule that caught
    nothing; a real rule that caught nothing keeps that message."""
    assert cli.main(["quarantine", "contrib", "--check", "nope"]) == 1
    err = capsys.readouterr().err
    assert "`nope` is not a rule (rules that caught rows in contrib: " in err
    assert "all rules: " in err and "text_present" in err.split("all rules: ")[1]
    assert "no row was quarantined" not in err
    assert cli.main(["quarantine", "contrib", "--check", "yaml_parse"]) == 1
    err = capsys.readouterr().err
    assert "no row was quarantined by `yaml_parse` in contrib (rules that caught rows there: " in err
    assert "is not a rule" not in err


def _reason_tuple(node: ast.AST) -> bool:
    """(where, rule, reason) or (where, rule, reason, conversation): a rule kept for later."""
    return (
        isinstance(node, ast.Tuple)
        and len(node.elts) in (3, 4)
        and not isinstance(node.elts[0], ast.Constant)
        and (isinstance(node.elts[2], ast.JoinedStr) or isinstance(getattr(node.elts[2], "value", None), str))
    )


def _rules_in_sources_code() -> set[str]:
    """The rule names pipeline/sources quarantines rows with, as its code spells them: a row an
    adapter or reader cannot read (`rows.bad(origin, rule, ...)`, `Record(line, None, raw, rule, ...)`,
    a (line, rule, reason) tuple), normalize's `_quarantine(rows, rule, ...)` and its too-short rules."""

    def text(node: ast.AST) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    found: set[str] = set()
    for path in (ROOT / "pipeline" / "sources").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                at = {"bad": 1, "Record": 3, "_quarantine": 1}.get(name or "")
                if at is not None and len(node.args) > at and text(node.args[at]):
                    found.add(text(node.args[at]) or "")
                found |= {text(k.value) or "" for k in node.keywords if k.arg == "check" and text(k.value)}
            elif _reason_tuple(node):
                rule = text(node.elts[1])
                if rule and re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)+|[a-z0-9]+", rule):
                    found.add(rule)
            elif isinstance(node, ast.FunctionDef) and node.name == "_short_check_reason":
                found |= {
                    text(c.args[0]) or ""
                    for c in ast.walk(node)
                    if isinstance(c, ast.Call) and getattr(c.func, "attr", None) == "lit" and text(c.args[0])
                }
    return found


def test_the_known_rules_are_every_rule_the_sources_code_names() -> None:
    """known_rules decides "not a rule": a rule missing from it would be called none."""
    in_code = _rules_in_sources_code()
    assert {"missing_field", "csv_quoted", "has_bot_turn", "conversation_broken"} <= in_code  # the scan sees
    assert in_code <= set(quarantine.known_rules())
    assert set(quarantine.READ_AND_CONVERSATION_RULES) <= in_code  # and names no rule that is gone


def test_the_commercial_cards_left_out_line_names_the_licence_once() -> None:
    """ "contrib/nc (CC-BY-NC-4.0; the licence CC-BY-NC-4.0 forbids commercial use)": said twice."""
    parts = {"contrib/nc": {"licence": "CC-BY-NC-4.0", "commercial": False, "conversations": {}}}
    stats = {
        "params": {"seed": 7, "val_fraction": 0.1, "caps": {}},
        "sources": {
            "a": {"licence": "MIT", "conversations": {"train": 3, "val": 1}},
            "contrib": {"licence": "per-file", "conversations": {"train": 0, "val": 0}, "parts": parts},
        },
        "totals": {"conversations": {"train": 3, "val": 1}, "turns": {"train": 6, "val": 2}},
    }
    registry = {
        "a": cards.CardSource("a", "MIT", True),
        "contrib": cards.CardSource("contrib", "per-file", False, "contrib", "data/contrib"),
    }
    card = datasetcard.dataset_card("commercial", stats, datasetcard.dataset_sources(stats, registry))
    assert "contrib/nc (CC-BY-NC-4.0; its licence forbids commercial use)" in card
    assert card.count("CC-BY-NC-4.0") == 1


@pytest.mark.parametrize("pad", ["\u200b", "\xa0\u2060", "\ufe0f", "\u3164 "])
def test_a_command_padded_with_invisible_characters_runs_as_the_command(pad: str) -> None:
    """ "/reset\\u200b" (a zero-width space pasted along) went to the model as a message."""
    session = ChatSession(scripted_engine(get_encoding()), temperature=0.0)
    out, err = io.StringIO(), io.StringIO()
    assert chat_loop(session, io.StringIO(f"hello\n/reset{pad}\n{pad}/help\n"), out, err) == 0
    assert session.history == [] and out.getvalue() == "Sure thing\n"  # the one reply: to hello
    assert "(conversation cleared)" in err.getvalue() and "/exit or /quit quits" in err.getvalue()
    out = io.StringIO()
    assert chat_loop(session, io.StringIO(f"/exit{pad}\nnever read\n"), out, io.StringIO()) == 0
    assert out.getvalue() == "" and session.history == []


@pytest.mark.parametrize("name", [["bob"], {"first": "bob"}, 5, True])
def test_a_message_name_that_is_no_string_is_refused(name: object) -> None:
    """messages[i].name of a list or an object was ignored with a 200; OpenAI answers 400
    invalid_type."""
    body = {
        "messages": [
            {"role": "system", "content": "be kind"},
            {"role": "user", "content": "hi", "name": name},
        ]
    }
    with pytest.raises(RequestError) as e:
        ChatRequest.parse(body)
    assert (e.value.param, e.value.code) == ("messages[1].name", "invalid_type")
    assert str(e.value) == "`messages[1].name` must be a string"
    for ok in ("bob", None):
        body["messages"][1]["name"] = ok
        assert ChatRequest.parse(body).user_text == "hi"


def test_a_csv_header_refused_after_an_over_long_line_of_spaces_names_that_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line of more than the field limit of spaces before the header: the refusal named "line 0"."""
    record, found = refused_csv_header(tmp_path, monkeypatch, "\n" + " " * 2000 + "\na,b\n1,2\n")
    assert (record.line, record.check, found.header_line) == (2, "csv_parse", 2)
    assert record.reason.startswith("the CSV header (line 2) cannot be read")


def refused_csv_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> tuple[readers.Record, readers.CsvRecords]:
    """(the one record, iter_csv's records) of a CSV file of `text` read under a field limit of 1000
    characters, a header past it refused."""
    limit = csv.field_size_limit()
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)  # 64 MiB in the real reader
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    try:
        found = readers.iter_csv(path)
        (record,) = list(found)
    finally:
        csv.field_size_limit(limit)  # iter_csv sets the module's limit for the process
    return record, found
