"""Ubuntu Dialogue Corpus, in either of its two CSV layouts.

* dialogueText*.csv (the IRC dump): folder,dialogueID,date,from,to,text, one row per utterance;
  conversation = (folder, dialogueID), speaker = `from`.
* Lowe et al. v2 train/valid/test.csv: `Context` holds the conversation so far with `__eou__`
  ending each utterance and `__eot__` ending each turn; `Utterance` (train) or
  `Ground Truth Utterance` (valid/test) is the next turn. A train row with Label 0 pairs the
  context with a random wrong response: all its utterances are filtered (`ubuntu_distractor`),
  as are the Distractor_N columns of valid/test. Every `__eou__` utterance is one row; turns
  alternate speakers; the conversation id is file:line. A record whose Context and response hold
  no utterance (empty, or separators alone) is quarantined as one row (`missing_field`), so that
  every record is counted.

The header is checked once per file, before its first record is read: a file whose header lacks a
column its layout needs (dialogueText: dialogueID, from, text; v2: Context and a response column;
a v2 train file, i.e. `Utterance` and no Distractor_N columns: Label) is refused as one quarantined
row (`csv_header`, at the header's line: iter_csv's `header_line`, the first holding text) that names
the missing column(s), the header found and how many records were not read, as a file that cannot
be read at all is elsewhere (yaml_parse, gzip, parquet_read). Read row by row, such a file was a
million identical `missing_field` rows that never named the header; and a train file without Label
read its wrong answers (Label 0, half of v2 train) as real replies, since only valid/test may go
without one.

A record with more fields than its header (a comma left unquoted in a text) is quarantined as
`csv_fields`, as empathetic_dialogues does: its fields are shifted, so none can be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._records import readable
from pipeline.sources.readers import CsvRecords, Record, data_files, iter_csv
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

EOU, EOT = "__eou__", "__eot__"


def _turns(context: str) -> list[list[str]]:
    """`a __eou__ b __eou__ __eot__ c __eou__ __eot__` -> [[a, b], [c]] (empty pieces are separators)."""
    turns = []
    for turn in context.split(EOT):
        utts = [u.strip() for u in turn.split(EOU)]
        utts = [u for u in utts if u]
        if utts:
            turns.append(utts)
    return turns


def _read_v2(rows: RawRows, origin: str, key: str, rec: dict[str, str]) -> None:
    response = rec.get("Utterance", rec.get("Ground Truth Utterance"))
    if rec.get("Context") is None or response is None:
        rows.bad(
            origin, "missing_field", "needs Context and Utterance (or Ground Truth Utterance)", conv_key=key
        )
        return
    turns = _turns(rec["Context"]) + _turns(response)
    if not turns:  # empty fields, or separators alone: still one upstream record, so counted
        rows.bad(
            origin,
            "missing_field",
            "record holds no utterance (Context and response empty, or separators alone)",
            conv_key=key,
        )
    distractor = str(rec.get("Label", "1")).strip() in ("0", "0.0")
    for t, utts in enumerate(turns):
        for u, text in enumerate(utts):
            where = f"{origin}/turn{t}/{u}"
            if distractor:
                rows.skip(where, "ubuntu_distractor", conv_key=key)
            else:
                rows.add(key, text, where, speaker="AB"[t % 2])
    for name in sorted(k for k in rec if k and k.startswith("Distractor")):
        rows.skip(f"{origin}/{name}", "ubuntu_distractor", conv_key=key)


# The dialogueText layout's columns a row cannot do without (`folder` only qualifies the id).
DIALOGUE_TEXT_COLUMNS = ("dialogueID", "from", "text")
V2_RESPONSES = ("Utterance", "Ground Truth Utterance")


def header_problem(header: list[str]) -> str | None:
    """What the file's header lacks for its layout (None: nothing), in words for the quarantine.

    A header with `Context` is v2, any other the dialogueText dump. A v2 file answering with
    `Utterance` and holding no Distractor_N columns is the train layout, whose rows are half wrong
    answers marked by Label 0: without Label they cannot be told apart, so Label is required there.
    valid/test (`Ground Truth Utterance` and Distractor_N) carry no Label: their response is the
    right one and the distractors are skipped."""
    columns = set(header)
    if "Context" in columns:
        if not columns & set(V2_RESPONSES):
            return "a v2 file (it has Context) needs `Utterance` (train) or `Ground Truth Utterance` (valid/test)"
        distractors = any(c.startswith("Distractor") for c in columns)
        if "Utterance" in columns and not distractors and "Label" not in columns:
            return (
                "a v2 train file (Context, Utterance and no Distractor_N columns) needs `Label`: "
                "its Label 0 rows pair the context with a wrong answer, which would be read as real replies"
            )
        return None
    missing = [c for c in DIALOGUE_TEXT_COLUMNS if c not in columns]
    if missing:
        return (
            f"no column {', '.join(f'`{c}`' for c in missing)}: a dialogueText file needs "
            f"{', '.join(DIALOGUE_TEXT_COLUMNS)} (and a v2 file Context and Utterance)"
        )
    return None


def _refuse(rows: RawRows, rel: str, records: CsvRecords, header: list[str], problem: str) -> None:
    """The whole file as one quarantined row at its header line; its records are counted, not read."""
    unread = 1 + sum(1 for _ in records)  # the record that showed the header, and every later one
    shown = ",".join(header)
    shown = shown if len(shown) <= 300 else shown[:300] + "…"
    rows.bad(
        f"{rel}:{records.header_line}",
        "csv_header",
        f"header lacks what its layout needs ({problem}); header found: {shown}; "
        f"file not read ({unread:,} record(s) under it)",
        text=",".join(header),
    )


def _dialogue_key(rec: Record) -> str | None:
    """A dialogueText record's conversation, `folder/dialogueID` (or the id alone), also for a
    record quarantined for its bytes (iter_csv keeps its fields): losing an utterance must cut its
    dialogue, not join the turns either side of it into one. None for a v2 record (its own
    conversation) or one whose fields were not read."""
    r = rec.value
    if not isinstance(r, dict) or "Context" in r:
        return None
    dialogue = r.get("dialogueID")
    return f"{r['folder']}/{dialogue}" if r.get("folder") and dialogue else dialogue


@dataclass
class _LostKey:
    """The dialogue of a record lost before its fields were read (an over-long field): it names
    none, so it cuts the one of the record read before it (records come in dialogue order), else
    the turns around it join. The reading loop keeps `last` up to date."""

    last: str | None = None

    def __call__(self, lost: Record) -> str | None:
        return _dialogue_key(lost) or self.last


def _refuse_fields(rows: RawRows, origin: str, rec: Record, key: str | None) -> None:
    """A record with more fields than its header (a comma left unquoted in a text): its fields are
    shifted, so none is read. Read, a dialogueText row kept its text up to the comma and dropped the
    rest unseen, and a v2 row took the tail of its Context for the response."""
    named = [v for k, v in rec.value.items() if k is not None]
    fields = [*named, *rec.value[None]]  # the record as written (rec.raw shows the extras as a list)
    rows.bad(
        origin,
        "csv_fields",
        f"{len(fields)} fields, the header has {len(named)} (a comma left unquoted?)",
        conv_key=key,
        text=",".join(fields),
    )


def _header_refused(rows: RawRows, rel: str, records: CsvRecords, first: Record) -> bool:
    """Whether the file was refused for its header (then quarantined whole: _refuse). The first
    readable record's keys are the header (DictReader's fieldnames): checked once, before any
    record is read, since a header lacking a column would make every record a `missing_field`."""
    header = [k for k in first.value if k is not None]
    problem = header_problem(header)
    if problem is None:
        return False
    _refuse(rows, rel, records, header, problem)
    return True


def _v2_key(rel: str, rec: Record) -> str | None:
    """A v2 record's conversation: the record itself (file:line); None for a dialogueText record."""
    return f"{Path(rel).with_suffix('')}:{rec.line}" if "Context" in rec.value else None


