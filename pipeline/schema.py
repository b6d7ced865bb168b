"""The turn table contract (DESIGN.md): one row per turn, validated by pandera.

Row-level rules live in `row_violations` as polars expressions so that a bad row can be
quarantined with its reason instead of failing the whole source; `TurnSchema` is the
pandera schema every written turn table must pass (row and frame rules together).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

ROLES = ("human", "bot")
MAX_TURN_CHARS = 16_000

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

# Control characters other than \n and \t (C0, DEL, C1).
_CONTROL_CHARS = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"


def empty_turns() -> pl.DataFrame:
    return pl.DataFrame(schema=TURN_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def row_violations(max_chars: int = MAX_TURN_CHARS) -> list[tuple[str, pl.Expr, str]]:
    """(check name, expression true where the row breaks it, readable reason), in priority order."""
    text = pl.col("text")
    return [
        ("conversation_id_present", pl.col("conversation_id").is_null() | (pl.col("conversation_id") == ""),
         "conversation_id is missing"),
        ("role_valid", pl.col("role").is_null() | ~pl.col("role").is_in(ROLES),
         "role must be 'human' or 'bot'"),
        ("text_present", text.is_null() | (text.str.strip_chars() == ""), "text is empty"),
        ("text_length", text.str.len_chars() > max_chars, f"text longer than {max_chars} characters"),
        ("text_no_control_chars", text.str.contains(_CONTROL_CHARS), "text holds control characters"),
    ]



class TurnSchema(pa.DataFrameModel):
    """Every rule of the turn table; used as the last gate before a table is written."""

    conversation_id: str = pa.Field(str_length={"min_value": 1})
    turn: pl.Int32 = pa.Field(ge=0)
    role: str = pa.Field(isin=list(ROLES))
    text: str = pa.Field(str_length={"min_value": 1, "max_value": MAX_TURN_CHARS})
    source: str = pa.Field(str_length={"min_value": 1})
    licence: str = pa.Field(str_length={"min_value": 1})
    commercial: bool
    context: str = pa.Field(nullable=True)

    class Config:
        strict = True
        coerce = False
        unique = ["conversation_id", "turn"]

    @pa.check("text", name="text_stripped_no_control_chars")
    def _text_clean(cls, data: pa.PolarsData) -> pl.LazyFrame:
        t = pl.col(data.key)
        return data.lazyframe.select((t == t.str.strip_chars()) & ~t.str.contains(_CONTROL_CHARS))

    @pa.dataframe_check(name="turns_contiguous")
    def _contiguous(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            ((pl.col("turn").min().over("conversation_id") == 0)
             & (pl.col("turn").max().over("conversation_id") == pl.len().over("conversation_id") - 1))
            .alias("ok")
        )

    @pa.dataframe_check(name="roles_alternate_from_human")
    def _alternate(cls, data: pa.PolarsData) -> pl.LazyFrame:
        expected = pl.when(pl.col("turn") % 2 == 0).then(pl.lit("human")).otherwise(pl.lit("bot"))
        return data.lazyframe.select((pl.col("role") == expected).alias("ok"))

    @pa.dataframe_check(name="has_bot_turn")
    def _has_bot(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("role") == "bot").any().over("conversation_id").alias("ok"))


def validate(df: pl.DataFrame) -> pl.DataFrame:
    """Raise pandera's SchemaError (naming the failed check) unless `df` is a valid turn table."""
    return TurnSchema.validate(df.select(TURN_COLUMNS), lazy=True)
