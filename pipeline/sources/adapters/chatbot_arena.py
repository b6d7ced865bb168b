"""LMSYS Chatbot Arena conversations (gated on the Hub; HF_TOKEN from the environment).

Upstream record (data/*.parquet, or JSON lines): question_id, model_a, model_b, winner, judge,
conversation_a / conversation_b (lists of {"role": user|assistant, "content"}), turn, language,
openai_moderation {"flagged", ...}, ... Each side is its own conversation
(`<question_id>:a`, `<question_id>:b`): both share the user's turns but carry different replies.
Records flagged by the OpenAI moderation are filtered (`moderation_flagged`); with
`options: {language: English}` in sources.yaml other languages are filtered (`language`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

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


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    language = spec.options.get("language")
    used: set[str] = set()  # across files: a repeated question_id must not merge two records
    for path in data_files(raw_dir, (".parquet", ".jsonl", ".json")):
        rel = path.relative_to(raw_dir).as_posix()
        for origin, line, obj in objects(iter_table_records(path), rel, rows):
            fallback = f"{Path(rel).with_suffix('')}:{line}"
            qid = record_key(obj.get("question_id"), fallback, used)
            skip = _skip_reason(obj, language)
            for side in SIDES:
                messages = obj.get(f"conversation_{side}")
                key = f"{qid}:{side}"
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
    return rows.frame()