def _read_dialogue_text(rows: RawRows, origin: str, key: str | None, r: dict[str, str]) -> None:
    """One utterance of the dialogueText dump, or a `missing_field` row when a column it needs is empty."""
    if not key or not r.get("from") or r.get("text") is None:
        rows.bad(origin, "missing_field", "needs dialogueID, from and text", conv_key=key or None)
        return
    rows.add(key, r["text"], origin, speaker=r["from"])


def _read_record(rows: RawRows, rel: str, origin: str, rec: Record, lost_key: _LostKey) -> None:
    """One readable record, in whichever layout it is. A record with fields past the header's is
    refused in either layout (DictReader's key None holds them), since its fields are shifted."""
    r = rec.value
    v2_key = _v2_key(rel, rec)
    key = v2_key or _dialogue_key(rec)
    if v2_key is None:  # a dialogueText record: a record lost after it cuts its dialogue (_LostKey)
        lost_key.last = key
    if None in r:
        _refuse_fields(rows, origin, rec, key)
    elif v2_key is not None:
        _read_v2(rows, origin, v2_key, r)
    else:
        _read_dialogue_text(rows, origin, key, r)


def _read_file(path: Path, rel: str, rows: RawRows) -> None:
    """One CSV file's rows into `rows`: its header checked on the first readable record, then each
    record read, unreadable ones quarantined on the way (readable) with the dialogue they cut."""
    records = iter_csv(path)
    lost_key = _LostKey()
    checked = False
    for origin, rec in readable(records, rel, rows, lost_key):
        if not checked:
            if _header_refused(rows, rel, records, rec):
                return  # the records left were counted by _refuse, not read
            checked = True
        _read_record(rows, rel, origin, rec, lost_key)


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    for path in data_files(raw_dir, (".csv",)):
        _read_file(path, path.relative_to(raw_dir).as_posix(), rows)
    return rows.frame()
