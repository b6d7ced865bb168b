"""Hostile inputs: archives, upstream files, registry values, URLs, checkpoints and Hugging Face
folders made by someone else. Each test writes the hostile input itself and checks that it is
refused with one line naming the file (or read safely), before anything is written or allocated."""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import os
import pickle
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pipeline import checkpoint, hf
from pipeline.model import GPT, GPTConfig
from pipeline.sources.errors import SourceError

# ------------------------------------------------------------------------------------------ archives


def _tar(path: Path, entries: list[tuple[str, bytes, str]]) -> Path:
    """A .tar.gz of (name, tar type, data or link target) entries, written as given."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = data.decode()
                tar.addfile(info)
    return path


def _extract(archive: Path, out: Path, patterns: tuple[str, ...] = ()) -> dict:
    from pipeline.sources.archive import extract

    return extract(archive, patterns, out, name="demo", origin=str(archive))


def _written(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []


F, SYM, LNK, CHR, FIFO = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE


@pytest.mark.parametrize(
    "entries",
    [
        [("../evil.txt", F, b"x")],
        [("/tmp/evil.txt", F, b"x")],
        [("ok.txt", F, b"x"), ("a/../../evil.txt", F, b"x")],
        [("C:/evil.txt", F, b"x")],
        [("..\\evil.txt", F, b"x")],
    ],
)
def test_tar_member_leaving_the_folder_refuses_the_archive(tmp_path: Path, entries) -> None:
    out = tmp_path / "out"
    with pytest.raises(
        SourceError, match=r"^demo: archive .* (the archive is refused|as its folder separator)"
    ):
        _extract(_tar(tmp_path / "a.tar.gz", entries), out)
    assert _written(out) == [] and not (tmp_path / "evil.txt").exists()


def test_tar_links_and_devices_are_never_created(tmp_path: Path) -> None:
    """A symlink to /etc followed by a file "through" it, a hard link to /etc/passwd, a device and
    a FIFO: only plain files are written, each inside the folder."""
    entries = [
        ("etc", SYM, b"/etc"),
        ("etc/passwd.txt", F, b"mine"),  # lands in a real folder out/etc/, not through the link
        ("shadow.txt", LNK, b"/etc/passwd"),
        ("up.txt", LNK, b"../../../etc/passwd"),
        ("dev.txt", CHR, b""),
        ("fifo.txt", FIFO, b""),
        ("ok.txt", F, b"ok"),
    ]
    out = tmp_path / "out"
    result = _extract(_tar(tmp_path / "a.tar.gz", entries), out)
    assert result["members_skipped"] == {"device": 1, "fifo": 1, "hardlink": 2, "symlink": 1}
    assert _written(out) == ["etc", "etc/passwd.txt", "ok.txt"]
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert (out / "etc" / "passwd.txt").read_bytes() == b"mine"


def test_zip_symlink_entry_and_bad_names_are_not_written(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        link = zipfile.ZipInfo("link.txt")
        link.create_system, link.external_attr = 3, 0o120777 << 16  # a unix symlink to /etc/passwd
        zf.writestr(link, "/etc/passwd")
        zf.writestr("ok.txt", "ok")
    out = tmp_path / "out"
    assert _extract(path, out)["members_skipped"] == {"symlink": 1}
    assert _written(out) == ["ok.txt"]
    for bad in ("../evil.txt", "/evil.txt", "C:/evil.txt"):
        with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
            zf.writestr(bad, "x")
        with pytest.raises(SourceError, match="outside data/raw/demo; the archive is refused"):
            _extract(tmp_path / "b.zip", tmp_path / "out2")
        assert _written(tmp_path / "out2") == []


def test_archive_of_too_many_members_is_refused_before_listing_it_all(tmp_path: Path, monkeypatch) -> None:
    """Millions of empty members pack into a few MB of .tar.gz and take gigabytes to list (tarfile
    keeps every header): past MAX_MEMBERS the archive is refused, nothing written."""
    from pipeline.sources import archive

    monkeypatch.setattr(archive, "MAX_MEMBERS", 5)
    path = _tar(tmp_path / "a.tar.gz", [(f"{i}.txt", F, b"x") for i in range(7)])
    out = tmp_path / "out"
    with pytest.raises(SourceError, match=r"^demo: archive .* holds more than 5 members .* `local_path:`"):
        _extract(path, out)
    assert _written(out) == []
    assert _extract(_tar(tmp_path / "b.tar.gz", [(f"{i}.txt", F, b"x") for i in range(5)]), out) == {
        "members_extracted": 5,
        "members_skipped": {},
    }


# ---------------------------------------------------------------------------------------- CSV fields


@pytest.fixture
def csv_limit() -> Iterator[None]:
    before = csv.field_size_limit()
    yield
    csv.field_size_limit(before)


def test_csv_field_over_the_line_limit_is_quarantined_and_reading_goes_on(
    tmp_path: Path, monkeypatch, csv_limit
) -> None:
    """A quoted field of a billion characters over many lines packs into a tiny .gz; it was held
    whole (the limit was 1 GiB). Past MAX_LINE_BYTES it is one quarantined record, and the rows
    after it are still read."""
    from pipeline.sources import readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "t.csv"
    huge = "\n".join(["y" * 100] * 50)  # 5,000 characters in one field, no line over the limit
    path.write_text(f'a,b\n1,2\n3,"{huge}"\n5,6\n', encoding="utf-8")
    records = list(readers.iter_csv(path))
    assert records[0].line == 2 and records[0].value == {"a": "1", "b": "2"}
    # the field passes 1,000 characters on line 12 (100 on line 3, 101 more on each line after it)
    assert [(r.line, r.check) for r in records if not r.ok] == [(12, "csv_parse")]
    assert "field larger than field limit" in records[1].reason
    assert (records[-1].line, records[-1].value) == (53, {"a": "5", "b": "6"})
    assert all(len(r.raw) <= 1000 for r in records)


# ------------------------------------------------------------------------------ decompression bombs


def test_gzip_bomb_read_whole_is_one_quarantined_record(tmp_path: Path, monkeypatch) -> None:
    """A contributed `chat.json.gz` (with `format: openai`) of one record and then gigabytes of
    spaces inside the JSON list: 400 KB of gzip took 850 MB to read, 10 MB would take ~20 GB. Past
    MAX_GZIP_RATIO times its size (and MAX_LINE_BYTES) it is one `gzip` record, never held."""
    import gzip

    from pipeline.sources import readers

    monkeypatch.setattr(readers, "UNPACKED_FLOOR", 1000)
    record = b'[{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]}'
    bomb = tmp_path / "chat.json.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(record + b" " * (2 << 20) + b"]")
    assert bomb.stat().st_size < 10_000
    for rec in (*readers.iter_json_records(bomb), readers.read_whole(bomb)):
        assert (rec.line, rec.check) == (1, "gzip")
        assert (
            rec.reason.startswith("gzip file not read: it unpacks to over ")
            and "100 times its size" in rec.reason
        )
    fine = tmp_path / "fine.json.gz"
    fine.write_bytes(gzip.compress(record + b"]"))  # small: under UNPACKED_FLOOR whatever its ratio
    assert [r.check for r in readers.iter_json_records(fine)] == [None]


@pytest.mark.parametrize("name", ["chat.jsonl.gz", "chat.csv.gz"])
def test_gzip_bomb_read_line_by_line_stops_at_its_limit(tmp_path: Path, monkeypatch, name: str) -> None:
    """One short record repeated: 10 MB of gzip is 10 GB of valid lines, each under the line limit,
    and reading held every one (only a .gz read whole was limited). Past MAX_GZIP_RATIO times its
    size the rows read so far are kept and one `gzip` record says where reading stopped."""
    import gzip

    from pipeline.sources import readers

    monkeypatch.setattr(readers, "UNPACKED_FLOOR", 1000)
    line = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]}\n'
    if name.endswith(".csv.gz"):
        line, head = "hi,hey\n", "q,a\n"
    else:
        head = ""
    bomb = tmp_path / name
    bomb.write_bytes(gzip.compress((head + line * 200_000).encode()))
    limit = readers.unpacked_limit(bomb)
    reader = readers.iter_csv if name.endswith(".csv.gz") else readers.iter_jsonl
    *rows, last = reader(bomb)
    assert rows and all(r.ok for r in rows) and len(rows) * len(line) <= limit
    assert (last.line, last.check) == (rows[-1].line + 1, "gzip")
    assert last.reason.startswith(f"gzip file read up to record {rows[-1].line:,}: it unpacks to over ")
    fine = tmp_path / f"fine{bomb.suffixes[0]}.gz"
    fine.write_bytes(gzip.compress((head + line * 5).encode()))
    assert [r.ok for r in reader(fine)] == [True] * 5


def test_parquet_bomb_is_one_quarantined_record_not_read(tmp_path: Path, monkeypatch) -> None:
    """A parquet file of text repeated beyond any real corpus (zstd packs 2 MB of it into a few KB):
    it was read whole, so 10 MB of such a file would take 10 GB. Past MAX_GZIP_RATIO times its
    size (and MAX_LINE_BYTES) its footer's figure refuses it as one `parquet_read` record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources import readers

    monkeypatch.setattr(readers, "UNPACKED_FLOOR", 1000)
    rows = [{"conv_id": f"c{i}", "utterance": "ha" * 50} for i in range(20_000)]
    bomb = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bomb, compression="zstd", use_dictionary=False)
    assert bomb.stat().st_size * readers.MAX_GZIP_RATIO < 2_000_000
    records = list(readers.iter_parquet(bomb))
    assert [(r.line, r.check) for r in records] == [(1, "parquet_read")]
    assert records[0].reason.startswith("parquet file not read: it unpacks to ")
    fine = tmp_path / "fine.parquet"
    pq.write_table(pa.Table.from_pylist(rows[:5]), fine, compression="zstd", use_dictionary=False)
    assert [r.value for r in readers.iter_parquet(fine)] == rows[:5]  # small: under UNPACKED_FLOOR


