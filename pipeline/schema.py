"""The turn table contract (docs/contracts.md): one row per turn, validated by pandera.

Every rule is written once, as polars expressions, and used twice:

* `row_violations` (one row at a time) and `frame_rules` (one conversation at a time) let the
  normalize and build stages quarantine a bad row or conversation with the check that failed
  and a readable reason, instead of failing a whole source;
* `TurnSchema` is the pandera schema every written turn table must pass; its checks are built
  from the same expressions, so the quarantine and the gate can never disagree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline import paramcheck
from pipeline.invisible import blank
from pipeline.sources.licences import is_unknown, licence_bar
from pipeline.terminal import CONTROL_CHARS

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandera.polars as pa

ROLES = ("human", "bot")
MAX_TURN_CHARS = 16_000


def max_turn_chars_setting(normalize: Mapping[str, Any]) -> int:
    """params.yaml `normalize.max_turn_chars` (default: the limit), an integer in [1, MAX_TURN_CHARS]:
    the one check of it, for both stages that read it (normalize, and the build, which re-checks
    turns against it). TurnSchema refuses a longer turn, so a larger value cannot be honoured; the
    build took one that normalize refused."""
    value = normalize.get("max_turn_chars", MAX_TURN_CHARS)
    return paramcheck.integer("normalize.max_turn_chars", value, 1, MAX_TURN_CHARS + 1)


TURN_SCHEMA: dict[str, pl.DataType] = {
    "conversation_id": pl.String(),
    "turn": pl.Int32(),
    "role": pl.String(),
    "text": pl.String(),
    "source": pl.String(),
    "licence": pl.String(),
    "commercial": pl.Boolean(),
    "context": pl.String(),
}
TURN_COLUMNS = list(TURN_SCHEMA)

# Quarantine = the turn table's columns (nullable, as read) + why the row was rejected.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    **TURN_SCHEMA,
    "check": pl.String(),
    "reason": pl.String(),
    "origin": pl.String(),  # file:line (or file:record) the row came from
}


# Control characters other than \n and \t (C0, DEL, C1): the ones a terminal would act on.
_CONTROL_CHARS = CONTROL_CHARS
_FIRST_CONTROL_CHAR = re.compile(CONTROL_CHARS)


def empty_turns() -> pl.DataFrame:
    return pl.DataFrame(schema=TURN_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def licence_known(licence: pl.Expr | None = None) -> pl.Expr:
    """True where the licence names something (an SPDX id), not `unknown` / empty / null
    (licences.is_unknown, the very function, once per distinct licence: polars' strip_chars keeps
    U+001C..U+001F, which str.strip drops, and neither drops a zero-width space)."""
    lic = pl.col("licence") if licence is None else licence
    return lic.map_batches(_licences_known, return_dtype=pl.Boolean(), is_elementwise=True).fill_null(False)


def commercial_ok(commercial: pl.Expr | None = None, licence: pl.Expr | None = None) -> pl.Expr:
    """True where a row may train a commercial model: flagged commercial AND a known licence that
    does not forbid it (pipeline.sources.licences.commercial_eligible, the very function).

    A regex cannot read an SPDX expression (`MIT OR CC-BY-NC-4.0` allows commercial use, `MIT AND
    CC-BY-NC-4.0` does not; parentheses nest), so the licence rule runs in Python once per distinct
    licence of the batch: a table holds a handful of them, however many rows."""
    flag = pl.col("commercial") if commercial is None else commercial
    lic = pl.col("licence") if licence is None else licence
    allows = lic.map_batches(_licences_allow, return_dtype=pl.Boolean(), is_elementwise=True)
    return flag.fill_null(False) & allows.fill_null(False)


def _licences_allow(licence: pl.Series) -> pl.Series:
    """Per row: licences.licence_bar finds nothing against the licence (null: False)."""
    return _per_licence(licence, lambda value: licence_bar(value) is None)


def _licences_known(licence: pl.Series) -> pl.Series:
    """Per row: the licence is not a placeholder for "unknown" (null: False)."""
    return _per_licence(licence, lambda value: not is_unknown(value))


def _per_licence(licence: pl.Series, rule: Callable[[str], bool]) -> pl.Series:
    """`rule` of each row's licence, decided once per distinct value (a table holds a handful)."""
    decided = {value: rule(value) for value in licence.unique().drop_nulls().to_list()}
    return licence.replace_strict(decided, default=False, return_dtype=pl.Boolean())


