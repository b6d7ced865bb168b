"""The build's leak audit (pipeline/split.py LeakAudit): how many val turns of at least
`build.split_opening_chars` folded characters are also a turn in train, per variant, in stats.json,
metrics.json and the dataset card. Every corpus here goes through the real build.

Two kept conversations always land on opposite splits (split.assign_split moves one when the hash
share leaves a split empty), which is how these tests plant a leak across the split."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from test_build_edge import rows as edge_rows

from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig
from pipeline.datasetcard import _leak_audit
from pipeline.dedup import fold_text
from pipeline.schema import TURN_SCHEMA

REGISTRY = {
    "good": {"kind": "package", "licence": "MIT", "commercial": True, "location": "good_pkg"},
    "nc": {"kind": "url", "licence": "CC-BY-NC-4.0", "commercial": False, "location": "https://x.org/nc"},
}
TERMS = {"good": ("MIT", True), "nc": ("CC-BY-NC-4.0", False)}
# A long turn (>= 100 folded characters) both conversations hold at different turns and roles, in two
# trivial variants that fold alike (case, runs of spaces, a final mark).
SHARED = (
    "The lighthouse keeper unfolded the map on the kitchen table and traced the coastline with one "
    "finger until it stopped at a cove"
)
SHARED_VARIANT = SHARED.upper().replace(" ", "  ") + "!"


def rows(cid: str, texts: list[str], source: str) -> list[dict]:
    return edge_rows(cid, texts, source, *TERMS[source])


def long_turn(tag: str) -> str:
    return f"{tag}: " + " ".join(f"a distinct sentence number {i} about {tag}." for i in range(4))


def build(root: Path, tables: dict[str, list[dict]], variant: str = "full", **cfg) -> dict:
    d = root / "data" / "normalized"
    d.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pl.DataFrame(table, schema=TURN_SCHEMA).write_parquet(d / f"{name}.parquet")
    cfg.setdefault("val_fraction", 0.5)
    return build_variant(root, list(tables), REGISTRY, BuildConfig(variant=variant, **cfg)).stats


def audit(stats: dict) -> dict:
    return stats["totals"]["leak_audit"]


def split_of(root: Path, variant: str = "full") -> dict[str, str]:
    d = root / "data" / "dataset" / variant
    return {
        cid: split
        for split in ("train", "val")
        for cid in pl.read_parquet(d / f"{split}.parquet")["conversation_id"].to_list()
    }


def planted(later: str = SHARED, later_variant: str = SHARED_VARIANT) -> list[dict]:
    """Two conversations with different short openings (under the floor: each keys the split on all
    of itself) that share one later turn, at turn 2 (human) in one and turn 3 (bot) in the other."""
    return rows("good:a", ["hi", "hello!", later, long_turn("a")], "good") + rows(
        "good:b", ["hey", "hi there", long_turn("b"), later_variant], "good"
    )


def test_a_long_later_turn_shared_across_the_split_is_counted_exactly(tmp_path):
    stats = build(tmp_path, {"good": planted()})
    where = split_of(tmp_path)
    assert sorted(where.values()) == ["train", "val"]  # forced apart: the leak the split cannot see
    val_copy = SHARED if where["good:a"] == "val" else SHARED_VARIANT
    # The val conversation's long turns: the shared one and its own long_turn; its short ones not.
    assert audit(stats) == {
        "min_chars": 100,
        "val_turns_checked": 2,
        "val_turns_in_train": 1,
        "val_turns_in_train_share": 0.5,
        "val_characters_checked": len(val_copy) + len(long_turn("a")),
        "val_characters_in_train": len(val_copy),
        "val_characters_in_train_share": round(len(val_copy) / (len(val_copy) + len(long_turn("a"))), 6),
    }
    out = tmp_path / "data" / "dataset" / "full"
    # metrics.json (the DVC metric) holds the same figures, so `dvc metrics diff` shows them move.
    assert json.loads((out / "metrics.json").read_text())["leak_audit"] == audit(stats)
    assert json.loads((out / "stats.json").read_text())["totals"]["leak_audit"] == audit(stats)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Leak check: 1 of 2 validation turns of at least 100 characters" in card
    assert "(50.00% of those turns" in card


def test_a_shared_turn_under_the_floor_is_not_counted_and_the_floor_is_the_splits(tmp_path):
    short = "same short line, forty characters or so"
    assert 20 <= len(short) < 100
    stats = build(tmp_path / "a", {"good": planted(short, short.upper())})
    assert audit(stats)["val_turns_in_train"] == 0
    assert audit(stats)["val_turns_checked"] == 1  # the val conversation's long_turn alone
    # The same corpus at a split floor of 20: the audit follows it and now counts the shared turn.
    stats = build(tmp_path / "b", {"good": planted(short, short.upper())}, split_opening_chars=20)
    assert audit(stats)["min_chars"] == 20
    assert (audit(stats)["val_turns_checked"], audit(stats)["val_turns_in_train"]) == (2, 1)


def test_a_floor_of_zero_audits_every_turn_with_text_but_not_punctuation_alone(tmp_path):
    """At split_opening_chars 0 the audit counts every turn whose folded text is not empty: a shared
    "ok" is a shared turn; a shared "?" (folds to nothing) is not."""
    tables = {
        "good": rows("good:a", ["hi", "ok", "?", "one"], "good")
        + rows("good:b", ["hey", "ok", "?", "two"], "good")
    }
    stats = build(tmp_path, tables, split_opening_chars=0)
    assert audit(stats)["min_chars"] == 1
    assert (audit(stats)["val_turns_checked"], audit(stats)["val_turns_in_train"]) == (3, 1)
    assert "Leak check: 1 of 3 validation turns with any text" in (
        tmp_path / "data" / "dataset" / "full" / "README.md"
    ).read_text(encoding="utf-8")


def test_text_that_grows_when_folded_reaches_the_floor(tmp_path):
    """The audit skips short ASCII turns before folding (folding never lengthens ASCII), but NFKC can
    lengthen other text: ten "ﬃ" ligatures are 10 characters and fold to 30."""
    lig = "\ufb03" * 10
    assert len(lig) < 20 <= len(pl.select(fold_text(pl.lit(lig))).item())
    stats = build(tmp_path, {"good": planted(lig, "ffi" * 10)}, split_opening_chars=20)
    assert audit(stats)["val_turns_in_train"] == 1


def test_no_shared_turn_gives_zero(tmp_path):
    tables = {
        "good": rows("good:a", ["hi", "hello", long_turn("a1"), long_turn("a2")], "good")
        + rows("good:b", ["hey", "hi there", long_turn("b1"), long_turn("b2")], "good")
    }
    a = audit(build(tmp_path, tables))
    assert a["val_turns_checked"] == 2
    assert (a["val_turns_in_train"], a["val_characters_in_train"]) == (0, 0)
    assert a["val_turns_in_train_share"] == a["val_characters_in_train_share"] == 0.0
    card = (tmp_path / "data" / "dataset" / "full" / "README.md").read_text(encoding="utf-8")
    assert "Leak check: 0 of 2 validation turns" in card and "(0% of those turns" in card


def test_each_variant_is_audited_on_its_own_rows(tmp_path):
    """g1 and the non-commercial n1 open alike (one long first turn), so they share a split, and g2
    is on the other side in both variants. n1 shares a long turn with g2, g1 another one with g2:
    the full variant leaks both, the commercial one (no n1) only g1's."""
    opening = long_turn("opening")
    tables = {
        "good": rows("good:g1", [opening, "sure", long_turn("g1-g2"), "thanks"], "good")
        + rows("good:g2", ["hey", "hi there", long_turn("n1-g2"), long_turn("g1-g2")], "good"),
        "nc": rows("nc:n1", [opening, "right", long_turn("n1-g2"), "cool"], "nc"),
    }
    full = build(tmp_path, tables)
    where = split_of(tmp_path)
    assert where["good:g1"] == where["nc:n1"] != where["good:g2"]
    commercial = build(tmp_path, tables, variant="commercial")
    assert audit(full)["val_turns_in_train"] == 2
    assert audit(commercial)["val_turns_in_train"] == 1
    for variant, stats in (("full", full), ("commercial", commercial)):
        metrics = json.loads((tmp_path / "data" / "dataset" / variant / "metrics.json").read_text())
        assert metrics["leak_audit"] == audit(stats)