def test_parquet_dictionary_bomb_stops_where_its_rows_pass_the_limit(tmp_path: Path, monkeypatch) -> None:
    """A dictionary holds a long value once and the rows repeat it by reference: 212 KB of parquet
    stood for 2 GB of text, its footer declaring almost none of it, and normalize built all of it.
    The rows read before the text passes MAX_GZIP_RATIO times the file's size are kept; then one
    `parquet_read` record. Also when the dictionary is Arrow's own type, nested in a list of
    structs (the schema pyarrow keeps in the file gives it back as such)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources import readers

    monkeypatch.setattr(readers, "UNPACKED_FLOOR", 1000)
    fine = [f"ordinary turn number {i}" for i in range(3000)]
    texts = fine + ["ab" * 1000] * 20_000
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"utterance": texts}), path, row_group_size=1000)
    declared = readers._declared_uncompressed_bytes(pq.ParquetFile(path).metadata)
    assert declared < readers.unpacked_limit(path) < 2000 * 20_000  # the footer does not tell
    *rows, last = readers.iter_parquet(path)
    assert [r.value["utterance"] for r in rows[:3000]] == fine and len(rows) < len(texts)
    assert sum(len(r.value["utterance"]) for r in rows) <= readers.unpacked_limit(path)
    assert (last.line, last.check) == (len(rows) + 1, "parquet_read")
    assert last.reason.startswith(f"parquet file read up to row {len(rows):,}: it unpacks to over ")

    content = pa.array(["ab" * 1000] * 4000).dictionary_encode()
    roles = pa.array(["user", "assistant"] * 2000).dictionary_encode()
    messages = pa.StructArray.from_arrays([roles, content], ["role", "content"])
    offsets = pa.array(range(0, 4001, 2), pa.int32())
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"messages": pa.ListArray.from_arrays(offsets, messages)}), nested)
    assert [(r.line, r.check) for r in readers.iter_parquet(nested)] == [(1, "parquet_read")]
    monkeypatch.setattr(readers, "UNPACKED_FLOOR", 64 << 20)  # a floor it stays under: read whole
    rows = list(readers.iter_parquet(nested))
    assert len(rows) == 2000 and rows[0].value["messages"][1] == {"role": "assistant", "content": "ab" * 1000}


def _arrow_peak_refusing(path: Path, rows_kept: int = 0) -> int:
    """Arrow's peak allocation (pool.max_memory()) in a fresh process whose iter_parquet of `path`
    gives `rows_kept` rows and then one `parquet_read` record."""
    import subprocess
    import sys

    code = (
        "import sys, pyarrow as pa\nfrom pathlib import Path\nfrom pipeline.sources import readers\n"
        "records = list(readers.iter_parquet(Path(sys.argv[1])))\n"
        "print(len(records), records[-1].check, pa.default_memory_pool().max_memory())"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=root, capture_output=True, text=True, check=True
    )
    count, check, peak = out.stdout.split()
    assert (int(count), check) == (rows_kept + 1, "parquet_read")
    return int(peak)


def test_parquet_dictionary_bomb_is_counted_before_the_reader_expands_it(tmp_path: Path) -> None:
    """A 500-byte file whose dictionary holds one 900 kB value that 8,192 rows refer to, with no
    Arrow schema in it: the reader expanded its first 1,024 rows to 900 MB before any count could
    stop it (tens of GB with a longer value). Such a column is now read as a dictionary and counted
    first: a fresh process reading it allocates little (Arrow's own peak, pool.max_memory())."""

    import pyarrow as pa
    import pyarrow.parquet as pq

    value = "a" * (900 << 10)
    column = pa.DictionaryArray.from_arrays(pa.array([0] * 8192, pa.int32()), pa.array([value]))
    bomb = tmp_path / "train.parquet"
    pq.write_table(pa.table({"utterance": column}), bomb, compression="zstd", store_schema=False)
    assert bomb.stat().st_size < 2000
    assert _arrow_peak_refusing(bomb) < 50 << 20


def test_parquet_lists_of_packed_nulls_are_refused_unread(tmp_path: Path) -> None:
    """Run-length levels pack a list of millions of nulls into a few bytes: a 300-byte file held
    128 million, over half a gigabyte once read, all in the reader's first batch. Its footer
    declares the values, and each takes at least MIN_VALUE_BYTES once read: refused unread."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources import readers

    # 32 million nulls: 128 MB declared, twice UNPACKED_FLOOR, and as much once read, far over the
    # peak bound below (the 128 million of the file found took seconds to write, for no more proof)
    rows, per_row = 64, 500_000
    offsets = pa.array(np.arange(0, (rows + 1) * per_row, per_row, dtype=np.int64))
    column = pa.LargeListArray.from_arrays(offsets, pa.nulls(rows * per_row, pa.string()))
    bomb = tmp_path / "train.parquet"
    pq.write_table(pa.table({"turns": column}), bomb, compression="zstd", store_schema=False)
    assert bomb.stat().st_size < 2000
    records = list(readers.iter_parquet(bomb))
    assert records[0].reason.startswith("parquet file not read: it unpacks to over ")
    assert _arrow_peak_refusing(bomb) < 50 << 20  # unread: not decoded and then refused
    fine = tmp_path / "fine.parquet"  # the same shape, ordinary sizes: read
    offsets = pa.array([0, 2, 3], pa.int64())
    pq.write_table(
        pa.table({"turns": pa.LargeListArray.from_arrays(offsets, pa.array(["a", None, "b"]))}), fine
    )
    assert [r.value for r in readers.iter_parquet(fine)] == [{"turns": ["a", None]}, {"turns": ["b"]}]


def test_parquet_delta_prefix_bomb_is_read_in_batches_it_cannot_overfill(tmp_path: Path) -> None:
    """DELTA_BYTE_ARRAY builds each value from the one before's prefix: 1,024 rows repeating one
    512 kB value fit in a few hundred bytes, and the reader's first batch built 512 MB of them.
    Batches are cut to what the limit allows for values as long as the chunk's declared size
    (_batch_rows): the rows before the limit are kept, and Arrow's peak stays near the limit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources import readers

    value = "a" * (512 << 10)
    bomb = tmp_path / "train.parquet"
    options = {"use_dictionary": False, "column_encoding": {"utterance": "DELTA_BYTE_ARRAY"}}
    pq.write_table(
        pa.table({"utterance": [value] * 1024}),
        bomb,
        compression="zstd",
        store_schema=False,
        data_page_size=1 << 30,  # one page: every value a prefix of the first
        write_batch_size=4096,
        **options,
    )
    assert bomb.stat().st_size < 2000
    limit = readers.unpacked_limit(bomb)
    rows = readers._batch_rows(pq.ParquetFile(bomb).metadata, limit)
    assert 1 < rows < 1024 and rows * len(value) <= limit
    assert _arrow_peak_refusing(bomb, rows_kept=rows) < 3 * limit  # a batch kept, one refused: not 8
    fine = tmp_path / "fine.parquet"  # ordinary text in the same encoding: every row, in order
    texts = [f"turn {i} of a conversation" for i in range(3000)]
    pq.write_table(pa.table({"utterance": texts}), fine, **options)
    assert [r.value["utterance"] for r in readers.iter_parquet(fine)] == texts


def test_a_long_dictionary_value_read_as_a_dictionary_gives_the_same_rows(tmp_path: Path) -> None:
    """A column read as a dictionary because its longest value times its rows could pass the limit
    gives the rows the plain read gives, when they are in fact short."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources import readers

    texts = ["x" * 400_000] + [f"turn {i}" for i in range(299)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"utterance": texts, "n": list(range(300))}), path, compression="zstd")
    parquet = pq.ParquetFile(path)
    assert readers._expanding_columns(path, parquet, readers.unpacked_limit(path)) == ["utterance"]
    assert [r.value for r in readers.iter_parquet(path)] == [
        {"utterance": t, "n": i} for i, t in enumerate(texts)
    ]


def test_a_parquet_file_damaged_part_way_keeps_the_rows_before_the_damage(tmp_path: Path) -> None:
    """A parquet file damaged in its second row group (a bad disk, a hand-edited copy) lost every
    row: it was read whole, so the error came before any row. Rows are read in batches now, and the
    damage is one `parquet_read` record after the rows read before it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.sources import readers

    rows = [{"conv_id": f"c{i}", "utterance": f"text number {i} " * 5} for i in range(3000)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=1000, compression="zstd")
    column = pq.ParquetFile(path).metadata.row_group(1).column(1)
    data = bytearray(path.read_bytes())
    middle = column.data_page_offset + column.total_compressed_size // 2
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    records = list(readers.iter_parquet(path))
    assert [r.value for r in records[:1000]] == rows[:1000]  # the undamaged row group, whole
    last = records[-1]
    assert (last.line, last.check) == (len(records), "parquet_read") and all(r.ok for r in records[:-1])
    assert last.reason.startswith(f"unreadable parquet file (after row {len(records) - 1:,}: ")


# ---------------------------------------------------------------------------------- registry values


@pytest.mark.parametrize("revision", ["../../../../etc", "main/../../x", "/abs", "a\\b", "ok\nx", "refs//x"])
def test_hub_revision_that_is_no_ref_name_is_refused(revision: str) -> None:
    """huggingface_hub joins a revision into its cache path as `refs/<revision>` (read offline,
    written after a lookup): `../` there reaches any file of the machine."""
    from pipeline.sources.registry import parse_entry

    fields = {
        "kind": "hf_dataset",
        "location": "someone/corpus",
        "revision": revision,
        "adapter": "oasst1",
        "licence": "MIT",
        "commercial": False,
    }
    with pytest.raises(SourceError, match=r"^sources.yaml: demo: `revision:` .* is not a commit sha"):
        parse_entry("demo", fields)
    for fine in ("main", "fdf72ae0827c1cda404aff25b6603abec9e3399b", "refs/convert/parquet", "v1.0"):
        assert parse_entry("demo", {**fields, "revision": fine}).revision == fine


# -------------------------------------------------------------------------------------------- HTTP


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("NANOCHATGPT_DOWNLOAD_CACHE", str(tmp_path / "dl-cache"))
    return tmp_path / "dl-cache"


@pytest.mark.parametrize("scheme", ["file", "data", "ftp"])
def test_url_source_downloads_over_http_only(tmp_path: Path, cache: Path, scheme: str) -> None:
    """urllib opens file:// too: `location: file:///home/you/.ssh/id_rsa` copied a file of this
    machine into data/raw (or printed its sha256 when the pin was wrong)."""
    from pipeline.sources.http import cached_url, fetch_url

    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"token=hunter2\n")
    sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    url = {"file": secret.as_uri(), "data": "data:,token=hunter2%0A", "ftp": "ftp://127.0.0.1:9/x"}[scheme]
    dest = tmp_path / "raw" / "x.txt"
    with pytest.raises(SourceError, match=r"^demo: cannot download .*must be an https:// \(or http://\) URL"):
        fetch_url(url, sha, dest, name="demo")
    with pytest.raises(SourceError, match="must be an https://"):
        cached_url(url, sha, name="demo")
    assert not dest.exists() and not any(cache.glob("*"))


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[tuple[str, type[_Redirect]]]:
    handler = type("Handler", (_Redirect,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/corpus.txt", handler
    httpd.shutdown()
    httpd.server_close()


def test_redirect_away_from_http_is_refused(tmp_path: Path, cache: Path, redirecting) -> None:
    """urllib's own rule follows a redirect to ftp:// (it refuses file://): a download server
    could send it to any FTP host. A download follows http(s) redirects only."""
    from pipeline.sources.http import fetch_url

    url, handler = redirecting
    handler.target = "ftp://127.0.0.1:9/elsewhere.txt"
    with pytest.raises(
        SourceError, match=r"^demo: cannot download .*\(HTTP 302: redirect to a non-http\(s\) URL"
    ):
        fetch_url(url, "0" * 64, tmp_path / "x.txt", name="demo")
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("target", ["file:///etc/passwd", "data:,token%3Dhunter2"])
def test_a_redirect_urllib_refuses_itself_says_where_it_pointed(
    tmp_path: Path, cache: Path, redirecting, target: str
) -> None:
    """urllib refuses a redirect to file:// or data: by itself, before the http(s) rule, and the
    message was a bare "(HTTP 302)": the same one line as for ftp://, naming the target."""
    from pipeline.sources.http import fetch_url

    url, handler = redirecting
    handler.target = target
    with pytest.raises(SourceError) as err:
        fetch_url(url, "0" * 64, tmp_path / "x.txt", name="demo")
    assert f"(HTTP 302: redirect to a non-http(s) URL: {target})" in str(err.value)
    assert not (tmp_path / "x.txt").exists() and not any(cache.glob("*"))


class _Huge(http.server.BaseHTTPRequestHandler):
    """Declares an exabyte, sends a few bytes (a client that trusted it would write until the disk
    is full)."""

    sent = 0

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(10**18))
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        type(self).sent += 1000

    def log_message(self, *args: object) -> None:
        pass


def test_download_larger_than_the_free_disk_is_refused_before_writing(tmp_path: Path, cache: Path) -> None:
    from pipeline.sources.http import fetch_url

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Huge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/big.bin"
        with pytest.raises(
            SourceError,
            match=r"^demo: .* is 1,000,000,000,000,000,000 bytes, .* more than the download cache",
        ):
            fetch_url(url, "0" * 64, tmp_path / "x.bin", name="demo")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not any(cache.glob("*.part")) and not (tmp_path / "x.bin").exists()


# -------------------------------------------------------------------------------------- checkpoints


def _tiny_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    checkpoint.save_model(GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=16)), folder)
    return folder


