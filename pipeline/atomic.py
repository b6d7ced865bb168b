"""Atomic file writes: a reader (or a killed run) never sees a half-written file.

Everything goes to a temporary sibling first and is renamed into place with os.replace, which is
atomic on POSIX when source and target share a filesystem. The data is fsynced before the rename
and the folder after it, so a machine that loses power keeps the old version or the new one, never
an empty file under the new name. A whole folder is swapped in with one exchange of names where
the kernel offers it (Linux renameat2), so there is no instant without the folder. What a killed
write left beside its target (`.<name>.*.tmp`, `.<name>.old`) is removed by the next write. Sibling
files that have to agree are written with atomic_paths: every one before the first is renamed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def give_default_mode(path: Path) -> None:
    """The mode the umask gives a new file (0666 & ~umask) or directory (0777 & ~umask).

    mkstemp makes 0600 files and mkdtemp 0700 directories, right for a temporary but wrong for
    what is published: a dataset meant to be handed over would be unreadable to anyone else.
    """
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def remove_stale(target: str | os.PathLike[str]) -> None:
    """Delete what a killed atomic_dir / atomic_path for `target` left beside it (`.<name>.*.tmp`,
    `.<name>.old`): nothing else reads or removes them, and a dataset copy is large. A temporary
    that a live write holds (its flock) is left alone: two writes of one file at once still end
    with the last one's, as they did before."""
    target = Path(target)
    # mkstemp / mkdtemp names: the prefix, 8 random characters, the suffix. Exactly that, so that
    # the temporary of `val.parquet` being written is not taken for a leftover of `val`.
    temp_name = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    leftovers = [
        p for p in target.parent.glob(f".{glob.escape(target.name)}.*.tmp") if temp_name.fullmatch(p.name)
    ]
    for stale in [*leftovers, target.with_name(f".{target.name}.old")]:
        _remove_unless_in_use(stale)


