"""RawRows -> turn table + quarantine + report: the rules of pipeline.schema, applied once for every source.

Every upstream row ends in exactly one place, so the report reconciles:
    rows_read == rows_kept + rows_quarantined + sum(rows_filtered.values())
where
    rows_filtered     rows the upstream format says to skip (adapter `filter`), by reason;
    rows_quarantined  rows of data/quarantine/<name>.parquet, one per upstream row, with check+reason;
    rows_kept         upstream rows whose text is in the turn table. Consecutive rows of one speaker
                      are merged into one turn (joined with "\n"), so the table holds `turns_kept`
                      rows and `rows_merged` = rows_kept - turns_kept counts the merges: merged rows
                      are kept, not lost, and are therefore not counted as filtered.

Order of the rules (the first that fails names the row's check):
 1. rows the adapter could not read (check set by the adapter: json_parse, utf8, missing_field ...);
 2. row rules of pipeline.schema.row_violations (conversation id, empty text, length, control chars;
    the context's length and control chars) on the cleaned text (CRLF/CR -> LF, NFC, stripped;
    a context of nothing visible becomes none);
 3. roles: explicit (`role`) or by speaker (first speaker = human, flip on each change of speaker);
    anything else fails `role_valid`;
 4. a conversation is cut at its first bad row: the rows after it go to quarantine as
    `conversation_broken` (what came before still stands on its own). An empty row is the one
    exception: it carries nothing later turns could depend on, so dropping it breaks nothing. Between
    two rows of one other speaker it lets them merge into one turn (step 6), as serve and the chat
    template read an empty message sent back (a reply that was only <endOfText> opens no turn);
 5. bot rows before the first human row fail `first_turn_human` (the rest stands);
 6. consecutive rows of one role merge into one turn; a merged turn that grows past the length
    limit fails `text_length` and cuts the conversation there, as in 4;
 7. a conversation with fewer than `min_turns` turns (so without a bot turn) is quarantined whole
    (`has_bot_turn` / `min_turns`, or `conversation_broken` when step 4 or 6 cut it short).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pipeline import paramcheck
from pipeline.atomic import atomic_paths, fingerprint, json_bytes
from pipeline.invisible import blank
from pipeline.params import project_root
from pipeline.schema import (
    MAX_TURN_CHARS,
    QUARANTINE_SCHEMA,
    TURN_SCHEMA,
    max_turn_chars_setting,
    row_reason,
    row_violations,
    validate,
)
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import SourceSpec

if TYPE_CHECKING:
    from pipeline.sources.contrib import ContribFile

# params.yaml `normalize`: the rules' two bounds (an adapter's own settings are its `options:` in
# sources.yaml, so that editing one re-runs only that source)
NORMALIZE_KEYS = ("max_turn_chars", "min_turns")
_NON_BREAKING = frozenset({"text_present"})
# Row checks that cannot run on upstream rows: roles may still be derived from speakers and
# turn numbers only exist after merging (they are correct by construction).
_LATER = frozenset({"role_valid", "turn_valid"})
# Rows taken at a time (whole conversations; see normalize_rows): small enough that a slice's working
# frames are a fraction of the rows frame, large enough that polars' per-call cost stays small.
CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class NormalizeResult:
    turns: pl.DataFrame
    quarantine: pl.DataFrame
    report: dict[str, Any]


def clean_text(expr: pl.Expr) -> pl.Expr:
    """CRLF/CR -> LF, Unicode NFC, surrounding whitespace stripped."""
    return (
        expr.str.replace_all("\r\n", "\n", literal=True)
        .str.replace_all("\r", "\n", literal=True)
        .str.normalize("NFC")
        .str.strip_chars()
    )


def _quarantine(
    rows: pl.DataFrame, check: str | pl.Expr, reason: str | pl.Expr, breaks: bool
) -> pl.DataFrame:
    lit = lambda v: pl.lit(v, pl.String) if isinstance(v, str) else v  # noqa: E731
    return rows.with_columns(q_check=lit(check), q_reason=lit(reason), q_breaks=pl.lit(breaks))


def _break_points(quarantined: list[pl.DataFrame]) -> pl.DataFrame:
    """Per conversation: the first row (by upstream order) that broke it."""
    q = pl.concat([f.select("conversation_id", "idx", "origin", "q_check", "q_breaks") for f in quarantined])
    return (
        q.filter(pl.col("q_breaks") & pl.col("conversation_id").is_not_null())
        .sort("idx")
        .group_by("conversation_id", maintain_order=True)
        .agg(
            b_idx=pl.col("idx").first(), b_origin=pl.col("origin").first(), b_check=pl.col("q_check").first()
        )
    )


def _cut(live: pl.DataFrame, breaks: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split off the rows that come after their conversation's break point."""
    joined = live.join(breaks, on="conversation_id", how="left").sort("idx")  # joins may reorder rows
    after = pl.col("b_idx").is_not_null() & (pl.col("idx") > pl.col("b_idx"))
    reason = pl.format(
        "row {} ({}) of conversation {} was quarantined", "b_origin", "b_check", "conversation_id"
    )
    cut = _quarantine(joined.filter(after), "conversation_broken", reason, False).drop(
        "b_idx", "b_origin", "b_check"
    )
    return joined.filter(~after).drop("b_idx", "b_origin", "b_check"), cut


