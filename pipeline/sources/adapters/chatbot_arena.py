"""LMSYS Chatbot Arena conversations (gated on the Hub; HF_TOKEN from the environment).

Upstream record (data/*.parquet, or JSON lines): question_id, model_a, model_b, winner, judge,
conversation_a / conversation_b (lists of {"role": user|assistant, "content"}), turn, language,
openai_moderation {"flagged", ...}, ... Only the side the judge preferred is kept, as its own
conversation (`<question_id>:a` or `:b`): both sides share the user's turns, so keeping both would
put one prompt in the data twice and, split independently, in train and val with different
replies. `winner` picks the side: model_a -> a, model_b -> b, tie (or none given) -> a; the other
side's rows are filtered (`arena_not_preferred`), and a "tie (bothbad)" battle keeps neither
(`arena_both_bad`). Records flagged by the OpenAI moderation are filtered (`moderation_flagged`); with
`options: {language: English}` in sources.yaml other languages are filtered (`language`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters import option
from pipeline.sources.adapters._messages import CONTEXT, add_messages, record_key
from pipeline.sources.adapters._records import objects
from pipeline.sources.readers import data_files, iter_table_records
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

ROLE_MAP = {"user": "human", "assistant": "bot", "system": CONTEXT}
SIDES = ("a", "b")


def _skip_reason(rec: dict[str, Any], language: str | None) -> str | None:
    moderation = rec.get("openai_moderation")
    if isinstance(moderation, dict) and moderation.get("flagged") is True:
        return "moderation_flagged"
    if language and rec.get("language") not in (None, language):
        return "language"
    return None


def _kept_side(rec: dict[str, Any]) -> str | None:
    """The side to keep: the judge's preferred one, "a" on a tie; None when both were judged bad."""
    winner = rec.get("winner")
    if winner == "tie (bothbad)":
        return None
    return "b" if winner == "model_b" else "a"


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    language = option(spec, "language")
    used: set[str] = set()  # across files: a repeated question_id must not merge two records
    for path in data_files(raw_dir, (".parquet", ".jsonl", ".json")):
        rel = path.relative_to(raw_dir).as_posix()
        for origin, line, obj in objects(iter_table_records(path), rel, rows):
            fallback = f"{Path(rel).with_suffix('')}:{line}"
            qid = record_key(obj.get("question_id"), fallback, used)
            moderated = _skip_reason(obj, language)
            kept = _kept_side(obj)
            before = len(rows)
            for side in SIDES:
                messages = obj.get(f"conversation_{side}")
                key = f"{qid}:{side}"
                skip = moderated
                if side != kept:
                    skip = skip or ("arena_both_bad" if kept is None else "arena_not_preferred")
                    messages = messages if isinstance(messages, list) else []  # no list: no rows
                if skip and isinstance(messages, list):
                    for i in range(len(messages)):
                        rows.skip(f"{origin}/conversation_{side}[{i}]", skip, conv_key=key)
                    continue
                add_messages(
                    rows,
                    key,
                    origin,
                    messages,
                    role_field="role",
                    text_field="content",
                    role_map=ROLE_MAP,
                    list_name=f"conversation_{side}",
                )
            if len(rows) == before:  # filtered with both lists empty: a record read is still counted
                rows.skip(origin, moderated or "arena_both_bad", conv_key=f"{qid}:{kept or 'a'}")
    return rows.frame()
