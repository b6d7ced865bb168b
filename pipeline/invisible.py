"""What counts as no text: one definition for every stage that asks (the turn table's `text_present`
rule and its context, pipeline.schema and normalize; the dedup key, pipeline.dedup; tokenize's check
of a dataset it did not build, pipeline.encode) and for what chat and serve take as an empty message
(`blank_text`, so a message that is no turn in training opens none there). Polars is imported only
by `blank`: serve and chat run without it, and tokenize imports this module without pandera."""

from __future__ import annotations

from typing import TYPE_CHECKING

import regex  # tiktoken's own dependency; Python's `re` has no \p{Default_Ignorable_Code_Point}

if TYPE_CHECKING:
    import polars as pl

# Invisible format characters (zero width space/joiners, word joiner, BOM, soft hyphen, bidi
# marks, ...) and the rest of Unicode's default-ignorable code points. Those are mostly variation
# selectors (U+FE0E/FE0F after an emoji, an ideographic variant), which only pick a glyph, and
# phones add U+FE0F on their own: "I love you ❤️" and "I love you ❤" were two
# keys, so the copies could sit in train and val. The rest are blanks such as the Hangul fillers
# (U+115F, U+1160, U+3164, U+FFA0: letters, category Lo, that draw nothing). The one definition of
# an invisible character, for the dedup key (pipeline.dedup drops them) and for `blank` below.
INVISIBLE_CHARS = r"[\p{Cf}\p{Default_Ignorable_Code_Point}]"


def blank_text(text: str) -> bool:
    """`blank` for one string: whitespace or invisible characters alone (tests check the two agree
    on every code point). An assistant message of only U+3164 opened a bot turn in serve while
    normalize dropped the same row and merged the messages around it."""
    return _BLANK.fullmatch(text) is not None


# Unicode's White_Space, as polars' strip_chars has it: str.strip also strips U+001C..U+001F.
_BLANK = regex.compile(rf"(?:{INVISIBLE_CHARS}|\p{{White_Space}})*")


def visible(text: str) -> str:
    """`text` without its invisible characters (INVISIBLE_CHARS), as the dedup key and the licence
    readers (licencetables, licencetext) read it: chat sent "/reset" with a zero-width space (U+200B)
    or a word joiner (U+2060) pasted along to the model as a message."""
    return _INVISIBLE.sub("", text)


_INVISIBLE = regex.compile(INVISIBLE_CHARS)


def blank(text: pl.Expr) -> pl.Expr:
    """True where `text` holds nothing a reader sees: null, whitespace, or invisible characters alone
    (INVISIBLE_CHARS: format characters such as a zero-width space, which strip keeps, and the other
    default-ignorable code points, such as the Hangul filler U+3164, a letter that draws nothing).
    A bot turn of them would teach an invisible reply. U+2800 (the Braille blank) is no such
    character: a symbol of Braille text, kept as the dedup key keeps it."""
    import polars as pl

    # Only non-ASCII text can hold an invisible character: ASCII rows skip the regex (the
    # byte/char comparison is the cheap test).
    non_ascii = text.str.len_bytes() != text.str.len_chars()
    return (
        text.is_null()
        | (text.str.strip_chars() == "")
        | pl.when(non_ascii)
        .then(text.str.replace_all(INVISIBLE_CHARS, "").str.strip_chars() == "")
        .otherwise(False)
    )
