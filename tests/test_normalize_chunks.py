"""normalize_rows takes the rows a slice of whole conversations at a time (for memory): the tables
and report must be the whole frame's, byte for byte, whatever the slice size."""

from __future__ import annotations

import io
import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.sources.normalize import _slices, normalize_rows
from pipeline.sources.rows import RawRows, concat


def _file_a() -> pl.DataFrame:
    r = RawRows("contrib/a", "CC0-1.0", True)
    r.add("1", "hi", "a.jsonl:1", role="human")
    r.add("1", "hello", "a.jsonl:1", role="bot")
    r.add("2", "bot first", "a.jsonl:2", role="bot")  # first_turn_human
    r.add("2", "q", "a.jsonl:2", role="human")
    r.add("2", "a", "a.jsonl:2", role="bot")
    r.bad("a.jsonl:3", "json_parse", "not JSON", conv_key="3")
    r.add("4", "only a human", "a.jsonl:4", role="human")  # has_bot_turn
    r.add("5", "x", "a.jsonl:5", role="wizard")  # role_valid, breaks 5
    r.add("5", "y", "a.jsonl:5", role="bot")
    r.add("6", "  ", "a.jsonl:6", role="human")  # text_present
    r.add("6", "q", "a.jsonl:6", role="human")
    r.add("6", "a", "a.jsonl:6", role="bot")
    r.add("7", "first part", "a.jsonl:7", role="human")  # 7 interleaves with 8: one slice
    r.add("8", "q8", "a.jsonl:8", role="human")
    r.add("7", "second part", "a.jsonl:7", role="human")
    r.add("8", "a8", "a.jsonl:8", role="bot")
    r.add("7", "answer", "a.jsonl:7", role="bot")
    r.add(None, "no id", "a.jsonl:9", role="human")
    r.skip("a.jsonl:10", "deleted", conv_key="10")
    return r.frame()


def _file_b() -> pl.DataFrame:
    r = RawRows("contrib/b", "MIT", False)
    for i in range(5):
        r.add(f"t{i}", f"hello {i}", f"b.txt:{i}", speaker="u")
        r.add(f"t{i}", f"reply {i}", f"b.txt:{i}", speaker="v", context="a persona" if i % 2 else None)
        r.add(f"t{i}", "x" * 30, f"b.txt:{i}", speaker="v")  # merged into a turn past the limit
    return r.frame()


def _parquet(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 16])
def test_sliced_normalize_is_the_whole_frames(chunk_rows: int) -> None:
    raw = concat([_file_a(), _file_b()])
    whole = normalize_rows(raw, max_turn_chars=40, chunk_rows=10**9)
    sliced = normalize_rows(raw, max_turn_chars=40, chunk_rows=chunk_rows)
    assert whole.turns.height and whole.quarantine.height  # the case holds both
    assert_frame_equal(sliced.turns, whole.turns)
    assert_frame_equal(sliced.quarantine, whole.quarantine)
    assert sliced.report == whole.report
    assert _parquet(sliced.turns) == _parquet(whole.turns)
    assert _parquet(sliced.quarantine) == _parquet(whole.quarantine)


def test_slices_keep_conversations_whole() -> None:
    df = concat([_file_a(), _file_b()]).with_row_index("idx")
    for chunk_rows in (1, 2, 5, 10**9):
        bounds = _slices(df, chunk_rows)
        assert bounds[0][0] == 0 and bounds[-1][1] == df.height
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        slice_of = pl.concat(
            [pl.DataFrame({"idx": range(a, b), "slice": [n] * (b - a)}) for n, (a, b) in enumerate(bounds)]
        ).cast({"idx": pl.UInt32})
        keyed = df.join(slice_of, on="idx").filter(pl.col("conv_key").is_not_null())
        assert (
            keyed.group_by("source", "conv_key").agg(pl.col("slice").n_unique()).get_column("slice").max()
            == 1
        )
    # conversations 7 and 8 interleave: never cut between their rows
    assert all(not (12 < a < 17) for a, _ in _slices(df, 1))


