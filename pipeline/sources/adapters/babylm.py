"""BabyLM spoken data: text files, one utterance per line.

cambridge-climb/BabyLM (the sources.yaml entry) holds them as `<variant>/<split>/<domain>.txt`
(original/100M/switchboard.txt, clean/10M/..., and *_tagged copies with POS tags that are not
plain text); the 2023 BabyLM zip named them *.train / *.dev / *.test. All four suffixes are read.

switchboard lines read "A:\\ttext" / "B:\\ttext" (labelled speakers); aochildes, bnc_spoken and
open_subtitles lines carry no label and alternate speakers. Blank lines end a conversation and
runs longer than `options.max_lines` lines (default 32) are split into conversations of that size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters import option
from pipeline.sources.adapters._lines import read_line_dialogues
from pipeline.sources.readers import data_files
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    max_lines = option(spec, "max_lines")
    for path in data_files(raw_dir, (".train", ".dev", ".test", ".txt")):
        rel = path.relative_to(raw_dir).as_posix()
        read_line_dialogues(path, rel, rows, max_lines=max_lines, key_prefix=f"{rel}:")
    return rows.frame()
