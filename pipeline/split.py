"""Seeded, deterministic train/val split and output order, keyed on content (never on ids).

The split is keyed on a conversation's *opening*: its first turn when that holds at least
`build.split_opening_chars` characters of folded text (as the dedup key folds it), else its first
exchange (human turn + bot turn) when those two reach it; else, for a conversation of one exchange
(a prompt and its answer), its prompt; else the whole conversation. Keying on
content, not the conversation id, is what makes a leak impossible: a conversation and every
duplicate of it have the same opening, so even if dedup were off they could not straddle the
split. Keying on the opening, not the whole conversation, also keeps together what dedup rightly
keeps twice: a conversation that is the start of another (a thread scraped before and after more
replies, Ubuntu v2's context rows cut from one dialogue at several points) and dialogues on one
long prompt (arena battles), whose shared turns would otherwise sit in train and val at once, and
short answers to one short prompt (chatterbot's answer variants; one prompt in two of its files):
keyed whole, 25 of the default data's 87 one-exchange val conversations had their prompt in a train
one with another answer.

The character floor is what stops the opening from grouping unrelated dialogues: on turns alone,
every chat that starts "hello" / "hi" would share a split (in the default data, 187 conversations
start with a two-turn greeting that is also a conversation of its own). The prompt alone keys only a
conversation that is one exchange under the floor: the short answers to "hello" alone are one item
(65 one-exchange conversations of the default data open with it), the longer chats that open with it
are still drawn one by one. Known gaps: a shared start shorter than the floor in a longer chat, a
short prompt whose answers take its exchange past the floor, or a chat whose first exchange is short
but whose later turns match (many short IRC lines), can still sit on both sides. The build measures
what they leave (`LeakAudit` below): each variant's stats.json `totals.leak_audit`, its metrics.json
and its dataset card give how many val turns of at least the same floor of folded characters are
also a turn in train (text alone, at any turn and role), and their share: in the default data 0 of
1,782 val turns at the floor of 100 (on the same split, 3 of 3,579 at 50 and 57 of 5,245 at 20:
small talk such as "What kind of music do you like?"). The opening stops at the first exchange for
memory: on the 1 GB benchmark (`python -m benchmarks.build`) it raised the build's peak RSS from
1.50 to 1.77 GB, an opening of up to four turns (two 64-bit keys) to 2.23 GB, and a sort inside the
group_by (the way to look at any number of turns) made the plan an in-memory one: 2.54 GB.

Two hashes with different seeds are used: one decides the split (over the opening), the other
orders conversations (a seeded shuffle, over the whole dedup key) and picks which ones a
per-source cap keeps, so a cap never favours either split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from pipeline import dedup
from pipeline.dedup import KEY_COLUMNS

OPENING_COLUMN = "opening"
_U64 = 1 << 64


def opening_key_agg(min_chars: int) -> pl.Expr:
    """An aggregation (inside the group_by on the conversation, beside dedup.conversation_key_aggs)
    giving the opening's 64-bit key: the XOR of dedup's row hashes `_h1` over turn 0, or turns 0-1,
    the first that holds `min_chars` folded characters (`_fchars` per row); else, for a conversation
    of one exchange (a prompt and its answer), over turn 0, its prompt; else over every turn.
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
        # Short answers to one short prompt (chatterbot's answer variants, "What is your location" in
        # two files) are one item: keyed whole, 25 of the 87 one-exchange val conversations had their
        # prompt in a train one. Only where the exchange is under the floor, so nothing that shared a
        # key before is parted (a one-exchange key under the floor was its whole, duplicate, text),
        # and longer chats that open with the same greeting are still drawn one by one.
        .when(turn.max() == 1)
        .then(first_turn.then(h).otherwise(zero).bitwise_xor())
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