def normalize_rows(
    raw: pl.DataFrame,
    *,
    max_turn_chars: int = MAX_TURN_CHARS,
    min_turns: int = 2,
    chunk_rows: int = CHUNK_ROWS,
) -> NormalizeResult:
    """Apply the turn-table rules to an adapter's RawRows frame (see the module docstring)."""
    min_turns = max(2, int(min_turns))
    # Not rechunked here (a copy of every row, and one chunk is let go only whole): each slice is
    # (see _normalize_slice).
    df = raw.with_row_index("idx")
    # Memory: the caller's frame goes once `df` holds it (it was passed inline by normalize_source).
    del raw
    rows_read = df.height
    rows_filtered = dict(sorted(Counter(df.get_column("filter").drop_nulls().to_list()).items()))
    # Per source (one per contributed file), in one pass: rows read, so each file reconciles too, and
    # its terms, also for a file none of whose rows is kept: the build lists every file in stats.json
    # and the dataset card, and a file with no row in the table has no other record.
    per_source = df.group_by("source").agg(pl.len(), pl.col("licence").first(), pl.col("commercial").first())
    read_by_source = {s: n for s, n, _, _ in per_source.iter_rows()}
    terms_by_source = {s: (licence, commercial) for s, _, licence, commercial in per_source.iter_rows()}
    filtered_by_source = df.filter(pl.col("filter").is_not_null()).group_by("source", "filter").len()

    # Memory: every rule works on one conversation at a time, so the rows are taken a slice of whole
    # conversations at a time (zero-copy views of `df`) and each slice's working frames are let go
    # before the next: the peak is the rows frame, the tables built so far and one slice's work, where
    # the whole frame at once held the rows frame ~2.5 times over (the scale hunt: ~11x the input file).
    # Conversations never share a slice and slices keep upstream order, so joined, the slices' tables
    # are the whole frame's, row for row (tests/test_normalize_chunks.py).
    turn_parts: list[pl.DataFrame] = []
    quarantine_parts: list[pl.DataFrame] = []
    kept_by_source: Counter[str] = Counter()
    done = 0  # rows of `df` already dropped from its front
    for start, stop in _slices(df, chunk_rows):
        turns, quarantine, kept = _normalize_slice(
            df.slice(start - done, stop - start), max_turn_chars, min_turns
        )
        turn_parts.append(turns)
        quarantine_parts.append(quarantine)
        kept_by_source.update(kept)
        # Memory: the rows done with go. A slice of a frame drops its chunks that lie wholly before
        # it, so the rows frame (in chunks: RawRows.frame) is let go as the tables grow, where it
        # stood whole beside them to the end (measured, 194 MB of JSONL: a peak of 835 MB -> 656 MB).
        df, done = df.slice(stop - done), stop
    del df, turns, quarantine  # the lists alone hold the parts, for _join_slices to let go
    heights = [part.height for part in turn_parts]
    turns = _join_slices(turn_parts)
    quarantine = _join_slices(quarantine_parts)
    # After the rows frame is let go, where pandera's import (~95 MB) does not stand beside it.
    _validate_by_slice(turns, heights)
    report = _report(
        rows_read,
        sum(kept_by_source.values()),
        dict(kept_by_source),
        turns,
        quarantine,
        rows_filtered,
        read_by_source,
        filtered_by_source,
        terms_by_source,
    )
    return NormalizeResult(turns, quarantine, report)


