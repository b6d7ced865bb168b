"""The dedup key's text folding (pipeline/dedup.py): invisible format characters and Unicode
compatibility forms fold away, while every difference a reader would see still counts.

The build-level check (twins differing only by such characters are one conversation, counted
as a duplicate) is tests/test_build.py::test_dedup_folds_invisible_and_compatibility_forms_but_keeps_the_text.
"""

from __future__ import annotations

import random
import unicodedata

import polars as pl
import pytest
from test_build import py_fold as py_fold_plain

from pipeline import dedup
from pipeline.dedup import fold_text


def fold(texts: list[str | None]) -> list[str | None]:
    return pl.DataFrame({"t": texts}, schema={"t": pl.String}).select(fold_text(pl.col("t")))["t"].to_list()


def row_keys(texts: list[str]) -> list[tuple[int, int]]:
    """(`_h1`, `_h2`) of each text as a turn-0 human row: what the conversation key XORs."""
    rows = pl.DataFrame(
        {"turn": [0] * len(texts), "role": ["human"] * len(texts), "text": texts},
        schema_overrides={"turn": pl.Int32},
    )
    hashed = rows.with_columns(dedup.folded_text()).with_columns(*dedup.row_key_hashes())
    return list(hashed.select("_h1", "_h2").iter_rows())


def py_fold(text: str) -> str:
    """An independent (pure Python) statement of the key's folding: drop Cf and ignorables, NFKC,
    then the case, whitespace and punctuation folding that tests/test_build.py states for plain text."""
    visible = "".join(ch for ch in text if unicodedata.category(ch) != "Cf" and not is_ignorable(ch))
    return py_fold_plain(unicodedata.normalize("NFKC", visible).translate(TYPED))


# Unicode's Default_Ignorable_Code_Point, written out (Python's unicodedata has no lookup).
IGNORABLE = [
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
]  # fmt: skip


def is_ignorable(ch: str) -> bool:
    return any(low <= ord(ch) <= high for low, high in IGNORABLE)


# The typed variants the key maps, written out here rather than read from dedup.TYPED_VARIANTS.
TYPED = str.maketrans(
    {
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "′": "'",
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "ß": "ss",
        "ẞ": "ss",
        "‐": "-",
        "‒": "-",
        "–": "-",
        "—": "-",
        "―": "-",
        "−": "-",
    }
)


VARIANTS = {
    "plain": "Hello fine world!",
    "fullwidth": "ｈｅｌｌｏ ｆｉｎｅ ｗｏｒｌｄ！",
    "ligature": "Hello \ufb01ne world!",
    "nbsp": "Hello\u00a0fine\u00a0world!",
    "ideographic space": "Hello\u3000fine world !",
    "zero-width space": "Hel\u200blo fine\u200b world!",
    "zwnj / zwj": "Hel\u200clo fi\u200dne world!",
    "word joiner": "Hello\u2060 fine world\u2060!",
    "soft hyphen": "Hel\u00adlo fine world!",
    "bom": "\ufeffHello fine world!",
    "bidi marks": "\u200eHello \u202bfine\u202c world!\u200f",
    "all at once": "\ufeffＨＥＬ\u00adＬＯ\u00a0\ufb01ne\u200b ｗｏｒｌｄ\u2060！！",
}


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "plain"])
def test_invisible_and_compatibility_variants_share_the_key(name):
    text = VARIANTS[name]
    assert fold([text]) == fold([VARIANTS["plain"]]) == ["hello fine world"]
    key, plain_key = row_keys([text, VARIANTS["plain"]])
    assert key == plain_key


def test_superscripts_and_compatibility_punctuation_fold():
    assert fold(["x\u00b2 \u2026 \u2460", "\u212aelvin"]) == ["x2.1", "kelvin"]
    # NFKC runs before the punctuation rule, so its "..." folds like a typed one.
    assert fold(["Wait\u2026", "wait...", "wait .", "wait"]) == ["wait"] * 4


@pytest.mark.parametrize(
    "a, b",
    [
        ("Hello? World", "Hello! World"),  # which mark it is still counts
        # Marks that carry meaning inside a turn (a review of a key that dropped every mark):
        ("if x != 0: return", "if x == 0: return"),
        ("The answer is -5.", "The answer is 5."),
        ("7*8", "7/8"),
        ("ok \U0001f600", "ok \U0001f622"),  # a final symbol (an emoji) is kept
        ("café", "cafe"),  # NFKC keeps accents
        ("naïve", "naive"),
        ("Hello World", "Hello Worl"),
    ],
)
def test_visible_differences_stay_distinct(a, b):
    fa, fb = fold([a, b])
    assert fa != fb
    key_a, key_b = row_keys([a, b])
    assert key_a != key_b


