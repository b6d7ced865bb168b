"""Shared by the line-per-utterance text formats (BabyLM, Twitter dumps)."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.sources.readers import cr_only, iter_lines
from pipeline.sources.rows import RawRows

# "A:\ttext" / "*CHI:\ttext" / "Speaker 1:\ttext": a short label, a colon, a tab.
SPEAKER = re.compile(r"^([^\t:]{1,24}):\t(.*)$")


def read_line_dialogues(
    path: Path, rel: str, rows: RawRows, *, max_lines: int = 0, pairs: bool = False, key_prefix: str = ""
) -> None:
    """Blank lines end a conversation; with `pairs` every two lines make one (post, reply), by
    position (see _read_pairs).

    A line "LABEL:\\ttext" names its speaker; unlabeled lines alternate speakers. A conversation
    longer than `max_lines` lines (0 = no limit) is split, so corpora without boundaries still
    give conversations of a usable size.
    """
    if pairs:
        _read_pairs(path, rel, rows, key_prefix)
        return
    key: str | None = None
    count = 0

    def start(line: int) -> str:
        nonlocal key, count
        if key is None or (max_lines and count >= max_lines):
            key, count = f"{key_prefix}{line}", 0
        count += 1
        return key

    # By CR only in an old Mac file (as _read_pairs): a stray CR inside an LF line split it into two
    # utterances, so every later unlabeled line of the conversation changed speaker, and every later
    # origin named the wrong line.
    for rec in iter_lines(path, lone_cr=cr_only(path)):
        origin = f"{rel}:{rec.line}"
        if not rec.ok:
            rows.bad(origin, rec.check, rec.reason, conv_key=start(rec.line), text=rec.raw)
            continue
        if not rec.value.strip():
            key = None
            continue
        conv = start(rec.line)  # counts the line: `count` is its position below
        _add(rows, conv, rec.value, origin, count)


def _read_pairs(path: Path, rel: str, rows: RawRows, key_prefix: str) -> None:
    """Lines 2k-1 and 2k are a post and its reply (chat_corpus' layout), by position alone.

    A blank line is not a boundary here but an empty post or reply: it becomes an empty row, which
    normalize quarantines (`text_present`) and counts, so every later pair keeps its partner (were
    it skipped, each (post, reply) after it would pair a reply with the next post, silently). For
    the same reason a CR inside an LF line is part of its text (normalize folds it to a newline),
    not a line end; only a file whose lines all end with a lone CR (an old Mac file) is read by CR.
    """
    for rec in iter_lines(path, lone_cr=cr_only(path)):
        origin = f"{rel}:{rec.line}"
        first = rec.line - (rec.line - 1) % 2  # the post's line names the pair
        key = f"{key_prefix}{first}"
        if not rec.ok:
            rows.bad(origin, rec.check, rec.reason, conv_key=key, text=rec.raw)
            continue
        _add(rows, key, rec.value, origin, rec.line - first + 1)


def _add(rows: RawRows, key: str, text: str, origin: str, position: int) -> None:
    """One utterance: spoken by its "LABEL:\\t", else by A or B as its `position` (1-based) in the
    conversation alternates."""
    m = SPEAKER.match(text)
    if m:
        rows.add(key, m.group(2), origin, speaker=m.group(1).strip())
    else:
        rows.add(key, text, origin, speaker="AB"[(position - 1) % 2])
