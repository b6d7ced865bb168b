"""Twitter dialog dumps: text, one tweet per line (`.txt`, or gzipped `.txt.gz` as chat_corpus
serves twitter_en.txt.gz; readers.iter_lines decompresses it).

With `options.pairs: true` (the chat_corpus twitter_en layout) every two lines are a tweet and its
reply; otherwise blank lines separate conversations and lines alternate speakers (a "LABEL:\\t"
prefix, if present, names the speaker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._lines import read_line_dialogues
from pipeline.sources.readers import data_files
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    pairs = bool(spec.options.get("pairs", False))
    for path in data_files(raw_dir, (".txt",)):
        rel = path.relative_to(raw_dir).as_posix()
        read_line_dialogues(path, rel, rows, pairs=pairs, key_prefix=f"{rel}:")
    return rows.frame()
