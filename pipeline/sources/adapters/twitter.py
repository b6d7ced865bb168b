"""Twitter dialog dumps: text, one tweet per line (`.txt`, or gzipped `.txt.gz` as chat_corpus
serves twitter_en.txt.gz; readers.iter_lines decompresses it).

With `options.pairs: true` (the chat_corpus twitter_en layout) lines 2k-1 and 2k are a tweet and
its reply, by position: a blank line is an empty tweet or reply (quarantined and counted, never a
boundary that would shift every later pair). Otherwise blank lines separate conversations and
lines alternate speakers (a "LABEL:\\t" prefix, if present, names the speaker).
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
    pairs = option(spec, "pairs")
    for path in data_files(raw_dir, (".txt",)):
        rel = path.relative_to(raw_dir).as_posix()
        read_line_dialogues(path, rel, rows, pairs=pairs, key_prefix=f"{rel}:")
    return rows.frame()