def row_violations(max_chars: int = MAX_TURN_CHARS) -> list[tuple[str, pl.Expr, str]]:
    """(check name, expression true where the row breaks it, readable reason), in priority order.

    A row is reported under the first check it breaks, so later expressions may assume the
    earlier ones hold (e.g. `text_length` runs only on present text).
    """
    text = pl.col("text")
    # Only non-ASCII text can change under NFC: ASCII rows skip the normalisation below (the
    # byte/char comparison is the cheap test).
    non_ascii = text.str.len_bytes() != text.str.len_chars()
    return [
        (
            "conversation_id_present",
            pl.col("conversation_id").is_null() | (pl.col("conversation_id") == ""),
            "conversation_id is missing",
        ),
        ("turn_valid", pl.col("turn").is_null() | (pl.col("turn") < 0), "turn is missing or negative"),
        (
            "role_valid",
            pl.col("role").is_null() | ~pl.col("role").is_in(ROLES),
            "role must be 'human' or 'bot'",
        ),
        (
            "text_present",
            blank(text),
            "text is empty (or only invisible characters)",
        ),
        ("text_length", text.str.len_chars() > max_chars, f"text longer than {max_chars} characters"),
        ("text_no_control_chars", text.str.contains(_CONTROL_CHARS), "text holds control characters"),
        ("text_stripped", text != text.str.strip_chars(), "text has leading or trailing whitespace"),
        (
            "text_nfc",
            pl.when(non_ascii).then(text != text.str.normalize("NFC")).otherwise(False),
            "text is not in Unicode NFC form",
        ),
        # The context (a persona, a system message) is text the model reads too: the same bounds.
        (
            "context_length",
            pl.col("context").str.len_chars().fill_null(0) > max_chars,
            f"context longer than {max_chars} characters",
        ),
        (
            "context_no_control_chars",
            pl.col("context").str.contains(_CONTROL_CHARS).fill_null(False),
            "context holds control characters",
        ),
        ("source_present", pl.col("source").is_null() | (pl.col("source") == ""), "source is missing"),
        ("licence_present", pl.col("licence").is_null() | (pl.col("licence") == ""), "licence is missing"),
        ("commercial_present", pl.col("commercial").is_null(), "commercial flag is missing"),
    ]


# The row rules whose quarantine reason says more than the rule's own words: which character, where.
CONTROL_CHECKS = {"text_no_control_chars": "text", "context_no_control_chars": "context"}


def row_reason(check: str, reason: str) -> str | pl.Expr:
    """The quarantine reason of a row that breaks `check` (`reason`: row_violations' words for it).
    For a control character, the first one found and where: "text holds control characters" left a
    contributor searching a long turn for an invisible character. Per row, in Python: only the rows
    that break the rule are given it, and a source holds few of them."""
    column = CONTROL_CHECKS.get(check)
    if column is None:
        return reason
    return pl.col(column).map_batches(
        lambda values: pl.Series([first_control_char(v, reason) for v in values], dtype=pl.String),
        return_dtype=pl.String,
        is_elementwise=True,
    )


def first_control_char(text: str | None, reason: str) -> str:
    """`reason` and the first control character of `text`, as chat and serve name one they refuse:
    its code point and its (1-based) character position in the text as cleaned (stripped, NFC)."""
    found = _FIRST_CONTROL_CHAR.search(text or "")
    if found is None:  # not a row this rule quarantines: its words alone
        return reason
    return f"{reason} (the first, U+{ord(found.group()):04X}, at character {found.start() + 1})"


