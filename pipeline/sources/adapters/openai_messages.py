"""JSONL of OpenAI-style chat records: {"messages": [{"role", "content"}, ...], ...} per line.

Roles: user -> human, assistant -> bot, system/developer -> the conversation's context. Other
roles (tool, function) fail `role_valid`. `content` may be a string or a list of text parts.
The conversation id is the record's `id` when it has one, else its line number.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._messages import CONTEXT, read_message_file
from pipeline.sources.adapters._records import read_each_file
from pipeline.sources.registry import SourceSpec

ROLE_MAP = {"user": "human", "assistant": "bot", "system": CONTEXT, "developer": CONTEXT}


# read_file(path, rel, rows, key_prefix=""): one file (also how contrib reads this format)
read_file = partial(
    read_message_file, list_name="messages", role_field="role", text_field="content", role_map=ROLE_MAP
)


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    return read_each_file(raw_dir, spec, (".jsonl", ".json"), read_file)
