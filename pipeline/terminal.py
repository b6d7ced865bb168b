"""Text from data files or a model made safe to print at a terminal: labels on one line
(`printable`: `nanochatgpt tokens`, `quarantine`, `check`, `sources`, the cards' contributor text)
and a model's replies as lines (`inert`: `nanochatgpt chat`, the sample `make repro` prints)."""

from __future__ import annotations

import re

# Control characters other than \n and \t (C0, DEL, C1): ESC and the C1 CSI (U+009B) start
# terminal escape sequences, BEL ends OSC ones. pipeline.schema quarantines them in training text.
CONTROL_CHARS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
_CONTROL = re.compile(CONTROL_CHARS)


def printable(label: str) -> str:
    """`label` on one line, inert at a terminal: each character that is not printable (ESC, a line
    break, a C1 control, a bidi override) written as its Python escape. The training text itself needs
    none of this: normalize quarantines control characters in it (docs/contracts.md)."""
    return label if label.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in label)


def inert(text: str) -> str:
    """`text` with its line breaks and tabs kept and every other control character written as its
    Python escape (ESC as `\\x1b`, CR as `\\r`): a model's reply made safe for a terminal. A model
    emits any byte it is made to (GPT-2's BPE has a token for each), and a checkpoint from someone
    else may be made to: raw, `ESC ] 52 ; c ; ...` set the clipboard, `ESC ] 0 ;` the window title,
    `ESC [ 2 J` cleared the screen and a CR wrote over the line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
