"""Tests from mutation audit 17 (the source adapters, continued from audit 14): each kills a hand-made
mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from test_mutation_audit14 import _jsonl, _read, _turns


def _quarantined(result) -> list[tuple[str, str]]:
    """(origin, check) of each quarantined row, in order."""
    return result.quarantine.select("origin", "check").rows()


# ---------------------------------------------------------------- personachat


def test_personachat_reads_a_dialogue_line_without_reply_candidates(tmp_path: Path) -> None:
    """Mutations personachat.read_file: `len(fields) < 2` -> `< 3` (a line of partner and reply alone,
    as ParlAI's `*_no_cands` files write them, was quarantined as a format error), and the column
    numbers in the origins (1 = partner, 2 = reply) shifted to 0 and 1 (an empty reply was reported
    at the partner's column)."""
    (tmp_path / "train_self_original_no_cands.txt").write_text(
        "1 your persona: i ski.\n2 hi\thello\n3 how are you ?\tfine\n4 and you ?\t \n"
    )
    result = _read("personachat", tmp_path)
    cid = "personachat:train_self_original_no_cands:1"
    assert _turns(result) == {
        cid: [
            ("human", "hi"),
            ("bot", "hello"),
            ("human", "how are you ?"),
            ("bot", "fine"),
            ("human", "and you ?"),
        ]
    }
    assert set(result.turns["context"]) == {"i ski."}
    assert ("train_self_original_no_cands.txt:4/2", "text_present") in _quarantined(result)


def test_personachat_silence_with_spaces_around_it_is_still_the_placeholder(tmp_path: Path) -> None:
    """Mutation personachat.read_file: `text.strip() == SILENCE` -> `text == SILENCE`. The placeholder
    with a space after it (before the tab) is still ParlAI's `__SILENCE__`, not a human turn."""
    (tmp_path / "valid_self_original.txt").write_text("1 __SILENCE__ \thello\t\ta|b\n2 hi\tyo\t\tc\n")
    result = _read("personachat", tmp_path)
    assert "__SILENCE__" not in "".join(result.turns["text"].to_list())
    assert result.report["rows_filtered"] == {"silence": 1}
    assert _turns(result) == {"personachat:valid_self_original:1": [("human", "hi"), ("bot", "yo")]}


# ---------------------------------------------------------------- chatbot_arena


def _battle(qid: str, **kw: object) -> dict:
    def conv(reply: str) -> list[dict]:
        return [{"role": "user", "content": "q?"}, {"role": "assistant", "content": reply}]

    return {"question_id": qid, "conversation_a": conv(f"{qid} a"), "conversation_b": conv(f"{qid} b"), **kw}


def test_chatbot_arena_language_filter_keeps_a_battle_that_names_no_language(tmp_path: Path) -> None:
    """Mutation chatbot_arena._skip_reason: `rec.get("language") not in (None, language)` ->
    `!= language`. A battle with no `language` is not of another language: it is kept; only one that
    names another language is filtered (`language`), both sides' rows."""
    (tmp_path / "d.jsonl").write_text(
        _jsonl(_battle("q1", language="English"), _battle("q2"), _battle("q3", language="German"))
    )
    result = _read("chatbot_arena", tmp_path, {"language": "English"})
    assert sorted(_turns(result)) == ["chatbot_arena:q1:a", "chatbot_arena:q2:a"]
    assert result.report["rows_filtered"] == {"arena_not_preferred": 4, "language": 4}


# ---------------------------------------------------------------- _records


def test_a_record_that_is_no_object_keeps_its_line_as_its_conversation_key(tmp_path: Path) -> None:
    """Mutation _records.object_records: `conv_key=conv_key(rec) if ... else None` -> `None`. A JSONL
    line that is no object is quarantined under the key its line gives it, as any record's, and that
    key is reserved: a later record whose `id` is that line number gets its own key (`1@2`), so its
    conversation never shares an id with the quarantined record's."""
    good = {
        "id": "1",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    }
    (tmp_path / "chats.jsonl").write_text(_jsonl(["not", "an", "object"], good))
    result = _read("openai", tmp_path)
    assert _turns(result) == {"openai:chats:1@2": [("human", "hi"), ("bot", "yo")]}
    assert result.quarantine.select("conversation_id", "origin", "check").rows() == [
        ("openai:chats:1", "chats.jsonl:1", "missing_field")
    ]


# ---------------------------------------------------------------- ubuntu


def test_ubuntu_v2_response_is_the_next_turn_even_after_a_context_without_its_last_eot(
    tmp_path: Path,
) -> None:
    """Mutation ubuntu._read_v2: `_turns(Context) + _turns(response)` -> `_turns(Context + response)`.
    The response is the next turn by the layout, not text to split with the context: a context whose
    last `__eot__` is missing would glue the response onto its last turn (one speaker's)."""
    (tmp_path / "train.csv").write_text("Context,Utterance,Label\nhow ? __eou__,like this __eou__,1\n")
    result = _read("ubuntu", tmp_path)
    assert _turns(result) == {"ubuntu:train:2": [("human", "how ?"), ("bot", "like this")]}


def test_chatbot_arena_a_system_message_is_the_conversations_context(tmp_path: Path) -> None:
    """Mutation chatbot_arena.ROLE_MAP: `"system": CONTEXT` dropped, which quarantined a battle's
    system message as role_valid and cut its conversation. A system message is the context of the
    side that holds it (filtered as `system_message_as_context`), as in the other message formats."""
    battle = _battle("q1", winner="model_a")
    battle["conversation_a"].insert(0, {"role": "system", "content": "Be brief."})
    (tmp_path / "d.jsonl").write_text(_jsonl(battle))
    result = _read("chatbot_arena", tmp_path)
    assert _turns(result) == {"chatbot_arena:q1:a": [("human", "q?"), ("bot", "q1 a")]}
    assert set(result.turns["context"]) == {"Be brief."}
    assert result.quarantine.height == 0
    assert result.report["rows_filtered"] == {"arena_not_preferred": 2, "system_message_as_context": 1}


# ---------------------------------------------------------------- _lines (babylm, twitter)


def test_a_speaker_label_holds_no_colon(tmp_path: Path) -> None:
    """Mutation _lines.SPEAKER: `[^\\t:]` -> `[^\\t]` in the label. An unlabelled line whose text holds
    a colon before a `:<TAB>` ("re: the plan:<TAB>ok") is text, not the label `re: the plan`: a label
    is a short name ("A", "*CHI", "Speaker 1") and holds no colon."""
    (tmp_path / "aochildes.txt").write_text("hi\nre: the plan:\tok\n")
    result = _read("babylm", tmp_path)
    assert _turns(result) == {"babylm:aochildes.txt:1": [("human", "hi"), ("bot", "re: the plan:\tok")]}


def test_a_speaker_label_is_read_without_the_spaces_before_its_colon(tmp_path: Path) -> None:
    """Mutation _lines._add: `m.group(1).strip()` -> `m.group(1)`. "A :<TAB>" is speaker A, as "A:<TAB>"
    is: kept as `A `, it was a third speaker, and A's two lines were no longer one turn."""
    (tmp_path / "switchboard.txt").write_text("A:\thi\nA :\tthere\nB:\tyo\n")
    result = _read("babylm", tmp_path)
    assert _turns(result) == {"babylm:switchboard.txt:1": [("human", "hi\nthere"), ("bot", "yo")]}


# ---------------------------------------------------------------- nanochatgpt


def test_nanochatgpt_a_blank_line_ends_what_was_left_of_a_cut_turn(tmp_path: Path) -> None:
    """Mutation nanochatgpt._Parser.end_conversation: `self.cut_turn = None` dropped. After an
    unreadable line cut a turn, its remaining lines are "the rest of the turn"; once a blank line has
    ended the conversation, stray text in the next one is text outside a turn again, and its
    quarantine reason must say so rather than point back at the cut turn."""
    (tmp_path / "f.txt").write_bytes(
        b"<human> hi\n\xff\xfe bad\nrest\n\nstray\n<human> q <endOfText>\n<bot> a <endOfText>\n"
    )
    result = _read("nanochatgpt", tmp_path)
    fmt = result.quarantine.filter(pl.col("check") == "format").sort("origin")
    reasons = dict(fmt.select("origin", "reason").iter_rows())
    assert reasons["f.txt:3"].startswith("the rest of the turn of line 1")
    assert reasons["f.txt:5"].startswith("text outside a <human>/<bot> turn")


# ---------------------------------------------------------------- chatterbot


def test_chatterbot_an_utterance_is_reported_at_its_own_line(tmp_path: Path) -> None:
    """Mutation chatterbot._add_conversation: `node.start_mark.line + 1` -> `line` (yaml counts lines
    from 0). The origin of a bad utterance names the file line it is on, as every origin does."""
    (tmp_path / "a.yml").write_text("categories: [x]\nconversations:\n- - hi\n  - [not, a, string]\n")
    result = _read("chatterbot", tmp_path)
    assert ("a.yml:4", "missing_field") in _quarantined(result)


def test_nanochatgpt_a_marker_ends_what_was_left_of_a_cut_turn(tmp_path: Path) -> None:
    """Mutation nanochatgpt._Parser.line: `self.cut_turn = None` after each marker dropped. The
    `<endOfText>` that closes a cut turn's remaining text ends it: stray text after it on the line is
    text outside a turn, not more of the cut turn."""
    (tmp_path / "f.txt").write_bytes(
        b"<human> hi\n\xff\xfe bad\nrest <endOfText> stray <human> q <endOfText><bot> a <endOfText>\n"
    )
    result = _read("nanochatgpt", tmp_path)
    fmt = result.quarantine.filter(pl.col("check") == "format")
    assert [(o, r.split(" (")[0]) for o, r in fmt.select("origin", "reason").iter_rows()] == [
        ("f.txt:3", "the rest of the turn of line 1, which an unreadable line cut"),
        ("f.txt:3", "text outside a <human>/<bot> turn"),
    ]
    assert fmt["text"].to_list() == ["rest ", " stray "]  # kept as read


# ---------------------------------------------------------------- _messages


def test_an_image_part_beside_text_parts_is_left_out_of_the_message(tmp_path: Path) -> None:
    """Mutation _messages.content_text: the `p.get("type", "text") == "text"` filter dropped. A message
    of OpenAI content parts reads as its text parts; an image part beside them holds no text and is
    left out (with the filter gone its missing `text` made the whole message unreadable)."""
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    record = {
        "id": "r1",
        "messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": "a cat"}],
    }
    (tmp_path / "chats.jsonl").write_text(_jsonl(record))
    result = _read("openai", tmp_path)
    assert _turns(result) == {"openai:chats:r1": [("human", "what is this?"), ("bot", "a cat")]}
    assert result.quarantine.height == 0