def _edit(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture
def no_real_big_model(monkeypatch) -> None:
    """GPT(cfg) for anything bigger than the test weights, off the meta device, fails the test
    at once (rather than allocating what a hostile config.json claims)."""
    real = GPT

    def guarded(cfg: GPTConfig) -> GPT:
        if cfg.n_layer > 4:
            raise AssertionError(f"built {cfg.n_layer} layers before checking them against the weights")
        if torch.empty(0).device.type != "meta" and cfg.n_embd > 32:
            raise AssertionError(f"allocated n_embd {cfg.n_embd} before checking it against the weights")
        return real(cfg)

    monkeypatch.setattr(checkpoint, "GPT", guarded)
    monkeypatch.setattr(hf, "GPT", guarded)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"n_embd": 1 << 20, "n_head": 1},
            r"wrong shape 17: lm_head\.weight \(50304, 16\) \(expected \(50304, 1048576\)\)",
        ),
        ({"n_layer": 10**9}, r"n_layer is 1000000000 but the weights hold 1 layer\(s\)"),
        ({"block_size": 1 << 30}, r"wrong shape 1: transformer\.wpe\.weight"),
    ],
)
def test_checkpoint_config_is_checked_against_the_weights_before_allocating(
    tmp_path: Path, no_real_big_model, changes: dict, message: str
) -> None:
    """A config.json claiming a huge model beside small weights: the model was built (hundreds of
    GB, randomly initialised) before a single tensor was compared."""
    folder = _tiny_checkpoint(tmp_path)
    _edit(folder / checkpoint.CONFIG_FILE, **changes)
    with pytest.raises(ValueError, match=rf"model\.safetensors: weights do not fit the config: .*{message}"):
        checkpoint.load_model(folder)


