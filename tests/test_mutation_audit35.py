"""Mutation audit 35: pipeline/sources/archive.py (the split extraction: _plan and its checks, hard
links, the ratio limit), pipeline/serve.py's stop path (StopSignal, the exit codes) and
pipeline/workers.py. Each test kills a hand-made mutant that the suite let live; its docstring
names the mutation."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_archive import _extract, _tar
from test_serve_stop import _serve_args

from pipeline.sources.errors import SourceError

# ---------------------------------------------------------------- archive


def test_an_unsafe_hard_link_does_not_shadow_a_safe_one_of_the_same_name(tmp_path: Path) -> None:
    """Kills archive._selected_links dropping `and not _unsafe(m.link)` from its pairs: a later link
    member of the same name pointing outside the archive (`../x.csv`) took the place of the safe link
    before it (dict keeps the last), so the safe one's copy was silently not written. An unsafe link
    is skipped and counted, and nothing more."""
    entries = [
        ("d/a.csv", "file", b"a\n"),
        ("d/b.csv", "link", "d/a.csv"),
        ("d/b.csv", "link", "../x.csv"),
    ]
    got = _extract(tmp_path, entries, ["d/*.csv"])
    assert got == {"members_extracted": 2, "members_skipped": {"hardlink": 1}}
    assert (tmp_path / "out/d/b.csv").read_bytes() == b"a\n"


def test_licence_files_that_match_nothing_refuse_the_archive(tmp_path: Path) -> None:
    """Kills archive._check_matched dropping `not wanted or`: `licence_files:` globs may be listed in
    hope one at a time, but none of them matching any member extracted nothing and said nothing."""
    from pipeline.sources.archive import extract

    p = tmp_path / "a.tar.gz"
    p.write_bytes(_tar([("d/a.csv", "file", b"x\n")]))
    with pytest.raises(SourceError) as err:
        extract(
            p, ("LICENSE*", "NOTICE*"), tmp_path / "out", name="demo", origin="a.tar.gz", key="licence_files"
        )
    assert str(err.value) == (
        "demo: archive a.tar.gz has no file matching LICENSE*, NOTICE*; "
        "fix `licence_files:` for demo in sources.yaml"
    )


def test_a_member_is_never_written_over_a_file_already_there(tmp_path: Path) -> None:
    """Kills archive._copy_out opening a member's file with 'wb' instead of 'xb': a second extraction
    into one folder (the data's, then `licence_files:` into its .licence/) laid a member silently over
    the file already there; it is refused in one line, the file kept."""
    from pipeline.sources.archive import extract

    p = tmp_path / "a.tar.gz"
    p.write_bytes(_tar([("d/a.csv", "file", b"new\n")]))
    (tmp_path / "out/d").mkdir(parents=True)
    (tmp_path / "out/d/a.csv").write_bytes(b"old\n")
    with pytest.raises(SourceError, match=r"^demo: cannot extract archive a\.tar\.gz \(FileExistsError: "):
        extract(p, ("d/*.csv",), tmp_path / "out", name="demo", origin="a.tar.gz")
    assert (tmp_path / "out/d/a.csv").read_bytes() == b"old\n"


def test_a_hard_link_copy_is_never_written_over_a_file_already_there(tmp_path: Path) -> None:
    """Kills archive._copy_out opening a hard link's copy with 'wb' instead of 'xb': the copy of a
    selected link laid itself silently over a file already in the folder."""
    (tmp_path / "out/d").mkdir(parents=True)
    (tmp_path / "out/d/b.csv").write_bytes(b"old\n")
    with pytest.raises(SourceError, match=r"^demo: cannot extract archive .* \(FileExistsError: "):
        _extract(tmp_path, [("d/a.csv", "file", b"a\n"), ("d/b.csv", "link", "d/a.csv")], ["d/*.csv"])
    assert (tmp_path / "out/d/b.csv").read_bytes() == b"old\n"


def test_a_member_is_not_written_through_a_symlinked_folder_out_of_the_output(tmp_path: Path) -> None:
    """Kills archive._copy_out dropping its `dest.parent.resolve().is_relative_to(out.resolve())`
    guard: a folder of the output that is a symbolic link (left there, not made by extract, which
    makes no links) let a member be written outside it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out/d").symlink_to(elsewhere)
    with pytest.raises(SourceError, match=r"^demo: archive member 'd/a\.csv' leaves data/raw/demo$"):
        _extract(tmp_path, [("d/a.csv", "file", b"a\n")], ["d/*.csv"])
    assert not any(elsewhere.iterdir())


def test_a_selection_exactly_the_free_space_is_extracted(tmp_path: Path, monkeypatch) -> None:
    """Kills archive._check_space's `need > free` made `>=`: a selection of exactly the free space
    fits (the limit is "larger than the disk space free"); one byte more is refused."""
    from pipeline.sources import archive

    monkeypatch.setattr(archive.shutil, "disk_usage", lambda p: SimpleNamespace(free=6))
    got = _extract(tmp_path, [("d/a.csv", "file", b"12345\n")], ["d/*.csv"])
    assert got["members_extracted"] == 1
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda p: SimpleNamespace(free=5))
    (tmp_path / "b").mkdir()
    with pytest.raises(SourceError, match="hold 0.0 MiB unpacked"):
        _extract(tmp_path / "b", [("d/a.csv", "file", b"12345\n")], ["d/*.csv"])