def oracle(root: Path, variant: str, floor: int) -> tuple[int, int]:
    """(val turns checked, val turns in train) from the written files, with Python sets of text."""
    d = root / "data" / "dataset" / variant
    folded = {}
    for split in ("train", "val"):
        texts = pl.read_parquet(d / f"{split}.parquet").select(
            pl.col("messages").explode().struct.field("content")
        )
        col = texts.select(fold_text(pl.col("content")).alias("folded"))["folded"]
        folded[split] = [t for t in col.to_list() if len(t) >= floor]
    train = set(folded["train"])
    return len(folded["val"]), sum(t in train for t in folded["val"])


@pytest.mark.parametrize("floor", [100, 15])
def test_the_audit_matches_a_count_over_the_written_files_across_many_parts(tmp_path, floor):
    """A corpus whose turns come from a small pool, built in many write parts (the audit gathers
    each part's hashes) and in both variants: the audit equals a plain count over its own output."""
    pool = [long_turn(f"pool{i}") for i in range(40)] + [f"short pool line {i} ok" for i in range(10)]
    tables: dict[str, list[dict]] = {"good": [], "nc": []}
    for i in range(120):
        source = "good" if i % 3 else "nc"
        turns = [f"opening {i}", f"reply {i}"] + [pool[(i * 7 + k * 11) % len(pool)] for k in range(4)]
        tables[source] += rows(f"{source}:{i}", turns, source)
    seen = []
    for variant in ("full", "commercial"):
        stats = build(
            tmp_path, tables, variant=variant, val_fraction=0.3, split_opening_chars=floor, part_chars=2_000
        )
        checked, leaked = oracle(tmp_path, variant, floor)
        assert (audit(stats)["val_turns_checked"], audit(stats)["val_turns_in_train"]) == (checked, leaked)
        assert leaked > 0
        seen.append(audit(stats))
    assert seen[0] != seen[1]
    # Deterministic: the same inputs give the same figures.
    again = build(
        tmp_path, tables, variant="commercial", val_fraction=0.3, split_opening_chars=floor, part_chars=2_000
    )
    assert audit(again) == seen[1]


