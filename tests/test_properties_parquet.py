"""Property tests: readers.iter_parquet gives the rows pyarrow's own whole-file read gives, whatever
the encodings and shape, on each of its read paths.

iter_parquet reads in batches (fewer rows where DELTA_BYTE_ARRAY could repeat long values), reads
text columns whose dictionary could expand past the unpacked limit as Arrow dictionaries and expands
them itself, and counts what it decodes. None of that may change a row: random tables (text with
nulls and non-ASCII, numbers, lists of structs, maps, fixed-size lists, all-null columns), written
with dictionary pages or plain, DELTA_BYTE_ARRAY or not, in row groups of any size, and with or
without Arrow's schema in the file, must read back as `pq.read_table(...).to_pylist()`, row for
row, numbered from 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.sources import readers

TEXT = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["hi", "ok", "", "Grüße 👋", "a" * 200]))
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", None]), "content": TEXT})
ROW = st.fixed_dictionaries(
    {
        "text": TEXT,
        "n": st.one_of(st.none(), st.integers(-(2**40), 2**40)),
        "messages": st.one_of(st.none(), st.lists(MESSAGE, max_size=4)),
        "meta": st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(["lang", "id"]), TEXT), max_size=2)),
        "pair": st.one_of(st.none(), st.lists(TEXT, min_size=2, max_size=2)),
    }
)
SCHEMA = pa.schema(
    {
        "text": pa.string(),
        "n": pa.int64(),
        "messages": pa.list_(pa.struct({"role": pa.string(), "content": pa.string()})),
        "meta": pa.map_(pa.string(), pa.string()),  # a MapArray: a ListArray that Arrow cannot flatten
        "pair": pa.list_(pa.string(), 2),
    }
)
TEXT_COLUMNS = (
    "text",
    "messages.list.element.role",
    "messages.list.element.content",
    "meta.key_value.key",
    "meta.key_value.value",
    "pair.list.element",
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(ROW, max_size=120),
    dictionary=st.booleans(),
    delta=st.booleans(),
    row_group_size=st.integers(1, 64),
    store_schema=st.booleans(),
    read_as_dictionaries=st.booleans(),
    batch_rows=st.sampled_from([1, 7, readers.PARQUET_BATCH_ROWS]),
)
def test_every_read_path_gives_pyarrows_rows(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[dict[str, Any]],
    dictionary: bool,
    delta: bool,
    row_group_size: int,
    store_schema: bool,
    read_as_dictionaries: bool,
    batch_rows: int,
) -> None:
    path = tmp_path / f"t-{dictionary}-{delta}-{row_group_size}-{store_schema}.parquet"
    options: dict[str, Any] = {"use_dictionary": dictionary}
    if delta and not dictionary:  # pyarrow takes a column encoding only without a dictionary
        options["column_encoding"] = dict.fromkeys(TEXT_COLUMNS, "DELTA_BYTE_ARRAY")
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, path, row_group_size=row_group_size, store_schema=store_schema, **options)

    # Each read path on demand: dictionaries read as such for every text column that has a page
    # (as for a long value), and batches of any size (as for DELTA_BYTE_ARRAY's long values).
    # (A context of its own: hypothesis runs every example under the one function-scoped fixture.)
    with monkeypatch.context() as patch:
        if read_as_dictionaries:
            every_one = lambda path, parquet, limit: readers._dictionary_columns(parquet)  # noqa: E731
            patch.setattr(readers, "_expanding_columns", every_one)
        patch.setattr(readers, "_batch_rows", lambda metadata, limit: batch_rows)
        records = list(readers.iter_parquet(path))
    assert all(r.ok for r in records), [r.reason for r in records if not r.ok]
    assert [r.line for r in records] == list(range(1, len(rows) + 1))
    assert [r.value for r in records] == pq.read_table(path).to_pylist()