def test_an_extended_header_of_exactly_max_header_is_read(tmp_path: Path, monkeypatch) -> None:
    """Kills archive._BoundedTarInfo._proc_member's `self.size > MAX_HEADER` made `>=`: a GNU long
    name header of exactly MAX_HEADER bytes (the name and its NUL) is within the limit."""
    from pipeline.sources import archive

    name = "d/" + "a" * 150 + ".csv"
    p = tmp_path / "a.tar.gz"
    with tarfile.open(p, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    monkeypatch.setattr(archive, "MAX_HEADER", len(name) + 1)
    got = archive.extract(p, ("d/*.csv",), tmp_path / "out", name="demo", origin="a.tar.gz")
    assert got["members_extracted"] == 1


def test_the_ratio_limit_is_readers_unpacked_limit_to_the_byte(tmp_path: Path, monkeypatch) -> None:
    """Kills archive._check_ratio's limit changed from readers.unpacked_limit(path) (here doubled): a
    selection one byte over the readers' limit is refused, naming that limit; at it, extracted."""
    from pipeline.sources import readers

    monkeypatch.setattr(readers, "unpacked_limit", lambda path: 10)
    got = _extract(tmp_path, [("d/a.csv", "file", b"123456789\n")], ["d/*.csv"])
    assert got["members_extracted"] == 1
    (tmp_path / "b").mkdir()
    with pytest.raises(SourceError, match=r"unpack to 11 bytes, more than 100 times .* \(at most 10\)"):
        _extract(tmp_path / "b", [("d/a.csv", "file", b"1234567890\n")], ["d/*.csv"])


def test_a_bomb_on_a_full_disk_is_refused_as_a_bomb(tmp_path: Path, monkeypatch) -> None:
    """Kills archive._plan running _check_space before _check_ratio: an archive past the ratio limit on
    a disk too small for it was told to "free disk space", which would only let the bomb go off;
    what refuses it whatever the space is the ratio, and that is what it is told."""
    from pipeline.sources import archive, readers

    monkeypatch.setattr(readers, "unpacked_limit", lambda path: 10)
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda p: SimpleNamespace(free=5))
    with pytest.raises(SourceError, match=r"unpack to 11 bytes, more than 100 times"):
        _extract(tmp_path, [("d/a.csv", "file", b"1234567890\n")], ["d/*.csv"])


# ---------------------------------------------------------------- serve's stop


