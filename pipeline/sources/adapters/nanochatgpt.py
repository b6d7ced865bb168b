"""The nanoChatGPT text format: `<human> text <endOfText>` / `<bot> text <endOfText>`.

Markers are matched case-insensitively, so the seed's `<Bot>` and `<endOftext>` spellings work.
Conversation boundaries: a blank line, a `<|endoftext|>` separator, or the end of the file. Lines
end at LF or CRLF, and at a lone CR in a file whose lines all end so (an old Mac file: readers.cr_only),
so a blank line is one whatever the editor wrote; a stray CR inside an LF line is part of its text
(normalize folds it to a newline), as in the other text formats.
Within a conversation:
  * a turn starts at `<human>`/`<bot>` and ends at `<endOfText>`; it may span several lines (its
    lines are joined with a newline), so files written with one turn per line and files with one
    rendered conversation per line both read. A turn cut short by the next marker, a blank line or
    the end of the file is a broken turn: quarantined (`turn_unclosed`), which cuts its conversation;
  * consecutive turns of one role merge (normalize), a leading `<bot>` turn is quarantined;
  * text outside any turn is quarantined (`format`), as is a line that is not valid UTF-8; whitespace
    and invisible characters alone (pipeline.invisible) are no text: such a line is a blank line.
The conversation id is the file's line number where the conversation starts, with `.2`, `.3`, ...
for the second, third, ... conversation starting on one line (rendered conversations joined by
`<|endoftext|>` on one line, as a decoded token shard reads).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.invisible import blank_text
from pipeline.sources.adapters._records import read_each_file
from pipeline.sources.readers import cr_only, iter_lines
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

_MARKER = re.compile(r"<(human|bot|endoftext|\|endoftext\|)>", re.IGNORECASE)


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    return read_each_file(raw_dir, spec, (".txt",), read_file)


class _Parser:
    """Streams lines into rows; the state is one open conversation and one open turn."""

    def __init__(self, rows: RawRows, rel: str, key_prefix: str) -> None:
        self.rows, self.rel, self.key_prefix = rows, rel, key_prefix
        self.conv: str | None = None
        self.turn: tuple[str, int, list[str]] | None = None  # (role, line, text parts)
        self.started = (0, 0)  # (line, conversations started on it so far)
        self.cut_turn: int | None = None  # the line of a turn an unreadable line cut, until its end

    def key(self, line: int) -> str:
        if self.conv is None:
            # A line can start several conversations: each needs its own id, or normalize would
            # join them into one (and merge the first's last human turn with the next's first).
            n = self.started[1] + 1 if self.started[0] == line else 1
            self.started = (line, n)
            self.conv = f"{self.key_prefix}{line}" + (f".{n}" if n > 1 else "")
        return self.conv

    def close_turn(self, closed: bool = True, cut_by: str | None = None, before: str = "") -> None:
        """Emit the open turn; `closed` is False when no <endOfText> ended it (a broken turn): `before`
        then says what came first (the next marker, a blank line, the end of the file), or `cut_by`
        what cut it (an unreadable line) instead of a missing <endOfText>."""
        if self.turn is None:
            return
        role, line, parts = self.turn
        self.turn = None
        origin = f"{self.rel}:{line}"
        if closed:
            self.rows.add(self.conv, "".join(parts), origin, role=role)
        else:
            # What ended the turn, not only that it was not closed: a blank line between two
            # paragraphs of a reply reads as a missing marker otherwise.
            reason = f"<{role}> turn " + (cut_by or f"not closed by <endOfText> {before}".rstrip())
            self.rows.bad(origin, "turn_unclosed", reason, conv_key=self.conv, text="".join(parts), role=role)
            if cut_by is not None:
                self.cut_turn = line  # its remaining lines, up to its <endOfText>, are no turn's text

    def end_conversation(self, before: str) -> None:
        """End the open conversation; `before` names what ends it, for a turn it leaves unclosed."""
        self.close_turn(closed=False, before=before)
        self.conv = None
        self.cut_turn = None

    def text(self, chunk: str, line: int) -> None:
        if self.turn is not None:
            self.turn[2].append(chunk)
        elif not blank_text(chunk):  # a zero-width space between turns is no text, as spaces are not
            reason = (
                f"the rest of the turn of line {self.cut_turn}, which an unreadable line cut"
                if self.cut_turn is not None
                else "text outside a <human>/<bot> turn (each turn starts with <human> or <bot>)"
            )
            self.rows.bad(f"{self.rel}:{line}", "format", reason, conv_key=self.key(line), text=chunk)

    def line(self, text: str, n: int) -> None:
        # A line of invisible characters alone (a zero-width space, a word joiner) is as blank as one
        # of spaces, by the one definition normalize and the dedup key use: the editor shows a blank
        # line, and a `format` quarantine of "text outside a turn" named text nobody could see.
        if blank_text(text):
            self.end_conversation(
                f"before the blank line at line {n} (a blank line ends a conversation, so a turn "
                "cannot hold one: use the openai format for text with blank lines)"
            )
            return
        pos = 0
        for m in _MARKER.finditer(text):
            self.text(text[pos : m.start()], n)
            self.cut_turn = None  # a marker ends what was left of a cut turn
            tag = m.group(1).lower()
            if tag in ("human", "bot"):
                self.close_turn(closed=False, before=f"before the <{tag}> marker on line {n}")
                self.turn = (tag, n, [])
                self.key(n)
            elif tag == "endoftext":
                self.close_turn()
            else:
                self.end_conversation(f"before the <|endoftext|> separator on line {n}")
            pos = m.end()
        self.text(text[pos:], n)
        if self.turn is not None:
            self.turn[2].append("\n")


def read_file(path: Path, rel: str, rows: RawRows, key_prefix: str = "") -> None:
    parser = _Parser(rows, rel, key_prefix)
    # By CR only in an old Mac file: a stray CR inside an LF line split it, so every later origin
    # named the wrong line, and two of them ("\r\r", a pasted Windows line end) made a blank line
    # that ended the conversation mid-turn.
    for rec in iter_lines(path, lone_cr=cr_only(path)):
        if rec.ok:
            parser.line(rec.value, rec.line)
        else:
            parser.close_turn(
                closed=False, cut_by=f"cut by line {rec.line}, which is unreadable ({rec.check})"
            )
            rows.bad(f"{rel}:{rec.line}", rec.check, rec.reason, conv_key=parser.key(rec.line), text=rec.raw)
    parser.end_conversation("at the end of the file")


# A turn's text starting with a colon right after its marker: `<human>: hi` (or `<human>:hi`,
# `<human> : hi`), as converting "Human: hi" transcripts leaves it. It is read as text, so the
# model learns to begin replies with ": ". A smiley (`<human> :) thanks`) is not one.
_COLON_START = r"^(?::|\s*:(?:\s|$))"


def colon_turns(path: Path, rel: str) -> list[str]:
    """The origins (file:line) of the turns of `path` whose text starts with such a colon, in file
    order. For `nanochatgpt check` to warn about: the rows themselves are kept as they are."""
    rows = RawRows("", "", False)
    read_file(path, rel, rows)
    turns = rows.frame().filter(pl.col("check").is_null() & pl.col("role").is_not_null())
    return turns.filter(pl.col("text").str.contains(_COLON_START)).get_column("origin").to_list()
