"""One training run at a time per run folder: an exclusive lock that the kernel drops with its holder.

Two jobs training into the same `model/run` would prune each other's checkpoints and race for
`model/ckpt`. DVC's own lock covers `dvc repro`, but not `torchrun ... -m stages.train` started by
hand, nor the workers a killed torchrun leaves behind (`kill -9` of the agent does not reach them;
they train on to max_iters). An flock is released by the kernel when its process dies, however it
dies, so a stale lock can never block the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the project runs on Linux; nothing else depends on it)
    fcntl = None  # type: ignore[assignment]


# What flock raises on a file system that has no locks (Lustre mounted noflock, some FUSE mounts):
# training there ran before the lock existed, and must still run.
NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


class RunLocked(RuntimeError):
    """Another live process holds the run folder's lock."""


def guarded(lock_file: Path) -> Path:
    """The folder `<folder>.lock` guards (model/run for model/run.lock): the refusal names it, not
    the lock's parent (model/, which also holds model/ckpt and model/live)."""
    return lock_file.with_name(lock_file.name.removesuffix(".lock"))


@contextlib.contextmanager
def exclusive_run(lock_file: Path, warn: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold `lock_file` exclusively for the block, or raise RunLocked naming the holder's pid. On a
    file system without locks, `warn` hears so and the block runs unlocked."""
    if fcntl is None:
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunLocked(
                f"another training run (pid {holder}) is using {guarded(lock_file)}; wait for it to end or "
                f"stop it (`kill {holder}`; a torchrun killed with -9 leaves its workers running)"
            ) from None
        except OSError as e:
            if e.errno not in NO_LOCKS:
                raise
            if warn is not None:
                warn(
                    f"{lock_file.parent} has no file locks ({e.strerror}): a second run there is not refused"
                )
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # drops the lock; the file stays (deleting it would let two runs lock two files)