def _validate_by_slice(turns: pl.DataFrame, heights: list[int]) -> None:
    """pandera's gate on `turns` a slice's rows at a time (`heights`: the slices' turn counts, in
    order). Memory: pandera's checks build columns and windows of the frame they are given, ~2x the
    turn table over it when given the whole (measured, 437,000 turns: +148 MB). Every rule holds per
    conversation (the frame rules over conversation_id, `unique` on conversation_id and turn, the
    rest per row) and a slice holds whole conversations, so the slices pass exactly when the table
    does. A failing slice validates the whole table again, so the error names every failure of the
    table, with its row numbers, as it did."""
    from pandera.errors import SchemaErrors

    start = 0
    for height in heights:
        try:
            validate(turns.slice(start, height))
        except SchemaErrors:
            validate(turns)
            raise
        start += height


def _join_slices(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The slices' tables as one table of one chunk per column (parquet writes a frame of several
    chunks with other bytes), joined a column at a time, each column's slices let go once joined:
    the peak is the table and one column, not the table twice. Empties `frames` (the caller holds
    no other reference to them)."""
    columns = []
    for name in frames[0].columns:
        columns.append(pl.concat([f.get_column(name) for f in frames], rechunk=True))
        frames[:] = [f.drop(name) for f in frames]
    frames.clear()
    return pl.DataFrame(columns)


def _slices(df: pl.DataFrame, chunk_rows: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of about `chunk_rows` rows (at least one range, possibly empty), each
    holding whole conversations: a range ends only after the last row of every conversation begun in
    it. A format whose conversations interleave (one id on rows far apart) gets longer ranges, at
    worst one for the whole frame. Rows without a conversation key stand alone (they are quarantined)."""
    key = pl.col("conv_key")
    last = pl.when(key.is_not_null() & (key != "")).then(pl.col("idx").max().over("source", "conv_key"))
    # Row i may end a range when no conversation met so far goes on past it.
    reach = df.select(last.fill_null(pl.col("idx")).cum_max()).to_series().to_numpy()
    ends = np.flatnonzero(reach == np.arange(len(reach)))  # rows after which a range may end
    bounds, start = [], 0
    while start < len(reach):
        i = int(np.searchsorted(ends, start + max(1, chunk_rows) - 1))  # first end at or past the target
        stop = int(ends[i]) + 1 if i < len(ends) else len(reach)
        bounds.append((start, stop))
        start = stop
    return bounds or [(0, 0)]


def _normalize_slice(
    df: pl.DataFrame, max_turn_chars: int, min_turns: int
) -> tuple[pl.DataFrame, pl.DataFrame, Counter[str]]:
    """Rules 1-7 on a slice of whole conversations: its turn table (not yet validated), its
    quarantine and its rows kept by source."""
    work = _Work(_prepared(df), [], max_turn_chars, min_turns)
    del df  # a view of the caller's rows frame: the rules work on `work.live` alone
    _quarantine_unread(work)  # 1
    _apply_row_rules(work)  # 2
    _assign_roles(work)  # 3
    _cut_broken(work)  # 4
    _drop_leading_bot_rows(work)  # 5
    _merge_turns(work)  # 6
    _cut_broken(work)  # (6) a turn too long cuts its conversation as a bad row does
    _quarantine_short(work)  # 7
    live, quarantined = work.live, work.quarantined
    del work
    turns = _turns(live)
    kept_by_source = Counter(dict(live.get_column("source").value_counts().iter_rows()))
    del live
    return _owned(turns), _owned(_quarantine_frame(quarantined)), kept_by_source


