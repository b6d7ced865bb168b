"""Parquet column shapes the batched reader must read as pyarrow does and count before expanding:
maps (a MapArray is a ListArray to isinstance, but Arrow cannot flatten it) and fixed-size lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.sources.readers import iter_parquet

MAP = pa.map_(pa.string(), pa.string())


def _rows(path: Path) -> tuple[list, list]:
    records = list(iter_parquet(path))
    return [r.value for r in records if r.ok], [r.reason for r in records if not r.ok]


@pytest.mark.parametrize(
    "column",
    [
        # a map column (Spark writes metadata this way): Arrow has no list_flatten for a MapArray,
        # which isinstance takes for a ListArray, so the counting of every batch raised and the whole
        # file was quarantined as unreadable
        pa.array([[("lang", "en"), ("id", "a")], None, [], [("lang", "fr")]] * 50, MAP),
        pa.array([[(1, 2)], [(3, 4), (5, 6)]] * 100, pa.map_(pa.int32(), pa.int32())),
        pa.array([[[("k", "v")]], [], None, [[], [("a", "b")]]] * 50, pa.list_(MAP)),
        pa.array(
            [{"meta": [("k", "v")], "text": "hi"}] * 200, pa.struct([("meta", MAP), ("text", pa.string())])
        ),
    ],
    ids=["map_string", "map_int", "list_of_map", "map_in_struct"],
)
def test_parquet_map_columns_read_as_pyarrow_does(tmp_path: Path, column: pa.Array) -> None:
    path = tmp_path / "maps.parquet"
    pq.write_table(pa.table({"m": column, "text": ["hello"] * len(column)}), path, row_group_size=70)
    rows, problems = _rows(path)
    assert problems == []
    assert rows == pq.read_table(path).to_pylist()


def test_parquet_map_of_long_dictionary_values_read_as_dictionaries(tmp_path: Path) -> None:
    """One long value among a map's dictionary values makes the column read as dictionaries
    (_expanding_columns probes them): the map's keys and items are found and counted, and the rows
    come out as pyarrow's own."""
    items = [[("k", f"v{i}")] for i in range(2_000)]
    items[5] = [("k", "L" * 200_000)]
    path = tmp_path / "long.parquet"
    pq.write_table(pa.table({"m": pa.array(items, MAP)}), path, row_group_size=700)
    rows, problems = _rows(path)
    assert problems == []
    assert rows == pq.read_table(path).to_pylist()


def test_a_dictionary_inside_a_fixed_size_list_is_counted_before_it_is_expanded(tmp_path: Path) -> None:
    """A fixed-size list was not looked into: a dictionary value inside one counted as its index."""
    from pipeline.sources.readers import _dense_nbytes

    long = pa.DictionaryArray.from_arrays(pa.array([0] * 8, pa.int32()), pa.array(["x" * 1000]))
    column = pa.FixedSizeListArray.from_arrays(long, 2)
    assert _dense_nbytes(column) >= 8 * 1000
    path = tmp_path / "fixed.parquet"
    pq.write_table(
        pa.table({"pair": pa.array([["a", "b"], ["c", None]] * 100, pa.list_(pa.string(), 2))}), path
    )
    rows, problems = _rows(path)
    assert problems == [] and rows == pq.read_table(path).to_pylist()


@pytest.mark.parametrize("stage", ["registry", "download", "normalize"])
def test_a_stage_that_reads_no_parquet_does_not_import_pyarrow(stage: str) -> None:
    """pyarrow (~0.2 s) is imported by the parquet reader when a source has a parquet file, not with
    pipeline.sources.readers, which registry and download import (through contrib) for its JSON
    and line helpers, and normalize for every adapter."""
    code = f"import sys, stages.{stage}\nprint('pyarrow' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
