"""chitchat-dataset (PyPI `chitchat_dataset/dataset.json`).

Upstream: {conversation uuid: {"messages": [turn, ...], "prompt", "ratings", "start"}} where a
turn is a list of utterances {"text", "timestamp", "sender"} by one sender. The first sender of
a conversation is the human; every utterance is one row (the turn's utterances merge back into
one turn in normalize, joined with a newline), except a message the chat app cut at its length
limit (`UPSTREAM_CUT`): it and the utterance that carries on after it are one row, joined with a
space, so a sentence is not broken by a line. A conversation with no utterance at all
(`"messages": []`, or only empty turns) is quarantined as one row: read, so counted. A conversation
id that appears twice in the file (JSON keeps only the last), or again in another file of the source,
keeps its first conversation; each later one is quarantined as one row (`duplicate_id`), so it is
counted rather than silently dropped or merged into the first. A
conversation holding a key given twice in one object (`"messages"` twice, an utterance with two
`"text"`s) is quarantined as one row (`duplicate_key`): JSON would keep one value, unseen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.readers import (
    JsonDecoder,
    RepeatedKeys,
    data_files,
    decode_whole,
    first_repeat,
    line_of,
    read_whole,
    repeated_key_reason,
    unreadable_json,
)
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

# The chat app the dataset was collected with cut a message at 175 characters and sent the rest as
# the sender's next message: in the package's data 1,835 of its 258,145 utterances are exactly 175
# characters long, against 2 at 176, and 1,478 of those go on in another utterance of the same turn
# (1,050 of them starting in lower case, mid-sentence). A line break there would split a sentence.
UPSTREAM_CUT = 175


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    # Conversation ids are the upstream uuids, with no file prefix (`chitchat:<uuid>`, stable since
    # the first release): over every file of the source, so that an id a second file repeats is
    # quarantined as `duplicate_id` too, not merged with the first file's conversation into one.
    seen: dict[str, str] = {}  # id -> the file it was first read from
    for path in data_files(raw_dir, (".json",)):
        rel = path.relative_to(raw_dir).as_posix()
        whole = read_whole(path)  # a .gz decompressed (decode_whole drops a byte-order mark)
        if not whole.ok:
            rows.bad(f"{rel}:{whole.line}", whole.check, whole.reason)
            continue
        raw = whole.value
        decoder = JsonDecoder()
        try:
            data = decoder.loads(decode_whole(raw))
        except UnicodeDecodeError as e:
            rows.bad(f"{rel}:{line_of(raw, e.start)}", "utf8", f"invalid UTF-8 at byte {e.start} of the file")
            continue
        except json.JSONDecodeError as e:
            rows.bad(f"{rel}:{e.lineno}", "json_parse", f"broken JSON ({e.msg} at column {e.colno})")
            continue
        except (RecursionError, ValueError) as e:  # nested too deeply, a number of 4300+ digits
            rows.bad(f"{rel}:1", "json_parse", f"broken JSON ({unreadable_json(e)})")
            continue
        if not isinstance(data, dict):
            rows.bad(f"{rel}:1", "missing_field", "expected an object of conversation id -> conversation")
            continue
        repeats = bool(decoder.repeated)  # else no conversation holds a repeated key: no walk
        for conv_id, conv in data.pairs if isinstance(data, RepeatedKeys) else data.items():
            if conv_id in seen:
                where = "the file" if seen[conv_id] == rel else f"the source (first in {seen[conv_id]})"
                rows.bad(
                    f"{rel}:{_label(conv_id)}",
                    "duplicate_id",
                    f"conversation id {conv_id} appears twice in {where}; the first is read",
                )  # no conv_key: under the first one's key it would cut that conversation short
                continue
            seen[conv_id] = rel
            key = first_repeat(conv) if repeats else None
            if key is not None:  # e.g. `"messages"` twice: one of the lists would be dropped unseen
                rows.bad(
                    f"{rel}:{_label(conv_id)}", "duplicate_key", repeated_key_reason(key), conv_key=conv_id
                )
                continue
            _read_conversation(rows, rel, conv_id, conv)
    return rows.frame()


def _label(conv_id: str) -> str:
    """The conversation id as an origin shows it: an empty id as `""`, so the origin still names it."""
    return conv_id or '""'


def _read_conversation(rows: RawRows, rel: str, conv_id: str, conv: Any) -> None:
    messages = conv.get("messages") if isinstance(conv, dict) else None
    if not isinstance(messages, list):
        rows.bad(
            f"{rel}:{_label(conv_id)}",
            "missing_field",
            "conversation has no `messages` list",
            conv_key=conv_id,
        )
        return
    before = len(rows)
    for t, turn in enumerate(messages):
        if not isinstance(turn, list):
            rows.bad(
                f"{rel}:{_label(conv_id)}/{t}",
                "missing_field",
                "turn is not a list of utterances",
                conv_key=conv_id,
            )
            continue
        cut = _CutMessage(rows, conv_id)
        for u, utt in enumerate(turn):
            origin = f"{rel}:{_label(conv_id)}/{t}/{u}"
            if not isinstance(utt, dict) or not isinstance(utt.get("text"), str) or utt.get("sender") is None:
                cut.flush()
                rows.bad(
                    origin,
                    "missing_field",
                    "utterance needs a `text` string and a `sender`",
                    conv_key=conv_id,
                )
                continue
            cut.add(utt["text"], origin, str(utt["sender"]))
        cut.flush()
    if len(rows) == before:  # a conversation that holds nothing is still one read: count it, never drop it
        rows.bad(
            f"{rel}:{_label(conv_id)}",
            "missing_field",
            "conversation is empty (no utterance)",
            conv_key=conv_id,
        )


class _CutMessage:
    """Emits one turn's utterances as rows, holding back a message cut at `UPSTREAM_CUT` characters
    until the utterance that carries it on arrives: the two become one row, joined with a space,
    whose origin names both (`.../3/0-1`). A cut message that ends its turn, or whose next utterance
    is unreadable or from another sender, is a row of its own, as it was read."""

    def __init__(self, rows: RawRows, conv_id: str) -> None:
        self._rows, self._conv_id = rows, conv_id
        # (text so far, the first utterance's origin, the last joined utterance's index, sender)
        self._held: tuple[str, str, str | None, str] | None = None

    def add(self, text: str, origin: str, sender: str) -> None:
        if self._held is not None and self._held[3] != sender:
            self.flush()
        if self._held is not None:
            held_text, first, _, _ = self._held
            self._held = (f"{held_text} {text}", first, origin.rsplit("/", 1)[1], sender)
        else:
            self._held = (text, origin, None, sender)
        if len(text) != UPSTREAM_CUT:  # a chain of cuts keeps growing: 175 + 175 + the rest
            self.flush()

    def flush(self) -> None:
        if self._held is not None:
            text, origin, last, sender = self._held
            self._rows.add(
                self._conv_id, text, origin if last is None else f"{origin}-{last}", speaker=sender
            )
            self._held = None