@dataclass
class _Work:
    """A slice's state between the rules. Memory: the rows still standing are held here only, so
    each step's `work.live = ...` lets the frame it replaces go at once (as one local variable did
    when the rules were one function), where a step taking and returning a frame would keep its
    input alive in the caller until it returned."""

    live: pl.DataFrame  # the rows not yet quarantined, with `idx` (upstream order)
    quarantined: list[pl.DataFrame]  # each rule's quarantined rows (_quarantine's columns)
    max_turn_chars: int
    min_turns: int


def _prepared(df: pl.DataFrame) -> pl.DataFrame:
    """The slice as the rules read it: one chunk per column, strings, no filtered rows, text and
    context cleaned, `conversation_id` (source:conv_key, none without a key) for `conv_key`."""
    # One chunk per column: the contrib adapter concatenates a frame per file, and once a filter below
    # empties the first file's chunk, polars 2.1's `pl.format` (the quarantine reasons) panics
    # ("assertion failed: i < self.len()") instead of quarantining (found by tests/test_properties_data.py).
    # Per slice, only a slice across two files' rows is copied.
    df = df.rechunk()
    # The rows frame's Categorical columns (pipeline.sources.rows.RAW_SCHEMA) as strings again: the
    # rules, and the tables' schemas, are written for strings.
    df = df.with_columns(pl.col(pl.Categorical).cast(pl.String))
    if df.get_column("filter").null_count() < df.height:  # else a copy of every row for nothing
        df = df.filter(pl.col("filter").is_null())
    df = df.drop("filter")

    unread = pl.col("check").is_not_null()
    key = pl.col("conv_key")
    context = clean_text(pl.col("context"))
    return df.with_columns(
        text=pl.when(unread).then(pl.col("text")).otherwise(clean_text(pl.col("text"))),
        # A context of nothing visible (empty, or invisible characters alone) is no context.
        context=pl.when(~blank(context)).then(context),
        conversation_id=pl.when(key.is_not_null() & (key != "")).then(pl.col("source") + ":" + key),
    ).drop("conv_key")  # columns no later step reads are dropped as soon as they are done with


def _quarantine_unread(work: _Work) -> None:
    """1. Rows the adapter could not read (it set their check and reason)."""
    unread = pl.col("check").is_not_null()
    work.quarantined.append(_quarantine(work.live.filter(unread), pl.col("check"), pl.col("reason"), True))
    # the quarantine's come from q_check, q_reason
    work.live = work.live.filter(~unread).drop("check", "reason")


def _apply_row_rules(work: _Work) -> None:
    """2. pipeline.schema's row rules, but roles (they may yet be derived from the speaker) and
    turn numbers (they exist only after merging)."""
    for check, bad, reason in row_violations(work.max_turn_chars):
        if check in _LATER:
            continue
        mask = work.live.select(bad.fill_null(False)).to_series()
        broken = work.live.filter(mask)
        breaks = check not in _NON_BREAKING
        work.quarantined.append(_quarantine(broken, check, row_reason(check, reason), breaks))
        if mask.any():  # else filtering would copy every row to keep them all
            work.live = work.live.filter(~mask)


