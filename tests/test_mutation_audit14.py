"""Tests from mutation audit 14 (the source adapters, pipeline/sources/adapters/): each kills a
hand-made mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from test_adapters import _spec

from pipeline.sources.adapters import get_adapter
from pipeline.sources.normalize import normalize_rows


def _read(adapter: str, folder: Path, options: dict | None = None):
    return normalize_rows(get_adapter(adapter)(folder, _spec(adapter, options), {}), max_turn_chars=16_000)


def _jsonl(*objs: object) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def _turns(result) -> dict[str, list[tuple[str, str]]]:
    """conversation id -> [(role, text), ...] in turn order."""
    out: dict[str, list[tuple[str, str]]] = {}
    for cid, role, text in result.turns.select("conversation_id", "role", "text").iter_rows():
        out.setdefault(cid, []).append((role, text))
    return out


# ---------------------------------------------------------------- oasst1


def _msg(mid: str, parent: str | None, role: str, text: str, **kw: object) -> dict:
    return {"message_id": mid, "parent_id": parent, "message_tree_id": "t", "role": role, "text": text, **kw}


def test_oasst1_language_filter_keeps_a_message_that_names_no_language(tmp_path: Path) -> None:
    """Mutation oasst1._drop_reason: `msg.get("lang") not in (None, lang)` -> `!= lang`. A message with
    no `lang` (null or absent) is not of another language: the filter keeps it; only a message that
    names another language is filtered (`oasst_lang`)."""
    (tmp_path / "m.messages.jsonl").write_text(
        _jsonl(
            _msg("a", None, "prompter", "hi", lang="en"),
            _msg("b", "a", "assistant", "hello", lang=None, rank=0),
            _msg("c", "b", "prompter", "bonjour", lang="fr"),
        )
    )
    result = _read("oasst1", tmp_path, {"language": "en"})
    assert _turns(result) == {"oasst1:t": [("human", "hi"), ("bot", "hello")]}
    assert result.report["rows_filtered"] == {"oasst_lang": 1}


def test_oasst1_among_unranked_replies_the_oldest_is_followed(tmp_path: Path) -> None:
    """Mutation oasst1._rank_key: the `created_date` tie-break dropped (`""`), which left the message id
    to choose among unranked replies. The docstring's order: lowest rank, unranked last, then oldest;
    here the older reply has the larger id."""
    (tmp_path / "m.messages.jsonl").write_text(
        _jsonl(
            _msg("a", None, "prompter", "hi"),
            _msg("b1", "a", "assistant", "newer", created_date="2023-02-06T00:00:00Z"),
            _msg("b2", "a", "assistant", "older", created_date="2023-02-05T00:00:00Z"),
        )
    )
    result = _read("oasst1", tmp_path)
    assert _turns(result) == {"oasst1:t": [("human", "hi"), ("bot", "older")]}
    assert result.report["rows_filtered"] == {"oasst_not_selected": 1}


def test_oasst1_tree_replies_are_read_in_file_order(tmp_path: Path) -> None:
    """Mutation oasst1._flatten: `reversed(...)` dropped from the replies pushed on the stack, so a
    tree's replies were read last first. Then of two replies with one message_id the later one was
    kept and the first quarantined as its duplicate; the first read is kept, as for flat records."""
    prompt = {
        "message_id": "a",
        "role": "prompter",
        "text": "hi",
        "replies": [
            {"message_id": "b", "role": "assistant", "text": "first", "rank": 0},
            {"message_id": "b", "role": "assistant", "text": "second", "rank": 0},
        ],
    }
    (tmp_path / "x.trees.jsonl").write_text(_jsonl({"message_tree_id": "t", "prompt": prompt}))
    result = _read("oasst1", tmp_path)
    assert _turns(result) == {"oasst1:t": [("human", "hi"), ("bot", "first")]}
    dup = result.quarantine.filter(pl.col("check") == "duplicate_id")
    assert dup["origin"].to_list() == ["x.trees.jsonl:1/prompt.replies[1]"]


def test_oasst1_an_unknown_role_is_quarantined_not_read_as_the_bot(tmp_path: Path) -> None:
    """Mutation oasst1._threads: `ROLES.get(msg["role"], msg["role"])` -> `ROLES.get(..., "bot")`. A
    role other than prompter/assistant is passed on as read, so normalize's role check quarantines
    it (and cuts the thread there); the mutant put it in the data as a bot turn."""
    (tmp_path / "m.messages.jsonl").write_text(
        _jsonl(
            _msg("a", None, "prompter", "hi"),
            _msg("b", "a", "moderator", "removed by a moderator", rank=0),
        )
    )
    result = _read("oasst1", tmp_path)
    assert "removed by a moderator" not in result.turns["text"].to_list()
    bad = result.quarantine.filter(pl.col("text") == "removed by a moderator")
    assert bad["check"].to_list() == ["role_valid"]


# ---------------------------------------------------------------- hackernews


def test_hackernews_ask_and_show_items_are_stories_whose_title_is_the_context(tmp_path: Path) -> None:
    """Mutations hackernews: STORY_TYPES cut to ("story",), which counted an `ask`/`show` item (as
    some dumps type Ask HN and Show HN posts) as an unsupported type rather than the story its
    comments hang from; and `html.unescape` dropped from the title, which left `&amp;` in the
    conversation's context (the API writes titles with HTML entities)."""
    items = [
        {"id": 1, "type": "ask", "title": "Ask HN: Q&amp;A tools?"},
        {"id": 2, "type": "show", "title": "Show HN: mine"},
        {"id": 3, "type": "comment", "by": "u1", "text": "what about X", "parent": 1, "kids": [4]},
        {"id": 4, "type": "comment", "by": "u2", "text": "X is fine", "parent": 3},
    ]
    (tmp_path / "items.jsonl").write_text(_jsonl(*items))
    result = _read("hackernews", tmp_path)
    assert _turns(result) == {"hackernews:3": [("human", "what about X"), ("bot", "X is fine")]}
    assert set(result.turns["context"]) == {"Hacker News: Ask HN: Q&A tools?"}
    assert result.report["rows_filtered"] == {"hn_story": 2}


