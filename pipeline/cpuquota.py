"""The CPU quota of this process's cgroup (`docker --cpus=1.5`, a Kubernetes CPU limit, systemd's
CPUQuota=): the cores' worth of time it may use each period, whatever cores it may run on.

A quota is not a core count: a container held to 1.5 cores still sees (and may run on) every core of
a 64-core host, and torch starts a thread per core. The kernel then throttles the whole cgroup for
the rest of each period once its threads have used the quota, and a decode step, which waits for
its slowest thread at every kernel's end, waits for the next period too. So `--threads auto` tries no
more threads than the quota covers (pipeline/threadtuner.py) and reads the load of the processes
that share the quota, not the host's (pipeline/cpuload.py).

Linux only, read from cgroupfs: cgroup v2's `cpu.max` ("max 100000", or "<quota> <period>" in
microseconds) or v1's `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us`. A parent cgroup's
limit binds its children too, so every cgroup from this process's up to the hierarchy's root is
read and the smallest limit wins. A file missing, unreadable or garbled (macOS, no cgroupfs, a
kernel without the CPU controller) is "no limit there", never an error: the quota only narrows the
tuner's choice, and without it the tuner works as on an unlimited machine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class Quota:
    """`quota` microseconds of CPU time every `period`, for the processes of `directory` (the cgroup
    whose limit it is, this process's or a parent's) and the cgroups below it."""

    quota: int
    period: int
    directory: Path

    @property
    def cores(self) -> float:
        return self.quota / self.period

    @property
    def threads(self) -> int:
        """The most threads the quota keeps running at once: 2 for 1.5 cores (the second gets half a
        core; a third would only be throttled), never under 1."""
        return max(1, -(-self.quota // self.period))


def cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> Quota | None:
    """The smallest CPU quota over this process's cgroups (v2 and v1, whichever the machine has),
    None where there is none or nothing can be read. `root` is where cgroupfs is mounted and
    `proc_cgroup` lists this process's cgroups; tests give a tree of their own."""
    try:
        text = proc_cgroup.read_text()
    except (OSError, UnicodeDecodeError):  # not Linux
        return None
    found = [quota for place in _cpu_cgroups(root, text) if (quota := _smallest(*place))]
    return min(found, key=lambda q: q.cores, default=None)


# How a hierarchy reads a cgroup directory's limit: (quota, period), None for none there.
Reader = Callable[[Path], "tuple[int, int] | None"]


def _cpu_cgroups(root: Path, text: str) -> Iterator[tuple[Path, Path, Reader]]:
    """Each hierarchy that may hold this process's CPU limit, as (its mount, this process's cgroup
    in it, how a limit is read there). Lines are "id:controllers:path": "0::path" is cgroup v2's; a
    v1 line naming `cpu` is mounted at root/<controllers> ("cpu,cpuacct") or root/cpu (its usual
    link). A hybrid machine has both kinds of line; its v1 cpu controller holds the limit."""
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        parts = PurePosixPath(path.strip()).parts[1:]  # past the leading "/"
        if ".." in parts:  # outside the cgroup namespace's root: no limit here is its own
            continue
        if controllers == "":
            yield root, root.joinpath(*parts), _read_v2
        elif "cpu" in controllers.split(","):
            for mount in dict.fromkeys((root / controllers, root / "cpu")):
                yield mount, mount.joinpath(*parts), _read_v1


def _smallest(mount: Path, directory: Path, read: Reader) -> Quota | None:
    """The smallest limit from `directory` up to `mount`, the hierarchy's root: a parent's limit binds
    its children. A level without the file is passed over: inside a container the path named is
    often the host's, and only the mount's root (the container's own cgroup) exists."""
    levels = [directory, *(p for p in directory.parents if p.is_relative_to(mount))]
    limits = [Quota(*limit, level) for level in levels if (limit := read(level)) is not None]
    return min(limits, key=lambda q: q.cores, default=None)


def _read_v2(directory: Path) -> tuple[int, int] | None:
    """cgroup v2's cpu.max: "<quota> <period>" in microseconds, or "max <period>" (no limit)."""
    fields = _read(directory / "cpu.max").split()
    return _limit(*fields) if len(fields) == 2 else None


def _read_v1(directory: Path) -> tuple[int, int] | None:
    """cgroup v1's cpu.cfs_quota_us (-1: no limit) and cpu.cfs_period_us."""
    return _limit(_read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us"))


def _limit(quota: str, period: str) -> tuple[int, int] | None:
    """(quota, period) where both are positive whole numbers; None for "max", -1 or garbage."""
    try:
        limit = int(quota), int(period)
    except ValueError:
        return None
    return limit if min(limit) > 0 else None


def _read(file: Path) -> str:
    """The file's text, "" where it is missing or cannot be read (that cgroup has no say)."""
    try:
        return file.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def usage_reader(directory: Path) -> Callable[[], float]:
    """A reader of the CPU seconds the processes of cgroup `directory` (and below it) have used:
    v2's cpu.stat usage_usec, or v1's cpuacct.usage (nanoseconds) where cpuacct is mounted with cpu,
    as Docker does. The file is chosen here, once: v1's cpu.stat exists but holds no usage_usec, and
    the watch reads every 20 ms of decoding. OSError where neither can be read (the caller reads the
    host's cores instead), and from the reader if its file can no longer be read."""
    for read in (_v2_usage, _v1_usage):
        if read(directory) is not None:
            return functools.partial(_usage_or_error, read, directory)
    raise OSError(f"{directory}: no cpu.stat usage_usec or cpuacct.usage to read the cgroup's CPU time")


def _v2_usage(directory: Path) -> float | None:
    for line in _read(directory / "cpu.stat").splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec" and (usec := _count(value)) is not None:
            return usec / 1e6
    return None


def _v1_usage(directory: Path) -> float | None:
    nanoseconds = _count(_read(directory / "cpuacct.usage"))
    return nanoseconds / 1e9 if nanoseconds is not None else None


def _count(text: str) -> int | None:
    """A whole number of ASCII digits, None for anything else: str.isdigit alone passes superscripts
    ("\u00b2") that int() refuses, and a garbled count must stop the watch (OSError), not the decode."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _usage_or_error(read: Callable[[Path], float | None], directory: Path) -> float:
    seconds = read(directory)
    if seconds is None:
        raise OSError(f"{directory}: its CPU time can no longer be read")
    return seconds
