"""Argument types the command lines share: a count below its minimum is refused by argparse as a
usage error naming the option (exit 2), not met later as a traceback or silently replaced."""

from __future__ import annotations

import argparse
from collections.abc import Callable

# The largest count taken unless an option says less: a C int, what torch, numpy and polars take.
# Past it, `--threads 99999999999999999999` was torch's "Overflow when unpacking long long", naming
# no option, and `quarantine --rows` with as many an OverflowError traceback from polars.
INT_MAX = 2**31 - 1


def whole_number(minimum: int, maximum: int = INT_MAX) -> Callable[[str], int]:
    """argparse `type=`: an int from `minimum` to `maximum` ("must be 1 or more, got 0")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # a word, or more digits than int() takes: the text cut short
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text[:40]!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        if value > maximum:
            got = f"{value:,}" if value < 10**30 else f"a number of {len(str(value))} digits"
            raise argparse.ArgumentTypeError(f"must be {maximum:,} or less, got {got}")
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
