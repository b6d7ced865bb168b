"""pipeline.atomic's failure semantics: a write that fails or is interrupted leaves the target as it
was (old content, or absent) and no temporary beside it; a write that succeeds replaces it whole."""

from __future__ import annotations

import os
from collections.abc import Callable
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


def test_what_a_killed_write_left_is_removed_by_the_next_one_and_nothing_else(tmp_path: Path) -> None:
    """A kill inside atomic_dir left `.<name>.*.tmp` (a whole model copy) and, between its two
    renames, `.<name>.old`; nothing removed them, so each kill of export or train's finish kept a
    model's worth of disk. The temporary of a neighbour named like it is not a leftover."""
    target = tmp_path / "hf"
    (tmp_path / ".hf.k1ll3d_1.tmp").mkdir()  # mkdtemp's shape: 8 characters
    (tmp_path / ".hf.k1ll3d_1.tmp" / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / ".hf.old").mkdir()
    (tmp_path / ".hf.json.abcdefgh.tmp").write_text("another file's write in progress")
    (tmp_path / ".metrics.json.q1w2e3r4.tmp").write_text("a killed single-file write")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    atomic.write_text(tmp_path / "metrics.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hf.json.abcdefgh.tmp", "hf", "metrics.json"]


def test_a_folder_is_replaced_with_no_instant_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two renames (target -> .old, temporary -> target) left a window where the folder was missing;
    a kill there left a rerun without it. Where the kernel can exchange two names, one step does."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def watched(src, dst):  # noqa: ANN001 - os.replace's own
        replaced.append((Path(src).name, Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", watched)
    with atomic.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    if atomic._renameat2() is not None:  # glibc: the exchange did it, target never left its name
        assert replaced == []


def test_two_writes_of_one_file_at_once_both_finish(tmp_path: Path) -> None:
    """Each write removes what a killed one left: the first version of that deleted a live write's
    temporary too, and its rename then failed (two copies of a benchmark writing one --json)."""
    import threading

    target = tmp_path / "metrics.json"
    inside, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_writer() -> None:
        try:
            with atomic.atomic_path(target) as tmp:
                tmp.write_text("writer 1")
                inside.set()
                go_on.wait(30)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inside.wait(30)
    atomic.write_text(target, "writer 2")
    go_on.set()
    thread.join(30)
    assert errors == [] and target.read_text() == "writer 1"  # the last to finish wins, as a plain write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_an_output_that_is_a_link_is_replaced_and_later_writes_still_work(tmp_path: Path) -> None:
    elsewhere = tmp_path / "bigdisk" / "hf"
    elsewhere.mkdir(parents=True)
    (elsewhere / "kept.txt").write_text("not ours to delete")
    target = tmp_path / "model" / "hf"
    target.parent.mkdir()
    target.symlink_to(elsewhere)
    for n in range(3):
        with atomic.atomic_dir(target) as tmp:
            (tmp / "config.json").write_text(str(n))
    assert (target / "config.json").read_text() == "2" and not target.is_symlink()
    assert sorted(p.name for p in target.parent.iterdir()) == ["hf"]
    assert (elsewhere / "kept.txt").read_text() == "not ours to delete"  # a link is not followed


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_another_runs_cleanup_just_before_the_lock_does_not_break_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A new temporary is named like a killed write's leftover until it is locked: another run's
    remove_stale in that instant deleted it, and the write failed (FileNotFoundError), or renamed an
    unlocked copy that a third run's cleanup deleted. Three processes writing one target 300 times
    each failed 1-3 times each."""
    target = tmp_path / "out"
    real_hold = atomic._hold
    raced: list[int] = []

    def cleanup_then_hold(fd: int, on_wait: Callable[[], None] | None = None) -> None:
        if not raced:  # a concurrent run's cleanup, between the temporary's creation and its lock
            raced.append(fd)
            atomic.remove_stale(target)
        real_hold(fd, on_wait)

    monkeypatch.setattr(atomic, "_hold", cleanup_then_hold)
    written = atomic.atomic_dir(target) if kind == "folder" else atomic.atomic_path(target)
    with written as tmp:
        (tmp / "a.txt" if kind == "folder" else tmp).write_text("new")
        atomic.remove_stale(target)  # and another one while this write is under way
    assert raced
    assert (target / "a.txt" if kind == "folder" else target).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
