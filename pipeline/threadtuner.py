"""The CPU thread count a decode runs on, picked by timing decode steps at each count (`--threads auto`,
the default of `nanochatgpt chat` and `serve` on a CPU).

torch runs CPU kernels on an OpenMP team, a thread per core by default, that waits, spinning, at each
kernel's end for its slowest thread. A decode step at batch 1 is hundreds of short kernels. On an idle
machine the whole team wins (2 threads decoded GPT-2 124M ~1.5x as fast as 1 on 2 cores); beside a
busy process, a training run say, one of the team is often descheduled and every kernel waits for it
(1 thread then decoded 1.7-1.9x as fast as 2: benchmarks/decode_threads.py). Which count wins depends
on a load that comes and goes, so no count fixed at start is right for long: the tuner keeps the mean
step time of each count, gives the other counts a short turn (a few steps) every few seconds of
decoding (about a fifth of it at most), and runs at whichever is quickest. It tries them at once when
the steps slow down, or when the cores other processes use move (pipeline/cpuload.py): a load came or
went.

The count changes nothing in the output: a tuned decode step runs its attention on torch's math
backend, whose logits are the same at any thread count (its CPU flash kernel's, for the one query row
of a decode step, were not: pipeline.engine._thread_invariant), and the prefill runs at the tuner's
largest count, whatever count the last reply left, so a `--seed` reply is the same
(tests/test_threadtuner.py checks it on this machine's torch). Not with `--compile`: a compiled step
keeps the kernels it was compiled with, whose logits can move with the count (~3e-7).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from pipeline.cpuload import NeighbourLoad
from pipeline.cpuquota import cpu_quota

T = TypeVar("T")

# A count's cost is the mean of its step times over its last two stints (a turn, or the time it ran
# between rounds), at most its last WINDOW steps: enough steps to take in the waits below, none from
# before the stint that a load left or arrived in. A mean, not a median: beside a busy process most
# steps at the whole team's size are as quick as idle, and every 10 to 25 steps one waits 50-150 ms
# for a descheduled thread; those waits are where its time goes.
WINDOW = 32
STINTS = 2
# Seconds of decoding (the timed steps, not the time between replies) between rounds of turns at the
# other counts, and the share of that time a turn takes (at least MIN_TURN steps). A round that changes
# nothing doubles the time to the next, up to MAX_EXPLORE_SECONDS: beside a busy process a turn of
# GPT-2 124M at 2 threads costs about 0.6 s, a third of 2 s of decoding.
EXPLORE_SECONDS = 2.0
MAX_EXPLORE_SECONDS = 8.0
EXPLORE_SHARE = 0.05
MIN_TURN = 4
# Steps at torch's default count before the first round: enough to take in a wait or two beside a busy
# process (after 8, the default's mean had often seen none, beat 1 thread's, and held for seconds).
FIRST_ROUND_STEPS = 16
# The count in use decodes at least this many times as long as the last round of turns took before
# the next round: with steps of a second or more (a large model, a long context, a loaded CPU) a
# turn of MIN_TURN steps outlasts EXPLORE_SECONDS, and rounds every few seconds spent half the time
# at the slower count.
ROUND_SPACING = 4.0
# A round starts at once when the median of the count in use's last WATCH steps is SLOWDOWN times its
# mean at the last round: a load has arrived. A median: single waits must not start rounds.
WATCH = 8
SLOWDOWN = 2.0
# A load that leaves can show too: one thread beside a busy process decodes about 1.5x slower than
# alone (GPT-2 124M: 15-18 tokens/s against 27-28, benchmarks/decode_threads.py), though much of
# that is in waits, and its median step may differ less (40 against 37 ms in one trace: then the
# timed rounds find it). When the median of the last WATCH steps is under the median at the last
# round by SPEEDUP, a round starts, once EXPLORE_SECONDS of decoding (and ROUND_SPACING times the
# last round's time) have passed since the last: quick and slow phases beside a busy process must
# not start one each. Before, the load's end was found at the next timed round only, up to
# MAX_EXPLORE_SECONDS later, all that time on 1 thread at 0.7x the whole team's speed. Other
# speed-ups start a round too (a reply with a short context after long ones): a turn wasted, no
# more, at those spacings.
SPEEDUP = 1.25
ARRIVED, LEFT = "arrived", "left"  # what the count in use's steps say of a load (_load_change)
# Where the tuner has a NeighbourLoad (pipeline/cpuload.py: `--threads auto` has one), a round also
# starts when the cores other processes use moved by LOAD_STEP from the reading the count in use was
# chosen on, once ROUND_SPACING times the last round's time has passed (for a load that left, the
# quickest round's, and EXPLORE_SECONDS: _quickest_round): the sign the step times miss when a load
# leaves (above). Half a core: the busy process of benchmarks/decode_threads.py reads 1.3 cores and
# its absence 0.01 on 2 cores. A neighbour's share also follows this process's count (1.3 cores
# beside 1 thread, 1.0 beside 2; on many cores it may move by more than LOAD_STEP): readings are
# taken at the count in use only, and a new count is held to the first reading at it, as far as a
# switch can move it (NeighbourLoad.mark).
LOAD_STEP = 0.5
# Another count takes over when its mean step is under this share of the count in use's: a smaller
# gain is within the noise of a few dozen steps.
MARGIN = 0.9


def candidate_counts(default: int, limit: int | None = None) -> tuple[int, ...]:
    """1, half the cores and all of them: where the team's size matters (1 against all) without
    trying every count on a many-core machine. `limit` (a CPU quota's threads: cpuquota.Quota) caps
    them all: the one place the counts are capped. Threads past a quota run only to be throttled,
    and the team waits for them at every kernel's end; neither torch's default count nor OpenMP's
    looks at a quota (they count the cores the process may run on)."""
    top = default if limit is None else max(1, min(default, limit))
    return tuple(sorted({1, max(1, top // 2), top}))


class ThreadTuner:
    """Runs each decode step at the thread count whose recent steps were quickest (see the module doc).

    It starts at the largest count (torch's default, or as much of it as a CPU quota allows). After
    FIRST_ROUND_STEPS steps, then after EXPLORE_SECONDS of decoding, twice as long after each round
    that changes nothing up to MAX_EXPLORE_SECONDS (and at least ROUND_SPACING times the last
    round's own time), or when the steps slow down SLOWDOWN times or speed up SPEEDUP times (a load
    arrived or left; a speed-up waits for the spacing of timed rounds), or when the cores other
    processes use move by LOAD_STEP (`neighbours`, after ROUND_SPACING times the last round's time;
    where they fell, after EXPLORE_SECONDS and ROUND_SPACING times the quickest round's), it gives
    each other count a turn of a few steps. After the round, the count with the lowest mean step
    time over its last stints is used, if it beats the one in use by MARGIN. The first step after a
    change of count is not counted (the team regroups).
    `set_threads` and `clock` are torch.set_num_threads and time.perf_counter; tests give their own.
    One generation at a time: the engine's steps call `timed` one after another.
    """

    def __init__(
        self,
        counts: Sequence[int],
        set_threads: Callable[[int], None],
        clock: Callable[[], float] = time.perf_counter,
        explore_seconds: float = EXPLORE_SECONDS,
        max_explore_seconds: float = MAX_EXPLORE_SECONDS,
        neighbours: NeighbourLoad | None = None,
        restore_count: int | None = None,
    ) -> None:
        if not counts or min(counts) < 1:
            raise ValueError(f"thread counts must be >= 1, got {list(counts)}")
        self.counts = tuple(sorted(set(counts)))
        # The count `restore` sets: torch's default, which is more than the largest count where a
        # CPU quota capped them (default_tuner).
        self._restore_count = restore_count or self.counts[-1]
        self.chosen = self.counts[-1]  # the count in use between turns
        self.switches = 0  # how often the chosen count changed (for the benchmark and tests)
        self._set_threads = set_threads
        self._clock = clock
        self._explore_seconds = explore_seconds
        self._max_explore_seconds = max(explore_seconds, max_explore_seconds)
        self._stints: dict[int, deque[list[float]]] = {c: deque(maxlen=STINTS) for c in self.counts}
        self._current: int | None = None
        self._stint_count: int | None = None  # the count of the stint under way
        self._regrouping = False  # the step under way is the first at its count
        self._turn: list[int] = []  # counts still to be given a turn in this round
        # Seconds of decoding until the next round: the first comes after FIRST_ROUND_STEPS steps.
        self._until_round: float | None = None
        # The time between rounds, doubled by each that changes nothing: from half the base, so the
        # first (on few steps) is checked again soon, EXPLORE_SECONDS after it.
        self._interval = explore_seconds / 2
        self._reference = 0.0  # the chosen count's mean step at the last round
        self._reference_median = 0.0  # and its median step
        self._round_seconds = 0.0  # decoding time of the round under way, or of the last one
        self._since_round = 0.0  # seconds of decoding at the chosen count since the last round
        self._neighbours = neighbours
        # The quickest round so far: a round the others' cores start for a load that left waits
        # ROUND_SPACING times this (and EXPLORE_SECONDS, as a speed-up's round does), not times the
        # last round's time. The last was taken beside the load, and its turns at the whole team
        # crawled (cpu-tiny: 0.85 s for 5 steps): 4x that kept 1 thread for 3.4 s of decoding after
        # the load had gone. Without the load, turns are as quick as they were before it came.
        # Without EXPLORE_SECONDS, a load on for 5 s and off for 1 s cost 0.69x the tokens of a
        # tuner that reads only its steps (tests/test_threadtuner.py): a round at every leave.
        self._quickest_round = float("inf")

    def timed(self, step: Callable[[], T]) -> T:
        """`step()` run at the count due now, its time recorded."""
        count = self._turn[0] if self._turn else self.chosen
        # Set at every step (it costs under a microsecond): whatever else changed the count meanwhile,
        # the step runs at the one its time is recorded for.
        self._set_threads(count)
        if count != self._current:
            self._current = count
            self._regrouping = True
        if count != self._stint_count:
            # A stint is a turn or the time between rounds, across replies: a reply's prefill
            # (before_untimed) ends none. Ended there, a turn never ended where every reply was
            # shorter than a turn (cpu-tiny's 3.5 ms steps: 29 steps) and the decode stayed at the
            # turn's count for good; replies of MIN_TURN decode steps or fewer (the first regroups)
            # never held MIN_TURN steps in one: no round came due, nor a load change.
            self._stint_count = count
            self._stints[count].append([])
        start = self._clock()
        result = step()
        end = self._clock()
        if self._neighbours is not None and not self._turn:
            self._neighbours.observe(start, end)
        self._record(count, end - start)
        return result

    def before_untimed(self) -> None:
        """Set the largest count (as capped by a CPU quota) for work the tuner does not time, such as
        a prefill: always the same count, so its logits do not depend on the one the last reply's
        steps left set, and never above the quota (restore's torch default can be)."""
        self._set_threads(self.counts[-1])
        self._current = None  # the next timed step regroups whatever count it runs at

    def restore(self) -> None:
        """Set torch's default count again (`restore_count`, else the largest count, where the tuner
        started): a run that ends mid-turn, or at 1 thread, must not leave its caller's process on
        it."""
        self._set_threads(self._restore_count)
        self._current = None  # the next step regroups whatever count it runs at

    def mean_step(self, count: int) -> float | None:
        """`count`'s mean counted step over its last STINTS stints, at most WINDOW steps, in seconds
        (None before it has MIN_TURN)."""
        times = self._recent_steps(count)
        return sum(times) / len(times) if len(times) >= MIN_TURN else None

    def _recent_steps(self, count: int) -> list[float]:
        return [t for stint in self._stints[count] for t in stint][-WINDOW:]

    def _record(self, count: int, seconds: float) -> None:
        counted = not self._regrouping
        self._regrouping = False
        if counted:
            self._stints[count][-1].append(seconds)
        if self._turn:
            self._round_seconds += seconds
            # A turn lasts EXPLORE_SHARE of EXPLORE_SECONDS in its own steps, and MIN_TURN counted
            # steps at least. (Counted in steps at the count in use's pace, a turn of a count 15x
            # slower took 15x as long: 1.5 s beside quick 1-thread steps.) By its median pace, not
            # its sum: ended by the sum, a turn tends to end right after a long wait, and its mean
            # came out 1.5x its count's true mean (4 ms steps with a 100 ms wait 1 in 15).
            turn = self._stints[count][-1]  # the turn's counted steps: its own stint (timed)
            if (
                len(turn) >= MIN_TURN
                and len(turn) * statistics.median(turn) >= EXPLORE_SHARE * self._explore_seconds
            ):
                self._turn.pop(0)
                if not self._turn:
                    self._choose()
            return
        if self._until_round is None:  # the first steps: how long one takes sets the first round
            mean = self.mean_step(count)
            if mean is not None:
                self._until_round = (FIRST_ROUND_STEPS - MIN_TURN) * mean
            return
        self._until_round -= seconds
        self._since_round += seconds
        # The count in use needs MIN_TURN steps of its own since the last round to be compared: with
        # fewer, it had no mean and any other count took over, however slow.
        due = len(self._stints[self.chosen][-1]) >= MIN_TURN
        if len(self.counts) < 2 or not due:
            return
        change = self._load_change()
        spaced = self._since_round >= max(self._explore_seconds, ROUND_SPACING * self._round_seconds)
        if self._until_round <= 0 or change == ARRIVED or (change == LEFT and spaced):
            # A timed round that comes due after the others' cores moved is their round: with slow
            # steps ROUND_SPACING times the last round's time is the timed wait too, and both come
            # due on one step. Taken as a timed one, it kept the other counts' turns from before
            # the move (tests/test_threadtuner.py: a load that leaves as slow steps ...).
            self._start_round(change or self._neighbour_change())
        elif seen := self._neighbour_round():
            self._start_round(seen)

    def _load_change(self) -> str | None:
        """ARRIVED, LEFT or None: what the count in use's last WATCH steps say against its steps at
        the last round (SLOWDOWN times its mean, or SPEEDUP times quicker than its median)."""
        recent = self._stints[self.chosen][-1][-WATCH:]
        if len(recent) < WATCH or self._reference <= 0:
            return None
        typical = statistics.median(recent)
        if typical > SLOWDOWN * self._reference:
            return ARRIVED
        if typical * SPEEDUP < self._reference_median:
            return LEFT
        return None

    def _neighbour_change(self) -> str | None:
        """ARRIVED or LEFT where the other processes' cores moved by LOAD_STEP from the reading the
        count in use was chosen on (the last before the last round, or an older one: NeighbourLoad)."""
        shift = self._neighbours.shift() if self._neighbours is not None else 0.0
        if abs(shift) < LOAD_STEP:
            return None
        return ARRIVED if shift > 0 else LEFT

    def _neighbour_round(self) -> str | None:
        """_neighbour_change's ARRIVED or LEFT once its round's spacing has passed since the last round:
        ROUND_SPACING times the last round's time; for a load that left, EXPLORE_SECONDS and
        ROUND_SPACING times the quickest round's (_quickest_round)."""
        seen = self._neighbour_change()
        if seen == LEFT:
            wait = max(self._explore_seconds, ROUND_SPACING * self._quickest_round)
        else:
            wait = ROUND_SPACING * self._round_seconds
        return seen if seen is not None and self._since_round >= wait else None

    def _start_round(self, change: str | None) -> None:
        if change is not None:
            # Only steps taken since the change say what a count costs now, also at a timed round
            # (a speed-up's spacing ends on the same step as the timed wait, or before it): the
            # other counts' stints were timed before it (a turn beside a load that has since left
            # counts against the whole team: in one GPT-2 124M trace, 2 threads' mean of 257 ms
            # idle, most of it a turn at 300 ms beside the load, kept 1 thread for 8 s more). The
            # count in use keeps its last MIN_TURN steps (the median of WATCH passes its bound at
            # about the fifth step after a change: the WATCH steps still held some from before it,
            # and made the count in use look as it was).
            recent = self._stints[self.chosen][-1][-MIN_TURN:]
            for stints in self._stints.values():
                stints.clear()
            self._stints[self.chosen].append(recent)
        if change == ARRIVED:
            # The round after this one comes EXPLORE_SECONDS after it if this one changes the count,
            # else twice that, not the MAX_EXPLORE_SECONDS that quiet rounds had spread to
            # (test_threadtuner: a round started by a load that arrives). Sooner, in phased loads,
            # rounds spent a third of the time at the slower count (its slow-phases test).
            self._interval = self._explore_seconds
        self._turn = [c for c in self.counts if c != self.chosen]
        self._round_seconds = 0.0

    def _choose(self) -> None:
        self._quickest_round = min(self._quickest_round, self._round_seconds)
        means = {c: m for c in self.counts if (m := self.mean_step(c)) is not None}
        best = min(means, key=lambda c: (means[c], -c))
        switched = best != self.chosen and means[best] < MARGIN * means.get(self.chosen, float("inf"))
        fewer = best < self.chosen if switched else None  # for the neighbour watch: None, count kept
        if switched:
            self.chosen = best
            self.switches += 1
            self._interval = self._explore_seconds
        else:
            self._interval = min(2 * self._interval, self._max_explore_seconds)
        self._until_round = max(self._interval, ROUND_SPACING * self._round_seconds)
        self._since_round = 0.0
        self._reference = means.get(self.chosen, 0.0)
        recent = self._recent_steps(self.chosen)
        self._reference_median = statistics.median(recent) if recent else 0.0
        if self._neighbours is not None:
            self._neighbours.mark(fewer)


AUTO = "auto"


def auto_tuner(threads: int | str) -> ThreadTuner | None:
    """The tuner `--threads auto` asks for, where there is a count to choose (torch's default is more
    than 1); None for a fixed count (`--threads N`, set by pipeline.chat.load_chat_model). An Engine on
    a GPU drops it."""
    import torch

    default = torch.get_num_threads()
    if threads != AUTO or default < 2:
        return None
    return default_tuner(default)


def default_tuner(default: int) -> ThreadTuner:
    """`--threads auto`'s tuner over `default` (torch's thread count): 1, half and all of it, no more
    than this process's CPU quota allows (cpuquota.py), the other processes' cores watched (the
    quota's cgroup's, under a quota: NeighbourLoad). Under a quota of a core it holds 1 thread, with
    nothing to choose or watch; its `restore` sets `default` again either way."""
    import torch

    quota = cpu_quota()
    counts = candidate_counts(default, quota.threads if quota else None)
    neighbours = NeighbourLoad(quota=quota) if len(counts) > 1 else None
    return ThreadTuner(counts, torch.set_num_threads, neighbours=neighbours, restore_count=default)


def fixed_threads(threads: int, log: Callable[[str], None]) -> int:
    """`--threads N` as this process's CPU quota allows (cpuquota.py), as `--threads auto` tries no
    more: threads past the quota only get the whole cgroup throttled, and each decode step then waits
    for the next period. Capped with a line to `log` rather than refused: `--threads $(nproc)` in a
    `docker --cpus=2` container asks for the host's cores (nproc counts the cores it may run on)."""
    quota = cpu_quota()
    if quota is None or threads <= quota.threads:
        return threads
    log(
        f"--threads {threads} is more than this process's CPU quota of {quota.cores:g} cores keeps "
        f"running ({quota.directory}): using {quota.threads}"
    )
    return quota.threads


@contextmanager
def restoring(tuner: ThreadTuner | None) -> Iterator[ThreadTuner | None]:
    """`tuner` for the block, torch's default count set again when it ends however it ends: a run
    that ends mid-turn, or at 1 thread, must not leave its caller's process (a test run, a notebook,
    the stage's own later work) on that count. None (no tuner) is passed through."""
    try:
        yield tuner
    finally:
        if tuner is not None:
            tuner.restore()