def _assign_roles(work: _Work) -> None:
    """3. Roles by speaker where the format has no explicit role (first speaker human, flipping at
    each change of speaker); a role that is still neither human nor bot fails `role_valid`."""
    work.live = work.live.sort("idx")
    spk = pl.col("speaker")
    changed = (spk != spk.shift(1)).fill_null(True).over("conversation_id")
    # In two steps: a window nested in another's (`changed.cum_sum().over(...)`) made polars 2.1 take
    # time quadratic in the conversations (400,000 of two rows: 3.0 s against 0.24 s for 100,000).
    work.live = work.live.with_columns(_changed=changed)
    work.live = work.live.with_columns(
        _block=pl.col("_changed").cast(pl.Int32).cum_sum().over("conversation_id")
    )
    by_speaker = pl.when(spk.is_not_null()).then(
        pl.when(pl.col("_block") % 2 == 1).then(pl.lit("human")).otherwise(pl.lit("bot"))
    )
    work.live = work.live.with_columns(role=pl.coalesce(pl.col("role"), by_speaker)).drop(
        "_block", "_changed", "speaker"
    )
    role_bad = next(bad for check, bad, _ in row_violations(work.max_turn_chars) if check == "role_valid")
    mask = role_bad.fill_null(False)
    # The role as the file spelled it, when the format's map did not know it (CONTRIBUTING.md lists
    # each contributed format's roles).
    detail = pl.format("role '{}' is not one this format maps to human or bot", pl.col("role").fill_null(""))
    work.quarantined.append(_quarantine(work.live.filter(mask), "role_valid", detail, True))
    work.live = work.live.filter(~mask)


def _cut_broken(work: _Work) -> None:
    """4. Cut each conversation at its first bad row (quarantined so far, with q_breaks)."""
    work.live, cut = _cut(work.live, _break_points(work.quarantined))
    work.quarantined.append(cut)


def _drop_leading_bot_rows(work: _Work) -> None:
    """5. Bot rows before a conversation's first human row (the rest of it stands)."""
    seen_human = (pl.col("role") == "human").cast(pl.Int32).cum_sum().over("conversation_id")
    work.live = work.live.with_columns(_seen=seen_human)
    leading = pl.col("_seen") == 0
    work.quarantined.append(
        _quarantine(
            work.live.filter(leading), "first_turn_human", "conversation starts with a bot turn", False
        )
    )
    work.live = work.live.filter(~leading).drop("_seen")


def _merge_turns(work: _Work) -> None:
    """6. Number the turns (a run of one role is one turn); quarantine a conversation's first turn
    whose merged text is past the length limit (the caller then cuts what follows it)."""
    role_changed = (pl.col("role") != pl.col("role").shift(1)).fill_null(True).over("conversation_id")
    work.live = work.live.with_columns(_changed=role_changed)  # not nested in the cum_sum's window (step 3)
    work.live = work.live.with_columns(
        turn=pl.col("_changed").cast(pl.Int32).cum_sum().over("conversation_id") - 1
    )
    work.live = work.live.drop("_changed")
    # the turn's text once joined with "\n" (_turns)
    turn_len = (pl.col("text").str.len_chars().sum() + pl.len() - 1).over("conversation_id", "turn")
    work.live = work.live.with_columns(
        _turn_len=turn_len, _turn_rows=pl.len().over("conversation_id", "turn")
    )
    too_long = pl.col("_turn_len") > work.max_turn_chars
    first_long = pl.when(too_long).then(pl.col("turn")).min().over("conversation_id")
    work.live = work.live.with_columns(_first_long=first_long)
    in_long = (pl.col("turn") == pl.col("_first_long")).fill_null(False)
    reason = pl.format(
        "{} rows merged into a turn of {} characters (limit {})",
        "_turn_rows",
        "_turn_len",
        pl.lit(work.max_turn_chars),
    )
    work.quarantined.append(_quarantine(work.live.filter(in_long), "text_length", reason, True))
    work.live = work.live.filter(~in_long).drop("_turn_len", "_turn_rows", "_first_long")


def _quarantine_short(work: _Work) -> None:
    """7. Conversations left with fewer than `min_turns` turns (after any cut), quarantined whole."""
    breaks = _break_points(work.quarantined)
    work.live = work.live.with_columns(
        _n=pl.col("turn").max().over("conversation_id") + 1,
        _has_bot=(pl.col("role") == "bot").any().over("conversation_id"),
    )
    short = pl.col("_n") < work.min_turns
    short_rows = work.live.filter(short).join(breaks, on="conversation_id", how="left").sort("idx")
    check, reason = _short_check_reason(work.min_turns)
    work.quarantined.append(
        _quarantine(short_rows, check, reason, False).drop("b_idx", "b_origin", "b_check")
    )
    work.live = work.live.filter(~short).drop("_n", "_has_bot")


