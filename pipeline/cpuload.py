"""How many cores the machine's other processes keep busy while this one decodes: the thread tuner's
sign that a load arrived or left (pipeline/threadtuner.py).

A decode step's own times say it poorly. Beside a busy torch process one thread's *median* step is
close to its idle one (34-57 ms against 37-38 ms for GPT-2 124M; the load shows in rare long waits),
so a neighbour that leaves went unseen for up to 8 s of decoding. The CPU time the others use says it
at once: the machine's busy time less this process's, over half a second of decoding, read 1.3 cores
beside benchmarks/decode_threads.py's busy process (1.0 while this one decoded on both cores) and
0.01 without it, on this 2-core machine.

Where this process may run on only some of the machine's cores (`taskset`, a container's cpuset),
only those are read: a load on the other cores does not take this process's, and a reading of a few
cores is as short as on a small machine (a reading lasts 0.08 s a core read: 5 s on a 64-core host).
Where a CPU quota (`docker --cpus=1.5`: pipeline/cpuquota.py) allows fewer cores than those, the
CPU time of the processes that share the quota is read instead, from the limiting cgroup's own
count (cgroup v2's cpu.stat, v1's cpuacct.usage): they take this process's share of it, while the
other containers on a 64-core host do not (a host's load moving by many cores would start round
after round), and one file is read, not 64 cores. A load from outside that slows this process
still shows in its step times. Where that count cannot be read, the cores are read as before.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil

from pipeline.cpuquota import Quota, usage_reader

# A reading covers at least this many seconds of decoding, and SECONDS_PER_CORE for each core read
# (watched_cpus'): Linux counts each core's time in ticks of 10 ms, each read cut to a tick, so a run of
# steps read from end to end is off by under a tick per core, 10 ms x cores over its length. At 0.08 s
# a core that is under a quarter of the tuner's half-core step (pipeline/threadtuner.py LOAD_STEP); on
# 2 cores, 0.04 of a core over 0.5 s (readings here of an idle machine: -0.01 to 0.03). A reading may
# span several replies, each its own run (one of a small model, 64 tokens of cpu-tiny, is 0.3 s).
WINDOW_SECONDS = 0.5
SECONDS_PER_CORE = 0.08
# More time than this between two steps (a reply's end, a user typing) is not decoding: the step
# after it is not counted. A busy neighbour gets the cores this process leaves while it waits (1.3
# cores beside a decode, 2 while this process waits, on 2 cores), and a reading across the wait would
# look like a load that arrived.
GAP_SECONDS = 0.05
# The others' CPU seconds are read at a step's end once this much time has passed since the last
# read (a read took 30-45 us a step here: every step, 1% of cpu-tiny's 3.5 ms steps), and at the
# first step after a pause, which drops the time since the last read (a pause's others are in it).
READ_SECONDS = 0.02


def others_cpu_seconds(cpus: Sequence[int] | None = None) -> float:
    """CPU seconds every other process has used since boot on `cpus` (core ids; None: every core): their
    busy time (psutil's, as its cpu_percent counts it: not idle, not waiting for I/O, guest time once)
    less this process's, which runs on them only."""
    if cpus is None:
        busy = _busy_seconds(psutil.cpu_times())
    else:
        per_core = psutil.cpu_times(percpu=True)
        busy = sum(_busy_seconds(per_core[cpu]) for cpu in cpus)
    return busy - time.process_time()


def others_in_cgroup(usage: Callable[[], float]) -> float:
    """CPU seconds every other process of a cgroup (the one whose quota this process shares, and
    those below it; `usage`, cpuquota.usage_reader) has used: its count less this process's, which is
    in it."""
    return usage() - time.process_time()


def default_watch(quota: Quota | None) -> tuple[Callable[[], float], int | None]:
    """What a NeighbourLoad reads by default, and over how many cores (None: the machine's): the
    others in `quota`'s cgroup where the quota allows fewer cores than this process may run on and
    its count can be read, else the others on watched_cpus."""
    cpus = watched_cpus()
    cores = len(cpus) if cpus else psutil.cpu_count() or 1
    if quota is not None and quota.cores < cores:
        try:
            usage = usage_reader(quota.directory)
        except OSError:  # v1 with cpuacct mounted apart: the cores are read instead
            pass
        else:
            return functools.partial(others_in_cgroup, usage), quota.threads
    return functools.partial(others_cpu_seconds, cpus), len(cpus) if cpus else None


def _busy_seconds(times: Any) -> float:  # a psutil cpu_times() named tuple
    idle = times.idle + getattr(times, "iowait", 0.0)
    # Linux counts a guest's time in user time too: once is enough.
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return sum(times) - idle - guest


def watched_cpus() -> tuple[int, ...] | None:
    """The cores this process may run on (any of its threads), where they are fewer than the machine's
    and the OS tells (Linux's sched_getaffinity); None: the whole machine is read. Also None where a
    core is offline: psutil lists the per-core times of online cores only, in order, so its list is
    indexed by core id only when every configured core is in it; and where OpenMP binds its threads
    (`_openmp_binds_threads`)."""
    if _openmp_binds_threads(os.environ):
        return None
    try:
        cpus = _process_cpus()
        configured = os.sysconf("SC_NPROCESSORS_CONF")
        online = len(psutil.cpu_times(percpu=True))
    except (AttributeError, ValueError, OSError, psutil.Error):  # not Linux; no /proc
        return None
    if not cpus or len(cpus) >= online or online != configured or max(cpus) >= online:
        return None
    return tuple(sorted(cpus))


def _process_cpus() -> set[int]:
    """The cores any thread of this process may run on. sched_getaffinity(0) is the calling thread's
    mask only: a thread bound to fewer cores (an OpenMP worker pinned to one) would run, and count in
    process_time, on cores a watch of the caller's mask does not read."""
    cpus = set(os.sched_getaffinity(0))
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return cpus
    for tid in tids:
        try:
            cpus |= os.sched_getaffinity(int(tid))
        except (OSError, ValueError):  # the thread ended meanwhile
            continue
    return cpus


def _openmp_binds_threads(env: Mapping[str, str]) -> bool:
    """Whether the OpenMP runtime torch loads (GNU libgomp) binds its threads to cores: it binds the
    main thread to the first place as torch is imported (OMP_PROC_BIND=true there: sched_getaffinity
    says {0} of 2 cores), before the workers that run on the others exist, so no mask read then
    holds the process's cores. OMP_PLACES or GOMP_CPU_AFFINITY alone bind too; OMP_PROC_BIND=false
    turns it off."""
    bind = env.get("OMP_PROC_BIND", "").strip().lower()
    if bind:
        return bind != "false"
    return bool(env.get("OMP_PLACES", "").strip() or env.get("GOMP_CPU_AFFINITY", "").strip())


class NeighbourLoad:
    """The cores other processes used over the last reading (`window_seconds` of decoding), against the
    reading the count in use was chosen on: the last one before the tuner's last round of turns
    (`mark`), or the first one ever.

    `observe(start, end)` is a decode step's start and end on the tuner's clock, for the steps at the
    count in use only. It reads the others' CPU seconds at a step's end every READ_SECONDS, and
    counts the time between two reads unless a pause of more than GAP_SECONDS came between two of its
    steps. `others` is others_cpu_seconds over watched_cpus (this process's cores) and `cores` their
    number, else the machine's (psutil's count), or, under a `quota` that allows fewer cores, the
    others in its cgroup and the quota's threads (default_watch); tests give their own. If it fails
    (a /proc or cgroup file that cannot be read), the watch stops and says nothing again.
    """

    def __init__(
        self, others: Callable[[], float] | None = None, cores: int | None = None, quota: Quota | None = None
    ) -> None:
        if others is None:
            others, watched = default_watch(quota)
            cores = cores or watched
        self._others = others
        cores = cores or psutil.cpu_count() or 1
        self.window_seconds = max(WINDOW_SECONDS, SECONDS_PER_CORE * cores)
        self._last: tuple[float, float] | None = None  # (clock, others' CPU seconds) at the last read
        self._last_end: float | None = None  # the last step's end
        self._used = 0.0  # others' CPU seconds and decoding seconds in the reading under way
        self._seconds = 0.0
        self._reference: float | None = None  # cores at the reading the count in use was chosen on
        self._latest: float | None = None  # cores at the last reading since
        # After a switch, the reading before it and whether the new count is smaller: the bound the
        # first reading at the new count is held to as the reference (`mark`).
        self._before_switch: tuple[float, bool] | None = None
        self.broken = False

    def observe(self, start: float, end: float) -> None:
        if self.broken:
            return
        paused = self._last_end is None or start - self._last_end > GAP_SECONDS
        self._last_end = end
        if not paused and self._last is not None and end - self._last[0] < READ_SECONDS:
            return
        try:
            used = self._others()
        except (OSError, psutil.Error):
            self.broken = True
            self._reference = self._latest = None
            return
        last, self._last = self._last, (end, used)
        if last is None or paused:
            return
        self._used += used - last[1]
        self._seconds += end - last[0]
        if self._seconds >= self.window_seconds:
            self._latest = self._used / self._seconds
            self._used = self._seconds = 0.0
            if self._reference is None:
                self._reference = self._held_to_switch(self._latest)

    def shift(self) -> float:
        """The last reading less the reference, in cores: above 0, others use more than they did when
        the count was chosen (a load arrived); below, less (one left). 0 until a reading since the
        last `mark`."""
        if self._reference is None or self._latest is None:
            return 0.0
        return self._latest - self._reference

    def mark(self, fewer: bool | None = None) -> None:
        """A count is chosen: the next reading starts afresh (the round's turns are not observed).
        The count kept (`fewer` None), the last reading before the turns is its reference (a round
        started by a shift is chosen on the load that moved; a load that leaves as the round ends
        still shows). A new count (`fewer`: whether it has fewer threads) is held to the first
        reading at it: a neighbour's share follows this process's count (1.3 cores beside 1 thread,
        1.0 beside 2 here; on many cores it can move by several), and the reading at the old count
        would start a round of its own.
        It only moves one way: up after a switch to `fewer` threads, down after one to more. So the
        reference is the first reading, or the one before the switch where it moved the other way:
        a load that left (or came) as the count changed, before the first reading, still shows."""
        before = self._latest if self._latest is not None else self._reference
        self._before_switch = None
        if fewer is not None:
            self._reference = None
            if before is not None:
                self._before_switch = (before, fewer)
        elif self._latest is not None:
            self._reference = self._latest
        self._latest = None
        self._last = self._last_end = None
        self._used = self._seconds = 0.0

    def _held_to_switch(self, reading: float) -> float:
        if self._before_switch is None:
            return reading
        (before, fewer), self._before_switch = self._before_switch, None
        return max(reading, before) if fewer else min(reading, before)
