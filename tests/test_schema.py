"""The turn-table contract: every rule catches its own violation, in the pandera gate and in
the expressions the stages quarantine with (pipeline/schema.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandera.errors
import polars as pl
import pytest

from pipeline.schema import (
    QUARANTINE_SCHEMA,
    TURN_COLUMNS,
    TURN_SCHEMA,
    commercial_ok,
    frame_rules,
    licence_known,
    row_violations,
    validate,
)
from pipeline.sources.licences import commercial_eligible, is_unknown


def turns(*conversations: tuple[str, list[tuple[str, str]]], **overrides) -> pl.DataFrame:
    """A valid turn table: (conversation_id, [(role, text), ...]) each, turns numbered 0..n-1."""
    rows = [
        {
            "conversation_id": cid,
            "turn": i,
            "role": role,
            "text": text,
            "source": "chitchat",
            "licence": "MIT",
            "commercial": True,
            "context": None,
        }
        for cid, pairs in conversations
        for i, (role, text) in enumerate(pairs)
    ]
    return pl.DataFrame(rows, schema=TURN_SCHEMA).with_columns(**{k: pl.lit(v) for k, v in overrides.items()})


def good() -> pl.DataFrame:
    return turns(
        ("c:1", [("human", "Hi there"), ("bot", "Hello!\nHow are you?")]),
        ("c:2", [("human", "a"), ("bot", "b"), ("human", "c"), ("bot", "d\twith tab")]),
    )


def set_cell(df: pl.DataFrame, row: int, column: str, value) -> pl.DataFrame:
    values = df[column].to_list()
    values[row] = value
    return df.with_columns(pl.Series(column, values, dtype=TURN_SCHEMA[column]))


def failed_checks(df: pl.DataFrame) -> set[str]:
    with pytest.raises(pandera.errors.SchemaErrors) as info:
        validate(df)
    return {str(c) for c in info.value.failure_cases["check"].to_list()}


def first_row_violation(df: pl.DataFrame, max_chars: int = 16_000) -> list[str | None]:
    checks = row_violations(max_chars)
    first = pl.coalesce([pl.when(bad.fill_null(False)).then(pl.lit(name)) for name, bad, _ in checks])
    return df.select(first.alias("check"))["check"].to_list()


def test_valid_table_passes_every_rule():
    df = good()
    assert validate(df).height == df.height
    assert first_row_violation(df) == [None] * df.height
    per_conv = df.group_by("conversation_id").agg([ok.alias(name) for name, ok, _ in frame_rules()])
    assert per_conv.drop("conversation_id").to_numpy().all()


# (check, column, value, also-named pandera check): one cell of row 1 breaks exactly that rule.
ROW_CASES = [
    ("conversation_id_present", "conversation_id", "", "str_length"),
    ("turn_valid", "turn", -1, "greater_than_or_equal_to"),
    ("role_valid", "role", "system", "isin"),
    ("text_present", "text", "   ", None),
    ("text_length", "text", "x" * 16_001, "str_length"),
    ("text_no_control_chars", "text", "bell\x07", "text_no_control_chars"),
    ("text_stripped", "text", " padded ", "text_stripped"),
    ("text_nfc", "text", "cafe\u0301", "text_nfc"),
    ("context_length", "context", "p" * 16_001, "context_length"),
    ("context_no_control_chars", "context", "You are \x1b[31mred", "context_no_control_chars"),
    ("source_present", "source", "", "str_length"),
    ("licence_present", "licence", "", "str_length"),
    ("commercial_present", "commercial", None, "not_nullable"),
]


@pytest.mark.parametrize(
    ("check", "column", "value", "pandera_check"), ROW_CASES, ids=[c[0] for c in ROW_CASES]
)
def test_each_row_rule_catches_its_violation(check, column, value, pandera_check):
    df = set_cell(good(), 1, column, value)
    flagged = first_row_violation(df)
    assert flagged[1] == check
    assert [f for i, f in enumerate(flagged) if i != 1] == [None] * (df.height - 1)
    if pandera_check is not None:
        assert any(pandera_check in name for name in failed_checks(df)), failed_checks(df)


@pytest.mark.parametrize("text", ["\u200b", " \u200b\u2060 ", "\ufeff\u00ad", "\u200d\n\u200c"])
def test_text_of_invisible_characters_only_is_empty(text):
    """Zero-width and other format characters are not whitespace (strip keeps them), yet a turn of
    only them is no text; one visible character beside them is."""
    df = set_cell(good(), 1, "text", text)
    assert first_row_violation(df)[1] == "text_present"
    assert first_row_violation(set_cell(good(), 1, "text", "ok\u200b"))[1] is None


# The Hangul fillers (U+115F, U+1160, U+3164, U+FFA0) are letters (Lo), not format characters, yet
# draw nothing: default-ignorable code points, as a variation selector (Mn) and the combining
# grapheme joiner are. The dedup key already dropped them; the empty-text rule kept them as a reply.
@pytest.mark.parametrize(
    "text", ["\u3164", "\u115f\u1160", " \uffa0 ", "\ufe0f", "\u034f\u200b", "\u3164\n\u3164"]
)
def test_text_of_default_ignorable_characters_only_is_empty(text):
    df = set_cell(good(), 1, "text", text)
    assert first_row_violation(df)[1] == "text_present"
    assert first_row_violation(set_cell(good(), 1, "text", "ok\u3164"))[1] is None


def test_blank_and_the_dedup_key_share_one_definition_of_invisible():
    """What `blank` calls invisible is what the dedup key drops: a text is blank exactly when its
    key's folded text holds nothing but space (checked over every assigned non-ASCII code point below
    U+10000 but the punctuation the key drops at a turn's end, and what it maps to punctuation)."""
    import unicodedata

    from pipeline.dedup import TYPED_VARIANTS, fold_text
    from pipeline.invisible import blank

    chars = [chr(c) for c in range(0x80, 0x10000) if unicodedata.category(chr(c)) not in ("Cs", "Cn")]
    chars = [
        c
        for c in chars
        if c not in TYPED_VARIANTS
        and unicodedata.category(unicodedata.normalize("NFKC", c)[:1] or "a")[0] not in "PS"
    ]
    df = pl.DataFrame({"text": chars}).with_columns(
        blank=blank(pl.col("text")), folded=fold_text(pl.col("text")).str.strip_chars() == ""
    )
    # NFKC maps some visible characters to a space (U+00A0, U+2000...): whitespace, blank both ways.
    differ = df.filter(pl.col("blank") != pl.col("folded"))
    assert differ.is_empty(), [f"U+{ord(c):04X}" for c in differ.get_column("text").to_list()[:20]]


