"""pipeline.atomic's failure semantics: a write that fails or is interrupted leaves the target as it
was (old content, or absent) and no temporary beside it; a write that succeeds replaces it whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import atomic


class Boom(Exception):
    pass


def test_failing_body_leaves_an_existing_target_unchanged_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old content")
    with pytest.raises(Boom), atomic.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"half of the new")
        raise Boom
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_failing_body_leaves_a_missing_target_absent(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "data.bin"
    with pytest.raises(Boom), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise Boom
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_successful_body_replaces_the_target_with_default_mode(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old content, longer than the new")
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes().startswith(b"old")  # not published before the body ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_write_bytes_publishes_a_new_file_a_reader_of_the_old_one_is_undisturbed(tmp_path: Path) -> None:
    """A reader that opened the target before the write keeps reading the old bytes, whole: the new
    content is a new file renamed into place, not the old file truncated and rewritten."""
    target = tmp_path / "data.bin"
    target.write_bytes(b"old content")
    old_inode = target.stat().st_ino
    with open(target, "rb") as reader:
        atomic.write_bytes(target, b"new content!")
        assert reader.read() == b"old content"
    assert target.read_bytes() == b"new content!"
    assert target.stat().st_ino != old_inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_write_interrupted_before_the_rename_keeps_the_old_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed (here: the rename failing) after the bytes are written but before they are
    published leaves the old target intact and no temporary behind."""
    target = tmp_path / "data.json"
    atomic.write_json(target, {"version": 1})

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", failing_replace)
    for write in (
        lambda: atomic.write_bytes(target, b"garbage"),
        lambda: atomic.write_text(target, "garbage"),
        lambda: atomic.write_json(target, {"version": 2}),
    ):
        with pytest.raises(OSError, match="disk went away"):
            write()
        assert target.read_text() == '{\n  "version": 1\n}\n'
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_failing_atomic_dir_body_leaves_the_existing_directory(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(Boom), atomic.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
        raise Boom
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
