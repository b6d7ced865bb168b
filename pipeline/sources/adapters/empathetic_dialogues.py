"""EmpatheticDialogues (Rashkin et al. 2019): CSV, one row per utterance.

Upstream header: conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags with
every comma inside a field written `_comma_` (so lines split on plain commas; the upstream
loader does the same). The speaker who describes the situation speaks first: human; the listener
is the bot. `context` (the emotion label) and `prompt` (the speaker's situation) are not a persona
of the bot, so they are not used as the conversation context. Rows of valid.csv and test.csv may
carry a 9th, unnamed field: `|`-separated inline label candidates (ParlAI's reader,
parlai/tasks/empathetic_dialogues/agents.py: `if len(sparts) == 9: ... elif len(sparts) == 8`);
they are not turns and are ignored. A line with another number of fields is quarantined
(`csv_fields`). Parquet exports with the same columns are read as well.

Fields are taken by position, so a CSV file in another shape is refused whole, never read into
shifted or cut turns: one quarantined row at the line that shows it, with the rule and a reason
that says how many lines were not read (as a file no reader can take is: ubuntu's `csv_header`,
yaml_parse, gzip):
* `csv_header`: a header line (the first line holding text, naming a column: blank lines before
  it are let be, as pandas and polars skip them) whose first six names are not
  conv_id..utterance in order (a column removed or moved would shift every field), or whose
  names after those are not selfeval, tags;
* `csv_quoted`: a file with no `_comma_` anywhere and a line that a CSV reader splits otherwise
  than plain commas do (a quoted field, `"Oh no, are you fine now?"`): a standard quoted CSV
  export, whose quoted commas would cut the text. Upstream files hold `_comma_` (every real split
  does), so they are never put to this test.
A header-less file is read as before.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._records import readable
from pipeline.sources.readers import Record, data_files, has_suffix, holds_text, iter_lines, iter_parquet
from pipeline.sources.registry import SourceSpec, brief
from pipeline.sources.rows import RawRows

COLUMNS = ("conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags")
MIN_FIELDS = 6  # up to `utterance`; selfeval and tags are often empty or missing
MAX_FIELDS = len(COLUMNS) + 1  # the 9th: inline label candidates (valid/test), not a turn
COMMA = "_comma_"  # how upstream writes a comma inside a field
# A first line holding one of these as a field is a header, not a conversation's row.
_HEADER_NAMES = frozenset({"conv_id", "utterance_idx", "speaker_idx"})
_UPSTREAM = (
    f"upstream EmpatheticDialogues CSV is unquoted, with the header {','.join(COLUMNS)} "
    f"and every comma inside a field written {COMMA}"
)


def _unescape(value: str) -> str:
    return value.replace(COMMA, ",")


def _first_lines(path: Path) -> Iterator[tuple[bool, Record]]:
    """Each line with whether it is the first holding text (holds_text), the one a header is on.
    Line 1 alone was checked: a header after a blank line was neither checked nor skipped, and was
    read as a conversation's row (a header with its columns moved then shifted every field)."""
    seen = False
    for rec in iter_lines(path):
        first = not seen and holds_text(rec)
        seen = seen or first
        yield first, rec


def _is_header(line: str) -> bool:
    """The first line holding text names columns (it was skipped as a header whenever it started
    with conv_id)."""
    return line.startswith("conv_id") or bool(_HEADER_NAMES.intersection(line.split(",")))


def _header_problem(line: str) -> str | None:
    """Why a header would shift fields (None: it would not): its first six names must be
    COLUMNS[:6] in that order, and any more must be the rest of COLUMNS (selfeval, tags) in order.
    Empty names past COLUMNS are let be: they name no column read (upstream's unnamed 9th field)."""
    names = tuple(line.split(","))
    if not any(names[len(COLUMNS) :]):
        names = names[: len(COLUMNS)]
    if len(names) >= MIN_FIELDS and names == COLUMNS[: len(names)]:
        return None
    return (
        f"header {brief(line, 200)} is not the expected {','.join(COLUMNS)}: the first {MIN_FIELDS} "
        "columns must match in order, since fields are read by position (a missing or moved column "
        "would shift every field)"
    )


