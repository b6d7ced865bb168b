"""Typed reading of params.yaml values: a mistyped setting is one line naming its key.

YAML and `dvc exp run -S` hand the stages whatever was written: PyYAML reads `1e6` as a string and
`16_777_216` as an int, a user may write `seed: -1` or `caps: [hackernews]`. Python's own `int()` /
`float()` would turn some of these into a traceback deep in polars (a negative hash seed), others
into a silently different run (`int(1.5)` is 1, `bool("false")` is True). These helpers accept what
a YAML writer plausibly meant (an integral float or a numeric string) and refuse the rest with
`params.yaml <key>: expected ..., got <value>`. They raise ValueError; callers may re-wrap it.
"""

from __future__ import annotations

import math
from typing import Any


def number(value: Any) -> int | float | None:
    """The number `value` spells (int, float or a numeric string), else None; bools are not numbers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)  # also "16_777_216"
        except ValueError:
            pass
        try:
            return float(text)  # "1e6", "5e-2"
        except ValueError:
            return None
    return None


def integer(
    key: str, value: Any, minimum: int = 0, maximum: int | None = None, what: str = "an integer"
) -> int:
    """`value` as an int in [minimum, maximum) (maximum None = unbounded); an integral float is fine.

    `what` names the expected thing in the message ("a number of characters")."""
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {_bound(maximum)})"
    n = number(value)
    if isinstance(n, float):
        n = int(n) if math.isfinite(n) and n.is_integer() else None
    if n is None or n < minimum or (maximum is not None and n >= maximum):
        raise ValueError(f"params.yaml {key}: expected {what} {bounds}, got {value!r}")
    return n


def fraction(key: str, value: Any) -> float:
    """`value` as a float in [0, 1)."""
    x = number(value)
    if x is None or not (0.0 <= float(x) < 1.0):
        raise ValueError(f"params.yaml {key}: expected a number in [0, 1), got {value!r}")
    return float(x)


def boolean(key: str, value: Any) -> bool:
    """`value` as a bool: only YAML's true/false (a string "false" would be truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"params.yaml {key}: expected true or false, got {value!r}")
    return value


def known_keys(
    section: str, values: Any, known: tuple[str, ...], error: type[ValueError] = ValueError
) -> None:
    """Refuse a key of `section` no stage reads: a typo (`val_fracton`) would otherwise leave the
    default in force without a word. `error`: the stage's own ValueError subclass."""
    for key in values if isinstance(values, dict) else ():
        if key not in known:
            raise error(f"params.yaml {section}.{key}: unknown setting (known: {', '.join(known)})")


def _bound(n: int) -> str:
    """2**64 reads better than 18446744073709551616."""
    if n > 1 << 16 and n & (n - 1) == 0:
        return f"2**{n.bit_length() - 1}"
    return str(n)
