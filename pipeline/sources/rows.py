"""RawRows: what every adapter emits, one row per upstream turn/utterance, in upstream order.

Adapters only *read*: they map an upstream format onto these columns and flag what they
cannot read (a broken JSON line, invalid UTF-8, a missing field) or what the format itself
says to skip (a deleted oasst1 message, an unranked branch). Every rule of the turn table
(roles, merging, lengths, quarantine) is applied once, for all sources, by normalize.py.

Columns of the frame:
    source, licence, commercial   normally the registry entry's; per file for contrib
    conv_key      upstream conversation id (conversation_id = f"{source}:{conv_key}")
    role          "human" / "bot" when the format says so, else null (then `speaker` decides)
    speaker       opaque speaker label (first speaker of a conversation = human, roles flip on
                  each change of speaker, consecutive rows of one speaker are merged)
    text          the utterance as read (normalize does NFC / strip / newline folding)
    context       conversation-level persona or scene (first non-null of the conversation wins)
    origin        "file:line" (or "file:record") the row came from
    check, reason set by the adapter when the row is unreadable -> quarantined
    filter        set by the adapter when the format says to skip the row -> counted, not kept

No string in the frame holds a lone UTF-16 surrogate (see `RawRows._append`): polars stores UTF-8
only and would refuse the whole source for one such character.
"""

from __future__ import annotations

import re

import polars as pl

# Memory: a polars string costs 16 bytes a row before its characters, null or not, so the columns
# that repeat a few values (a file's source and licence on every row, roles, speakers, a persona per
# conversation) or are mostly null (the adapter's check/reason/filter) are Categorical, 4 bytes a
# row: measured, 1.2 million rows (120 MB of JSONL) took 250 MB instead of 400. normalize turns them
# back into strings a slice at a time (normalize_rows), so its outputs are as before.
RAW_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Categorical(),
    "licence": pl.Categorical(),
    "commercial": pl.Boolean(),
    "conv_key": pl.String(),
    "role": pl.Categorical(),
    "speaker": pl.Categorical(),
    "text": pl.String(),
    "context": pl.Categorical(),
    "origin": pl.String(),
    "check": pl.Categorical(),
    "reason": pl.Categorical(),
    "filter": pl.Categorical(),
}

# Shown in quarantine when an unreadable row's text is long: enough to find it, not a 1 MB blob.
_BAD_TEXT_PREVIEW = 2000

# A lone UTF-16 surrogate: JSON and YAML escapes ("\ud83d") decode to one when an exporter cut a
# surrogate pair (a truncated emoji), and a file name with undecodable bytes holds one too.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Only a label: a surrogate there is escaped, but does not make the row's data unreadable.
_LABELS = frozenset({"origin"})


def _escape_surrogates(value: str) -> str:
    """`value` with each lone surrogate written as its escape (`\\ud83d`): valid UTF-8, still findable."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


# Rows held as Python lists before they move into polars: a row of Python strings takes more than
# in polars, and a file's rows held as lists to the end stood beside the frame built from them
# (measured, 400,000 rows of a 32 MB JSONL: 225 MB while the frame was built, 180 MB in chunks).
CHUNK_ROWS = 50_000


class RawRows:
    """Column-wise builder: rows are appended to Python lists, which move into polars every
    `chunk_rows` rows; `frame()` is a frame of those chunks, not joined (see frame)."""

    def __init__(self, source: str, licence: str, commercial: bool, *, chunk_rows: int = CHUNK_ROWS) -> None:
        self.source, self.licence, self.commercial = source, licence, commercial
        self._cols: dict[str, list] = {name: [] for name in RAW_SCHEMA}
        self._chunks: dict[str, list[pl.Series]] = {name: [] for name in RAW_SCHEMA}
        self._chunk_rows = max(1, chunk_rows)
        self._flushed = 0  # rows already moved into `_chunks`

    def __len__(self) -> int:
        return self._flushed + len(self._cols["origin"])

    def _flush(self) -> None:
        """Move the rows held as lists into a polars chunk per column."""
        if not self._cols["origin"]:
            return
        for name, col in self._cols.items():
            self._chunks[name].append(pl.Series(name, col, dtype=RAW_SCHEMA[name]))
            self._cols[name] = []
        self._flushed += len(self._chunks["origin"][-1])

    def _append(self, **values: object) -> None:
        """The one door into the frame: every row (add, bad, skip) of every adapter passes here, so a
        lone surrogate in any field is caught once for all formats. A readable row holding one is
        quarantined (`utf8`), an already bad or skipped row keeps its check or filter; either way
        every string is escaped, so polars (and the quarantine parquet) can hold the row."""
        values.setdefault("source", self.source)
        values.setdefault("licence", self.licence)
        values.setdefault("commercial", self.commercial)
        broken: str | None = None  # the first data field holding a surrogate, for the reason
        for name, value in values.items():
            # isascii is the cheap test: only non-ASCII strings can hold a surrogate
            if isinstance(value, str) and not value.isascii() and (m := _SURROGATE.search(value)):
                if broken is None and name not in _LABELS:
                    broken = f"`{name}` holds a lone UTF-16 surrogate U+{ord(m.group()):04X} (a cut emoji?)"
                values[name] = _escape_surrogates(value)
        if broken is not None and values.get("check") is None and values.get("filter") is None:
            values["check"], values["reason"] = "utf8", broken
        text = values.get("text")
        if values.get("check") is not None and isinstance(text, str) and len(text) > _BAD_TEXT_PREVIEW:
            values["text"] = text[:_BAD_TEXT_PREVIEW] + "…"
        for name, col in self._cols.items():
            col.append(values.get(name))
        if len(self._cols["origin"]) >= self._chunk_rows:
            self._flush()

    def add(
        self,
        conv_key: str | None,
        text: str | None,
        origin: str,
        *,
        role: str | None = None,
        speaker: str | None = None,
        context: str | None = None,
    ) -> None:
        """A readable utterance (it may still break a turn-table rule; normalize decides)."""
        self._append(conv_key=conv_key, text=text, origin=origin, role=role, speaker=speaker, context=context)

    def bad(
        self,
        origin: str,
        check: str,
        reason: str,
        *,
        conv_key: str | None = None,
        text: str | None = None,
        role: str | None = None,
    ) -> None:
        """An unreadable row: quarantined with `check` and `reason`; breaks its conversation.
        A long `text` is cut to a preview (in `_append`)."""
        self._append(conv_key=conv_key, text=text, origin=origin, check=check, reason=reason, role=role)

    def skip(self, origin: str, reason: str, *, conv_key: str | None = None, text: str | None = None) -> None:
        """A row the upstream format marks as not for use (counted under rows_filtered[reason])."""
        self._append(conv_key=conv_key, origin=origin, filter=reason, text=text)

    def frame(self) -> pl.DataFrame:
        """The rows as one frame, each column the chunks it was moved into polars in (no copy).
        Memory: kept in chunks so that normalize_rows can let go of the rows it is done with a
        chunk at a time (a frame of one chunk per column is let go only whole, at the end): joined,
        the frame and the turn table being built from it stood in memory together."""
        self._flush()
        return pl.DataFrame([self._column(name) for name in RAW_SCHEMA])

    def _column(self, name: str) -> pl.Series:
        """One column: its chunks as one Series, not copied into one (frame() may be called again)."""
        chunks = self._chunks[name]
        if not chunks:
            return pl.Series(name, [], dtype=RAW_SCHEMA[name])
        return pl.concat(chunks, rechunk=False) if len(chunks) > 1 else chunks[0]


def concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=RAW_SCHEMA)
