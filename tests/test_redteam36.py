"""Session 36 red-team of the data path's entry points: what a hostile archive could still do.

An archive's selection was refused only when it would not fit the free disk space: a 1 MB zip of
1 GiB of zeros (ratio 1,000), or a small tar of one file and hundreds of hard links to it (each
link a full copy once extracted), was written out whole as long as the disk had room, where a .gz
unpacking past MAX_GZIP_RATIO times its size is refused (pipeline.sources.readers). Limits are
lowered here (UNPACKED_FLOOR) so that the inputs stay a few kB.
"""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.sources import archive, readers
from pipeline.sources.errors import SourceError


def _zip_of_zeros(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("d/big.txt", bytes(size))
    return path


def _tar_with_links(path: Path, links: int) -> Path:
    """A .tar.gz of one 16 KiB incompressible file and `links` hard links to it."""
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("d/a.txt")
        info.size = 16 << 10
        tar.addfile(info, io.BytesIO(random.Random(0).randbytes(info.size)))
        for i in range(links):
            link = tarfile.TarInfo(f"d/l{i}.txt")
            link.type, link.linkname = tarfile.LNKTYPE, "d/a.txt"
            tar.addfile(link)
    return path


@pytest.fixture
def small_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "UNPACKED_FLOOR", 1 << 20)


def test_a_high_ratio_zip_is_refused_before_a_byte_is_written(tmp_path: Path, small_floor: None) -> None:
    bomb = _zip_of_zeros(tmp_path / "bomb.zip", 4 << 20)  # 4 MiB of zeros: a few kB zipped
    assert bomb.stat().st_size * readers.MAX_GZIP_RATIO < 4 << 20
    with pytest.raises(SourceError) as err:
        archive.extract(bomb, ("d/*.txt",), tmp_path / "out", name="demo", origin="bomb.zip")
    msg = str(err.value)
    assert msg.startswith(
        "demo: the members of archive bomb.zip that `files:` selects unpack to 4,194,304 bytes"
    )
    assert f"more than {readers.MAX_GZIP_RATIO} times" in msg and "`local_path:`" in msg and "\n" not in msg
    assert not (tmp_path / "out" / "d").exists()


def test_hard_link_copies_count_towards_the_ratio(tmp_path: Path, small_floor: None) -> None:
    path = _tar_with_links(tmp_path / "links.tar.gz", 300)  # 301 copies of 16 KiB: 4.7 MiB
    with pytest.raises(SourceError, match=r"unpack to 4,931,584 bytes"):
        archive.extract(path, ("d/*.txt",), tmp_path / "out", name="demo", origin="links.tar.gz")
    assert not (tmp_path / "out" / "d").exists()


def test_an_ordinary_archive_under_the_ratio_is_extracted(tmp_path: Path, small_floor: None) -> None:
    """The limit is the readers' (unpacked_limit): at the floor, whatever the ratio, still extracted."""
    bomb = _zip_of_zeros(tmp_path / "ok.zip", 1 << 20)
    got = archive.extract(bomb, ("d/*.txt",), tmp_path / "out", name="demo", origin="ok.zip")
    assert got["members_extracted"] == 1 and (tmp_path / "out/d/big.txt").stat().st_size == 1 << 20
    path = _tar_with_links(tmp_path / "links.tar.gz", 3)
    got = archive.extract(path, ("d/*.txt",), tmp_path / "out2", name="demo", origin="links.tar.gz")
    assert got["members_extracted"] == 4


# A CSV field whose opening double quote is never closed: csv (not strict) read every line after it
# to the end of the file into that one field and handed the record over as readable, so the
# ubuntu adapter kept a single utterance holding the file's remaining records as text, and those
# records were gone without a word.
UNCLOSED = (
    b"folder,dialogueID,date,from,to,text\n1,d,2020,a,b,hi\n"
    b'1,d,2020,b,a,"oops\n1,d,2020,a,b,x\n1,d,2020,b,a,y\n'
)


def test_a_quote_left_open_to_the_end_of_a_csv_file_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(UNCLOSED)
    records = list(readers.iter_csv(path))
    assert [(r.line, r.check) for r in records] == [(2, None), (3, "csv_parse")]
    assert records[1].reason == (
        "a double-quoted field opened in the record at line 3 is never closed: the 3 line(s) from "
        "there to the end of the file were read into it; close the quote; not read"
    )
    assert records[1].value["dialogueID"] == "d"  # its fields stay, to name its conversation


@pytest.mark.parametrize("ending", [b"\n", b"", b"\r\n"])
def test_a_closed_multi_line_field_at_the_end_of_a_csv_file_is_read(tmp_path: Path, ending: bytes) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b'a,b\n1,"x\ny ""q"""' + ending)
    records = list(readers.iter_csv(path))
    assert [(r.line, r.value, r.check) for r in records] == [(3, {"a": "1", "b": 'x\ny "q"'}, None)]


def test_the_ubuntu_adapter_keeps_no_text_swallowed_by_an_open_quote(tmp_path: Path) -> None:
    from pipeline.sources.adapters import ubuntu
    from pipeline.sources.registry import SourceSpec

    (tmp_path / "x.csv").write_bytes(UNCLOSED)
    raw = ubuntu.read(tmp_path, SourceSpec("ubuntu", "local", "x", "ubuntu", "MIT", True), {})
    assert raw.filter(raw["check"].is_null())["text"].to_list() == ["hi"]
    assert raw.filter(raw["check"] == "csv_parse").height == 1


def test_a_quote_left_open_in_the_csv_header_is_quarantined(tmp_path: Path) -> None:
    """The header swallowing the file left no record at all, read or quarantined."""
    path = tmp_path / "x.csv"
    path.write_bytes(b'a,"b\n1,2\n3,4\n')
    records = list(readers.iter_csv(path))
    assert [(r.line, r.value, r.check) for r in records] == [(1, None, "csv_parse")]
    assert "at line 1 is never closed: the 3 line(s)" in str(records[0].reason)


def test_a_hard_link_to_a_name_stored_twice_is_refused_naming_it(tmp_path: Path) -> None:
    """Which copy a hard link to t.txt means is unknowable when t.txt is stored twice; with only the
    link selected, the second copy failed on the first ("cannot extract archive (FileExistsError:
    ... a.txt)"), naming a file the archive holds once, after writing it."""
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        for data in (b"1", b"2"):
            info = tarfile.TarInfo("t.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("a.txt")
        link.type, link.linkname = tarfile.LNKTYPE, "t.txt"
        tar.addfile(link)
    with pytest.raises(SourceError) as err:
        archive.extract(path, ("a.txt",), tmp_path / "out", name="demo", origin="a.tar")
    assert (
        str(err.value) == "demo: archive a.tar holds 't.txt' twice (a hard link, 'a.txt', names it); refused"
    )
    assert not (tmp_path / "out" / "a.txt").exists()