def test_every_row_rule_has_a_case():
    assert {name for name, _, _ in row_violations()} == {c[0] for c in ROW_CASES}


# (check, conversation): a conversation that breaks that frame rule and no earlier one.
FRAME_CASES = [
    ("turn_unique", [(0, "human"), (0, "human"), (1, "bot")]),
    ("turns_contiguous", [(0, "human"), (1, "bot"), (3, "bot")]),
    ("first_turn_human", [(0, "bot"), (1, "human")]),
    ("roles_alternate", [(0, "human"), (1, "human"), (2, "bot")]),
    ("has_bot_turn", [(0, "human")]),
    ("conversation_consistent", None),  # built below: context differs between turns
]


def frame_case(check: str, spec) -> pl.DataFrame:
    base = good()
    if spec is None:
        return set_cell(base, 1, "context", "a persona only turn 1 has")
    rows = [
        {
            "conversation_id": "bad:1",
            "turn": t,
            "role": role,
            "text": f"text {i}",
            "source": "chitchat",
            "licence": "MIT",
            "commercial": True,
            "context": None,
        }
        for i, (t, role) in enumerate(spec)
    ]
    return pl.concat([base, pl.DataFrame(rows, schema=TURN_SCHEMA)])


@pytest.mark.parametrize(("check", "spec"), FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
def test_each_frame_rule_catches_its_violation(check, spec):
    df = frame_case(check, spec)
    assert first_row_violation(df) == [None] * df.height  # rows are fine one by one
    per_conv = df.group_by("conversation_id").agg([ok.alias(name) for name, ok, _ in frame_rules()])
    broken = per_conv.filter(~pl.all_horizontal(pl.exclude("conversation_id")))
    assert broken.height == 1
    failing = [name for name, _, _ in frame_rules() if not broken[name][0]]
    assert failing[0] == check  # reported under this check (priority order)
    assert check in failed_checks(df)


def test_frame_rules_cover_every_case():
    assert [name for name, _, _ in frame_rules()] == [c[0] for c in FRAME_CASES]


def test_duplicate_conversation_turn_fails_uniqueness():
    df = pl.concat([good(), good().head(1)])
    assert {"turn_unique"} <= failed_checks(df)


def test_validate_rejects_extra_or_missing_columns_and_wrong_types():
    with pytest.raises(pandera.errors.SchemaErrors):
        validate(good().with_columns(pl.col("turn").cast(pl.Int64)))
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        validate(good().drop("context"))


def test_quarantine_schema_extends_turn_schema():
    assert list(QUARANTINE_SCHEMA)[: len(TURN_COLUMNS)] == TURN_COLUMNS
    assert {"check", "reason", "origin"} <= set(QUARANTINE_SCHEMA)


def test_commercial_ok_needs_flag_and_known_licence():
    df = pl.DataFrame(
        {
            "licence": ["MIT", "unknown", "Unknown ", None, "", "CC-BY-NC-4.0", "Apache-2.0"],
            "commercial": [True, True, True, True, True, False, None],
        }
    )
    assert df.select(licence_known())["licence"].to_list() == [True, False, False, False, False, True, True]
    assert df.select(commercial_ok())["commercial"].to_list() == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    "placeholder", ["N/A", "n/a", "NA", "?", "-", "TBD", "todo", "Unspecified", " not specified "]
)
def test_placeholder_licences_are_unknown(placeholder):
    # a form's placeholder is not a licence name: with a reason it must still stay out of the
    # commercial variant, as `unknown` does (it had passed as an unlisted licence)
    assert is_unknown(placeholder)
    assert not commercial_eligible(True, placeholder)
    df = pl.DataFrame({"licence": [placeholder], "commercial": [True]})
    assert df.select(licence_known())["licence"].to_list() == [False]
    assert df.select(commercial_ok())["commercial"].to_list() == [False]


