"""Duplicate detection for conversations: a 128-bit key over the normalized text of every turn.

Two conversations are duplicates when their turns match after folding the trivial variants
found in scraped chat data: letter case, runs of whitespace, runs of punctuation/symbols and
the spaces around them ("Hello!!!  World" == "hello ! world" == "hello!world"; but
"Hello? World" differs: which mark it is still counts, as in "x != 0" / "x == 0", "7*8" /
"7/8", "-5" / "5"), and a turn's final punctuation mark ("What is X?" == "what is x" ==
"What is X." and "Hi :)" == "hi", but "ok 👍" keeps its emoji, a symbol). A review found copies
that differ only in how a turn ends, the commonest variant of all, on both sides of the split:
dropping every punctuation mark fixed that but merged "-5" with "5", so only the last one goes.
Consequences: a turn of punctuation alone ("?", "...") keys as empty; a mark inside a turn that
one copy lacks ("Hello, world" / "Hello world") still counts. Context (persona) is not part of
the key, so the same dialogue under two personas counts once: the split is keyed on this too,
and a dialogue must never sit in train and val at once.

Before that, invisible and compatibility variants are folded, since copy-paste and scrapers
add them without changing what a reader sees: format characters (Unicode category Cf: zero
width space/joiners, word joiner, BOM, soft hyphen, bidi marks) and the other default-ignorable
code points (variation selectors, such as the U+FE0F a phone adds after "❤", which is category
Mn, not Cf; the Hangul fillers) are dropped, then NFKC maps
compatibility forms to their plain letters ("ｈｅｌｌｏ" -> "hello", "ﬁ" -> "fi", "x²" -> "x2",
"！" -> "!", NBSP -> space, "…" -> "..."). Both come before the case, space and punctuation
rules, so that what NFKC produces is folded like typed text ("wait…" == "wait..." == "wait").
NFKC keeps accents ("café" != "cafe"). Dropping Cf also merges the rare texts where one is
meant (a Persian ZWNJ, a ZWJ emoji sequence vs its parts); for a dedup key that is the right
side to err on. Only the key is folded: the stored text keeps every character (normalize made
it NFC). Typographic quotes are not compatibility forms, yet phones and word processors put
them in for the typed ones: "I’m" and "I'm", “hi” and "hi" would be two keys, and the same line
could sit in train and val. The key maps them (U+2018-U+201F, the primes and the modifier apostrophe) to ' and ".
Dashes likewise ("wait -- what" typed, "wait — what" after smart punctuation): U+2010-U+2015 and the
minus sign key as "-".

Case is folded with `to_lowercase`, which is not full Unicode case folding (polars has no
casefold, and a Python UDF would cost far more than the rest of the key). The one difference
that matters in Latin text, "ß"/"ẞ" (casefold: "ss", so "Straße" == "STRASSE"), is mapped
before lowering; what is left (e.g. Cherokee, some Greek final forms) is rare in chat data.

The key is built without holding any text per conversation: each row hashes
(turn, role, normalized text) and a conversation XORs its rows' hashes (turn numbers make the
XOR order-sensitive; the build only keys conversations whose turns are unique). Two
independent 64-bit seeds give a 128-bit key, so an accidental collision on a corpus of 10^8
conversations has odds around 10^-23. polars guarantees `hash` is stable within one polars
version (pinned in pyproject.toml), which is what makes the build reproducible.
"""

from __future__ import annotations

import polars as pl

from pipeline.invisible import INVISIBLE_CHARS

# Fixed seeds: the dedup key must not move when params change (only the split seed may).
KEY_SEEDS = (0x6E61_6E6F, 0x6368_6174)
KEY_COLUMNS = ("k1", "k2")

