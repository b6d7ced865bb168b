"""EleutherAI arithmetic (the GPT-3 arithmetic tasks): JSON lines {"context", "completion"}.

context reads "Question: What is 98 plus 45?\\nAnswer:" and completion " 143". The context is the
human turn (the "Question:" / "Answer:" scaffolding is removed so it reads like a chat message)
and the completion the bot turn: two rows per line. The conversation id is file:line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._records import objects
from pipeline.sources.readers import data_files, iter_table_records
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

_QUESTION = re.compile(r"^\s*Question:\s*", re.IGNORECASE)
# (?<!\s): the match starts where its run of whitespace starts. Without it, a field of a million
# spaces tried every position of the run in turn (quadratic: an hour of normalize for 1 MB).
_ANSWER = re.compile(r"(?<!\s)\s*Answer:\s*$", re.IGNORECASE)


def as_question(context: str) -> str:
    return _ANSWER.sub("", _QUESTION.sub("", context))


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    for path in data_files(raw_dir, (".jsonl", ".json", ".parquet")):
        rel = path.relative_to(raw_dir).as_posix()
        for origin, line, obj in objects(iter_table_records(path), rel, rows):
            key = f"{Path(rel).with_suffix('')}:{line}"
            for field, role in (("context", "human"), ("completion", "bot")):
                value = obj.get(field)
                if not isinstance(value, str):
                    rows.bad(
                        f"{origin}/{field}",
                        "missing_field",
                        f"record has no `{field}` string",
                        conv_key=key,
                        role=role,
                    )
                else:
                    rows.add(
                        key, as_question(value) if role == "human" else value, f"{origin}/{field}", role=role
                    )
    return rows.frame()