@pytest.mark.parametrize(
    "text, message",
    [
        (lambda good: {**good, "n_layer": True}, "sizes must be positive integers"),
        (
            lambda good: {**good, "dropout": "x"},
            r"dropout must be a number in \[0, 1\) and bias true or false",
        ),
        (lambda good: {**good, "bias": "no"}, "bias true or false"),
        (lambda good: "[" * 100_000 + "]" * 100_000, r"not a model config \(nested too deeply\)"),
        (lambda good: '{"n_layer": 1' + "0" * 5000 + "}", r"not a model config \(Exceeds the limit"),
        (lambda good: [1, 2], r"not a model config \(expected a JSON object\)"),
    ],
)
def test_malformed_checkpoint_config_is_one_line_naming_it(tmp_path: Path, text, message: str) -> None:
    folder = _tiny_checkpoint(tmp_path)
    config = folder / checkpoint.CONFIG_FILE
    value = text(json.loads(config.read_text()))
    config.write_text(value if isinstance(value, str) else json.dumps(value))
    with pytest.raises(ValueError, match=rf"config\.json: .*{message}") as info:
        checkpoint.load_model(folder)
    assert "\n" not in str(info.value)


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickles_are_never_run(tmp_path: Path, monkeypatch) -> None:
    """A pickle saved as model.safetensors, or as state.pt: refused, not executed."""
    monkeypatch.chdir(tmp_path)
    folder = _tiny_checkpoint(tmp_path / "ckpt")
    (folder / checkpoint.WEIGHTS_FILE).write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        checkpoint.load_model(folder)
    (folder / checkpoint.STATE_FILE).write_bytes(pickle.dumps({"x": _Boom()}))
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load_state(folder)
    assert not (tmp_path / "pwned").exists()