def test_hackernews_a_dead_reply_is_not_followed(tmp_path: Path) -> None:
    """Mutation hackernews._live: `and not item.get("dead")` dropped. A dead comment (flagged or
    killed; the API still serves its text) is no turn: the thread follows the next live reply and
    the dead one is filtered as hn_deleted, as the docstring says (deleted or dead)."""
    items = [
        {"id": 1, "type": "story", "title": "t"},
        {"id": 2, "by": "u1", "text": "question", "parent": 1, "kids": [3, 4]},
        {"id": 3, "by": "u2", "text": "spam", "parent": 2, "dead": True},
        {"id": 4, "by": "u3", "text": "answer", "parent": 2},
    ]
    (tmp_path / "items.jsonl").write_text(_jsonl(*items))
    result = _read("hackernews", tmp_path)
    assert _turns(result) == {"hackernews:2": [("human", "question"), ("bot", "answer")]}
    assert result.report["rows_filtered"] == {"hn_story": 1, "hn_deleted": 1}


def test_hackernews_follows_the_first_reply_in_kids_order_not_the_lowest_id(tmp_path: Path) -> None:
    """Mutation hackernews._replies: `kids` sorted (by id) before the first live reply is taken. `kids`
    is HN's ranked display order: the top-ranked reply (here the later one, id 5) is the thread's
    next turn, and the other is off the thread."""
    items = [
        {"id": 1, "type": "story", "title": "t"},
        {"id": 2, "by": "u1", "text": "question", "parent": 1, "kids": [5, 4]},
        {"id": 4, "by": "u2", "text": "older, ranked lower", "parent": 2},
        {"id": 5, "by": "u3", "text": "newer, ranked first", "parent": 2},
    ]
    (tmp_path / "items.jsonl").write_text(_jsonl(*items))
    result = _read("hackernews", tmp_path)
    assert _turns(result) == {"hackernews:2": [("human", "question"), ("bot", "newer, ranked first")]}
    assert result.report["rows_filtered"] == {"hn_story": 1, "hn_not_on_thread": 1}


def test_hackernews_a_fractional_parent_is_no_item_id(tmp_path: Path) -> None:
    """Mutation hackernews._item_id: `and value.is_integer()` dropped, so a parent of 2.5 was read as
    item 2 (int() cuts the fraction) and the comment joined item 2's thread. Only a whole-number
    float (parquet's float64 `parent`) is an id; any other is quarantined."""
    items = [
        {"id": 1, "type": "story", "title": "t"},
        {"id": 2, "by": "u1", "text": "question", "parent": 1},
        {"id": 3, "by": "u2", "text": "answer", "parent": 2.0},
        {"id": 4, "by": "u3", "text": "stray", "parent": 2.5},
    ]
    (tmp_path / "items.jsonl").write_text(_jsonl(*items))
    result = _read("hackernews", tmp_path)
    assert _turns(result) == {"hackernews:2": [("human", "question"), ("bot", "answer")]}
    bad = result.quarantine.filter(pl.col("check") == "missing_field")
    assert bad.select("origin", "text").rows() == [("items.jsonl:4", "stray")]


# ---------------------------------------------------------------- chitchat


def test_chitchat_only_a_message_of_exactly_the_apps_limit_is_joined_to_the_next(tmp_path: Path) -> None:
    """Mutation chitchat._CutMessage.add: `len(text) != UPSTREAM_CUT` -> `< UPSTREAM_CUT`. Only a
    message of exactly 175 characters was cut by the chat app; a longer one (the app let it through
    whole) ends where it ends, so the next utterance is a line of its own (normalize joins one
    sender's utterances with a newline), not glued on after a space."""
    long = "x" * 180
    turns = [
        [{"text": long, "sender": "a"}, {"text": "next", "sender": "a"}],
        [{"text": "ok", "sender": "b"}],
    ]
    data = {"c1": {"messages": turns}}
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    result = _read("chitchat", tmp_path)
    assert _turns(result) == {"chitchat:c1": [("human", f"{long}\nnext"), ("bot", "ok")]}
    assert result.report["rows_kept"] == 3


# ---------------------------------------------------------------- _messages (openai, sharegpt, arena)


def test_message_roles_are_matched_whatever_their_case(tmp_path: Path) -> None:
    """Mutations _messages.add_messages: `.lower()` dropped from the role lookup (`User`/`Assistant`
    quarantined as role_valid) and from the system-message scan (a `System` message skipped as the
    context yet never put in it). Exports that capitalise roles read as the lower-case ones."""
    record = {
        "id": "r1",
        "messages": [
            {"role": "System", "content": "Be brief."},
            {"role": "User", "content": "hi"},
            {"role": "Assistant", "content": "hello"},
        ],
    }
    (tmp_path / "chats.jsonl").write_text(_jsonl(record))
    result = _read("openai", tmp_path)
    assert _turns(result) == {"openai:chats:r1": [("human", "hi"), ("bot", "hello")]}
    assert set(result.turns["context"]) == {"Be brief."}
    assert result.quarantine.height == 0