def test_copies_that_differ_by_a_variation_selector_never_straddle_the_split(tmp_path):
    """A review: a phone adds U+FE0F after "❤" on its own; the copy without it was another dedup key
    and another opening, so of these two kept conversations one was train and the other val (and the
    audit, folding alike, could not see it). Now the second is the first's duplicate."""
    stats = build(
        tmp_path,
        {
            "good": rows("good:a", ["I love you \u2764\ufe0f", "Love you too \u2764\ufe0f"], "good")
            + rows("good:b", ["I love you \u2764", "Love you too \u2764"], "good")
        },
    )
    assert split_of(tmp_path) == {"good:a": "train"}
    assert stats["sources"]["good"]["duplicates_removed"]["conversations"] == 1


def test_the_card_never_calls_a_leak_in_a_huge_val_split_zero():
    """stats.json's shares have 6 decimals: 1 leaked turn of 3M checked (and 150 characters of 450M)
    is a share of 0.0 there, and the card, reading the share, said "(0% of those turns, 0% of their
    characters)" beside "1 of 3,000,000". It reads the counts."""
    leak = {
        "min_chars": 100,
        "val_turns_checked": 3_000_000,
        "val_turns_in_train": 1,
        "val_turns_in_train_share": 0.0,
        "val_characters_checked": 450_000_000,
        "val_characters_in_train": 150,
        "val_characters_in_train_share": 0.0,
    }
    card = "".join(_leak_audit({"totals": {"leak_audit": leak, "conversations": {"val": 10}}}))
    assert "1 of 3,000,000" in card and "0%" not in card
    assert "(under 0.01% of those turns, under 0.01% of their characters" in card
