"""Argument types the benchmarks share: a size, count or step number below 1 is refused as a usage
error naming the option, not met later as a traceback from deep inside a child process
(`--size-mb 0` crashed polars reading an empty file, `--batch-sizes 0` the engine, `--sizes 0 1`
the tokenize stage) or silently replaced by the default (`--steps 0`)."""

from __future__ import annotations

import argparse

from pipeline.argtypes import whole_number

positive_int = whole_number(1)  # a size, count or step number (argparse `type=`)


def positive_ints(text: str) -> list[int]:
    """A comma-separated list of ints of at least 1, none missing (argparse `type=`: "1,16")."""
    values = [positive_int(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no size (comma-separated, e.g. 1,16)")
    return values
