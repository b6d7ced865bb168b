"""The loops adapters share: over a raw folder's data files, and over one file's records.

Kept here so that every adapter quarantines an unreadable record the same way (origin
`file:line`, the reader's check and reason, the raw text) and names its conversations alike.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.readers import Record, data_files, json_kind
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

# read_file(path, rel, rows, key_prefix=...): one file's rows into `rows` (also used by contrib).
FileReader = Callable[..., None]


def read_each_file(
    raw_dir: Path, spec: SourceSpec, suffixes: tuple[str, ...], read_file: FileReader
) -> pl.DataFrame:
    """`read_file` over every data file with these suffixes; conversation keys are prefixed by
    the file's key stem (`train/chat:`, key_stems), so keys of different files never collide."""
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    paths = {path.relative_to(raw_dir).as_posix(): path for path in data_files(raw_dir, suffixes)}
    for rel, stem in key_stems(list(paths)).items():
        read_file(paths[rel], rel, rows, key_prefix=f"{stem}:")
    return rows.frame()


def key_stems(rels: list[str]) -> dict[str, str]:
    """Each file's conversation-key stem: its relative path without its suffix (`train/chat`), or the
    whole path where another file has that stem. chat.json beside chat.jsonl (or chat.txt beside
    chat.TXT) both gave `chat:1`, and normalize merged their first records into one conversation."""
    stems = {rel: str(Path(rel).with_suffix("")) for rel in rels}
    counts = Counter(stems.values())
    out = {rel: stem if counts[stem] == 1 else rel for rel, stem in stems.items()}
    # a whole path may still equal another file's stem (a.txt beside a.TXT and a.txt.txt): paths are unique
    return out if len(set(out.values())) == len(out) else {rel: rel for rel in rels}


def readable(
    records: Iterable[Record],
    rel: str,
    rows: RawRows,
    conv_key: Callable[[Record], str | None] | None = None,
) -> Iterator[tuple[str, Record]]:
    """Each readable record with its origin `rel:line`; an unreadable one is quarantined on the way.

    `conv_key` names the conversation an unreadable record belongs to, for formats of one record
    per utterance (CSV rows): without its key a lost utterance breaks nothing, so the turns around
    it join up (the human turns before and after a lost bot reply merge into one)."""
    for rec in records:
        origin = f"{rel}:{rec.line}"
        if not rec.ok:
            key = conv_key(rec) if conv_key is not None else None
            rows.bad(origin, rec.check, rec.reason, conv_key=key or None, text=rec.raw)
            continue
        yield origin, rec


def object_records(
    records: Iterable[Record],
    rel: str,
    rows: RawRows,
    *,
    holding: str = "",
    conv_key: Callable[[Record], str] | None = None,
) -> Iterator[tuple[str, Record]]:
    """`readable` for JSON/parquet records whose value is an object; a value that is not one (a
    JSONL line holding a list, a string, a number) is quarantined on the way, saying what it is
    (`record is a JSON list, not an object` + `holding`, what the object should have held) and
    holding its text. It was read as {}, so the adapter quarantined it as an object missing its
    fields (arithmetic: twice), without the text that would show the record was no object.
    `conv_key` gives such a record a conversation key of its own, for formats that key each record
    (a record's key is reserved in order, so no later record takes it)."""
    for origin, rec in readable(records, rel, rows):
        if not isinstance(rec.value, dict):
            rows.bad(
                origin,
                "missing_field",
                f"record is {json_kind(rec.value)}, not an object{holding}",
                conv_key=conv_key(rec) if conv_key is not None else None,
                text=record_text(rec),
            )
            continue
        yield origin, rec


def objects(records: Iterable[Record], rel: str, rows: RawRows) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """`object_records` as (origin, line, object)."""
    for origin, rec in object_records(records, rel, rows):
        yield origin, rec.line, rec.value


def record_text(rec: Record) -> str:
    """A record as read: its JSONL line, or (a .json list's item, which has no line) its JSON; a long
    one is cut to a preview by RawRows."""
    return rec.raw or json.dumps(rec.value, ensure_ascii=False, default=str)
