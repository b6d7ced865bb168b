"""Shared by the line-per-utterance text formats (BabyLM, Twitter dumps)."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.sources.readers import iter_lines
from pipeline.sources.rows import RawRows

# "A:\ttext" / "*CHI:\ttext" / "Speaker 1:\ttext": a short label, a colon, a tab.
SPEAKER = re.compile(r"^([^\t:]{1,24}):\t(.*)$")


def read_line_dialogues(
    path: Path, rel: str, rows: RawRows, *, max_lines: int = 0, pairs: bool = False, key_prefix: str = ""
) -> None:
    """Blank lines end a conversation; with `pairs` every two lines make one (post, reply).

    A line "LABEL:\\ttext" names its speaker; unlabeled lines alternate speakers. A conversation
    longer than `max_lines` lines (0 = no limit) is split, so corpora without boundaries still
    give conversations of a usable size.
    """
    key: str | None = None
    count = 0

    def start(line: int) -> str:
        nonlocal key, count
        if key is None or (max_lines and count >= max_lines) or (pairs and count >= 2):
            key, count = f"{key_prefix}{line}", 0
        count += 1
        return key

    for rec in iter_lines(path, lone_cr=True):
        origin = f"{rel}:{rec.line}"
        if not rec.ok:
            rows.bad(origin, rec.check, rec.reason, conv_key=start(rec.line), text=rec.raw)
            continue
        if not rec.value.strip():
            key = None
            continue
        conv = start(rec.line)
        m = SPEAKER.match(rec.value)
        if m:
            rows.add(conv, m.group(2), origin, speaker=m.group(1).strip())
        else:
            rows.add(conv, rec.value, origin, speaker="AB"[(count - 1) % 2])