def test_sigterm_while_the_model_loads_exits_143(monkeypatch, capsys) -> None:
    """Kills serve._stopped_loading answering EXIT_INTERRUPTED (130) whatever the signal: SIGTERM
    while the model loads (systemd, docker stop) ends serve with the shell's 143, not Ctrl-C's 130."""
    import signal

    from pipeline import serve

    def loads(args, prog):
        signal.raise_signal(signal.SIGTERM)
        pytest.fail("the SIGTERM did not stop the load")

    monkeypatch.setattr(serve, "load_engine", loads)
    assert serve.run(_serve_args()) == 143
    assert capsys.readouterr().err.strip() == "serve: stopped before it started listening"


def test_a_keyboard_interrupt_of_no_signal_while_loading_exits_130(monkeypatch, capsys) -> None:
    """Kills serve._stopped_loading's `EXIT_INTERRUPTED if stop.signum is None` made another code: a
    KeyboardInterrupt that no stop signal of serve's raised (one the loading raised itself) is still
    Ctrl-C's 130."""
    from pipeline import serve

    def loads(args, prog):
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "load_engine", loads)
    assert serve.run(_serve_args()) == 130
    assert capsys.readouterr().err.strip() == "serve: stopped before it started listening"


def test_serve_without_a_model_exits_2(monkeypatch, capsys) -> None:
    """Kills serve._run's `if ready is None: return 2` made another code: no model to load (or a port
    it cannot bind, said by _ready) is a usage error, 2, not a stop (130) or a failure (1)."""
    from pipeline import serve

    monkeypatch.setattr(serve, "load_engine", lambda args, prog: None)
    assert serve.run(_serve_args()) == 2


# ---------------------------------------------------------------- workers
# Stubs on purpose: the race (the stage dies between getppid and prctl) cannot be made to happen on
# cue with real processes, and a real prctl here would set a death signal on the test runner itself.


class _Exited(BaseException):
    """os._exit, made to return to the test."""


class _Libc:
    def __init__(self, result: int) -> None:
        self.result, self.calls = result, []

    def prctl(self, *args: int) -> int:
        self.calls.append(args)
        return self.result


def _die_with_parent(monkeypatch, ppids: list[int]) -> tuple[_Libc, list[str]]:
    """Run workers.die_with_parent with a prctl that succeeds and os.getppid answering `ppids` in
    turn; what prctl was called with, and the fallback threads it started."""
    from pipeline import workers

    libc, threads = _Libc(0), []
    answers = iter(ppids)

    def exit_(code: int) -> None:
        raise _Exited(code)

    monkeypatch.setattr(workers.ctypes, "CDLL", lambda *a, **k: libc)
    monkeypatch.setattr(workers.os, "getppid", lambda: next(answers))
    monkeypatch.setattr(workers.os, "_exit", exit_)
    monkeypatch.setattr(
        workers.threading,
        "Thread",
        lambda **kwargs: SimpleNamespace(start=lambda: threads.append(kwargs["name"])),
    )
    workers.die_with_parent()
    return libc, threads


def test_a_worker_whose_stage_died_before_prctl_exits(monkeypatch) -> None:
    """Kills workers.die_with_parent dropping `if os.getppid() != parent: os._exit(1)` after prctl,
    and prctl's `== 0` made `!= 0`: a stage killed before its worker's prctl ran (the death signal is
    set for the parent of the moment: init, which never dies) left the worker running for ever."""
    with pytest.raises(_Exited) as exited:
        _die_with_parent(monkeypatch, [4242, 1])
    assert exited.value.args == (1,)


def test_where_prctl_works_no_watcher_thread_is_started(monkeypatch) -> None:
    """Kills workers.die_with_parent dropping the `return` after a prctl that worked (or prctl's
    `== 0` made `!= 0`): every worker also ran the fallback watcher, a thread waking each second."""
    import signal

    libc, threads = _die_with_parent(monkeypatch, [4242, 4242])
    assert libc.calls == [(1, signal.SIGKILL, 0, 0, 0)] and threads == []