@pytest.mark.parametrize(
    "selected, plain",
    [
        ("I love you \u2764\ufe0f", "I love you \u2764"),  # a phone's emoji presentation of the heart
        ("Done \u2714\ufe0f thanks", "Done \u2714 thanks"),
        ("Step 1\ufe0f\u20e3 first", "Step 1\u20e3 first"),  # a keycap
        ("\u263a\ufe0e see you", "\u263a see you"),  # text presentation
        ("\u845b\U000e0100\u57ce", "\u845b\u57ce"),  # an ideographic variation sequence
        ("hi \u3164", "hi"),  # a Hangul filler, a blank that chat apps let through
        ("re\u034fad", "read"),  # a combining grapheme joiner
    ],
)
def test_variation_selectors_and_other_ignorables_fold_away(selected, plain):
    """A review: a variation selector (Mn, not Cf) only picks a glyph, and phones add U+FE0F after
    an emoji on their own, yet "I love you ❤️" and "I love you ❤" were two keys, so the copies could
    sit in train and val. A different emoji still counts."""
    assert fold([selected]) == fold([plain])
    key, plain_key = row_keys([selected, plain])
    assert key == plain_key
    assert fold(["I love you \u2764\ufe0f"]) != fold(["I love you \U0001f49b\ufe0f"])


@pytest.mark.parametrize(
    "typed, plain",
    [
        ("I’m fine, it’s ‘ok’", "I'm fine, it's 'ok'"),
        ("She said “hi” and „bye‟", 'She said "hi" and "bye"'),
        ("5′ tall", "5' tall"),  # a prime
        ("5′ 11″ tall", "5' 11\" tall"),  # a double prime: NFKC's two primes, read as one "
        ("itʼs", "it's"),  # the modifier letter apostrophe
        ("Straße", "Strasse"),  # casefold's ss, as for "STRASSE"
        ("GROẞ", "gross"),
        # Smart punctuation's em dash for a typed "--", a word processor's en dash for " - ", a minus.
        ("Wait \u2014 what?", "Wait -- what?"),
        ("Wait\u2014what", "wait - what"),
        ("pages 3\u20135", "pages 3-5"),
        ("\u22125 degrees", "-5 degrees"),  # a minus sign; still not "5 degrees"
        ("well\u2011known", "well-known"),  # a non-breaking hyphen
    ],
)
def test_typographic_quotes_dashes_and_sharp_s_share_the_key(typed, plain):
    assert fold([typed]) == fold([plain]) == fold([plain.upper()])
    key, plain_key = row_keys([typed, plain])
    assert key == plain_key


def test_accents_survive_in_either_normal_form():
    # Stored text is NFC (normalize), but the key must not depend on it: NFKC composes.
    assert fold(["Un cafe\u0301", "Un caf\u00e9", "Un cafe"]) == ["un café", "un café", "un cafe"]


def test_null_stays_null_and_ascii_rows_mix_with_non_ascii_rows():
    # The ASCII fast path (when/then) must not shift or mix rows of a mixed column.
    texts = [None, "A  B", "a\u200bb", "ＡＢ!", "plain text", None, "\ufeffx"]
    assert fold(texts) == [None, "a b", "ab", "ab", "plain text", None, "x"]


def test_fold_matches_a_pure_python_reference():
    rng = random.Random(0)
    alphabet = (
        "aB é\t\n!?.,;-'\"€😀  xyZ"  # what the old key folded already
        "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u202a\u202c"  # format characters (Cf)
        "ＡｂＣ！？\u3000\u00a0\ufb01\u00b2\u2026\u0301"  # compatibility forms, a combining accent
        "’“”ßẞ–—‑−"  # typed variants
        "\u2764\ufe0f\ufe0e\u3164\u034f"  # an emoji, variation selectors, a Hangul filler, a CGJ
    )
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(1000)]
    assert fold(samples) == [py_fold(t) for t in samples]


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "What is your favourite thing about city number 0?",
            "What is your favourite thing about city number 0",
        ),
        ("I love the parks in city 0.", "I love the parks in city 0"),
        ("Hello?", "hello!"),
        ("Hi :)", "hi"),
        ("Wait...", "wait"),
    ],
)
def test_a_final_mark_one_copy_lacks_does_not_split_the_key(a, b):
    """A review built 200 pairs that differ by a final "?" or ".": 22 pairs straddled train and val,
    since a run of marks folded to its first mark but a mark's absence did not fold at all."""
    assert fold([a]) == fold([b])
    key_a, key_b = row_keys([a, b])
    assert key_a == key_b
