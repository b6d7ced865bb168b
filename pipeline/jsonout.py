"""JSON for a terminal: what the commands' `--json` prints (`nanochatgpt tokens`, `quarantine`).

`json.dumps(..., ensure_ascii=False)` keeps text readable (é, 🙂) and escapes the C0 controls, as
JSON must, but writes DEL, the C1 controls (U+0080..U+009F: U+009B is a CSI, the start of an escape
sequence, to terminals that read C1 in UTF-8) and the bidi embeddings and overrides raw: a quarantined
row's text, or a conversation decoded from shards, printed with `--json` at a terminal reached it as
it was. Written as `\\uXXXX` escapes, the JSON is the same value to every parser.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from pipeline.streamencoding import writes_utf8
from pipeline.terminal import BIDI_CONTROLS

# DEL, C1, and the bidi controls (LRE..RLO, LRI..PDI). In JSON text they can only stand inside a
# string, where a \u escape means the same character.
_RAW_IN_JSON = re.compile(rf"[\x7f-\x9f]|{BIDI_CONTROLS}")


def dumps(value: Any) -> str:
    """`value` as indented JSON, non-ASCII text kept and every terminal control character escaped.

    To a stdout that is not UTF-8 (an ASCII or Latin-1 locale) all non-ASCII text is escaped as JSON
    escapes it (surrogate pairs past U+FFFF): the stream's own escapes (`\\U0001f642`) are no JSON."""
    text = json.dumps(value, indent=2, ensure_ascii=not writes_utf8(sys.stdout))
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
