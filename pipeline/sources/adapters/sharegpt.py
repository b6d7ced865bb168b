"""ShareGPT: {"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}, ...]} records,
as a JSON list or as JSON lines.

Roles: human/user -> human; gpt/chatgpt/bing/bard/assistant/model -> bot; system -> context.
The conversation id is the record's `id` when it has one, else its record/line number.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._messages import CONTEXT, read_message_file
from pipeline.sources.adapters._records import read_each_file
from pipeline.sources.registry import SourceSpec

ROLE_MAP = {
    "human": "human",
    "user": "human",
    "gpt": "bot",
    "chatgpt": "bot",
    "bing": "bot",
    "bard": "bot",
    "assistant": "bot",
    "model": "bot",
    "bot": "bot",  # read before unmapped roles were refused (_messages.py); kept for such exports
    "system": CONTEXT,
}


# read_file(path, rel, rows, key_prefix=""): one file (also how contrib reads this format)
read_file = partial(
    read_message_file, list_name="conversations", role_field="from", text_field="value", role_map=ROLE_MAP
)


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    return read_each_file(raw_dir, spec, (".jsonl", ".json"), read_file)
