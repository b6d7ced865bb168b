"""data/contrib/*: each data file is its own source (`contrib/<stem>`) with its sidecar's licence.

The format comes from the sidecar's `format:` or the file extension (see infer_format in
pipeline/sources/contrib.py); the file is then read by that format's adapter. A file from which
nothing at all is read (a JSON list `[]`) stops the stage, as an empty file stops the download.
Each file's sidecar `description:` and `attribution:` go into the normalize report
(`sidecar_texts`), whence the dataset card and NOTICE.md describe and credit the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters import nanochatgpt, openai_messages, sharegpt
from pipeline.sources.contrib import ContribFile, scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows, concat

READERS = {
    "nanochatgpt": nanochatgpt.read_file,
    "openai": openai_messages.read_file,
    "sharegpt": sharegpt.read_file,
}


def read(
    raw_dir: Path, spec: SourceSpec, params: dict[str, Any], scanned: list[ContribFile] | None = None
) -> pl.DataFrame:
    """The rows of every contributed file of `raw_dir`; `scanned`: the caller's scan_contrib of
    `raw_dir` (normalize_source scans once for this and `descriptions`; each scan parses every
    sidecar with PyYAML, ~1 ms a file)."""
    frames = []
    for cf in scan_contrib(raw_dir, spec.name) if scanned is None else scanned:
        rows = RawRows(cf.source, cf.licence, cf.commercial)
        READERS[cf.format](cf.path, cf.path.name, rows)
        if not len(rows):  # e.g. a JSON file holding `[]`: as empty as an empty file, which is refused
            raise SourceError(
                # named where the contributor edits it (data/contrib/), not its raw copy
                f"{spec.location}/{cf.path.relative_to(raw_dir).as_posix()}: no conversation read from "
                f"it (format {cf.format}); "
                "add conversations to it or remove it"
            )
        frames.append(rows.frame())
    return concat(frames)


def sidecar_texts(scanned: list[ContribFile], field: str) -> dict[str, str]:
    """Each scanned file's sidecar text `field` (`description` or `attribution`) by source
    (`contrib/<stem>`), as written but stripped; a file whose sidecar has none (or only spaces) is
    left out. The text is the contributor's: whoever shows it escapes it for where it goes
    (pipeline.cards.markdown_text, credit_text)."""
    out: dict[str, str] = {}
    for cf in scanned:
        # A YAML escape ("\\ud83d") can give a lone surrogate, which the report (UTF-8 JSON) cannot
        # hold: written as its escape, as RawRows writes one in the rows.
        text = getattr(cf, field).strip().encode("utf-8", "backslashreplace").decode("utf-8")
        if text:
            out[cf.source] = text
    return out
