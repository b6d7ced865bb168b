"""Adapters: one module per upstream format, each exposing

    read(raw_dir: Path, spec: SourceSpec, params: dict) -> polars.DataFrame   (a RawRows frame)

`params` is params.yaml's `normalize` section; `spec.options` holds per-source options from
sources.yaml. Modules are imported only when used, so loading the registry stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
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
    "dailydialog": "dailydialog",
}


@dataclass(frozen=True)
class Option:
    """One adapter option: what it must be (for the message), the test, and its default."""

    must_be: str
    accepts: Callable[[Any], bool]
    default: Any = None


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)  # bool("false") is True: a quoted word is refused, never coerced


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_LANGUAGE = "a language name as the data spells it (text), or null for every language"

# adapter name -> the `options:` it reads (sources.yaml): any other key is refused on load, so a
# misspelt option cannot leave its default silently in force, and so is a value of the wrong type
# (YAML reads `pairs: "false"` as text, `max_lines: 3.5` as a float). A null value is the default.
OPTIONS: dict[str, dict[str, Option]] = {
    "babylm": {"max_lines": Option("a whole number of lines >= 0 (0 = no limit)", _is_count, 32)},
    "chatbot_arena": {"language": Option(_LANGUAGE, _is_text)},
    "chatterbot": {
        "answer_variants": Option("a list of file paths (text) inside the source's folder", _is_text_list, ())
    },
    "oasst1": {"language": Option(_LANGUAGE, _is_text)},
    "twitter": {"pairs": Option("true or false", _is_bool, False)},
}


def option_error(adapter: str, key: str, value: Any) -> str | None:
    """Why `value` cannot be option `key` of `adapter` (the part of a message after the source's
    name), or None when it can."""
    from pipeline.sources.registry import brief  # local: the registry imports this module lazily

    known = OPTIONS.get(adapter, {})
    if key not in known:
        takes = f"its options are {', '.join(known)}" if known else "it takes no options"
        return f"`options:` {brief(key)} is not an option of adapter {adapter} ({takes})"
    if value is None or known[key].accepts(value):
        return None
    return f"`options:` {key} must be {known[key].must_be}, not {brief(value)}"


def option(spec: SourceSpec, key: str) -> Any:
    """`spec.options[key]`, checked as the registry checks it on load (a SourceSpec may also be
    built in code); the option's default when absent or null."""
    from pipeline.sources.errors import SourceError

    value = spec.options.get(key)
    error = option_error(spec.adapter, key, value)
    if error is not None:
        raise SourceError(f"{spec.name}: {error} in sources.yaml")
    return OPTIONS[spec.adapter][key].default if value is None else value


Reader = Callable[[Path, "SourceSpec", dict[str, Any]], pl.DataFrame]


def get_adapter(name: str) -> Reader:
    """The `read` function of adapter `name`."""
    if name not in ADAPTERS:
        raise KeyError(f"unknown adapter {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return importlib.import_module(f"{__name__}.{ADAPTERS[name]}").read
