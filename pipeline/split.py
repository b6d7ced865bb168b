"""Seeded, deterministic train/val split and output order, keyed on content (never on ids).

The split is keyed on a conversation's *opening*: its first turn when that holds at least
`build.split_opening_chars` characters of folded text (as the dedup key folds it), else its first
exchange (human turn + bot turn) when those two reach it, else the whole conversation. Keying on
content, not the conversation id, is what makes a leak impossible: a conversation and every
duplicate of it have the same opening, so even if dedup were off they could not straddle the
split. Keying on the opening, not the whole conversation, also keeps together what dedup rightly
keeps twice: a conversation that is the start of another (a thread scraped before and after more
replies, Ubuntu v2's context rows cut from one dialogue at several points) and dialogues on one
long prompt (arena battles), whose shared turns would otherwise sit in train and val at once.

The character floor is what stops the opening from grouping unrelated dialogues: on turns alone,
every chat that starts "hello" / "hi" would share a split (in the default data, 187 conversations
start with a two-turn greeting that is also a conversation of its own; at a floor of 80 or more
no two default conversations share an opening). Known gaps: a shared start shorter than the
floor, or one whose first exchange is short but whose later turns match (many short IRC lines),
can still sit on both sides. The opening stops at the first exchange for memory: on the 1 GB
benchmark (`python -m benchmarks.build`) it raised the build's peak RSS from 1.50 to 1.77 GB, an
opening of up to four turns (two 64-bit keys) to 2.23 GB, and a sort inside the group_by (the way
to look at any number of turns) made the plan an in-memory one: 2.54 GB.

Two hashes with different seeds are used: one decides the split (over the opening), the other
orders conversations (a seeded shuffle, over the whole dedup key) and picks which ones a
per-source cap keeps, so a cap never favours either split.
"""

from __future__ import annotations

import polars as pl

from pipeline.dedup import KEY_COLUMNS

OPENING_COLUMN = "opening"
_U64 = 1 << 64


def opening_key_agg(min_chars: int) -> pl.Expr:
    """An aggregation (inside the group_by on the conversation, beside dedup.conversation_key_aggs)
    giving the opening's 64-bit key: the XOR of dedup's row hashes `_h1` over turn 0, or turns 0-1,
    the first that holds `min_chars` folded characters (`_fchars` per row), else over every turn.
    `min_chars` 0 keys every conversation whole (the split then keeps only duplicates together).
    64 bits are plenty: the key only decides the split, and a collision ties two splits, no more.
    Plain sums and XORs of per-row values, which polars' streaming group_by keeps as accumulators.
    """
    h = pl.col("_h1")
    whole = h.bitwise_xor()
    if min_chars <= 0:
        return whole.alias(OPENING_COLUMN)
    turn, chars = pl.col("turn"), pl.col("_fchars").fill_null(0)
    zero = pl.lit(0, pl.UInt64)
    first_turn = pl.when(turn == 0)
    first_exchange = pl.when(turn <= 1)
    return (
        pl.when(first_turn.then(chars).otherwise(0).sum() >= min_chars)
        .then(first_turn.then(h).otherwise(zero).bitwise_xor())
        .when(first_exchange.then(chars).otherwise(0).sum() >= min_chars)
        .then(first_exchange.then(h).otherwise(zero).bitwise_xor())
        .otherwise(whole)
        .alias(OPENING_COLUMN)
    )


def split_hash(seed: int) -> pl.Expr:
    return pl.col(OPENING_COLUMN).hash(seed)


def order_hash(seed: int) -> pl.Expr:
    # A different seed from split_hash: the order must be independent of the split.
    return pl.struct(*KEY_COLUMNS).hash(seed ^ 0x5EED_0DE5)


def val_threshold(val_fraction: float) -> int:
    """Split hashes below this value go to val (an exact share of the 64-bit hash space)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"build.val_fraction must be in [0, 1), got {val_fraction}")
    return min(int(val_fraction * _U64), _U64 - 1)


def assign_split(kept: pl.DataFrame, val_fraction: float) -> pl.DataFrame:
    """Add `split` ("train" | "val") from the `split_u` column.

    On a tiny corpus the hash share can leave val empty; then the conversation with the
    smallest split hash moves to val (deterministic, and still keyed on the dedup key). It can
    as well leave train empty (a large val_fraction), and training needs a conversation: then the
    one with the largest split hash moves to train. A corpus of one conversation keeps it in train.
    """
    threshold = val_threshold(val_fraction)
    is_val = pl.col("split_u") < pl.lit(threshold, dtype=pl.UInt64)
    if kept.height == 1:  # nothing to validate against, and training needs it
        is_val = pl.lit(False)
    out = kept.with_columns(split=pl.when(is_val).then(pl.lit("val")).otherwise(pl.lit("train")))
    if val_fraction > 0 and kept.height >= 2:
        for split, extreme in (("val", pl.col("split_u").min()), ("train", pl.col("split_u").max())):
            if not (out["split"] == split).any():
                out = out.with_columns(
                    split=pl.when(pl.col("split_u") == extreme).then(pl.lit(split)).otherwise(pl.col("split"))
                )
    return out


def apply_caps(kept: pl.DataFrame, caps: dict[int, int]) -> pl.DataFrame:
    """Add `capped` (bool): past the per-source character cap, walking in `order_h` order.

    `caps` maps a source rank to its cap in characters; ranks without a cap keep everything.
    """
    if not caps:
        return kept.with_columns(capped=pl.lit(False))
    cap = pl.col("rank").replace_strict(caps, default=None, return_dtype=pl.Int64)
    running = pl.col("chars").cum_sum().over("rank", order_by=["order_h", "conversation_id"])
    return kept.with_columns(capped=(cap.is_not_null() & (running > cap)).fill_null(False))