def test_empty_frame_has_one_empty_slice() -> None:
    empty = concat([]).with_row_index("idx")
    assert _slices(empty, 3) == [(0, 0)]
    assert normalize_rows(concat([]), chunk_rows=3).turns.height == 0


def _rows_in_chunks(chunk_rows: int) -> pl.DataFrame:
    """Four two-turn conversations and an unreadable row, as RawRows moves them into polars in
    chunks of `chunk_rows` rows."""
    r = RawRows("s", "MIT", True, chunk_rows=chunk_rows)
    for i in range(4):
        r.add(f"c{i}", f"q{i}", f"f:{i}", role="human")
        r.add(f"c{i}", f"a{i}", f"f:{i}", role="bot")
    r.bad("f:9", "json_parse", "not JSON", conv_key="c9")
    return r.frame()


def test_a_frame_in_chunks_normalizes_as_one_chunk() -> None:
    chunked = _rows_in_chunks(2)
    assert chunked.n_chunks() == 5  # the case: RawRows' chunks, not joined
    for chunk_rows in (1, 3, 10**9):
        parts = normalize_rows(chunked, chunk_rows=chunk_rows)
        whole = normalize_rows(chunked.rechunk(), chunk_rows=chunk_rows)
        assert _parquet(parts.turns) == _parquet(whole.turns)
        assert _parquet(parts.quarantine) == _parquet(whole.quarantine)
        assert parts.report == whole.report


def test_rows_done_with_are_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory: normalize_rows holds only the rows from the slice it works on to the end, so a rows
    frame in chunks goes a chunk at a time as the turn table grows, not whole at the end."""
    from pipeline.sources import normalize

    held: list[tuple[int, int]] = []  # (rows normalize_rows still holds, rows of the slice)
    work = normalize._normalize_slice

    def spy(df: pl.DataFrame, *args: object) -> object:
        held.append((sys._getframe(1).f_locals["df"].height, df.height))
        return work(df, *args)

    monkeypatch.setattr(normalize, "_normalize_slice", spy)
    normalize_rows(_rows_in_chunks(2), chunk_rows=2)
    assert held == [(9, 2), (7, 2), (5, 2), (3, 2), (1, 1)]


def test_the_gate_runs_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory: pandera's checks hold ~2x the frame they are given, so the gate is given a slice's
    turns at a time (whole conversations), which together are the table."""
    from pipeline.sources import normalize

    given: list[pl.DataFrame] = []
    gate = normalize.validate
    monkeypatch.setattr(normalize, "validate", lambda df: given.append(df) or gate(df))
    result = normalize_rows(_rows_in_chunks(2), chunk_rows=3)
    assert [df.height for df in given] == [4, 4, 0]  # the last slice: the unreadable row alone
    assert_frame_equal(pl.concat(given), result.turns)


def test_a_slice_failing_the_gate_names_the_whole_tables_failures() -> None:
    from pandera.errors import SchemaErrors

    from pipeline.schema import validate
    from pipeline.sources.normalize import _validate_by_slice

    turns = normalize_rows(_rows_in_chunks(2), chunk_rows=3).turns
    # turn 0 of the first and of the last conversation made bot turns: one failure in each slice
    broken = turns.with_columns(
        role=pl.when(pl.col("turn") == 0, pl.col("conversation_id").is_in(["s:c0", "s:c3"]))
        .then(pl.lit("bot"))
        .otherwise("role")
    )
    with pytest.raises(SchemaErrors) as whole:
        validate(broken)
    with pytest.raises(SchemaErrors) as sliced:
        _validate_by_slice(broken, [4, 4])
    # the table's failures, both slices' (rows 0-1 and 6-7 of the table), not the first slice's alone
    assert sliced.value.failure_cases.equals(whole.value.failure_cases)
    assert set(whole.value.failure_cases.get_column("index")) == {0, 1, 6, 7}
