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
