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
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._records import readable
from pipeline.sources.readers import Record, data_files, data_name, iter_lines, iter_parquet
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

COLUMNS = ("conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags")
MIN_FIELDS = 6  # up to `utterance`; selfeval and tags are often empty or missing
MAX_FIELDS = len(COLUMNS) + 1  # the 9th: inline label candidates (valid/test), not a turn


def _unescape(value: str) -> str:
    return value.replace("_comma_", ",")


def _csv_records(path: Path) -> Iterator[Record]:
    """Split on commas (upstream escapes them); the header line is not a record."""
    for rec in iter_lines(path):
        if rec.line == 1 and rec.ok and rec.value.startswith("conv_id"):
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


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    for path in data_files(raw_dir, (".csv", ".parquet")):
        rel = path.relative_to(raw_dir).as_posix()
        is_csv = data_name(path).endswith(".csv")
        for origin, rec in readable(_csv_records(path) if is_csv else iter_parquet(path), rel, rows):
            r = rec.value
            conv, speaker, text = r.get("conv_id"), r.get("speaker_idx"), r.get("utterance")
            if not conv or speaker in (None, "") or text is None:
                rows.bad(
                    origin, "missing_field", "needs conv_id, speaker_idx and utterance", conv_key=conv or None
                )
                continue
            rows.add(str(conv), _unescape(str(text)), origin, speaker=str(speaker))
    return rows.frame()
