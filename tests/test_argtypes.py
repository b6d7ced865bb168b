"""The shared argparse types: a count below its minimum is a usage error naming the option."""

from __future__ import annotations

import argparse

import pytest

from pipeline.argtypes import whole_number


def _parse(minimum: int, text: str) -> int:
    parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
    parser.add_argument("--n", type=whole_number(minimum))
    return parser.parse_args(["--n", text]).n


@pytest.mark.parametrize(("minimum", "text", "value"), [(0, "0", 0), (1, "1", 1), (1, " 16 ", 16)])
def test_a_whole_number_at_or_above_the_minimum_is_taken(minimum: int, text: str, value: int) -> None:
    assert _parse(minimum, text) == value


@pytest.mark.parametrize(
    ("minimum", "text", "message"),
    [
        (0, "-1", "must be 0 or more, got -1"),
        (1, "0", "must be 1 or more, got 0"),
        (1, "1.5", "whole number"),
    ],
)
def test_below_the_minimum_or_not_whole_is_refused_naming_the_option(
    minimum: int, text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentError, match=message) as caught:
        _parse(minimum, text)
    assert caught.value.argument_name == "--n"
