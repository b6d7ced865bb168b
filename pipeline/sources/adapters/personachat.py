"""PersonaChat in ParlAI's text format (train_self_original.txt, valid_self_original.txt, ...).

Lines are numbered; number 1 starts a new conversation. "N your persona: ..." lines give the
persona of the speaker who answers (the bot): they become the conversation context, joined by
newlines, and are counted as filtered (`persona_used_as_context`); "partner's persona:" lines (the
`both` variants) are filtered as `partner_persona`. Dialogue lines read
"N partner utterance<TAB>your reply<TAB><TAB>candidate|candidate|..." -> a human row and a bot row
(the reply candidates are not turns). ParlAI's `__SILENCE__` placeholder is filtered (`silence`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._records import read_each_file
from pipeline.sources.readers import iter_lines
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

_NUMBERED = re.compile(r"^(\d+) (.*)$")
_YOUR = "your persona:"
_PARTNER = "partner's persona:"
SILENCE = "__SILENCE__"


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    return read_each_file(raw_dir, spec, (".txt",), read_file)


def read_file(path: Path, rel: str, rows: RawRows, key_prefix: str = "") -> None:
    # A conversation's persona lines come before its dialogue lines, so buffer one conversation.
    key: str | None = None
    persona: list[str] = []
    pending: list[
        tuple[str, str, str | None, str | None]
    ] = []  # (text, origin, role or bad-row reason, check: None = readable)

    def flush() -> None:
        context = "\n".join(persona) or None
        for text, origin, role, check in pending:
            if check is None:
                rows.add(key, text, origin, role=role, context=context)
            else:
                rows.bad(origin, check, role, conv_key=key, text=text)
        persona.clear()
        pending.clear()

    for rec in iter_lines(path):
        origin = f"{rel}:{rec.line}"
        if not rec.ok:
            pending.append((rec.raw, origin, rec.reason, rec.check))
            continue
        if not rec.value.strip():
            continue
        m = _NUMBERED.match(rec.value)
        if m is None:
            pending.append((rec.value, origin, "line does not start with its number", "format"))
            continue
        if m.group(1) == "1":
            flush()
            key = f"{key_prefix}{rec.line}"
        body = m.group(2)
        if body.startswith(_YOUR):
            persona.append(body[len(_YOUR) :].strip())
            rows.skip(origin, "persona_used_as_context", conv_key=key)
            continue
        if body.startswith(_PARTNER):
            rows.skip(origin, "partner_persona", conv_key=key)
            continue
        fields = body.split("\t")
        if len(fields) < 2:
            pending.append((body, origin, "dialogue line needs '<partner>\\t<reply>'", "format"))
            continue
        for text, role, col in ((fields[0], "human", 1), (fields[1], "bot", 2)):
            if role == "human" and text.strip() == SILENCE:
                rows.skip(f"{origin}/{col}", "silence", conv_key=key)
            else:
                pending.append((text, f"{origin}/{col}", role, None))
    flush()