def test_safetensors_header_claiming_more_than_the_file_is_refused(tmp_path: Path) -> None:
    folder = _tiny_checkpoint(tmp_path)
    header = json.dumps(
        {"transformer.wte.weight": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 4 * 10**12]}}
    ).encode()
    (folder / checkpoint.WEIGHTS_FILE).write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        checkpoint.load_model(folder)


# ------------------------------------------------------------------------- Hugging Face directories


def _hf_dir(tmp_path: Path) -> Path:
    from pipeline import hfexport

    torch.manual_seed(1)
    hfexport.export_hf(GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=16)), tmp_path / "hf")
    return tmp_path / "hf"


def test_hf_config_is_checked_against_the_weights_before_allocating(
    tmp_path: Path, no_real_big_model
) -> None:
    path = _hf_dir(tmp_path)
    for changes, message in (
        ({"n_layer": 10**9}, r"n_layer is 1000000000 but the weights hold 1 layer"),
        ({"n_embd": 1 << 20, "n_head": 1}, r"wrong shape"),
    ):
        good = (path / "config.json").read_text()
        _edit(path / "config.json", **changes)
        with pytest.raises(
            ValueError, match=rf"\(against config\.json\): weights do not fit the config: .*{message}"
        ):
            hf.load_pretrained(str(path))
        (path / "config.json").write_text(good)
    assert hf.load_pretrained(str(path)).config.n_layer == 1