def test_blank_text_is_blank_for_one_string():
    """chat and serve ask `blank_text` (no polars there) what normalize asks `blank`: the two agree on
    every code point, alone and beside a space (str.strip alone also strips U+001C..U+001F)."""
    from pipeline.invisible import blank, blank_text

    texts = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    texts += [f" {t}\t" for t in texts[:0x3200]] + ["", "\u3164 \u200b", "x\u3164"]
    expected = pl.select(blank(pl.Series(texts))).to_series().to_list()
    differ = [f"{t!r}" for t, b in zip(texts, expected, strict=True) if blank_text(t) != b]
    assert not differ, differ[:20]


def test_the_registry_stage_does_not_import_pandera() -> None:
    """pandera (with pandas, ~0.5 s) is imported when a table is first validated, not with the
    rules: the registry stage, which every `dvc repro` runs, reads the limits of pipeline.schema
    (trainchoice -> buildinputs) and never validates."""
    code = "import sys, stages.registry, pipeline.schema\nprint('pandera' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_the_gate_is_one_schema_built_on_first_use() -> None:
    from pipeline import schema

    assert schema.TurnSchema is schema.turn_schema() and schema.TurnSchema.name == "TurnSchema"
    with pytest.raises(AttributeError, match="no attribute 'TurnSchemas'"):
        _ = schema.TurnSchemas