def assign_split(kept: pl.DataFrame, val_fraction: float, others: Sequence[pl.Series] = ()) -> pl.DataFrame:
    """Add `split` ("train" | "val") from the `split_u` column.

    On a tiny corpus the hash share can leave val empty; then the conversation with the
    smallest split hash moves to val (deterministic, and still keyed on the dedup key). It can
    as well leave train empty (a large val_fraction), and training needs a conversation: then the
    one with the largest split hash moves to train. A corpus of one conversation keeps it in train.

    `others` are the `split_u` of the other variants' kept conversations. The moves made for them
    are made here too, so that a conversation held by both variants sits in the same split in
    both: moved for the commercial variant alone, a conversation of the full variant's
    train was the commercial variant's val, and a run trained on one variant and validated on the
    other had seen it (see `split_moves`).
    """
    threshold = val_threshold(val_fraction)
    to_train, to_val = split_moves([kept["split_u"], *others], val_fraction)
    u = pl.col("split_u")
    moved_train, moved_val = (pl.Series(m, dtype=pl.UInt64).implode() for m in (to_train, to_val))
    is_val = ((u < pl.lit(threshold, dtype=pl.UInt64)) & ~u.is_in(moved_train)) | u.is_in(moved_val)
    return kept.with_columns(split=pl.when(is_val).then(pl.lit("val")).otherwise(pl.lit("train")))


def split_moves(variants: Sequence[pl.Series], val_fraction: float) -> tuple[list[int], list[int]]:
    """The split hashes that leave their hash's split (to train, to val), given each variant's kept
    `split_u`, the variant being built first. A conversation two variants share gets the same moves
    whichever of them is built: the moves to train do not depend on the order, and those to val
    differ at most by one the variant built first alone holds (its own pick, made before the other's
    pick, which gave it a val too, was known).

    Per variant: one conversation alone goes to train; otherwise (val_fraction > 0) a variant with no
    train gets its largest hash moved to train, then one with no val (after those moves and the moves
    to val made for the variants before it) its smallest hash not moved to train moved to val. A
    variant whose only val candidate another variant moved to train keeps an empty val (two
    conversations between two variants that need them on opposite sides cannot be split both ways).
    """
    threshold = val_threshold(val_fraction)
    sets = [s.drop_nulls().unique() for s in variants]
    to_train: set[int] = set()
    for s in sets:
        if s.len() == 1:
            to_train.add(int(s[0]))
        elif val_fraction > 0 and s.len() >= 2 and not (s >= threshold).any():
            to_train.add(int(s.max()))  # type: ignore[arg-type]
    to_val: set[int] = set()
    for s in sets:
        if val_fraction <= 0 or s.len() < 2:
            continue
        left = s.filter(~s.is_in(pl.Series(sorted(to_train), dtype=pl.UInt64).implode()))
        moved = s.is_in(pl.Series(sorted(to_val), dtype=pl.UInt64).implode()).any()
        if left.len() and not ((left < threshold).any() or moved):
            to_val.add(int(left.min()))  # type: ignore[arg-type]
    return sorted(to_train), sorted(to_val)


def apply_caps(kept: pl.DataFrame, caps: dict[int, int]) -> pl.DataFrame:
    """Add `capped` (bool): past the per-source character cap, walking in `order_h` order.

    `caps` maps a source rank to its cap in characters; ranks without a cap keep everything.
    """
    if not caps:
        return kept.with_columns(capped=pl.lit(False))
    cap = pl.col("rank").replace_strict(caps, default=None, return_dtype=pl.Int64)
    running = pl.col("chars").cum_sum().over("rank", order_by=["order_h", "conversation_id"])
    return kept.with_columns(capped=(cap.is_not_null() & (running > cap)).fill_null(False))


# ----------------------------------------------------------------------------- leak audit

_AUDIT_SCHEMA = {"_th": pl.UInt64(), "chars": pl.UInt64()}


