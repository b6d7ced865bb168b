"""Text from data files made safe to print at a terminal, for the commands that show data
(`nanochatgpt tokens`, `nanochatgpt quarantine`)."""

from __future__ import annotations


def printable(label: str) -> str:
    """`label` on one line, inert at a terminal: each character that is not printable (ESC, a line
    break, a C1 control, a bidi override) written as its Python escape. The training text itself needs
    none of this: normalize quarantines control characters in it (docs/contracts.md)."""
    return label if label.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in label)
