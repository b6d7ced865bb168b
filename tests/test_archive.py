"""Archive extraction called directly (pipeline.sources.archive.extract): the free-space check
counts every copy a selection makes, hard links to nothing and `./` names, one name twice. The
download-level archive tests (a served URL, the sources.yaml entries) are in tests/test_sources.py."""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type, info.linkname = tarfile.LNKTYPE, data
                tar.addfile(info)
    return buf.getvalue()


def _extract(tmp_path: Path, entries, patterns):
    from pipeline.sources.archive import extract

    p = tmp_path / "a.tar.gz"
    p.write_bytes(_tar(entries))
    return extract(p, tuple(patterns), tmp_path / "out", name="demo", origin=str(p))


def test_hard_link_copies_count_against_the_free_space(tmp_path: Path, monkeypatch) -> None:
    from pipeline.sources import archive
    from pipeline.sources.errors import SourceError

    monkeypatch.setattr(archive.shutil, "disk_usage", lambda p: SimpleNamespace(free=20 << 20))
    entries = [("d/big.csv", "file", bytes(16 << 20)), ("d/copy.csv", "link", "d/big.csv")]
    with pytest.raises(SourceError, match=r"hold 32\.0 MiB unpacked"):
        _extract(tmp_path, entries, ["d/*.csv"])
    assert not (tmp_path / "out" / "d").exists()


def test_a_hard_link_to_nothing_is_skipped_not_a_traceback(tmp_path: Path) -> None:
    entries = [("d/a.csv", "file", b"x\n"), ("d/b.csv", "link", "d/nowhere.csv")]
    got = _extract(tmp_path, entries, ["d/*.csv"])
    assert got == {"members_extracted": 1, "members_skipped": {"hardlink": 1}}


def test_dot_slash_member_names_are_selected_by_their_path(tmp_path: Path) -> None:
    got = _extract(tmp_path, [("./d/a.csv", "file", b"x\n")], ["d/*.csv"])
    assert got["members_extracted"] == 1 and (tmp_path / "out/d/a.csv").read_bytes() == b"x\n"


def test_one_name_twice_is_refused_before_writing(tmp_path: Path) -> None:
    from pipeline.sources.errors import SourceError

    with pytest.raises(SourceError, match=r"holds 'd/a\.csv' twice; refused"):
        _extract(tmp_path, [("d/a.csv", "file", b"1"), ("./d/a.csv", "file", b"2")], ["d/*.csv"])
    assert not (tmp_path / "out" / "d").exists()


@pytest.mark.parametrize(
    ("compression", "head", "raised"),
    [(zipfile.ZIP_DEFLATED, 3000, "zlib.error"), (zipfile.ZIP_LZMA, 0, "LZMAError")],
)
def test_a_corrupt_zip_member_is_one_line(tmp_path: Path, compression: int, head: int, raised: str) -> None:
    """Damage inside a member's compressed bytes surfaces from the decompressor (zlib.error,
    lzma.LZMAError), not as BadZipFile: still the one-line "cannot extract archive", not a traceback."""
    from pipeline.sources.archive import extract
    from pipeline.sources.errors import SourceError

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        # (incompressible bytes first give deflate a block whose code tables the damage breaks)
        z.writestr("d/a.csv", random.Random(0).randbytes(head) + b"x,y\n" * 50_000)
    data = bytearray(buf.getvalue())
    data[60:120] = b"\xff" * 60  # inside the member's compressed stream (its local header is 37 bytes)
    p = tmp_path / "a.zip"
    p.write_bytes(bytes(data))
    with pytest.raises(SourceError) as err:
        extract(p, ("d/*.csv",), tmp_path / "out", name="demo", origin="a.zip")
    assert str(err.value).startswith(f"demo: cannot extract archive a.zip ({raised}: ")
    assert "\n" not in str(err.value)


def _long_named_tar(path: Path, names: list[str], fmt: int) -> Path:
    """A .tar.gz of one-byte members named `names`, in tarfile format `fmt` (GNU: a name over 100
    bytes goes in a long-name header before its member; PAX: in a pax record)."""
    with tarfile.open(path, mode="w:gz", format=fmt) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


