"""Seeded, deterministic train/val split and output order, both keyed on the dedup key.

Keying on the dedup key (not the conversation id) is what makes a leak impossible: a
conversation and every duplicate of it hash to the same value, so even if dedup were off they
could not straddle the split. Two hashes with different seeds are used: one decides the split,
the other orders conversations (a seeded shuffle) and picks which ones a per-source cap keeps,
so a cap never favours either split.
"""

from __future__ import annotations

import polars as pl

from pipeline.dedup import KEY_COLUMNS

_U64 = 1 << 64


def split_hash(seed: int) -> pl.Expr:
    return pl.struct(*KEY_COLUMNS).hash(seed)


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