def test_a_content_part_without_a_type_is_a_text_part(tmp_path: Path) -> None:
    """Mutation _messages.content_text: `p.get("type", "text")` -> `p.get("type")`. A part that holds
    `text` and names no type (exports that drop the default) is text; with no default it was left out,
    the message read as holding nothing and was quarantined."""
    message = {"role": "user", "content": [{"text": "hi"}, {"type": "text", "text": "there"}]}
    record = {"id": "r1", "messages": [message, {"role": "assistant", "content": "hello"}]}
    (tmp_path / "chats.jsonl").write_text(_jsonl(record))
    result = _read("openai", tmp_path)
    assert _turns(result) == {"openai:chats:r1": [("human", "hi\nthere"), ("bot", "hello")]}


def test_nanochatgpt_an_unclosed_turn_is_quarantined_with_its_role(tmp_path: Path) -> None:
    """Mutation nanochatgpt._Parser.close_turn: `role=role` dropped from the `turn_unclosed` row. The
    quarantine shows whose turn was left unclosed (the marker read), as it does for a closed turn."""
    (tmp_path / "f.txt").write_text("<human> hi <endOfText>\n<bot> hello\n")
    result = _read("nanochatgpt", tmp_path)
    bad = result.quarantine.filter(pl.col("check") == "turn_unclosed")
    assert bad.select("origin", "role", "text").rows() == [("f.txt:2", "bot", " hello\n")]  # as read


# ---------------------------------------------------------------- empathetic_dialogues


def test_empathetic_dialogues_a_header_in_another_delimiter_refuses_the_file(tmp_path: Path) -> None:
    """Mutation empathetic_dialogues._is_header: `line.startswith("conv_id") or` dropped. A line 1 that
    starts with conv_id is a header even when split on commas it names no column (a semicolon-separated
    export): the file is refused once, as a csv_header, not read as a row of one field per line."""
    (tmp_path / "train.csv").write_text(
        "conv_id;utterance_idx;context;prompt;speaker_idx;utterance\nhit:0;1;sad;p;1;hi\nhit:0;2;sad;p;2;yo\n"
    )
    result = _read("empathetic_dialogues", tmp_path)
    assert _quarantined(result) == [("train.csv:1", "csv_header")]
