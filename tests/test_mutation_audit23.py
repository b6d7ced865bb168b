"""Mutation audit 23 (session 34, mutM): a second pass over the dataset build's integrity code:
pipeline/dedup.py, pipeline/buildstats.py, pipeline/vocabcheck.py, pipeline/datasetformat.py,
pipeline/hfexport.py and pipeline/datasetcard.py. Each test kills a mutation that the rest of the suite
let pass; its docstring names the module, the function and the change. Survivors judged equivalent are
not tested (the session notes have the table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import buildstats, datasetcard
from pipeline.buildinputs import SourceInput
from pipeline.cards import CardSource
from pipeline.datasetformat import parse_text

_SOURCES = [CardSource("a", "MIT", True)]


def _stats(leak: dict[str, int] | None = None) -> dict[str, Any]:
    """stats.json of a variant holding source `a` alone, with distinct figures in every cell, so that
    a card cell that reads the wrong one shows."""
    audit = {"min_chars": 20, "val_turns_checked": 10, "val_turns_in_train": 1}
    audit |= {"val_characters_checked": 1_000, "val_characters_in_train": 500}
    conv = {"train": 7, "val": 3}
    return {
        "sources": {"a": {"licence": "MIT", "commercial": True, "conversations": conv}},
        "totals": {
            "conversations": conv,
            "turns": {"train": 14, "val": 6},
            "characters": {"train": 1_400, "val": 600},
            "leak_audit": audit | (leak or {}),
        },
        "params": {"seed": 1, "val_fraction": 0.3, "caps": None, "split_opening_chars": 20},
    }


# ---------------------------------------------------------------- the dataset card (pipeline/datasetcard.py)


def test_the_card_table_gives_turns_and_characters_from_their_own_totals() -> None:
    """The card's split table: turns are the `turns` totals, characters the `characters` totals. Kills,
    in datasetcard.dataset_card, `totals.get('turns')` -> `totals.get('characters')` in the table row
    (the card then gave each split's characters as its turn count)."""
    card = datasetcard.dataset_card("full", _stats(), _SOURCES)
    assert "| train | 7 | 14 | 1,400 |" in card
    assert "| validation | 3 | 6 | 600 |" in card


def test_the_leak_check_gives_the_character_share_from_the_character_counts() -> None:
    """1 of 10 audited val turns (10%) is also in train, but it is a long one: 500 of 1,000 characters
    (50%). Kills, in datasetcard._leak_audit, `for what in ("turns", "characters")` -> `("turns",
    "turns")` (the card then gave the turn share as the character share, under-reporting the leak)."""
    card = datasetcard.dataset_card("full", _stats(), _SOURCES)
    assert "(10.00% of those turns, 50.00% of their characters;" in card


def test_a_leak_share_under_a_hundredth_of_a_percent_is_not_printed_as_zero() -> None:
    """1 val turn in train of 100,000 audited (a share of 1e-5, which `:.2%` prints as 0.00%) reads
    "under 0.01%". Kills, in datasetcard._percent, `share < 0.0001` -> `share < 0.00001` (the card then
    said "0.00%" of a real leak)."""
    leak = {"val_turns_checked": 100_000, "val_turns_in_train": 1}
    leak |= {"val_characters_checked": 10_000_000, "val_characters_in_train": 100}
    card = datasetcard.dataset_card("full", _stats(leak), _SOURCES)
    assert "(under 0.01% of those turns, under 0.01% of their characters;" in card
    assert "0.00%" not in card


def test_a_commercial_flag_that_is_not_true_is_not_commercial_in_the_model_card_terms() -> None:
    """stats_terms takes a source as commercial only when stats.json says `true`: a flag recorded as
    the string "false" (a hand-edited or foreign stats.json) is not commercial. Kills, in
    datasetcard.stats_terms, `entry.get("commercial") is True` -> `bool(entry.get("commercial"))` (the
    model card then called an MIT source flagged "false" commercial)."""
    stats = _stats()
    stats["sources"]["a"]["commercial"] = "false"
    assert datasetcard.stats_terms(stats)["a"].commercial is False
    stats["sources"]["a"]["commercial"] = True
    assert datasetcard.stats_terms(stats)["a"].commercial is True


# ---------------------------------------------------------------- stats and metrics (pipeline/buildstats.py)


def test_metrics_count_rows_filtered_for_every_reason() -> None:
    """metrics.json `rows_filtered` is the sum over every filter reason (non-commercial and capped).
    Kills, in buildstats.summary_metrics, `sum(t["rows_filtered"].values())` -> its `not_commercial`
    entry alone (rows dropped by a cap then went uncounted in `dvc metrics`)."""
    stats = _stats()
    stats["totals"]["rows_filtered"] = {"not_commercial": 2, "capped": 5}
    assert buildstats.summary_metrics(stats)["rows_filtered"] == 7


def _contrib() -> SourceInput:
    return SourceInput(
        name="contrib",
        rank=0,
        path=Path("c"),
        display="c",
        kind="contrib",
        licence="per-file",
        commercial=False,
    )


def test_a_contributed_file_with_a_missing_or_mixed_flag_is_not_commercial() -> None:
    """A contributed file with nothing written (every row quarantined: the `commercial_present` check
    rejects a missing flag) takes its terms from its planned conversations: a null flag counts as not
    commercial, and so does a file of which only some conversations are flagged. Kills, in
    buildstats._contrib_parts, `fill_null(False)` -> `fill_null(True)` and `.all()` -> `.any()` (stats.json
    `parts` then called the file commercial, and the card and model card with it)."""
    plan = pl.DataFrame(
        {
            "source": ["contrib/bare", "contrib/mixed", "contrib/mixed", "contrib/ok"],
            "licence": ["MIT"] * 4,
            "commercial": [None, True, None, True],
        },
        schema_overrides={"commercial": pl.Boolean},
    )
    written = pl.DataFrame(
        schema={
            "rank": pl.Int64,
            "source": pl.String,
            "licence": pl.String,
            "commercial": pl.Boolean,
            "split": pl.String,
            "conversations": pl.Int64,
            "turns": pl.Int64,
            "characters": pl.Int64,
        }
    )
    parts = buildstats._contrib_parts(written, plan, _contrib())
    assert {name: part["commercial"] for name, part in parts.items()} == {
        "contrib/bare": False,
        "contrib/mixed": False,
        "contrib/ok": True,
    }


# ---------------------------------------------------------------- the text export (pipeline/datasetformat.py)


def test_parse_text_refuses_a_turn_line_with_text_after_its_end_marker() -> None:
    """A turn line ends at its `<endOfText>`: text after it is not the format, and parse_text says
    which line. Kills, in datasetformat._TURN_RE, `(.*) <endOfText>$` -> `(.*?) <endOfText>` (the line
    then parsed as the turn "yo", silently dropping what followed the marker)."""
    with pytest.raises(ValueError, match="^line 2: "):
        parse_text("<human> hi <endOfText>\n<bot> yo <endOfText> and more\n")
    assert parse_text("<human> hi <endOfText>\n<bot> yo <endOfText>\n")[0]["messages"][1]["content"] == "yo"
