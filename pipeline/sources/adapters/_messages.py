"""Shared by the formats that store a conversation as a list of {role, text} messages
(OpenAI `messages`, ShareGPT `conversations`, Chatbot Arena `conversation_a/_b`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.invisible import blank_text
from pipeline.sources.adapters._records import object_records, record_text
from pipeline.sources.readers import iter_json_records
from pipeline.sources.rows import RawRows

CONTEXT = "context"  # a role_map value: the message becomes the conversation's context


def content_text(value: Any) -> str | None:
    """A message's text: a string, or OpenAI's list of content parts ({"type": "text", "text"})."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # No parts: an empty message, as "" is, not an unreadable one (which cuts its conversation).
        if not value:
            return ""
        parts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type", "text") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(parts)
    return None


def add_messages(
    rows: RawRows,
    key: str,
    origin: str,
    messages: Any,
    *,
    role_field: str,
    text_field: str,
    role_map: dict[str, str],
    list_name: str,
    context: str | None = None,
    record_text: Callable[[], str] | None = None,
) -> None:
    """One row per message; system-like messages become the conversation context (counted as filtered).
    `record_text`: what the record held, kept as the quarantined row's text when it has no messages
    (called only then: a .json list's item is turned back into JSON for it)."""
    if not isinstance(messages, list) or not messages:
        # a record that holds nothing is still a record read: count it, never drop it
        reason = (
            f"record's `{list_name}` list is empty"
            if isinstance(messages, list)
            else f"record has no `{list_name}` list"
        )
        text = record_text() if record_text is not None else None
        rows.bad(origin, "missing_field", reason, conv_key=key, text=text)
        return
    system = [
        content_text(m.get(text_field))
        for m in messages
        if isinstance(m, dict) and role_map.get(str(m.get(role_field)).lower()) == CONTEXT
    ]
    # A system message of nothing visible (whitespace, or invisible characters alone: U+FE0F, U+200B)
    # adds no line, as normalize drops such a row from the turns and serve leaves out such a message
    # (tests/test_chat_template.py): "A\n\ufe0f" was a persona the server never sends.
    parts = [p.strip() for p in [context, *system] if isinstance(p, str) and p.strip() and not blank_text(p)]
    ctx = "\n".join(parts) or None
    for i, m in enumerate(messages):
        where = f"{origin}/{list_name}[{i}]"
        if not isinstance(m, dict) or m.get(role_field) is None:
            text = content_text(m.get(text_field)) if isinstance(m, dict) else None
            shown = text if text is not None else _preview(m)  # the quarantine keeps what was there
            rows.bad(where, "missing_field", f"message has no `{role_field}`", conv_key=key, text=shown)
            continue
        raw_role = str(m[role_field])
        role = role_map.get(raw_role.lower())
        value = m.get(text_field)
        if role is None:
            # Checked here, not left to normalize's role_valid: an unmapped `bot` or `human` (the
            # turn table's own names) would pass that check, though `Bot` and `gpt` in openai fail it.
            rows.bad(
                where,
                "role_valid",
                f"role '{raw_role}' is not one this format maps to human or bot",
                conv_key=key,
                role=raw_role,
                text=content_text(value) or _preview(value),
            )
            continue
        text = content_text(value)
        # A system message whose content cannot be read (a number, image parts only) would leave its
        # conversation without the persona it was written for, counted as a context that was never
        # used: it breaks its conversation instead, as a context with control characters does. One
        # without content holds nothing to lose, as an empty one.
        if role == CONTEXT and (text is not None or value is None):
            rows.skip(where, "system_message_as_context", conv_key=key)
            continue
        if text is None:
            reason = (
                f"message has no `{text_field}` text"
                if value is None
                else f"`{text_field}` must be a string or a list of text parts, not {_preview(value)}"
            )
            shown_role = raw_role if role == CONTEXT else role  # the quarantine shows `system`, as read
            rows.bad(where, "missing_field", reason, conv_key=key, role=shown_role, text=_preview(value))
            continue
        rows.add(key, text, where, role=role, context=ctx)


def _preview(value: Any) -> str | None:
    """What a bad message held, short, for the quarantine and its reason."""
    if value is None:
        return None
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= 80 else shown[:80] + "…"


def record_key(record_id: Any, line: int | str, used: set[str]) -> str:
    """A record's conversation key: its `id` when that is a non-empty string or an integer, else
    `line` (its record/line number, or any label unique to the record); a key already in `used`
    gets `@<line>` appended, until it is unused (the suffixed key may itself be a record's id:
    ids "3" and "3@3", then a record on line 3 without an id, gets "3@3@3").

    Rows are grouped into conversations by key, so two records under one key (exports often write
    `"id": null` or `""`, or repeat an id) would silently become one conversation.
    """
    if isinstance(record_id, str) and record_id.strip():
        key = record_id
    elif isinstance(record_id, int) and not isinstance(record_id, bool):
        key = str(record_id)
    else:
        key = str(line)
    while key in used:
        key = f"{key}@{line}"
    used.add(key)
    return key


def read_message_file(
    path: Path,
    rel: str,
    rows: RawRows,
    key_prefix: str = "",
    *,
    list_name: str,
    role_field: str,
    text_field: str,
    role_map: dict[str, str],
) -> None:
    """A JSON list / JSONL file of records that each hold a message list under `list_name`; the
    conversation id is the record's `id` when it has one (see `record_key`), else its record/line number."""
    used: set[str] = set()
    # A record that is no object (`[...]`, a string, a number) has no fields to take: quarantined
    # under its own conversation key, as any record's, so it breaks no record that has an id like its line.
    records = object_records(
        iter_json_records(path),
        rel,
        rows,
        holding=f" with a `{list_name}` list",
        conv_key=lambda rec: f"{key_prefix}{record_key(None, rec.line, used)}",
    )
    for origin, rec in records:
        obj = rec.value
        add_messages(
            rows,
            f"{key_prefix}{record_key(obj.get('id'), rec.line, used)}",
            origin,
            obj.get(list_name),
            role_field=role_field,
            text_field=text_field,
            role_map=role_map,
            list_name=list_name,
            # a record with no message to read (a `Messages` typo, say) is quarantined with what it
            # held, so `nanochatgpt quarantine` shows the record, not an empty row
            record_text=lambda rec=rec: record_text(rec),
        )