def _splits_otherwise(line: str) -> bool:
    """Whether a CSV reader (quotes honoured) splits `line` otherwise than plain commas do."""
    try:
        return next(csv.reader([line])) != line.split(",")
    except csv.Error:  # e.g. a quoted field over the csv module's size limit: not plain commas either
        return True


def _format_problem(path: Path) -> tuple[int, str, str] | None:
    """(line, rule, reason) for a file that is not in the upstream format (see the module
    docstring): a header other than COLUMNS, or a quoted CSV export in a file holding no `_comma_`;
    None for one that is."""
    quoted: int | None = None  # the first line a CSV reader splits otherwise than commas
    for first, rec in _first_lines(path):
        if not rec.ok:
            continue  # quarantined when the file is read
        if first and _is_header(rec.value):
            if (problem := _header_problem(rec.value)) is not None:
                return rec.line, "csv_header", problem
            continue
        if COMMA in rec.value:
            return None  # upstream's escape: commas are never quoted in this file
        if quoted is None and '"' in rec.value and _splits_otherwise(rec.value):
            quoted = rec.line
    if quoted is None:
        return None
    return (
        quoted,
        "csv_quoted",
        f"a double-quoted field, and no line of the file holds {COMMA}: this looks like a quoted CSV "
        f"export, not the upstream format ({_UPSTREAM}); split on commas its text would be cut: "
        f"write the commas inside its fields as {COMMA}, unquoted",
    )


def _refuse(rows: RawRows, path: Path, rel: str, problem: tuple[int, str, str]) -> None:
    """The whole file as one quarantined row at the line that shows `problem`; its lines are
    counted, not read, so the reason says what the file held."""
    line, check, reason = problem
    lines = sum(1 for rec in iter_lines(path) if holds_text(rec))
    rows.bad(f"{rel}:{line}", check, f"{reason}; the file is not read ({lines:,} lines)")


def _csv_records(path: Path) -> Iterator[Record]:
    """Split on commas (upstream escapes them); the header line is not a record. (A file in
    another shape is refused before: _format_problem.)"""
    for first, rec in _first_lines(path):
        if first and rec.ok and _is_header(rec.value):
            continue
        if not rec.ok or not rec.raw.strip():
            if not rec.ok:
                yield rec
            continue
        parts = rec.value.split(",")
        if not MIN_FIELDS <= len(parts) <= MAX_FIELDS:
            yield Record(
                rec.line,
                None,
                rec.raw,
                "csv_fields",
                f"{len(parts)} comma-separated fields, expected {MIN_FIELDS} to {MAX_FIELDS}",
            )
            continue
        yield Record(rec.line, dict(zip(COLUMNS, parts[: len(COLUMNS)], strict=False)), rec.raw)


def _line_conv(rec: Record) -> str | None:
    """An unreadable line's conv_id (its first field), so that losing it cuts its conversation
    rather than joining the speaker's turns on either side of it into one."""
    return rec.raw.split(",", 1)[0].strip() or None


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    for path in data_files(raw_dir, (".csv", ".parquet")):
        rel = path.relative_to(raw_dir).as_posix()
        is_csv = has_suffix(path, ".csv")
        if is_csv and (problem := _format_problem(path)) is not None:
            _refuse(rows, path, rel, problem)
            continue
        records = _csv_records(path) if is_csv else iter_parquet(path)
        for origin, rec in readable(records, rel, rows, _line_conv if is_csv else None):
            r = rec.value
            conv, speaker, text = r.get("conv_id"), r.get("speaker_idx"), r.get("utterance")
            if conv in (None, "") or speaker in (None, "") or text is None:
                # str: a parquet export may hold conv_id as a number (0 too), which the text column refused
                key = None if conv in (None, "") else str(conv)
                rows.bad(origin, "missing_field", "needs conv_id, speaker_idx and utterance", conv_key=key)
                continue
            rows.add(str(conv), _unescape(str(text)), origin, speaker=str(speaker))
    return rows.frame()