@pytest.mark.parametrize(
    "shard", ["../outside/model.safetensors", "/abs/model.safetensors", "sub/x.safetensors", "w.bin"]
)
def test_hf_shard_names_stay_in_the_folder(tmp_path: Path, shard: str) -> None:
    """model.safetensors.index.json names the shards: `../outside/model.safetensors` read (and
    hashed into the run's fingerprint) a file outside the folder the user named."""
    path = _hf_dir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (path / "model.safetensors").rename(outside / "model.safetensors")
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"transformer.wte.weight": shard}})
    )
    with pytest.raises(
        ValueError, match=r"model\.safetensors\.index\.json: weight_map names the shard .* same folder"
    ):
        hf.resolve_files(str(path))
    assert hf.source_digest(str(path)).startswith("unreadable (ValueError")


def test_hf_json_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    path = _hf_dir(tmp_path)
    (path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON \(nested too deeply\)"):
        hf.load_pretrained(str(path))


@pytest.fixture
def no_special_reads(monkeypatch) -> None:
    """Path.read_text of a device or FIFO fails the test at once: without the check, reading
    /dev/zero would take all memory and a FIFO would block forever."""
    real = Path.read_text

    def guarded(self: Path, *args: object, **kwargs: object) -> str:
        if self.exists() and not self.is_file():
            raise AssertionError(f"read {self}, which is no regular file")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", guarded)


@pytest.mark.parametrize(
    "name, target",
    [("config.json", "/dev/zero"), ("config.json", "fifo"), ("model.safetensors", "/dev/zero")],
)
def test_hf_folder_file_linked_to_a_device_or_fifo_is_refused(
    tmp_path: Path, no_special_reads, name: str, target: str
) -> None:
    """A model folder from someone else with `config.json -> /dev/zero` was read until memory ran
    out; a FIFO blocked forever. A link to a regular file (the Hub cache's layout) still loads."""
    path = _hf_dir(tmp_path)
    moved = tmp_path / name
    (path / name).rename(moved)
    (path / name).symlink_to(moved)  # a link to a regular file elsewhere: fine
    assert hf.load_pretrained(str(path)).config.n_layer == 1
    (path / name).unlink()
    if target == "fifo":
        os.mkfifo(path / name)
    else:
        (path / name).symlink_to(target)
    with pytest.raises(ValueError, match=rf"{name}: not a regular file"):
        hf.load_pretrained(str(path))


@pytest.mark.parametrize("name", [checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE, checkpoint.STATE_FILE])
def test_checkpoint_file_linked_to_a_device_is_refused(tmp_path: Path, no_special_reads, name: str) -> None:
    folder = _tiny_checkpoint(tmp_path / "ckpt")
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to("/dev/zero")
    load = checkpoint.load_state if name == checkpoint.STATE_FILE else checkpoint.load_model
    with pytest.raises(ValueError, match=rf"{name}: not a regular file"):
        load(folder)


@pytest.mark.parametrize("token_id", ["²", "1" * 5000])
def test_hf_added_token_id_that_is_no_number_names_the_file(tmp_path: Path, token_id: str) -> None:
    """`"²".isdigit()` is true but int() refuses it: a ValueError without the file's name."""
    path = _hf_dir(tmp_path)
    config = path / "tokenizer_config.json"
    data = json.loads(config.read_text()) if config.is_file() else {}
    data["added_tokens_decoder"] = {token_id: {"content": "[PAD]"}}
    config.write_text(json.dumps(data))
    with pytest.raises(
        ValueError,
        match=r"tokenizer_config\.json: added token '\[PAD\]' at id .*expected a string at an integer id",
    ):
        hf.declared_tokens(path)


# ------------------------------------------------------------------------------- regex backtracking


def _seconds(call, *args: object) -> float:
    import time

    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "case",
    [
        "arithmetic",
        "hn_paragraph",
        "hn_tag",
        "card_heading",
        "licence",
        "licence_forbidding",
        "licence_permission",
        "licence_permission_words",
        "licence_purpose",
        "licence_note",
        "licence_attribution",
        "licence_permission_commercial",
        "licence_required_for",
        "licence_no_required_for",
        "licence_contact",
        "licence_offer",
        "licence_offer_words",
        "licence_spelled",
        "licence_data_part",
        "licence_email_removed",
        "licence_offer_spelled",
        "licence_no_licence_needed",
        "licence_only_first_run",
        "licence_only_first_limits",
        "licence_only_first_clauses",
        "licence_contact_after",
        "licence_offer_contact_after",
        "licence_made_by",
        "licence_granted_run",
        "licence_granted_heads",
        "licence_negated_use",
        "licence_negated_heads",
        "licence_made_by_only",
        "licence_made_by_run",
        "licence_rights_reserved",
        "licence_with_named",
        "licence_purpose_clause",
        "licence_purpose_clauses",
        "licence_granted_to",
        "licence_described",
        "licence_both_uses",
        "licence_both_uses_runs",
        "licence_both_uses_apart",
        "licence_open_list",
        "licence_open_list_heads",
        "licence_production_pairs",
        "licence_production_pair_apart",
        "licence_non_dashes",
        "licence_rights_for_reserved",
        "licence_reserve_rights",
        "licence_plus_notes",
        "licence_holders",
        "licence_pairs_under",
        "licence_pairs_led",
        "licence_use_heads",
        "licence_pair_led_value_end",
        "licence_rights_kept",
        "licence_rights_kept_dashes",
        "licence_keeper_retains",
        "licence_reserved_label",
        "licence_university",
        "licence_holder_tail",
        "licence_notes_and",
        "licence_notes_plus",
        "licence_labels",
        "licence_comma_note",
        "licence_licensed_under",
    ],
)
def test_regexes_over_upstream_text_take_linear_time(case: str) -> None:
    """Each pattern tried a run of whitespace (or of `<`) from every position in it: 50,000
    characters took seconds and a field or card line of a megabyte (a few KB of .gz or parquet)
    stalled normalize, the build's NOTICE.md or a sidecar's licence check for up to an hour. Now a
    few milliseconds, and the same text comes out for ordinary input."""
    from pipeline import notices
    from pipeline.sources import licences
    from pipeline.sources.adapters import arithmetic, hackernews

    n = 100_000  # the quadratic patterns took 1.5 s (hn_tag) to 10 s at 50,000: clear of the limit
    call, hostile = {
        "arithmetic": (arithmetic.as_question, " " * n + "x"),
        "hn_paragraph": (hackernews.html_to_text, "<p" + " " * n),
        "hn_tag": (hackernews.html_to_text, "<" * n),
        "card_heading": (notices._terms_sections, "# a" + " " * n + "b\n\n## Licence ##  \nMIT\n"),
        "licence": (licences.is_non_commercial, "research " * (n // 9)),  # a sidecar's `licence:`
        "licence_forbidding": (licences.is_non_commercial, "commercial " * (n // 11)),
        "licence_permission": (licences.is_non_commercial, "commercial" + " " * n + "x"),
        "licence_permission_words": (
            licences.is_non_commercial,
            "commercial use requires " + "a " * (n // 2),
        ),
        "licence_purpose": (licences.is_non_commercial, "for research and " * (n // 17)),
        "licence_note": (licences.is_unknown, "other" + " " * n + "(x)"),
        "licence_attribution": (licences.needs_attribution, "no " * (n // 3) + "attribution"),
        # licE: a permission's "commercial" (once, not a run), the permission before "required for
        # commercial" (and the "no" looked back for), other ways to say "contact", a dual licence's
        # offer after an open licence's id, a spelled-out name's separators
        "licence_permission_commercial": (
            licences.is_non_commercial,
            "commercial use requires a " + "commercial " * (n // 11),
        ),
        "licence_required_for": (licences.is_non_commercial, "paid " * (n // 5) + "licence required for x"),
        "licence_no_required_for": (
            licences.is_non_commercial,
            "no licence required for commercial use, " * (n // 40),
        ),
        "licence_contact": (licences.is_non_commercial, "get in touch " * (n // 13)),
        "licence_offer": (licences.is_non_commercial, "MIT" + " " * n + "or commercial x"),
        "licence_offer_words": (licences.is_non_commercial, "GPL-3.0; " + "a " * (n // 2) + "x"),
        "licence_spelled": (licences.standing, "MIT" + " -," * (n // 3) + "x"),
        # licB: a purpose word naming a part of the data, "email" as a noun (each read once, then the
        # next contact word), a spelled-out name before an offer (its first words only, each a
        # prefix), "no commercial licence required" at a clause's end
        "licence_data_part": (licences.is_non_commercial, "testing split " * (n // 14) + "only"),
        "licence_email_removed": (
            licences.is_non_commercial,
            "email addresses removed " * (n // 24) + "for commercial use",
        ),
        "licence_offer_spelled": (licences.is_non_commercial, "MIT License " * (n // 12) + "x"),
        "licence_no_licence_needed": (
            licences.is_non_commercial,
            "no commercial license required" + " " * n + "x",
        ),
        # licG: a limiting word before a purpose (one run of purpose words read once, each limiting
        # word reading on to the next, a value split at each clause break)
        "licence_only_first_run": (licences.is_non_commercial, "only " + "research and " * (n // 13)),
        "licence_only_first_limits": (licences.is_non_commercial, "restricted to the " * (n // 18)),
        "licence_only_first_clauses": (
            licences.is_non_commercial,
            "restricted to the research code, " * (n // 33),
        ),
        # licB (session 35): a contact after the commercial phrase, in a value and in an offer beside
        # an open licence (a full stop may end its name); a limiting word after how the data was made
        "licence_contact_after": (licences.is_non_commercial, "commercial licensing inquiries " * (n // 31)),
        "licence_offer_contact_after": (
            licences.is_non_commercial,
            "MIT. for commercial licensing" + " " * n + "x",
        ),
        "licence_made_by": (licences.is_non_commercial, "annotated only by " * (n // 18)),
        # redR (session 35): a use granted for a purpose that ends the clause (a long run of purpose
        # words after a granting word; granting words each reading on), a negation reaching "commercial"
        "licence_granted_run": (licences.is_non_commercial, "free for " + "research and " * (n // 13) + "x"),
        "licence_granted_heads": (licences.is_non_commercial, "freely available for " * (n // 21) + "x"),
        "licence_negated_use": (licences.is_non_commercial, "not " + "be used for " * (n // 12) + "x"),
        "licence_negated_heads": (licences.is_non_commercial, "cannot " * (n // 7) + "x"),
        # licB (session 36): purpose words after how the data was made (each reads a bounded look-back),
        # commercial rights reserved, "with the license" at a clause's end, a purpose as a note (one
        # long run; many short clauses), "to" leading to a purpose, "is not a commercial ..."
        "licence_made_by_only": (licences.is_non_commercial, "annotated by research " * (n // 22) + "only"),
        "licence_made_by_run": (
            licences.is_non_commercial,
            "annotated by " + "research " * (n // 9) + "only",
        ),
        "licence_rights_reserved": (licences.is_non_commercial, "commercial use rights are " * (n // 26)),
        "licence_with_named": (
            licences.is_non_commercial,
            "commercial rights with the license" + " " * n + "x",
        ),
        "licence_purpose_clause": (licences.is_non_commercial, "research and " * (n // 13) + "use"),
        "licence_purpose_clauses": (licences.is_non_commercial, "research use/" * (n // 13) + "x"),
        "licence_granted_to": (licences.is_non_commercial, "available to " * (n // 13) + "x"),
        "licence_described": (licences.is_non_commercial, "is not a commercial " * (n // 20)),
        # licI (session 36): a pair that names both uses (each clause read once, a long run of pairs,
        # the words before one), a list of who may have the data after a comma (each clause once)
        "licence_both_uses": (licences.is_non_commercial, "commercial and non-commercial use, " * (n // 35)),
        "licence_both_uses_runs": (licences.is_non_commercial, "non-commercial and " * (n // 19)),
        "licence_both_uses_apart": (
            licences.is_non_commercial,
            "fee " * (n // 4) + "commercial and non-commercial use",
        ),
        "licence_open_list": (
            licences.is_non_commercial,
            "available to researchers, " + "companies, " * (n // 11) + "x",
        ),
        "licence_open_list_heads": (licences.is_non_commercial, "available to researchers, " * (n // 26)),
        # licK (session 36): a production pair that must end its clause, "non" before a Unicode dash
        "licence_production_pairs": (
            licences.is_non_commercial,
            "production and non-production " * (n // 30),
        ),
        "licence_production_pair_apart": (
            licences.is_non_commercial,
            "fee " * (n // 4) + "production and non-production use",
        ),
        "licence_non_dashes": (licences.is_non_commercial, "non\u2011" * (n // 4) + "x"),
        # licC (session 37): commercial rights kept back in other words, a purpose after " +", who
        # holds a purpose after "to", a pair "under" a licence or after one that leads the value (each
        # pair reads a bounded few characters on), the use itself heading a grant
        "licence_rights_for_reserved": (
            licences.is_non_commercial,
            "rights for commercial use are strictly " * (n // 39),
        ),
        "licence_reserve_rights": (
            licences.is_non_commercial,
            "reserves all rights to commercial " * (n // 34),
        ),
        "licence_plus_notes": (licences.is_non_commercial, "MIT +" + " +" * (n // 2) + "x"),
        "licence_holders": (licences.is_non_commercial, "available to research institutions " * (n // 35)),
        "licence_pairs_under": (
            licences.is_non_commercial,
            "commercial and non-commercial use under " * (n // 40) + "MIT",
        ),
        "licence_pairs_led": (
            licences.is_non_commercial,
            "MIT licence for " + "commercial and non-commercial " * (n // 30),
        ),
        "licence_use_heads": (licences.is_non_commercial, "use for " * (n // 8) + "x"),
        # a pair after a listed licence reads on to the value's end (_VALUE_ENDS) across a long run
        "licence_pair_led_value_end": (
            licences.is_non_commercial,
            "MIT licence for commercial and non-commercial use" + " ." * (n // 2) + "x",
        ),
        # licK (session 37): commercial rights kept by who made the data (a long run of dashes before
        # "reserved"), "university" before a purpose, what follows who holds a purpose (a bounded
        # few words per head), a purpose note after "&", "+", "|", a label or a comma, "Licensed under"
        "licence_rights_kept": (licences.is_non_commercial, "commercial rights remain with the " * (n // 34)),
        "licence_rights_kept_dashes": (licences.is_non_commercial, "commercial use" + " -" * (n // 2) + "x"),
        "licence_keeper_retains": (licences.is_non_commercial, "the authors retain all " * (n // 23)),
        "licence_reserved_label": (licences.is_non_commercial, "reserved: " * (n // 10) + "commercial"),
        "licence_university": (licences.is_non_commercial, "university " * (n // 11)),
        "licence_holder_tail": (
            licences.is_non_commercial,
            "available to research institutions and " * (n // 39),
        ),
        "licence_notes_and": (licences.is_non_commercial, "research & " * (n // 11)),
        "licence_notes_plus": (licences.is_non_commercial, "MIT+research" * (n // 12)),
        "licence_labels": (licences.is_non_commercial, "genre: academic | " * (n // 18)),
        "licence_comma_note": (licences.is_non_commercial, "MIT, " + "research, " * (n // 10)),
        "licence_licensed_under": (licences.is_non_commercial, "licensed under " * (n // 15)),
    }[case]
    assert _seconds(call, hostile) < 1.0
    assert arithmetic.as_question("Question: 2+2?  Answer:  ") == "2+2?"
    assert arithmetic.as_question("2 + 2\n answer:") == "2 + 2"
    assert hackernews.html_to_text("a<p>b<br />c < p  / >d <i>e</i> 1<2") == "a\nb\nc \nd e 1<2"
    assert notices._terms_sections("# x\n## Licence ##  \nMIT\n# y") == ["## Licence ##  \nMIT"]
    assert [licences.is_non_commercial(t) for t in ("research, then use only", "research\nonly", "MIT")] == [
        True,
        False,
        False,
    ]


# ------------------------------------------------------------------------------- terminal escapes


@pytest.mark.parametrize("stage", ["download", "normalize", "registry"])
def test_stage_errors_show_escape_codes_in_file_names_as_escapes(monkeypatch, capsys, stage: str) -> None:
    """A file committed to data/contrib as `ESC]0;...BEL.txt` (any byte but / is a name) is named
    in the stages' one-line errors: printed raw, `dvc repro` retitled or cleared the terminal, and a
    line break in the name printed a line of its own making."""
    import importlib

    module = importlib.import_module(f"stages.{stage}")
    name = "\x1b]0;pwned\x07\x1b[2Jchat\nregistry: all sources fine.txt"  # a line break: a fake line

    def hostile(*args: object, **kwargs: object) -> None:
        raise SourceError(f"data/contrib/{name}: no sidecar")

    for attr in ("get_source", "enabled_specs", "check_train_choice"):
        if hasattr(module, attr):
            monkeypatch.setattr(module, attr, hostile)
    assert (module.main(["contrib"]) if stage != "registry" else module.main()) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert (
        err
        == f"{stage}: data/contrib/\\x1b]0;pwned\\x07\\x1b[2Jchat\\nregistry: all sources fine.txt: no sidecar\n"
    )
