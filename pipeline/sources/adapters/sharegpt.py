"""ShareGPT: {"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]} records,
as a JSON list or as JSON lines.

Roles: human/user -> human; gpt/chatgpt/bing/bard/assistant/model -> bot; system -> context.
The conversation id is the record's `id` when it has one, else its record/line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._messages import CONTEXT, add_messages
from pipeline.sources.readers import data_files, iter_json_records
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

ROLE_MAP = {
    "human": "human",
    "user": "human",
    "gpt": "bot",
    "chatgpt": "bot",
    "bing": "bot",
    "bard": "bot",
    "assistant": "bot",
    "model": "bot",
    "system": CONTEXT,
}


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    for path in data_files(raw_dir, (".jsonl", ".json")):
        rel = path.relative_to(raw_dir).as_posix()
        read_file(path, rel, rows, key_prefix=f"{Path(rel).with_suffix('')}:")
    return rows.frame()


def read_file(path: Path, rel: str, rows: RawRows, key_prefix: str = "") -> None:
    for rec in iter_json_records(path):
        origin = f"{rel}:{rec.line}"
        if not rec.ok:
            rows.bad(origin, rec.check, rec.reason, text=rec.raw)
            continue
        obj = rec.value if isinstance(rec.value, dict) else {}
        key = f"{key_prefix}{obj.get('id', rec.line)}"
        add_messages(
            rows,
            key,
            origin,
            obj.get("conversations"),
            role_field="from",
            text_field="value",
            role_map=ROLE_MAP,
            list_name="conversations",
        )