# Whitespace runs (and any whitespace but a plain space) -> one space. Matching only what
# changes keeps the regex cheap: most text has single spaces only.
_SPACE_RUN = r"\s\s+|[^\S ]"
# A punctuation/symbol mark with the marks and spaces after it and one space before it -> the
# first mark ("hi , there!! !" -> "hi,there!").
_PUNCT_RUN = r" ?([\p{P}\p{S}])[ \p{P}\p{S}]*"
# A punctuation mark that ends the turn, once _PUNCT_RUN has made its run one mark.
_FINAL_PUNCT = r"\p{P}$"
# Typed variants that NFKC keeps: typographic quotes and primes -> ASCII quotes, dashes -> "-"
# (NFKC has made U+2011 the hyphen U+2010); sharp s -> "ss"
# (what casefold gives). All are non-ASCII, so they fold in the non-ASCII branch only.
TYPED_VARIANTS = {
    # NFKC has made a double prime (U+2033, typed for inches) two primes: it reads as ", and it comes
    # first because the replacement takes the leftmost match, the first listed among those.
    "\u2032\u2032": '"',
    # U+02BC, the modifier letter apostrophe, is what some keyboards type for "it's"
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u02bc", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
    # Dashes and the minus sign: smart punctuation turns a typed "--" into an em dash and word
    # processors a spaced "-" into an en dash (a run of marks keys as its first, so "--" is "-").
    **dict.fromkeys("\u2010\u2012\u2013\u2014\u2015\u2212", "-"),
    "\u00df": "ss",
    "\u1e9e": "ss",
}


def fold_text(text: pl.Expr) -> pl.Expr:
    """The text as the dedup key sees it: format and ignorable characters dropped, NFKC,
    typographic quotes, dashes and sharp s mapped, lower case, whitespace and punctuation runs
    folded, a final punctuation mark dropped."""
    # Every Cf or ignorable character, NFKC change and typed variant is non-ASCII, and NFKC
    # costs more than the rest of the key: ASCII rows (len_bytes == len_chars, the cheap test) skip them.
    compat = (
        text.str.replace_all(INVISIBLE_CHARS, "")
        .str.normalize("NFKC")
        .str.replace_many(list(TYPED_VARIANTS), list(TYPED_VARIANTS.values()), leftmost=True)
    )
    plain = pl.when(text.str.len_bytes() != text.str.len_chars()).then(compat).otherwise(text)
    return (
        plain.str.to_lowercase()
        .str.replace_all(_SPACE_RUN, " ")
        .str.replace_all(_PUNCT_RUN, "$1")
        .str.strip_chars()
        .str.replace(_FINAL_PUNCT, "")
    )


def folded_text(text: str = "text") -> pl.Expr:
    """Column `_folded`: compute it once; `row_key_hashes` hashes it with each seed."""
    return fold_text(pl.col(text)).alias("_folded")


def row_key_hashes() -> list[pl.Expr]:
    """Per-row hashes `_h1`, `_h2` of (turn, role, `_folded`), one per key seed."""
    row = pl.struct(pl.col("turn"), pl.col("role"), pl.col("_folded"))
    return [row.hash(seed).alias(f"_h{i + 1}") for i, seed in enumerate(KEY_SEEDS)]


def text_hash() -> pl.Expr:
    """Column `_th`: a 64-bit hash of `_folded` alone, with no turn number or role, so that one text
    hashes alike wherever it sits in any conversation (the split's leak audit, pipeline.split)."""
    return pl.col("_folded").hash(KEY_SEEDS[0]).alias("_th")


def conversation_key_aggs() -> list[pl.Expr]:
    """Aggregations (inside a group_by on the conversation) giving the key columns k1, k2."""
    return [pl.col(f"_h{i + 1}").bitwise_xor().alias(name) for i, name in enumerate(KEY_COLUMNS)]


def mark_duplicates(candidates: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """Add `duplicate` (bool) and `first_rank` (rank of the kept copy) to the candidate rows.

    The first conversation of each key in `order` (a deterministic sort, e.g. source rank then
    conversation_id) is kept; every later one is a duplicate, whichever source it comes from.
    """
    ordered = candidates.sort(order)
    return ordered.with_columns(
        duplicate=~pl.struct(*KEY_COLUMNS).is_first_distinct(),
        first_rank=pl.col("rank").first().over(list(KEY_COLUMNS)),
    )