def _short_check_reason(min_turns: int) -> tuple[pl.Expr, pl.Expr]:
    """The check and reason of a too-short conversation's rows (joined with its _break_points): a
    conversation cut short by a bad row names that row, as its other rows after the cut do."""
    was_cut = pl.col("b_idx").is_not_null()
    check = (
        pl.when(was_cut)
        .then(pl.lit("conversation_broken"))
        .when(~pl.col("_has_bot"))
        .then(pl.lit("has_bot_turn"))
        .otherwise(pl.lit("min_turns"))
    )
    reason = (
        pl.when(was_cut)
        .then(
            # "...; 1 turn(s) left" read as if this row were the turn left: it is one of the too few
            pl.format(
                "row {} ({}) of conversation {} was quarantined, and the {} turn(s) before it are too "
                "few to keep (at least {}: a human turn and a bot turn)",
                "b_origin",
                "b_check",
                "conversation_id",
                "_n",
                pl.lit(min_turns),
            )
        )
        .otherwise(
            pl.format(
                "conversation has {} turn(s); it needs at least {} (a human turn and a bot turn)",
                "_n",
                pl.lit(min_turns),
            )
        )
    )
    return check, reason


def _owned(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with its strings copied into buffers of its own. A polars string column filtered or
    gathered from another keeps the other's whole buffers alive: a slice's tables, held until the
    last slice is done, would keep the rows frame's text and origins from being let go when it is
    (measured, 120 MB of JSONL: a peak of 834 MB without this, 760 MB with it)."""
    strings = [c for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(pl.concat_str(pl.col(c), pl.lit("")).alias(c) for c in strings)


def _turns(live: pl.DataFrame) -> pl.DataFrame:
    """One row per (conversation, turn), conversations in upstream order."""
    context = live.group_by("conversation_id").agg(
        _ctx=pl.col("context").drop_nulls().first(), _first=pl.col("idx").min()
    )
    # Only the columns a turn keeps (not `origin`, the longest): sort and group copy what they are
    # given. (Lazy was tried: a higher peak, and a parquet of other bytes.)
    kept = ("conversation_id", "turn", "idx", "role", "text", "source", "licence", "commercial")
    turns = (
        live.select(kept)
        .sort("idx")
        .group_by("conversation_id", "turn", maintain_order=True)
        .agg(
            pl.col("role").first(),
            pl.col("text").str.join("\n"),
            pl.col("source").first(),
            pl.col("licence").first(),
            pl.col("commercial").first(),
        )
        .join(context, on="conversation_id", how="left")
        .sort("_first", "turn")
        .rename({"_ctx": "context"})
    )
    return turns.select([pl.col(c).cast(t) for c, t in TURN_SCHEMA.items()])


def _quarantine_frame(parts: list[pl.DataFrame]) -> pl.DataFrame:
    q = pl.concat([p.select(*[c for c in p.columns if c != "turn"]) for p in parts], how="diagonal_relaxed")
    q = q.sort("idx").with_columns(
        turn=pl.lit(None, pl.Int32), check=pl.col("q_check"), reason=pl.col("q_reason")
    )
    return q.select([pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])


def _report(
    rows_read: int,
    rows_kept: int,
    kept_by_source: dict[str, int],
    turns: pl.DataFrame,
    quarantine: pl.DataFrame,
    filtered: dict[str, int],
    read_by_source: dict[str, int],
    filtered_by_source: pl.DataFrame,
    terms_by_source: dict[str, tuple[str, bool]],
) -> dict[str, Any]:
    by_check = dict(sorted(Counter(quarantine.get_column("check").to_list()).items()))
    report: dict[str, Any] = {
        "rows_read": rows_read,
        "rows_kept": rows_kept,
        "rows_quarantined": quarantine.height,
        "rows_filtered": filtered,
        "quarantined_by_check": by_check,
        "turns_kept": turns.height,
        "rows_merged": rows_kept - turns.height,
        "conversations_kept": turns.get_column("conversation_id").n_unique(),
    }
    sources = sorted(read_by_source)
    # A contributed file's rows are the source `<entry>/<stem>` (registry names hold no '/').
    if len(sources) > 1 or any("/" in s for s in sources):
        per = {}
        for s in sources:
            t = turns.filter(pl.col("source") == s)
            per[s] = {
                "rows_read": read_by_source[s],
                "rows_kept": kept_by_source.get(s, 0),
                "rows_filtered": dict(
                    sorted(filtered_by_source.filter(pl.col("source") == s).drop("source").iter_rows())
                ),
                "rows_quarantined": quarantine.filter(pl.col("source") == s).height,
                "turns_kept": t.height,
                "conversations_kept": t.get_column("conversation_id").n_unique(),
            }
            if "/" in s:
                licence, commercial = terms_by_source[s]
                per[s] |= {"licence": licence, "commercial": bool(commercial)}
        report["by_source"] = per
    for counts in [report, *report.get("by_source", {}).values()]:
        if counts["rows_read"] != counts["rows_kept"] + counts["rows_quarantined"] + sum(
            counts["rows_filtered"].values()
        ):
            raise RuntimeError(f"normalize lost rows (a bug): {report}")
    return report


def normalize_source(
    spec: SourceSpec, folder: Path, params: dict[str, Any], scanned: list[ContribFile] | None = None
) -> NormalizeResult:
    """Read data/raw/<name>/ with the source's adapter and apply the rules; `params` = params.yaml
    `normalize`. A contrib folder is scanned once (its rows and its files' descriptions both come
    from the scan), or not at all where the caller passes its scan_contrib of `folder` (`scanned`)."""
    from pipeline.sources.adapters import get_adapter
    from pipeline.sources.contrib import scan_contrib
    from pipeline.sources.download import MANIFEST

    if not (folder / MANIFEST).is_file():
        raise SourceError(
            f"{spec.name}: {folder} is missing; run `python -m stages.download {spec.name}` first"
        )
    if not isinstance(params, dict):
        raise SourceError(f"params.yaml normalize: expected a mapping of settings, got {params!r}"[:200])
    try:  # the turn schema's bound caps max_turn_chars; min_turns below 2 counts as 2
        if "oasst1_lang" in params:
            raise ValueError(
                "params.yaml normalize.oasst1_lang: moved to sources.yaml, as oasst1's `options: {language: ...}`"
            )
        paramcheck.known_keys("normalize", params, NORMALIZE_KEYS)
        max_chars = max_turn_chars_setting(params)
        min_turns = paramcheck.integer("normalize.min_turns", params.get("min_turns", 2))
    except ValueError as e:
        raise SourceError(str(e)) from None
    # Passed inline, not held in a variable here: normalize_rows lets the adapter's frame go
    # once it has its own copy, where a variable of this frame would keep it to the end.
    read = get_adapter(spec.adapter)
    if spec.adapter == "contrib":
        scanned = scan_contrib(folder, spec.name) if scanned is None else scanned
        read = functools.partial(read, scanned=scanned)
    result = normalize_rows(read(folder, spec, params), max_turn_chars=max_chars, min_turns=min_turns)
    report = {"source": spec.name, **result.report}
    if spec.adapter == "contrib":
        _describe_files(report, scanned)
    return NormalizeResult(result.turns, result.quarantine, report)


def _describe_files(report: dict[str, Any], scanned: list[ContribFile]) -> None:
    """Add each contributed file's sidecar `description:` and `attribution:` (from `scanned`, the
    scan the rows were read by) to its `by_source` entry: the rows carry a file's licence and flag,
    but not these, which the build's dataset card and NOTICE.md show for the file (stats.json
    `parts`). A key is written only where the sidecar has the field, so a report (and the build's
    outputs) of files without one stay as they were."""
    from pipeline.sources.adapters.contrib import sidecar_texts

    per_file = report.get("by_source", {})
    for key in ("description", "attribution"):
        for source, text in sidecar_texts(scanned, key).items():
            if source in per_file:
                per_file[source][key] = text


def output_paths(name: str, root: Path | None = None) -> dict[str, Path]:
    root = root or project_root()
    return {
        "turns": root / "data" / "normalized" / f"{name}.parquet",
        "quarantine": root / "data" / "quarantine" / f"{name}.parquet",
        "report": root / "data" / "normalized" / f"{name}.report.json",
        "metrics": root / "data" / "normalized" / f"{name}.metrics.json",
    }


# The report's counts that metrics.json (the stage's DVC metric) carries, under the report's names.
# The report itself is no metric: DVC makes a column of every key of every metrics file, and its
# per-file descriptions, licences and sha256s made `dvc metrics show` 2,400 characters wide.
METRICS_COUNTS = (
    "rows_read",
    "rows_kept",
    "rows_quarantined",
    "rows_merged",
    "turns_kept",
    "conversations_kept",
)


def summary_metrics(report: dict[str, Any]) -> dict[str, int]:
    """metrics.json, the normalize stage's DVC metric: the report's totals, numbers only, with
    `rows_filtered` summed over its reasons (as the build's metrics.json sums it), so the two
    stages' counts share columns in `dvc metrics show`."""
    return {
        **{key: report[key] for key in METRICS_COUNTS},
        "rows_filtered": sum(report["rows_filtered"].values()),
    }


def nothing_kept_warning(report: dict[str, Any]) -> str | None:
    """A warning for a source that read rows but kept none (None otherwise): the stage still
    succeeds, since a source whose rows are all filtered (a language option) is legitimate, but the
    report's one line and the card's "holding nothing" did not say why. Names the rule that caught
    the most rows (by count, then name), or the filter that skipped the most when none was
    quarantined, and where to look."""
    if not report["rows_read"] or report["rows_kept"]:
        return None
    name = report.get("source", "?")
    by_check = report.get("quarantined_by_check") or {}
    filtered = report.get("rows_filtered") or {}
    counts, verb = (by_check, "quarantined by") if by_check else (filtered, "filtered as")
    top = min(counts.items(), key=lambda kv: (-kv[1], kv[0])) if counts else None
    because = f"; most were {verb} `{top[0]}` ({top[1]:,} rows)" if top else ""
    return (
        f"WARNING: normalize {name}: {report['rows_read']:,} rows read and none kept "
        f"({report['rows_quarantined']:,} quarantined, {sum(filtered.values()):,} filtered){because}; "
        f"nothing from {name} reaches the dataset. See `nanochatgpt quarantine {name}`."
    )


# The report's record of the two tables it was written with (atomic.fingerprint of each), so that
# a reader can tell a whole set from a mix: pipeline.buildinputs checks it (under the same name).
OUTPUTS_KEY = "outputs"


def write_outputs(result: NormalizeResult, name: str, root: Path | None = None) -> dict[str, Path]:
    """Write the turn table, quarantine, metrics and report, replaced together (atomic_paths).

    All four are written before any is renamed into place: a failure or a kill while the
    quarantine or the report is written leaves the old four, not a new turn table beside the old
    quarantine and a report that counts neither (the build reads the table and the report). The
    report is renamed last and records the size and sha256 of the two tables (`outputs`): a kill
    between the renames leaves a new table beside the previous run's report, which the build
    (pipeline.buildinputs) then refuses, so a user running the stages by hand is not handed a mix.
    """
    paths = output_paths(name, root)
    targets = (paths["turns"], paths["quarantine"], paths["metrics"], paths["report"])
    with atomic_paths(*targets) as (turns, quarantine, metrics, rep):
        result.turns.write_parquet(turns)
        result.quarantine.write_parquet(quarantine)
        metrics.write_bytes(json_bytes(summary_metrics(result.report)))
        # The temporaries are renamed, not rewritten: their bytes are the published ones.
        outputs = {"turns": fingerprint(turns), "quarantine": fingerprint(quarantine)}
        rep.write_bytes(json_bytes({**result.report, OUTPUTS_KEY: outputs}))
    return paths
