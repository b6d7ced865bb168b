"""DailyDialog (Li et al., 2017; yanran.li/dailydialog, CC BY-NC-SA 4.0): text, one dialogue per
line, each utterance followed by ` __eou__ ` (`dialogues_text.txt`, and `dialogues_<split>.txt`
inside the release's train/validation/test zips).

The two speakers alternate by position: utterance 1, 3, 5... is speaker A (the human), 2, 4, 6...
speaker B. An empty utterance (`__eou__  __eou__`) therefore keeps its position, as an empty row that
normalize quarantines (`text_present`) and counts, so every later utterance keeps its speaker. Text
after the last `__eou__` means the line was cut: that piece is quarantined (`format`), which cuts the
conversation there. The release's other files (`dialogues_act.txt`, `dialogues_emotion.txt`: numbers,
one line per dialogue) hold no text; `files:` in sources.yaml should leave them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.readers import cr_only, data_files, iter_lines
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

EOU = "__eou__"


def _read_dialogue(rows: RawRows, key: str, origin: str, line: str) -> None:
    """One line: its utterances, speakers A and B by position; a cut tail is quarantined."""
    *utterances, tail = line.split(EOU)
    for position, text in enumerate(utterances):
        rows.add(key, text, origin, speaker="AB"[position % 2])
    if tail.strip():
        reason = f"text after the last {EOU} (a cut line?): the utterance may be incomplete"
        rows.bad(origin, "format", reason, conv_key=key, text=tail)


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    for path in data_files(raw_dir, (".txt",)):
        rel = path.relative_to(raw_dir).as_posix()
        for rec in iter_lines(path, lone_cr=cr_only(path)):
            origin = key = f"{rel}:{rec.line}"  # a dialogue is its line
            if not rec.ok:
                rows.bad(origin, rec.check, rec.reason, conv_key=key, text=rec.raw)
            elif rec.value.strip():  # a blank line holds no dialogue
                _read_dialogue(rows, key, origin, rec.value)
    return rows.frame()
