"""Atomic file writes: a reader (or a killed run) never sees a half-written file.

Everything goes to a temporary sibling first and is renamed into place with
os.replace, which is atomic on POSIX when source and target share a filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
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
    `.<name>.old`): nothing else reads or removes them, and a dataset copy is large."""
    target = Path(target)
    for stale in [*target.parent.glob(f".{target.name}.*.tmp"), target.with_name(f".{target.name}.old")]:
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it over `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # the caller may have written it by a replace of its own
            give_default_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `target` as a whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    give_default_mode(tmp)  # what is created inside gets the umask's modes by itself
    try:
        yield tmp
        # Some writers make private files whatever the umask (safetensors' save_file: 0600), which
        # another user or a container under another uid then cannot load.
        for path in tmp.rglob("*"):
            if not path.is_symlink():
                give_default_mode(path)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
