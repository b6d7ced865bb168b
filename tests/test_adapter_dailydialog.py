"""The DailyDialog adapter (pipeline/sources/adapters/dailydialog.py) and its registry entry: one
dialogue a line, utterances followed by ` __eou__ `, speakers by position, CC BY-NC-SA 4.0 so never in
the commercial variant. (test_adapters.py runs the committed fixture through the common checks.)"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig
from pipeline.sources.adapters import get_adapter
from pipeline.sources.download import download
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import normalize_rows, normalize_source, write_outputs
from pipeline.sources.registry import SourceSpec, enabled_sources, load_registry, parse_entry

ROOT = Path(__file__).resolve().parents[1]
SPEC = SourceSpec(
    name="dailydialog",
    kind="url",
    location="http://yanran.li/files/ijcnlp_dailydialog.zip",
    adapter="dailydialog",
    licence="CC-BY-NC-SA-4.0",
    commercial=False,
)


def _turns(tmp_path: Path, body: str) -> tuple[dict[str, list[tuple[str, str]]], Counter]:
    """{conversation_id: [(role, text)]} and the quarantine's checks of one dialogues_text.txt."""
    (tmp_path / "dialogues_text.txt").write_text(body, encoding="utf-8")
    result = normalize_rows(get_adapter("dailydialog")(tmp_path, SPEC, {}), max_turn_chars=16_000)
    out: dict[str, list[tuple[str, str]]] = {}
    for cid, role, text in result.turns.select("conversation_id", "role", "text").iter_rows():
        out.setdefault(cid, []).append((role, text))
    return out, Counter(result.quarantine["check"])


def test_utterances_alternate_speakers_by_position(tmp_path: Path) -> None:
    turns, checks = _turns(tmp_path, "Hi . __eou__ Hello . __eou__ How are you ? __eou__ Fine . __eou__\n")
    assert turns == {
        "dailydialog:dialogues_text.txt:1": [
            ("human", "Hi ."),
            ("bot", "Hello ."),
            ("human", "How are you ?"),
            ("bot", "Fine ."),
        ]
    }
    assert not checks


def test_an_empty_utterance_keeps_its_place(tmp_path: Path) -> None:
    """`__eou__  __eou__` is B's empty utterance: quarantined, and A's two utterances around it are one
    turn. Dropped instead, every later utterance would change speaker (B's `Yes .` would be A's)."""
    turns, checks = _turns(tmp_path, "Hi . __eou__  __eou__ Are you there ? __eou__ Yes . __eou__\n")
    assert turns == {
        "dailydialog:dialogues_text.txt:1": [("human", "Hi .\nAre you there ?"), ("bot", "Yes .")]
    }
    assert checks == Counter({"text_present": 1})


def test_text_after_the_last_eou_is_a_cut_line(tmp_path: Path) -> None:
    turns, checks = _turns(tmp_path, "Where to ? __eou__ The station . __eou__ Which one , the\nok __eou__\n")
    assert turns == {"dailydialog:dialogues_text.txt:1": [("human", "Where to ?"), ("bot", "The station .")]}
    # the cut piece is quarantined; line 2 is one speaker alone (no bot turn)
    assert checks == Counter({"format": 1, "has_bot_turn": 1})


def test_the_registry_entry_is_non_commercial_and_not_enabled() -> None:
    spec = load_registry(ROOT / "sources.yaml")["dailydialog"]
    assert (spec.adapter, spec.licence, spec.commercial, spec.archive) == (
        "dailydialog",
        "CC-BY-NC-SA-4.0",
        False,
        True,
    )
    assert spec.files == ("ijcnlp_dailydialog/dialogues_text.txt",)
    assert "dailydialog" not in enabled_sources(ROOT / "params.yaml")  # it needs the network
    fields = {"kind": "url", "location": SPEC.location, "adapter": "dailydialog", "description": "d"}
    with pytest.raises(SourceError, match="does not allow commercial use"):
        parse_entry("dailydialog", {**fields, "licence": "CC-BY-NC-SA-4.0", "commercial": True})


def test_the_release_layout_downloads_normalizes_and_stays_out_of_the_commercial_variant(
    tmp_path: Path,
) -> None:
    """The shipped entry on a local copy in the release's layout (local_path, as its comment says):
    its `files:` finds dialogues_text.txt, normalize keeps the turns, the full variant holds them and
    the commercial variant drops every row as not commercial."""
    folder = tmp_path / "upstream"
    (folder / "ijcnlp_dailydialog").mkdir(parents=True)
    (folder / "ijcnlp_dailydialog" / "dialogues_text.txt").write_text(
        "Hi . __eou__ Hello . __eou__\nCan you swim ? __eou__ Yes . __eou__\n", encoding="utf-8"
    )
    (folder / "ijcnlp_dailydialog" / "dialogues_act.txt").write_text("1 2\n1 2\n")  # not selected
    spec = replace(load_registry(ROOT / "sources.yaml")["dailydialog"], local_path=str(folder))
    root = tmp_path / "project"
    root.mkdir()
    raw = download(spec, root, durable=False)
    result = normalize_source(spec, raw, {})
    write_outputs(result, "dailydialog", root)
    assert (result.report["rows_read"], result.report["turns_kept"]) == (4, 4)
    registry = {"dailydialog": spec}
    full = build_variant(root, ["dailydialog"], registry, BuildConfig(variant="full"))
    commercial = build_variant(root, ["dailydialog"], registry, BuildConfig(variant="commercial"))
    assert sum(full.stats["sources"]["dailydialog"]["turns"].values()) == 4
    assert commercial.stats["sources"]["dailydialog"]["rows_filtered"]["not_commercial"] == 4
    rows = pl.concat([pl.read_parquet(commercial.out_dir / f"{s}.parquet") for s in ("train", "val")])
    assert rows.height == 0