def _deep(length: int, tag: str) -> str:
    """A member name of about `length` characters under d/, in folders of 100 (NAME_MAX is 255)."""
    return "d/" + "/".join([tag * 100] * (length // 101)) + ".csv"


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_an_extended_header_too_large_for_memory_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch, fmt: int
) -> None:
    """tarfile reads a GNU long name or a pax record whole into memory: 400 MB of zeros declared as
    one packs into 1.8 MB of .tar.gz and took 820 MB to list. Past MAX_HEADER it is refused in one
    line before it is read, nothing written (the limit is lowered here; a 300-byte name passes)."""
    from pipeline.sources import archive
    from pipeline.sources.errors import SourceError

    monkeypatch.setattr(archive, "MAX_HEADER", 4096)
    ok = _long_named_tar(tmp_path / "ok.tar.gz", [_deep(300, "a")], fmt)
    got = archive.extract(ok, ("d/**/*.csv",), tmp_path / "ok", name="demo", origin="ok")
    assert got["members_extracted"] == 1
    path = _long_named_tar(tmp_path / "a.tar.gz", [_deep(5000, "a")], fmt)
    with pytest.raises(SourceError) as err:
        archive.extract(path, ("d/**/*.csv",), tmp_path / "out", name="demo", origin="a.tar.gz")
    msg = str(err.value)
    assert msg.startswith("demo: archive a.tar.gz holds an extended header (long name or pax record) of ")
    assert "at most 4,096 each" in msg and "`local_path:`" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_extended_headers_are_bounded_in_all_too(tmp_path: Path, monkeypatch) -> None:
    """Each under MAX_HEADER, many long names are kept for their members: MAX_HEADERS bounds them all."""
    from pipeline.sources import archive
    from pipeline.sources.errors import SourceError

    monkeypatch.setattr(archive, "MAX_HEADERS", 10_000)
    names = [_deep(3000, str(i)) for i in range(4)]
    path = _long_named_tar(tmp_path / "a.tar.gz", names, tarfile.GNU_FORMAT)
    with pytest.raises(SourceError, match=r"holds an extended header .* of [\d,]+ bytes in all"):
        archive.extract(path, ("d/**/*.csv",), tmp_path / "out", name="demo", origin="a.tar.gz")
    three = _long_named_tar(tmp_path / "b.tar.gz", names[:3], tarfile.GNU_FORMAT)  # 3 x 3,000 bytes or so
    got = archive.extract(three, ("d/**/*.csv",), tmp_path / "out2", name="demo", origin="b.tar.gz")
    assert got["members_extracted"] == 3


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_a_compressed_tar_is_read_a_block_at_a_time(tmp_path: Path, compression: str) -> None:
    """tarfile's own stream reader ("r|*") decompressed each 10 KB of the archive whole: extracting
    past 12 MiB of zeros (151 bytes of .tar.bz2, 2 KB of .tar.xz, 12 KB of .tar.gz) peaked at 31-38 MB
    traced, and a few KB of .tar.bz2 hold gigabytes. Read a block at a time: 1.4-1.7 MB."""
    import tracemalloc

    from pipeline.sources.archive import extract

    path = tmp_path / f"a.tar.{compression}"
    options = {"preset": 0} if compression == "xz" else {}  # quick, and a 256 KiB dictionary (6: 8 MiB)
    with tarfile.open(path, mode=f"w:{compression}", **options) as tar:
        for name, data in (("zeros.bin", bytes(12 << 20)), ("d/a.csv", b"text\nhi\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tracemalloc.start()
    try:
        got = extract(path, ("d/*.csv",), tmp_path / "out", name="demo", origin=path.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == {"members_extracted": 1, "members_skipped": {}}
    assert (tmp_path / "out" / "d" / "a.csv").read_bytes() == b"text\nhi\n"
    assert peak < 4 << 20, f"peak {peak:,} bytes"


@pytest.mark.parametrize("after", [b"trailing garbage", b"\0" * 100 + b"x"])
def test_bytes_after_the_gzip_stream_of_a_tar_gz_are_ignored(tmp_path: Path, after: bytes) -> None:
    """gzip(1) says "trailing garbage ignored", and tarfile's own reader (before session 37) stopped at
    the end of the stream: gzip.GzipFile took the bytes for a second member's header and refused a
    .tar.gz with anything appended ("BadGzipFile: Not a gzipped file")."""

    from pipeline.sources.archive import extract

    p = tmp_path / "a.tar.gz"
    p.write_bytes(_tar([("d/a.csv", "file", b"x\n")]) + after)  # _tar writes a .tar.gz
    got = extract(p, ("d/*.csv",), tmp_path / "out", name="demo", origin=str(p))
    assert got == {"members_extracted": 1, "members_skipped": {}}
    assert (tmp_path / "out/d/a.csv").read_bytes() == b"x\n"


def test_a_tar_gz_of_several_gzip_members_is_read_whole(tmp_path: Path) -> None:
    """`cat a.gz b.gz`: a stream of members is one file's bytes, as gzip(1) and GzipFile read it."""
    import gzip

    from pipeline.sources.archive import extract

    raw = gzip.decompress(_tar([("d/a.csv", "file", b"x\n" * 5000), ("d/b.csv", "file", b"y\n")]))
    p = tmp_path / "a.tar.gz"
    p.write_bytes(gzip.compress(raw[:7000]) + gzip.compress(raw[7000:]))
    got = extract(p, ("d/*.csv",), tmp_path / "out", name="demo", origin=str(p))
    assert got["members_extracted"] == 2
    assert (tmp_path / "out/d/b.csv").read_bytes() == b"y\n"


def test_a_truncated_tar_gz_is_still_refused(tmp_path: Path) -> None:

    from pipeline.sources.archive import extract
    from pipeline.sources.errors import SourceError

    data = _tar([("d/a.csv", "file", random.Random(0).randbytes(50_000))])
    p = tmp_path / "a.tar.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"cannot extract archive .*EOFError"):
        extract(p, ("d/*.csv",), tmp_path / "out", name="demo", origin=str(p))
