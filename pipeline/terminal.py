"""Text from data files or a model made safe to print at a terminal: labels on one line
(`printable`: `nanochatgpt tokens`, `quarantine`, `check`, `sources`, the cards' contributor text)
and a model's replies as lines (`inert`: `nanochatgpt chat`, the sample `make repro` prints)."""

from __future__ import annotations

import re

# Control characters other than \n and \t (C0, DEL, C1): ESC and the C1 CSI (U+009B) start
# terminal escape sequences, BEL ends OSC ones. pipeline.schema quarantines them in training text.
CONTROL_CHARS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
# Unicode's explicit bidi embeddings, overrides and isolates (LRE..RLO, LRI..PDI): they drive no
# terminal, but where it lays out bidi text they reorder what follows them on screen, so a reply
# could show text in another order than it was written ("Trojan Source", CVE-2021-42574; the set
# rustc and GitHub flag). Not quarantined: right-to-left text uses them legitimately, and in training
# text they are characters like any other; only showing them raw misleads.
BIDI_CONTROLS = r"[\u202a-\u202e\u2066-\u2069]"
_SHOWN_AS_ESCAPES = re.compile(f"{CONTROL_CHARS}|{BIDI_CONTROLS}")


def printable(label: str) -> str:
    """`label` on one line, inert at a terminal: each character that is not printable (ESC, a line
    break, a C1 control, a bidi override) written as its Python escape. The training text itself needs
    none of this: normalize quarantines control characters in it (docs/contracts.md)."""
    return label if label.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in label)


def inert(text: str) -> str:
    """`text` with its line breaks and tabs kept and every other control character, and every bidi
    embedding, override or isolate, written as its Python escape (ESC as `\\x1b`, CR as `\\r`,
    RLO as `\\u202e`): a model's reply made safe for a terminal. A model emits any byte it is made
    to (GPT-2's BPE has a token for each), and a checkpoint from someone else may be made to: raw,
    `ESC ] 52 ; c ; ...` set the clipboard, `ESC ] 0 ;` the window title, `ESC [ 2 J` cleared the
    screen, a CR wrote over the line and an RLO showed the rest of the line reversed."""
    return _SHOWN_AS_ESCAPES.sub(lambda m: repr(m.group())[1:-1], text)
