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
"""

from __future__ import annotations

import polars as pl

RAW_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "licence": pl.String(),
    "commercial": pl.Boolean(),
    "conv_key": pl.String(),
    "role": pl.String(),
    "speaker": pl.String(),
    "text": pl.String(),
    "context": pl.String(),
    "origin": pl.String(),
    "check": pl.String(),
    "reason": pl.String(),
    "filter": pl.String(),
}

# Shown in quarantine when an unreadable row's text is long: enough to find it, not a 1 MB blob.
_BAD_TEXT_PREVIEW = 2000


class RawRows:
    """Column-wise builder (append is cheap; the frame is built once)."""

    def __init__(self, source: str, licence: str, commercial: bool) -> None:
        self.source, self.licence, self.commercial = source, licence, commercial
        self._cols: dict[str, list] = {name: [] for name in RAW_SCHEMA}

    def __len__(self) -> int:
        return len(self._cols["origin"])

    def _append(self, **values: object) -> None:
        values.setdefault("source", self.source)
        values.setdefault("licence", self.licence)
        values.setdefault("commercial", self.commercial)
        for name, col in self._cols.items():
            col.append(values.get(name))

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
        """An unreadable row: quarantined with `check` and `reason`; breaks its conversation."""
        if text is not None and len(text) > _BAD_TEXT_PREVIEW:
            text = text[:_BAD_TEXT_PREVIEW] + "…"
        self._append(conv_key=conv_key, text=text, origin=origin, check=check, reason=reason, role=role)

    def skip(self, origin: str, reason: str, *, conv_key: str | None = None, text: str | None = None) -> None:
        """A row the upstream format marks as not for use (counted under rows_filtered[reason])."""
        self._append(conv_key=conv_key, origin=origin, filter=reason, text=text)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self._cols, schema=RAW_SCHEMA)


def concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=RAW_SCHEMA)