def _remove(path: Path) -> None:
    """Delete a file, a folder or a link (a link is not followed: its target is not ours)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _remove_unless_in_use(path: Path) -> None:
    """Delete `path` unless a live write holds it (an flock, which the kernel drops when its holder
    dies). The lock is kept while deleting: a write that creates its temporary and locks it a
    moment later then either finds it gone (held_file makes another) or keeps it."""
    if path.is_symlink():
        _remove(path)
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        _remove(path)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return  # a live write's
    except OSError:
        pass  # a filesystem without flock: nothing tells a live write from a killed one
    try:
        _remove(path)
    finally:
        os.close(fd)


def _hold(fd: int, on_wait: Callable[[], None] | None = None) -> None:
    """flock `fd` (a temporary for the length of its write: see remove_stale), calling `on_wait`
    first when another process holds it. A filesystem without flock: nothing to hold."""
    with contextlib.suppress(OSError):
        if on_wait is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                on_wait()
        fcntl.flock(fd, fcntl.LOCK_EX)


# Another run's cleanup deletes a new temporary only in the instant before it is locked: a few tries
# are plenty, and a bound keeps a folder something else keeps emptying from looping for ever.
_MAKE_ATTEMPTS = 100


def held_file(make: Callable[[], str], on_wait: Callable[[], None] | None = None) -> tuple[int, Path]:
    """Make a file or folder with `make` (its name) and lock it; the fd holds the lock (`on_wait`:
    see _hold). Another process can delete it in the instant between the two (remove_stale: the
    name of a temporary looks like a killed write's leftover; a lock file's holder deletes it as it
    lets go): the concurrent write then failed (FileNotFoundError) or renamed an unlocked copy that a
    third run deleted. Locked, it is checked to be still there under its name, else made anew."""
    for _ in range(_MAKE_ATTEMPTS):
        name = make()
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            continue
        _hold(fd, on_wait)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(name)):
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(
        f"{name}: removed {_MAKE_ATTEMPTS} times as it was made; is something deleting that folder?"
    )


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a folder's entries (a rename into it, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_tree(root: Path, *, default_modes: bool = False, durable: bool = True) -> None:
    """fsync every file and folder below `root` (and `root`): what a rename then publishes. With
    `default_modes`, each also gets the mode the umask gives (give_default_mode), in the same walk;
    `durable=False` gives the modes only (see atomic_dir)."""
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.is_symlink():
                continue
            if default_modes:
                give_default_mode(path)
            if durable:
                fsync_file(path)
        if default_modes:
            give_default_mode(Path(folder))
        if durable:
            fsync_dir(folder)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Any:
    """glibc's renameat2, or None (another libc, another OS)."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap the names `a` and `b` in one step (both must exist); False where the kernel, the
    filesystem or the C library cannot (the caller then renames twice)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _made_file(**mkstemp: Any) -> str:
    """mkstemp's new file, by name (held_file opens and locks it)."""
    fd, name = tempfile.mkstemp(**mkstemp)
    os.close(fd)
    return name


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[Path]:
    """A held temporary file next to `target` (a killed write's leftovers removed first); it is
    deleted on the way out unless the caller renamed it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)  # a killed write's temporary
    fd, tmp_path = held_file(lambda: _made_file(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp_path
    finally:
        os.close(fd)
        if tmp_path.exists():
            tmp_path.unlink()


def _seal(tmp: Path) -> None:
    """Give a written temporary its published mode and make its bytes durable."""
    if tmp.exists():  # the caller may have written it by a replace of its own
        give_default_mode(tmp)
        fsync_file(tmp)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it over `target`."""
    target = Path(target)
    with _temporary(target) as tmp:
        yield tmp
        _seal(tmp)
        os.replace(tmp, target)
        fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_paths(*targets: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path per target; only once the body has written every one are they
    renamed into place, back to back, in the order given.

    For a stage's sibling outputs that have to agree (a turn table, its quarantine, their report):
    a failure or a kill while any of them is being written leaves every target as it was, where one
    atomic_path after the other left the first ones new beside old ones for as long as the later
    ones took to write. Only a kill between two of the final renames (no writing left, only
    renames) can still leave a mix, which DVC reports as changed outputs: dvc.lock is written after
    the stage succeeds. Put the file that vouches for the others (a report, the metrics) last."""
    paths = [Path(t) for t in targets]
    if len(set(paths)) != len(paths):
        raise ValueError(f"atomic_paths: a target is named twice in {[str(p) for p in paths]}")
    with contextlib.ExitStack() as stack:
        temps = tuple(stack.enter_context(_temporary(p)) for p in paths)
        yield temps
        for tmp in temps:
            _seal(tmp)
        for tmp, target in zip(temps, paths, strict=True):
            os.replace(tmp, target)
        for folder in dict.fromkeys(p.parent for p in paths):
            fsync_dir(folder)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `target` as a whole. `durable=False`
    skips the fsyncs (the swap is still atomic: a reader sees the old folder or the new one) for a
    folder that is thrown away within the run, which no power loss can leave half-written for
    anyone to read: `nanochatgpt check`'s scratch copy, where they cost ~3 ms a file."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)  # a killed write's copy (a whole dataset or model) and its set-aside old one
    fd, tmp = held_file(lambda: tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        give_default_mode(tmp)  # what is created inside gets the umask's modes by itself
        yield tmp
        # Some writers make private files whatever the umask (safetensors' save_file: 0600), which
        # another user or a container under another uid then cannot load.
        fsync_tree(tmp, default_modes=True, durable=durable)
        present = target.exists() or target.is_symlink()
        if present and exchange(tmp, target):
            pass  # the old folder now sits at `tmp`, removed below
        elif present:
            old = target.with_name(f".{target.name}.old")
            _remove(old)
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)
    finally:
        os.close(fd)
        _remove(tmp)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def json_bytes(obj: Any) -> bytes:
    """What write_json writes: sorted keys, indented, UTF-8, a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_bytes(target, json_bytes(obj))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`{"bytes", "sha256"}` of a file: what a file written last records of the siblings it goes
    with (atomic_paths), so that a reader can tell a set a kill between the renames mixed."""
    return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def fingerprint_mismatch(path: str | os.PathLike[str], recorded: Any) -> str | None:
    """None when `path` is the file `recorded` (a fingerprint) describes, else why not:
    "unrecorded" (`recorded` is no fingerprint), "missing" or "different". The size is compared
    first; the sha256 then reads the file once (~1.4 GB/s with SHA extensions)."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
        return "unrecorded"
    if not os.path.isfile(path):
        return "missing"
    if os.path.getsize(path) != recorded.get("bytes") or sha256_file(path) != recorded["sha256"]:
        return "different"
    return None
