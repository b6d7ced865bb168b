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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._records import readable
from pipeline.sources.readers import data_files, iter_csv
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


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    for path in data_files(raw_dir, (".csv",)):
        rel = path.relative_to(raw_dir).as_posix()
        for origin, rec in readable(iter_csv(path), rel, rows):
            r = rec.value
            if "Context" in r:
                _read_v2(rows, origin, f"{Path(rel).with_suffix('')}:{rec.line}", r)
                continue
            dialogue = r.get("dialogueID")
            key = f"{r['folder']}/{dialogue}" if r.get("folder") and dialogue else dialogue
            if not key or not r.get("from") or r.get("text") is None:
                rows.bad(origin, "missing_field", "needs dialogueID, from and text", conv_key=key or None)
                continue
            rows.add(key, r["text"], origin, speaker=r["from"])
    return rows.frame()
