"""The dataset's output formats: one conversation per parquet row, and nanoChatGPT text.

Parquet row: conversation_id, messages (list of {role, content}), context, source, licence,
commercial; `datasets.load_dataset("parquet", ...)` reads it as is.

Text (the seed project's format, kept so its tooling still works): one turn per line,
`<human> text <endOfText>` / `<bot> text <endOfText>`, a blank line after each conversation.
A persona context, when present, is a plain first line (as the tokenizer renders it, before the
first `<human>`). Turn text may hold newlines, which would break "one turn per line", so text is
escaped: `\\` -> `\\\\`, newline -> `\\n`. Marker text inside a turn or context (`<bot>`, `<endOfText>`,
`<|endoftext|>`, any case, as the seed's tooling and the nanochatgpt adapter match them) is written
`<\\bot>`: a reader that looks for markers anywhere in a line, not just where a turn begins and
ends, must not find a forged turn boundary there, and a context line cannot read as a turn.
`parse_text` inverts all of it (and reads older exports, whose context line starting with `<` got a
leading `\\`).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

MESSAGE_DTYPE = pl.Struct({"role": pl.String(), "content": pl.String()})
CONVERSATION_SCHEMA: dict[str, pl.DataType] = {
    "conversation_id": pl.String(),
    "messages": pl.List(MESSAGE_DTYPE),
    "context": pl.String(),
    "source": pl.String(),
    "licence": pl.String(),
    "commercial": pl.Boolean(),
}
CONVERSATION_COLUMNS = list(CONVERSATION_SCHEMA)
END = "<endOfText>"
_TURN_RE = re.compile(r"^<(human|bot)> (.*) <endOfText>$")
# The marker names a line-blind reader would act on (the nanochatgpt adapter's _MARKER).
_MARKER_TAIL = r"(?:human|bot|endoftext|\|endoftext\|)>"
# `\x` escapes, or `<\` before a marker tail (an escaped marker). A literal `<\` in the text is
# written `<\\`, which never precedes a marker tail directly, so the two cannot be confused.
_UNESCAPE_RE = re.compile(rf"\\(.)|<\\(?=(?i:{_MARKER_TAIL}))")
_UNESCAPES = {"\\": "\\", "n": "\n", "<": "<"}


def empty_conversations() -> pl.DataFrame:
    return pl.DataFrame(schema=CONVERSATION_SCHEMA)


def escape(text: pl.Expr) -> pl.Expr:
    return (
        text.str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all("\n", "\\n", literal=True)
        .str.replace_all(rf"(?i)<({_MARKER_TAIL})", r"<\$1")
    )


def turn_line(role: pl.Expr, text: pl.Expr) -> pl.Expr:
    """`<role> escaped text <endOfText>`: one line of the text export."""
    return pl.concat_str(pl.lit("<"), role, pl.lit("> "), escape(text), pl.lit(f" {END}"))


def context_line(context: pl.Expr) -> pl.Expr:
    """The escaped context line (null when there is no context)."""
    # It cannot read as a turn: a turn line starts with `<human>` or `<bot>`, which escape() breaks.
    return (
        pl.when(context.is_null() | (context == ""))
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(escape(context))
    )


def conversation_block(lines: pl.Expr, context: pl.Expr) -> pl.Expr:
    """One conversation's lines joined; `lines` is the joined turn lines, `context` the raw context."""
    ctx = context_line(context)
    return pl.when(ctx.is_null()).then(lines).otherwise(pl.concat_str(ctx, pl.lit("\n"), lines))


def assemble_conversations(rows: pl.DataFrame) -> pl.DataFrame:
    """Turn-table rows -> one conversation per row, ordered by `order_h` (the seeded shuffle).

    Besides the output columns it carries `block` (the text export), `split`, `rank` and
    `chars` for the writer and the build's counts.
    """
    return (
        rows.sort("order_h", "conversation_id", "turn")
        .group_by("order_h", "conversation_id", maintain_order=True)
        .agg(
            messages=pl.struct(role=pl.col("role"), content=pl.col("text")),
            block=turn_line(pl.col("role"), pl.col("text")).str.join("\n"),
            context=pl.col("context").first(),
            source=pl.col("source").first(),
            licence=pl.col("licence").first(),
            commercial=pl.col("commercial").first(),
            split=pl.col("split").first(),
            rank=pl.col("rank").first(),
            chars=pl.col("text").str.len_chars().sum(),
        )
        .with_columns(block=conversation_block(pl.col("block"), pl.col("context")))
    )


class SplitWriter:
    """Appends assembled parts to <dir>/<split>.parquet (and text/<split>.txt) as they come.

    pyarrow's ParquetWriter (pyarrow ships with `datasets`) writes one row group per part, so
    a split is never held in memory, concatenated or rewritten. Close it to finish the files
    (a split that got no rows is still written, empty, with the schema).
    """

    def __init__(self, out_dir: Path, split: str, export_text: bool) -> None:
        self.path = out_dir / f"{split}.parquet"
        self.text = None
        if export_text:
            (out_dir / "text").mkdir(exist_ok=True)
            self.text = open(out_dir / "text" / f"{split}.txt", "wb")  # noqa: SIM115 (closed by close())
        self.parquet: pq.ParquetWriter | None = None

    def append(self, convs: pl.DataFrame) -> None:
        table = convs.select([pl.col(c).cast(t) for c, t in CONVERSATION_SCHEMA.items()]).to_arrow()
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self.parquet.write_table(table)
        if self.text is not None:
            # Each conversation's lines, then a blank line (quote_style="never": written as is).
            convs.select("block").write_csv(
                self.text, include_header=False, quote_style="never", line_terminator="\n\n"
            )

    def close(self) -> None:
        if self.text is not None:
            self.text.close()
        if self.parquet is not None:
            self.parquet.close()
        else:
            empty_conversations().write_parquet(self.path)


def _unescape(s: str) -> str:
    return _UNESCAPE_RE.sub(
        lambda m: "<" if m.group(1) is None else _UNESCAPES.get(m.group(1), m.group(0)), s
    )


def parse_text(text: str) -> list[dict]:
    """Read a text export back into [{"context": str | None, "messages": [{role, content}]}].

    Raises ValueError naming the line for anything that is not the format.
    """
    conversations: list[dict] = []
    current: dict | None = None
    for lineno, line in enumerate(text.split("\n"), 1):
        if line == "":
            if current is not None:
                conversations.append(current)
            current = None
            continue
        m = _TURN_RE.match(line)
        if current is None:
            current = {"context": None, "messages": []}
            if m is None:
                current["context"] = _unescape(line)
                continue
        if m is None:
            raise ValueError(f"line {lineno}: expected '<human> ... {END}' or '<bot> ... {END}'")
        current["messages"].append({"role": m.group(1), "content": _unescape(m.group(2))})
    if current is not None:
        conversations.append(current)
    return conversations
