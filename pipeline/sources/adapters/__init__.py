"""Adapters: one module per upstream format, each exposing

    read(raw_dir: Path, spec: SourceSpec, params: dict) -> polars.DataFrame   (a RawRows frame)

`params` is params.yaml's `normalize` section; `spec.options` holds per-source options from
sources.yaml. Modules are imported only when used, so loading the registry stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from pipeline.sources.registry import SourceSpec

# adapter name (sources.yaml `adapter:`) -> module under pipeline.sources.adapters
ADAPTERS: dict[str, str] = {
    "chitchat": "chitchat",
    "chatterbot": "chatterbot",
    "contrib": "contrib",
    "nanochatgpt": "nanochatgpt",
    "openai": "openai_messages",
    "sharegpt": "sharegpt",
    "oasst1": "oasst1",
    "chatbot_arena": "chatbot_arena",
    "empathetic_dialogues": "empathetic_dialogues",
    "ubuntu": "ubuntu",
    "hackernews": "hackernews",
    "babylm": "babylm",
    "twitter": "twitter",
    "arithmetic": "arithmetic",
    "personachat": "personachat",
}

# adapter name -> the `options:` keys it reads (sources.yaml): any other key is refused on load, so
# a misspelt option cannot leave its default silently in force
OPTIONS: dict[str, tuple[str, ...]] = {
    "babylm": ("max_lines",),
    "chatbot_arena": ("language",),
    "oasst1": ("language",),
    "twitter": ("pairs",),
}

Reader = Callable[[Path, "SourceSpec", dict[str, Any]], pl.DataFrame]


def get_adapter(name: str) -> Reader:
    """The `read` function of adapter `name`."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown adapter {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return importlib.import_module(f"{__name__}.{ADAPTERS[name]}").read
