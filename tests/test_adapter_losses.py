"""Rows an adapter must never lose or crash on: a lone UTF-16 surrogate (a cut emoji), an oasst1
parent cycle, a record id that looks like a suffixed key, an empty conversation.

Each case is counted: quarantined with its check (or kept), and rows_read reconciles.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

from pipeline.schema import validate
from pipeline.sources.adapters import contrib, get_adapter
from pipeline.sources.adapters._messages import record_key
from pipeline.sources.normalize import NormalizeResult, normalize_rows
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RAW_SCHEMA, RawRows

CUT = "\\ud83d"  # as JSON / YAML double quotes write it: the high half of an emoji's surrogate pair


def _spec(adapter: str) -> SourceSpec:
    return SourceSpec(adapter, "hf_dataset", "x/y", adapter, "MIT", True)


def _run(adapter: str, folder: Path, params: dict | None = None) -> NormalizeResult:
    return normalize_rows(get_adapter(adapter)(folder, _spec(adapter), params or {}))


def _reconciles(report: dict) -> bool:
    return report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    )


def _msgs(q: str, a: str, **extra: object) -> str:
    return json.dumps(
        {**extra, "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    )


def _contrib(folder: Path, body: str) -> NormalizeResult:
    (folder / "chat.jsonl").write_text(body)
    (folder / "chat.yaml").write_text(
        yaml.safe_dump({"licence": "MIT", "commercial": True, "description": "t"})
    )
    spec = SourceSpec("contrib", "contrib", "data/contrib", "contrib", "per-file", False)
    return normalize_rows(contrib.read(folder, spec, {}))


# --- 1. lone surrogates ------------------------------------------------------------------------------

# adapter -> (file name, upstream text with one cut emoji, the conversation that must survive it)
SURROGATE_CASES: dict[str, tuple[str, str, str]] = {
    "chatterbot": (
        "x.yml",
        f'conversations:\n- - "hi {CUT}"\n  - "ok"\n- - "a"\n  - "b"\n',
        "chatterbot:x:1",
    ),
    "hackernews": (
        "items.jsonl",
        '{"id": 1, "type": "story", "title": "t", "kids": [2, 4]}\n'
        f'{{"id": 2, "type": "comment", "parent": 1, "by": "u", "text": "hi {CUT}", "kids": [3]}}\n'
        '{"id": 3, "type": "comment", "parent": 2, "by": "v", "text": "ok"}\n'
        '{"id": 4, "type": "comment", "parent": 1, "by": "u", "text": "q", "kids": [5]}\n'
        '{"id": 5, "type": "comment", "parent": 4, "by": "v", "text": "a"}\n',
        "hackernews:4",
    ),
    "arithmetic": (
        "a.jsonl",
        '{"context": "Question: 1+1 \\udc00?", "completion": " 2"}\n'
        '{"context": "Question: 2+2?", "completion": " 4"}\n',
        "arithmetic:a:2",
    ),
    "sharegpt": (
        "s.jsonl",
        f'{{"conversations": [{{"from": "human", "value": "{CUT}"}}, {{"from": "gpt", "value": "x"}}]}}\n'
        '{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}\n',
        "sharegpt:s:2",
    ),
    "chitchat": (
        "dataset.json",
        '{"c1": {"messages": [[{"text": "hi ' + CUT + '", "sender": "a"}], [{"text": "yo", "sender": "b"}]]},'
        ' "c2": {"messages": [[{"text": "q", "sender": "a"}], [{"text": "a", "sender": "b"}]]}}',
        "chitchat:c2",
    ),
}


@pytest.mark.parametrize("adapter", sorted(SURROGATE_CASES))
def test_lone_surrogate_is_quarantined_not_a_crash(adapter: str, tmp_path: Path) -> None:
    name, body, survivor = SURROGATE_CASES[adapter]
    (tmp_path / name).write_text(body)
    result = _run(adapter, tmp_path)
    validate(result.turns)
    assert survivor in set(result.turns["conversation_id"])
    bad = result.quarantine.filter(pl.col("check") == "utf8")
    assert bad.height == 1
    assert "lone UTF-16 surrogate" in bad["reason"][0] and "`text`" in bad["reason"][0]
    assert "\\ud" in bad["text"][0]  # the preview shows the escape, so the row can be found upstream
    assert _reconciles(result.report)
    # the quarantine parquet holds the row
    result.quarantine.write_parquet(tmp_path / "q.parquet")
    assert pl.read_parquet(tmp_path / "q.parquet").equals(result.quarantine)


def test_lone_surrogate_in_contrib_jsonl(tmp_path: Path) -> None:
    cut = (
        '{"messages": [{"role": "user", "content": "hi '
        + CUT
        + '"}, {"role": "assistant", "content": "hello"}]}'
    )
    result = _contrib(tmp_path, cut + "\n" + _msgs("ok", "fine") + "\n")
    assert result.report["by_source"]["contrib/chat"]["conversations_kept"] == 1
    assert Counter(result.quarantine["check"]) == Counter({"utf8": 1, "conversation_broken": 1})
    assert result.quarantine.filter(pl.col("check") == "utf8")["origin"].to_list() == [
        "chat.jsonl:1/messages[0]"
    ]
    assert _reconciles(result.report)


def test_lone_surrogate_in_conversation_id_and_context(tmp_path: Path) -> None:
    """Not only text: an id or a persona with a cut emoji must not reach polars either."""
    (tmp_path / "dataset.json").write_text(
        '{"k' + CUT + '": {"messages": [[{"text": "hi", "sender": "a"}], [{"text": "yo", "sender": "b"}]]}}'
    )
    result = _run("chitchat", tmp_path)
    assert result.turns.height == 0
    q = result.quarantine
    assert Counter(q["check"]) == Counter({"utf8": 2})  # every row of the conversation carries the id
    assert q["conversation_id"].to_list() == ["chitchat:k\\ud83d"] * 2
    assert "`conv_key`" in q["reason"][0]
    q.write_parquet(tmp_path / "q.parquet")
    assert _reconciles(result.report)


def test_raw_rows_escape_every_field() -> None:
    """RawRows is the one place: a readable row becomes `utf8`, a bad or skipped row keeps its rule,
    an origin (only a label, e.g. an undecodable file name) is escaped but the row stays readable."""
    rows = RawRows("s", "MIT", True)
    rows.add("c", "fine", "f\udcff.jsonl:1", role="human")
    rows.add("c", "hi", "f:2", role="bot", context="persona \ud83d")
    rows.add("c", "hi", "f:3", speaker="\udc00")
    rows.bad("f:4", "json_parse", "broken", conv_key="c", text="x \ud83d" + "y" * 3000)
    rows.skip("f:5", "some_filter", conv_key="c", text="\ud83d")
    frame = rows.frame()  # would raise UnicodeEncodeError if one surrogate were left
    assert frame["check"].to_list() == [None, "utf8", "utf8", "json_parse", None]
    assert frame["filter"].to_list() == [None, None, None, None, "some_filter"]
    assert frame["origin"][0] == "f\\udcff.jsonl:1"
    assert frame["reason"][1] == "`context` holds a lone UTF-16 surrogate U+D83D (a cut emoji?)"
    assert "`speaker`" in frame["reason"][2]
    assert frame["text"][3].startswith("x \\ud83d") and len(frame["text"][3]) == 2001  # cut to a preview
    assert frame["text"][4] == "\\ud83d"


def _mixed_rows(chunk_rows: int) -> RawRows:
    """Every kind of row RawRows takes (escaped surrogates, a cut preview, a skip, nulls), seven of them."""
    rows = RawRows("s", "MIT", True, chunk_rows=chunk_rows)
    rows.add("c", "fine", "f\udcff.jsonl:1", role="human")
    rows.add("c", "hi", "f:2", role="bot", context="persona \ud83d")
    rows.add("c", "hi", "f:3", speaker="\udc00")
    rows.bad("f:4", "json_parse", "broken", conv_key="c", text="x \ud83d" + "y" * 3000)
    rows.skip("f:5", "some_filter", conv_key="c", text="\ud83d")
    rows.add(None, None, "f:6")
    rows.add("d", "é " * 5000, "f:7", role="human", context="p")
    return rows


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 8])
def test_raw_rows_in_chunks_make_the_same_frame(chunk_rows: int) -> None:
    """RawRows moves its rows into polars every `chunk_rows` rows (memory: Python lists of a whole
    file took ~2x its frame): the frame is the one built from unchunked rows, and the same when asked
    for twice. Its columns keep those chunks, uncopied, so that normalize can let go of the rows it
    is done with a chunk at a time."""
    whole = _mixed_rows(1_000_000).frame()
    rows = _mixed_rows(chunk_rows)
    assert len(rows) == 7
    frame = rows.frame()
    assert frame.equals(whole, null_equal=True) and frame.schema == whole.schema
    assert all(s.n_chunks() == -(-7 // chunk_rows) for s in frame.get_columns())
    assert rows.frame().equals(whole, null_equal=True)
    rows.add("e", "more", "f:8", role="bot")  # rows added after a frame() still come in order
    assert len(rows) == 8 and rows.frame().get_column("origin").to_list()[-2:] == ["f:7", "f:8"]


def test_raw_rows_without_rows_make_an_empty_frame() -> None:
    frame = RawRows("s", "MIT", True, chunk_rows=2).frame()
    assert frame.height == 0 and frame.schema == pl.Schema(RAW_SCHEMA)


def test_undecodable_file_name(tmp_path: Path) -> None:
    """A file name with a byte that is not UTF-8 reaches Python as a surrogate (surrogateescape): it
    is escaped in the origin, and the rows whose conversation id is built from it are quarantined."""
    (tmp_path / "f\udcff.jsonl").write_text(_msgs("q", "a") + "\n")
    result = _run("openai", tmp_path)
    q = result.quarantine
    assert result.turns.height == 0 and q["check"].to_list() == ["utf8"] * 2
    assert "`conv_key`" in q["reason"][0]
    assert q["origin"].to_list() == ["f\\udcff.jsonl:1/messages[0]", "f\\udcff.jsonl:1/messages[1]"]
    q.write_parquet(tmp_path / "q.parquet")
    assert _reconciles(result.report)


# --- 2. oasst1 parent cycles -------------------------------------------------------------------------


def test_oasst1_parent_cycle_is_quarantined(tmp_path: Path) -> None:
    def msg(mid: str, parent: str | None, tree: str, role: str, text: str) -> dict:
        return {"message_id": mid, "parent_id": parent, "message_tree_id": tree, "role": role, "text": text}

    msgs = [
        msg("r", None, "t", "prompter", "hi"),
        msg("a", "r", "t", "assistant", "hello"),
        msg("x", "y", "t2", "prompter", "q"),  # x and y are each other's parent
        msg("y", "x", "t2", "assistant", "a"),
        msg("z", "z", "t3", "prompter", "self"),  # its own parent
        msg("w", "z", "t3", "assistant", "below the loop"),
    ]
    (tmp_path / "m.messages.jsonl").write_text("".join(json.dumps(m) + "\n" for m in msgs))
    result = _run("oasst1", tmp_path)
    assert result.turns["text"].to_list() == ["hi", "hello"]
    q = result.quarantine
    assert Counter(q["check"]) == Counter({"parent_cycle": 4})
    assert q["origin"].to_list() == [
        "m.messages.jsonl:3",
        "m.messages.jsonl:4",
        "m.messages.jsonl:5",
        "m.messages.jsonl:6",
    ]
    assert q["reason"][2].startswith("message z:") and "loops" in q["reason"][2]
    assert result.report["rows_read"] == 6 and _reconciles(result.report)


def test_oasst1_orphan_does_not_cut_its_trees_good_thread(tmp_path: Path) -> None:
    msgs = [
        {"message_id": "r", "parent_id": None, "message_tree_id": "t", "role": "prompter", "text": "hi"},
        {"message_id": "a", "parent_id": "r", "message_tree_id": "t", "role": "assistant", "text": "hello"},
        {"message_id": "o", "parent_id": "gone", "message_tree_id": "t", "role": "prompter", "text": "?"},
        {"message_id": "b", "parent_id": "o", "message_tree_id": "t", "role": "assistant", "text": "below"},
    ]
    (tmp_path / "m.messages.jsonl").write_text("".join(json.dumps(m) + "\n" for m in msgs))
    result = _run("oasst1", tmp_path)
    assert result.turns["text"].to_list() == ["hi", "hello"]  # was cut away as conversation_broken
    assert result.quarantine["check"].to_list() == ["parent_missing"]
    assert result.report["rows_filtered"] == {"oasst_parent_dropped": 1} and _reconciles(result.report)


# --- 3. record keys ----------------------------------------------------------------------------------


def test_record_key_suffix_is_rechecked() -> None:
    used: set[str] = set()
    keys = [record_key("3", 1, used), record_key("3@3", 2, used), record_key(None, 3, used)]
    assert len(set(keys)) == 3 and keys[:2] == ["3", "3@3"]


def test_record_ids_like_suffixed_keys_never_merge(tmp_path: Path) -> None:
    body = _msgs("q1", "a1", id="3") + "\n" + _msgs("q2", "a2", id="3@3") + "\n" + _msgs("q3", "a3") + "\n"
    result = _contrib(tmp_path, body)
    convs = result.turns.group_by("conversation_id", maintain_order=True).agg("text")
    assert sorted(convs["text"].to_list()) == [["q1", "a1"], ["q2", "a2"], ["q3", "a3"]]


# --- 4. empty conversations --------------------------------------------------------------------------


def test_chitchat_empty_conversations_are_counted(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "c1": {"messages": []},
                "c2": {"messages": [[], []]},
                "c3": {"messages": [[{"text": "hi", "sender": "a"}], [{"text": "yo", "sender": "b"}]]},
            }
        )
    )
    result = _run("chitchat", tmp_path)
    assert result.report["conversations_kept"] == 1
    q = result.quarantine
    assert q["origin"].to_list() == ["dataset.json:c1", "dataset.json:c2"]
    assert q["check"].to_list() == ["missing_field"] * 2
    assert q["conversation_id"].to_list() == ["chitchat:c1", "chitchat:c2"]
    assert result.report["rows_read"] == 4 and _reconciles(result.report)


def test_chatterbot_empty_conversation_is_counted(tmp_path: Path) -> None:
    (tmp_path / "x.yml").write_text("conversations:\n- []\n- - hi\n  - yo\n")
    result = _run("chatterbot", tmp_path)
    assert result.turns["text"].to_list() == ["hi", "yo"]
    q = result.quarantine
    assert (q["origin"].to_list(), q["check"].to_list()) == (["x.yml:2"], ["missing_field"])
    assert q["conversation_id"][0] == "chatterbot:x:0" and "empty" in q["reason"][0]
    assert result.report["rows_read"] == 3 and _reconciles(result.report)
