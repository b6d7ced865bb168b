"""Contributed JSON records that cannot be read as conversations lose nothing without a word.

From a contributor's bug hunt: a system message whose content was a number (or image parts only)
was counted as "used as context" while its conversation went in without that persona, and a
record that was not an object, or had no message list (a `Messages` typo), was quarantined with
no text, so `nanochatgpt quarantine` showed an empty row, and a `[...]` line was said to have
"no `messages` list"; a nested key named `conversations` made an openai file's format guess
sharegpt; `content: []` cut its conversation as unreadable where `content: ""` drops itself; and
a format that could not be guessed was blamed on a first line "not JSON" that was (a BOM, U+2028).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.check import check_files
from pipeline.sources.adapters import contrib
from pipeline.sources.contrib import infer_format, scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import NormalizeResult, normalize_rows
from pipeline.sources.registry import SourceSpec

ROOT = Path(__file__).resolve().parents[1]
SPEC = SourceSpec("contrib", "contrib", "data/contrib", "contrib", "per-file", False)
MIT = {"licence": "MIT", "commercial": True, "description": "test"}
GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def _put(folder: Path, name: str, lines: list[str], sidecar: dict | None = None) -> None:
    (folder / name).write_text("\n".join(lines) + "\n")
    (folder / name).with_suffix(".yaml").write_text(yaml.safe_dump(sidecar or MIT))


def _normalize(folder: Path) -> NormalizeResult:
    result = normalize_rows(contrib.read(folder, SPEC, {}))
    r = result.report
    assert r["rows_read"] == r["rows_kept"] + r["rows_quarantined"] + sum(r["rows_filtered"].values())
    return result


def _system(content: object) -> str:
    messages = [{"role": "system", "content": content}, *GOOD["messages"]]
    return json.dumps({"messages": messages})


@pytest.mark.parametrize(
    ("content", "shown"),
    [(5, "5"), ({"persona": "pirate"}, '{"persona": "pirate"}'), ([{"type": "image_url"}], "image_url")],
)
def test_an_unreadable_system_message_quarantines_its_conversation(
    tmp_path: Path, content: object, shown: str
) -> None:
    """Not counted as a context that was used: the conversation it was written for is not kept
    without it, and the quarantine names the message, its rule and what it held."""
    _put(tmp_path, "s.jsonl", [_system(content), json.dumps(GOOD)])
    result = _normalize(tmp_path)
    assert result.report["rows_filtered"] == {}
    assert result.turns["conversation_id"].unique().to_list() == ["contrib/s:2"]
    q = result.quarantine
    first = q.row(0, named=True)
    assert (first["origin"], first["check"], first["role"]) == (
        "s.jsonl:1/messages[0]",
        "missing_field",
        "system",
    )
    assert "`content` must be a string or a list of text parts" in first["reason"]
    assert shown in first["text"]
    assert q["check"].to_list()[1:] == ["conversation_broken", "conversation_broken"]


@pytest.mark.parametrize("content", ["", None])
def test_an_empty_system_message_is_still_only_filtered(tmp_path: Path, content: str | None) -> None:
    """A system message holding nothing loses nothing: the conversation is kept, as before."""
    _put(tmp_path, "s.jsonl", [_system(content)])
    result = _normalize(tmp_path)
    assert result.report["rows_filtered"] == {"system_message_as_context": 1}
    assert result.report["rows_kept"] == 2 and result.quarantine.height == 0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[1, 2]", "record is a JSON list, not an object with a `messages` list"),
        ('"hello"', "record is a JSON string, not an object with a `messages` list"),
        ("42", "record is a JSON number, not an object with a `messages` list"),
        ("null", "record is a JSON null, not an object with a `messages` list"),
        ('{"Messages": [{"role": "user", "content": "kept here"}]}', "record has no `messages` list"),
        ('{"messages": []}', "record's `messages` list is empty"),
    ],
)
def test_a_record_without_messages_is_quarantined_with_what_it_held(
    tmp_path: Path, line: str, reason: str
) -> None:
    _put(tmp_path, "r.jsonl", [json.dumps(GOOD), line])
    result = _normalize(tmp_path)
    assert result.report["rows_kept"] == 2
    q = result.quarantine
    assert q.select("origin", "check", "reason", "text").rows() == [
        ("r.jsonl:2", "missing_field", reason, line)
    ]


def test_a_json_list_item_without_messages_keeps_its_json(tmp_path: Path) -> None:
    """A .json list's items have no line of their own: the quarantine holds the item's JSON."""
    items = [GOOD, {"conversation": [{"from": "human", "value": "é"}]}, ["x"]]
    (tmp_path / "l.json").write_text(json.dumps(items))
    (tmp_path / "l.yaml").write_text(yaml.safe_dump({**MIT, "format": "openai"}))
    q = _normalize(tmp_path).quarantine
    assert q.select("origin", "text").rows() == [
        ("l.json:2", '{"conversation": [{"from": "human", "value": "é"}]}'),
        ("l.json:3", '["x"]'),
    ]


def test_a_bad_record_breaks_no_record_whose_id_is_its_line(tmp_path: Path) -> None:
    """The line number a non-object record is keyed by is taken like any record's key: a later
    record with that number as its `id` is a conversation of its own, not one cut by the bad line."""
    _put(tmp_path, "k.jsonl", [json.dumps(GOOD), "[]", json.dumps({**GOOD, "id": "2"})])
    result = _normalize(tmp_path)
    assert result.report["rows_kept"] == 4 and result.report["rows_quarantined"] == 1


def test_check_tells_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nanochatgpt check` runs the same code: it names the file, row and rule of each."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))
    _put(tmp_path, "c.jsonl", [json.dumps(GOOD), _system(7), "[1]"])
    (summary,) = check_files([tmp_path], ROOT)[0]
    assert (summary["rows_read"], summary["rows_kept"], summary["rows_filtered"]) == (6, 2, 0)
    assert summary["by_check"] == {"conversation_broken": 2, "missing_field": 2}
    assert [origin for origin, _, _ in summary["examples"]] == [
        "c.jsonl:2/messages[0]",
        "c.jsonl:2/messages[1]",
    ]


def test_an_empty_content_list_is_an_empty_message_as_empty_text_is(tmp_path: Path) -> None:
    """`content: []` holds no part, as `""` holds no character: the message drops itself
    (`text_present`), where it cut its conversation as unreadable ("must be ... a list of text parts,
    not []"), and an empty system message is no context, as before."""
    empty = {"role": "assistant", "content": []}
    record = {"messages": [GOOD["messages"][0], empty, *GOOD["messages"]]}
    _put(tmp_path, "e.jsonl", [json.dumps(record), _system([])])
    result = _normalize(tmp_path)
    assert result.quarantine.select("origin", "check").rows() == [("e.jsonl:1/messages[1]", "text_present")]
    assert result.report["rows_filtered"] == {"system_message_as_context": 1}
    assert result.report["conversations_kept"] == 2


@pytest.mark.parametrize(
    ("name", "record", "guessed"),
    [
        ("n.jsonl", {"meta": {"conversations": 3}, **GOOD}, "openai"),
        (
            "n.json",
            [{"stats": {"messages": 2}, "conversations": [{"from": "human", "value": "q"}]}],
            "sharegpt",
        ),
    ],
)
def test_the_format_is_guessed_from_the_first_records_own_keys(
    tmp_path: Path, name: str, record: object, guessed: str
) -> None:
    """CONTRIBUTING.md: openai if the first record has `messages`, sharegpt if it has
    `conversations`. A key of the other name nested inside the record (a count in its metadata)
    made the guess the other format, and every record was quarantined as lacking its list."""
    (tmp_path / name).write_text(json.dumps(record) + "\n")
    assert infer_format(tmp_path / name) == guessed


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"foo": 1, "turns": []}\n',  # an editor's byte-order mark, which files may have
        '{"foo": "a\u2028b", "turns": []}\r\n'.encode(),  # U+2028 inside a string is valid JSON
        b'{"foo": 1, "turns": []}\r{"foo": 2}\r',  # an old Mac file, read line by line at CR
    ],
)
def test_a_format_that_cannot_be_guessed_names_the_first_records_keys(tmp_path: Path, body: bytes) -> None:
    """The hint reads the first line as the JSONL reader does: it said "its first line is not JSON"
    of a line the reader would read, sending the contributor after a problem the file does not have."""
    (tmp_path / "h.jsonl").write_bytes(body)
    (tmp_path / "h.yaml").write_text(yaml.safe_dump(MIT))
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    assert "(its first record's keys: 'foo', 'turns'; no `messages` or `conversations`)" in str(err.value)