def frame_rules() -> list[tuple[str, pl.Expr, str]]:
    """(check name, expression true where a conversation is well formed, readable reason).

    Each expression aggregates over the rows of one conversation, so it works both inside
    `group_by("conversation_id").agg(...)` (the build's quarantine) and with
    `.over("conversation_id")` (the pandera gate). Priority order, like `row_violations`.
    Conversation-wide values (source, licence, commercial, context) are compared through a
    hash so the check stays cheap and streamable on long personas.
    """
    turn, role = pl.col("turn"), pl.col("role")
    expected_role = pl.when(turn % 2 == 0).then(pl.lit("human")).otherwise(pl.lit("bot"))
    conversation_values = pl.struct("source", "licence", "commercial", "context").hash(0)
    return [
        ("turn_unique", turn.n_unique() == pl.len(), "turn numbers repeat within the conversation"),
        (
            "turns_contiguous",
            (turn.min() == 0) & (turn.max() == pl.len().cast(pl.Int64) - 1),
            "turn numbers are not contiguous from 0",
        ),
        ("first_turn_human", ((turn != 0) | (role == "human")).all(), "turn 0 is not a human turn"),
        ("roles_alternate", (role == expected_role).all(), "roles do not alternate human, bot, human, ..."),
        ("has_bot_turn", (role == "bot").any(), "conversation has no bot turn"),
        (
            "conversation_consistent",
            conversation_values.n_unique() == 1,
            "source, licence, commercial or context differ between turns of one conversation",
        ),
    ]


def _frame_check(name: str, ok: pl.Expr) -> pa.Check:
    """A frame rule as a pandera check, broadcast to every row of each conversation (pandera wants a row mask)."""
    import pandera.polars as pa

    return pa.Check(lambda data: data.lazyframe.select(ok.over("conversation_id").alias("ok")), name=name)


def _row_check(name: str, bad: pl.Expr) -> pa.Check:
    import pandera.polars as pa

    return pa.Check(lambda data: data.lazyframe.select((~bad).fill_null(False).alias("ok")), name=name)


# Row rules that the column definitions below do not already express.
_EXTRA_ROW_CHECKS = (
    "text_no_control_chars",
    "text_stripped",
    "text_nfc",
    "context_length",
    "context_no_control_chars",
)


@functools.cache
def turn_schema() -> pa.DataFrameSchema:
    """Every rule of the turn table; the last gate before a table is written. Column types and simple
    bounds live on the columns; the other row rules and every frame rule reuse the expressions of
    `row_violations` / `frame_rules`, so the quarantine and the gate cannot drift apart.

    Built on first use, not at import: importing pandera takes ~0.5 s, and the stages that only read
    this module's rules and limits (registry, which every `dvc repro` runs; download; the CLI's
    checks) never validate a table."""
    import pandera.polars as pa

    return pa.DataFrameSchema(
        columns={
            "conversation_id": pa.Column(pl.String, pa.Check.str_length(min_value=1)),
            "turn": pa.Column(pl.Int32, pa.Check.ge(0)),
            "role": pa.Column(pl.String, pa.Check.isin(list(ROLES))),
            "text": pa.Column(pl.String, pa.Check.str_length(min_value=1, max_value=MAX_TURN_CHARS)),
            "source": pa.Column(pl.String, pa.Check.str_length(min_value=1)),
            "licence": pa.Column(pl.String, pa.Check.str_length(min_value=1)),
            "commercial": pa.Column(pl.Boolean),
            "context": pa.Column(pl.String, nullable=True),
        },
        checks=[_row_check(name, bad) for name, bad, _ in row_violations() if name in _EXTRA_ROW_CHECKS]
        + [_frame_check(name, ok) for name, ok, _ in frame_rules()],
        name="TurnSchema",
        strict=True,
        coerce=False,
        unique=["conversation_id", "turn"],
    )


def __getattr__(name: str) -> Any:
    """`pipeline.schema.TurnSchema`, the gate, built (and pandera imported) when first asked for."""
    if name == "TurnSchema":
        return turn_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate(df: pl.DataFrame) -> pl.DataFrame:
    """Raise pandera's SchemaErrors (naming every failed check) unless `df` is a valid turn table."""
    return turn_schema().validate(df.select(TURN_COLUMNS), lazy=True)