def audit_floor(min_chars: int) -> int:
    """The leak audit's floor of folded characters: the split's own (`split_opening_chars`), and at
    least 1, so a floor of 0 audits every turn with any folded text. A turn that folds to nothing
    (punctuation alone, "?", "...") is left out at any floor: every such turn would match every
    other, and it carries no text to leak."""
    return max(int(min_chars), 1)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


class LeakAudit:
    """How much val text also occurs as a turn in train: the split's known gaps, measured.

    A val turn counts when it holds at least `audit_floor` folded characters (text folded as the
    dedup key folds it, pipeline.dedup) and its folded text is also the text of a train turn,
    whatever turn number, role or conversation holds it there. Shorter turns are left out because
    greetings and one-word replies recur in any corpus, and below the split's own floor a shared
    text is what the split allows by design.

    The write pass hands it each part's kept rows (`add`); it keeps no text: per part, the 64-bit
    hashes (dedup.text_hash) of the train turns that reach the floor, each once, and those of the
    val turns with their characters. `result` semi-joins val against train. A hash collision can
    only add a false match, at odds around n_val * n_train / 2**64 for the whole corpus.

    Cost, on the 1 GB benchmark (`python -m benchmarks.build`, 6.9M turns, 2 shared cores): the
    fold is done again on the kept turns (the plan pass keeps no row), 3.4 s of a 29-31 s build
    (26-29 s without it); the hashes held (8 bytes a long train turn, 16 a long val turn) stay
    well under the plan's peak, which sets the build's (1.6-1.75 GB either way).
    """

    def __init__(self, min_chars: int) -> None:
        self.floor = audit_floor(min_chars)
        self._train: list[pl.DataFrame] = []
        self._val: list[pl.DataFrame] = []

    def add(self, rows: pl.DataFrame) -> None:
        """Take the kept turn rows (columns `text`, `split`) of one part of the write pass."""
        text = pl.col("text")
        long = (
            rows.lazy()
            .select("split", "text")
            # Folding ASCII text never lengthens it, so short ASCII turns are dropped before the fold
            # (the costly part); other text can grow under NFKC ("ﬁ" -> "fi") and is folded to see.
            .filter((text.str.len_chars() >= self.floor) | (text.str.len_bytes() != text.str.len_chars()))
            .with_columns(dedup.folded_text())
            .filter(pl.col("_folded").str.len_chars() >= self.floor)
            .select("split", dedup.text_hash(), chars=text.str.len_chars().cast(pl.UInt64))
            .collect()
        )
        self._train.append(long.filter(pl.col("split") == "train").select(pl.col("_th").unique()))
        self._val.append(long.filter(pl.col("split") == "val").select("_th", "chars"))

    def result(self) -> dict[str, Any]:
        """stats.json `totals.leak_audit`: the floor, val turns and characters checked, and how many
        of them (and what share) also occur as a train turn."""
        val = pl.concat(self._val) if self._val else pl.DataFrame(schema=_AUDIT_SCHEMA)
        # The semi-join, built on the small side: each part's train hashes are probed against the
        # val hashes (a twentieth of them at the default val_fraction) and only the matches kept,
        # so the train hashes are never concatenated nor put in a hash table.
        wanted = val["_th"].unique()
        matched = [t.filter(pl.col("_th").is_in(wanted.implode())) for t in self._train]
        in_train = pl.concat(matched)["_th"] if matched else wanted.clear()
        hit = val.filter(pl.col("_th").is_in(in_train.implode()))
        turns, chars = val.height, int(val["chars"].sum() or 0)
        hit_turns, hit_chars = hit.height, int(hit["chars"].sum() or 0)
        return {
            "min_chars": self.floor,
            "val_turns_checked": turns,
            "val_turns_in_train": hit_turns,
            "val_turns_in_train_share": _share(hit_turns, turns),
            "val_characters_checked": chars,
            "val_characters_in_train": hit_chars,
            "val_characters_in_train_share": _share(hit_chars, chars),
        }
