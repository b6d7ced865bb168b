"""Argument types the command lines share: a count below its minimum is refused by argparse as a
usage error naming the option (exit 2), not met later as a traceback or silently replaced."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(minimum: int) -> Callable[[str], int]:
    """argparse `type=`: an int of at least `minimum` ("must be 1 or more, got 0")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


def whole_number_or(word: str, minimum: int) -> Callable[[str], int | str]:
    """argparse `type=`: `word` itself (`auto`) or an int of at least `minimum`."""
    number = whole_number(minimum)

    def parse(text: str) -> int | str:
        if text == word:
            return word
        try:
            return number(text)
        except argparse.ArgumentTypeError as e:
            raise argparse.ArgumentTypeError(f"{e} (or {word})") from None

    return parse
