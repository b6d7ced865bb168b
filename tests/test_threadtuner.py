"""pipeline.threadtuner: the decode's CPU thread count, picked by timing steps (`--threads auto`).

The tuner is driven by a fake clock whose steps take what a `cost` table says for the count they run
at, so each test knows which count is fastest and when that changes; the cores other processes use
(`load`) are as fake."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from test_engine_support import tiny_gpt

from pipeline import threadtuner
from pipeline.cpuload import NeighbourLoad
from pipeline.engine import Engine
from pipeline.sampling import SamplingParams
from pipeline.threadtuner import (
    AUTO,
    EXPLORE_SECONDS,
    MAX_EXPLORE_SECONDS,
    MIN_TURN,
    ThreadTuner,
    auto_tuner,
    candidate_counts,
)


class FakeCPU:
    """A clock and a thread setting: a step at `count` threads takes cost[count] seconds, or what
    cost[count](n) says for the n-th step at that count. Other processes use `load` cores meanwhile
    (`others`: their CPU seconds so far, as pipeline.cpuload.others_cpu_seconds counts them)."""

    def __init__(self, cost: dict, load: float = 0.0) -> None:
        self.cost = cost
        self.load = load
        self.now = 0.0
        self.used_by_others = 0.0
        self.threads: int | None = None
        self.steps_at: dict[int, int] = {}

    def wait(self, seconds: float, load: float | None = None) -> None:
        """Time between steps (a reply's end, a user typing), the others using `load` cores in it."""
        self.now += seconds
        self.used_by_others += seconds * (self.load if load is None else load)

    def others(self) -> float:
        return self.used_by_others

    def set_threads(self, count: int) -> None:
        self.threads = count

    def clock(self) -> float:
        return self.now

    def step(self) -> int:
        assert self.threads is not None
        n = self.steps_at.get(self.threads, 0)
        cost = self.cost[self.threads]
        self.wait(cost(n) if callable(cost) else cost)
        self.steps_at[self.threads] = n + 1
        return self.threads

    def tuner(self, watch: bool = False, **kwargs) -> ThreadTuner:
        """A tuner over the counts in `cost`, watching the others' `load` if `watch`."""
        neighbours = NeighbourLoad(self.others, cores=2) if watch else None
        return ThreadTuner(sorted(self.cost), self.set_threads, self.clock, neighbours=neighbours, **kwargs)


class SpyTuner(ThreadTuner):
    """A tuner over 1 and 2 threads that sets no real count (it keeps the counts it would set) and
    says whether it was given back torch's default (`restore`)."""

    def __init__(self) -> None:
        self.set_counts: list[int] = []
        self.restored = False
        super().__init__((1, 2), self.set_counts.append)

    def restore(self) -> None:
        self.restored = True
        super().restore()

    @staticmethod
    def maker(made: list[SpyTuner]) -> Callable[[int | str], SpyTuner]:
        """An `auto_tuner` stand-in that asks for `auto` and keeps every tuner it makes in `made`."""

        def auto_tuner(threads: int | str) -> SpyTuner:
            assert threads == AUTO
            made.append(SpyTuner())
            return made[-1]

        return auto_tuner


def run(cpu: FakeCPU, tuner: ThreadTuner, steps: int) -> list[int]:
    """The count each of `steps` decode steps ran at."""
    return [tuner.timed(cpu.step) for _ in range(steps)]


IDLE = {1: 0.030, 2: 0.020}  # the whole team is faster
BUSY = {1: 0.030, 2: 0.070}  # beside a busy process, one of the team is often descheduled


def test_idle_the_whole_team_keeps_running_after_one_turn_at_one_thread() -> None:
    cpu = FakeCPU(IDLE)
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 60)
    assert counts[:17] == [2] * 17  # torch's default first (16 steps counted, the first not)
    assert tuner.chosen == 2 and tuner.switches == 0
    assert counts[17:22] == [1] * 5 and counts[22:] == [2] * 38  # one short turn at 1 thread


def test_beside_a_busy_process_one_thread_takes_over_within_a_few_steps() -> None:
    cpu = FakeCPU(BUSY)
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 60)
    assert tuner.chosen == 1 and tuner.switches == 1
    assert counts[20:] == [1] * 40


def test_the_mean_step_decides_not_the_typical_one() -> None:
    """Beside a busy process most steps of the whole team are quick and every few one waits long for
    a descheduled thread: those waits are where the time goes. By the median, 2 threads (7 ms) would
    beat 1 (10 ms); by the mean (26 ms) they lose."""
    cpu = FakeCPU({1: 0.010, 2: lambda n: 0.100 if n % 5 == 4 else 0.007})
    tuner = cpu.tuner()
    run(cpu, tuner, 80)
    assert tuner.chosen == 1


def test_a_slow_first_step_after_a_switch_does_not_decide() -> None:
    """The first step at a new count pays for regrouping the team: counted, it would make 1 thread
    look slower than 2 here (0.5 s more in a turn of 5 steps)."""
    cpu = FakeCPU({1: lambda n: 0.5 if n == 0 else 0.030, 2: BUSY[2]})
    tuner = cpu.tuner()
    run(cpu, tuner, 40)
    assert tuner.chosen == 1


def test_rounds_come_by_seconds_of_decoding_not_of_waiting() -> None:
    """The time between replies (a user typing) is not decoding: counted, every short reply would
    spend itself on turns at the other count."""
    cpu = FakeCPU(IDLE)
    tuner = cpu.tuner(explore_seconds=1.0, max_explore_seconds=1.0)
    run(cpu, tuner, 30)  # past the first round: the next is 1 s of decoding away
    counts = []
    for _ in range(10):  # ten replies of 4 steps, a minute apart: 0.8 s of decoding in all
        cpu.wait(60.0)
        counts += run(cpu, tuner, 4)
    assert counts == [2] * 40
    counts = run(cpu, tuner, 20)  # and past 1 s of decoding: a turn at 1 thread
    assert 1 in counts


def test_rounds_that_change_nothing_come_less_often() -> None:
    """Each round that keeps the count doubles the decoding time to the next, up to
    max_explore_seconds: a turn at the losing count costs time (beside a busy process, GPT-2 124M at
    2 threads took 0.6 s for one)."""
    cpu = FakeCPU(IDLE)
    tuner = cpu.tuner(explore_seconds=1.0, max_explore_seconds=4.0)
    starts, last = [], 2
    for _ in range(1500):  # 30 s of decoding
        before = cpu.now
        count = tuner.timed(cpu.step)
        if count == 1 and last == 2:
            starts.append(before)
        last = count
    gaps = [round(b - a) for a, b in itertools.pairwise(starts)]  # each a wait plus a turn of 0.15 s
    assert gaps[:4] == [1, 2, 4, 4] and set(gaps) == {1, 2, 4}
    assert tuner.chosen == 2 and tuner.switches == 0


def test_a_load_that_arrives_starts_a_round_at_once() -> None:
    cpu = FakeCPU(dict(IDLE))
    tuner = cpu.tuner()
    run(cpu, tuner, 80)  # past the first round, the next 2 s of decoding away (100 steps)
    assert tuner.chosen == 2
    cpu.cost = dict(BUSY)  # a training run starts beside the chat
    counts = run(cpu, tuner, 30)
    # Only the steps since it came count for 2 threads: with the 24 before it, their mean (33 ms)
    # would not show 1 thread (30 ms) to be the faster. 8 steps to see it, a turn of 5, then 1 thread.
    assert tuner.chosen == 1 and counts[13:] == [1] * 17


def test_a_load_that_leaves_without_speeding_up_one_thread_is_found_at_the_timed_rounds() -> None:
    """Where one thread runs as fast with the neighbour gone as beside it, no step says that the
    whole team would now win: the timed rounds find it, the first averaging its turn with the turn
    before, beside the load; the second has only steps without it."""
    cpu = FakeCPU(dict(BUSY))
    tuner = cpu.tuner(explore_seconds=1.0, max_explore_seconds=2.0)
    run(cpu, tuner, 30)
    assert tuner.chosen == 1
    cpu.cost = dict(IDLE)
    run(cpu, tuner, int(2 * 2.0 / IDLE[1]) + 20)
    assert tuner.chosen == 2 and tuner.switches == 2


def test_a_load_that_leaves_starts_a_round_when_one_thread_speeds_up() -> None:
    """One thread beside a busy process is slower than alone (GPT-2 124M: 15-18 tokens/s against
    27-28). When its steps speed up by SPEEDUP, a round comes once EXPLORE_SECONDS of decoding have
    passed since the last, not at the timed round up to MAX_EXPLORE_SECONDS (8 s) away; and only
    turns taken since then count, so the old turn at 2 threads beside the load does not hold it back."""
    busy = {1: 0.045, 2: 0.070}
    cpu = FakeCPU(dict(busy))
    tuner = cpu.tuner()
    run(cpu, tuner, 600)  # 27 s of decoding: rounds that change nothing, 8 s apart by now
    assert tuner.chosen == 1 and tuner.switches == 1
    cpu.cost = dict(IDLE)
    left = cpu.now
    while tuner.chosen == 1 and cpu.now - left < 10.0:
        run(cpu, tuner, 1)
    assert tuner.chosen == 2 and cpu.now - left < EXPLORE_SECONDS + 0.5


def test_a_turn_at_a_much_slower_count_is_a_few_steps_not_as_many_as_the_quick_count_takes() -> None:
    """A turn lasts a share of the time between rounds: at a count 15x slower than the one in use it is
    MIN_TURN steps (plus the uncounted first), not the 50 that the quick count's 0.1 s holds."""
    cpu = FakeCPU({1: 0.002, 2: 0.030})
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 5000)
    assert tuner.chosen == 1
    stretches = [len(list(g)) for c, g in itertools.groupby(counts[17:]) if c == 2]
    assert stretches and max(stretches) == MIN_TURN + 1


def test_a_count_changed_by_someone_else_is_set_again_before_the_next_step() -> None:
    """The tuner sets the count at every step: a step must run at the count its time is kept for."""
    cpu = FakeCPU(BUSY)
    tuner = cpu.tuner()
    run(cpu, tuner, 30)
    cpu.threads = 2  # e.g. a benchmark or a library between two replies
    assert run(cpu, tuner, 1) == [1]


def test_candidate_counts_and_bad_counts() -> None:
    assert candidate_counts(1) == (1,)
    assert candidate_counts(2) == (1, 2)
    assert candidate_counts(16) == (1, 8, 16)
    with pytest.raises(ValueError, match="thread counts must be >= 1"):
        ThreadTuner([0, 2], lambda n: None)
    with pytest.raises(ValueError, match="thread counts must be >= 1"):
        ThreadTuner([], lambda n: None)


def test_auto_tuner_only_for_auto_and_more_than_one_default_thread(monkeypatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(threadtuner, "cpu_quota", lambda: None)  # a quota caps them: test_cpuquota.py
    tuner = auto_tuner("auto")
    assert tuner is not None and tuner.counts == (1, 2, 4)
    assert auto_tuner(3) is None  # a fixed count: load_chat_model sets it
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert auto_tuner("auto") is None  # nothing to choose


def test_switching_counts_mid_reply_changes_no_token() -> None:
    """The count is only speed: a sampled reply whose steps keep changing between 1 and 2 threads
    (rounds as often as their spacing allows) is the reply at torch's default count."""
    model = tiny_gpt()
    default = torch.get_num_threads()
    sampling = SamplingParams(temperature=1.0, seed=7)
    prompt = [[5, 17, 99, 3]]
    try:
        plain = Engine(model).generate_ids(prompt, 120, sampling, stop_token_ids=())
        seen: list[int] = []

        def set_threads(n: int) -> None:
            seen.append(n)
            torch.set_num_threads(n)

        ticks = itertools.count()  # every step takes 10 ms at either count: rounds come by steps alone
        tuner = ThreadTuner((1, 2), set_threads, lambda: 0.01 * next(ticks), explore_seconds=0.0)
        tuned = Engine(model, thread_tuner=tuner).generate_ids(prompt, 120, sampling, stop_token_ids=())
    finally:
        torch.set_num_threads(default)
    assert tuned == plain
    changes = sum(a != b for a, b in itertools.pairwise(seen))
    assert seen.count(1) > 5 and changes >= 6  # it did switch: to 1 thread and back, again and again


def test_a_tuned_decode_step_gives_the_same_logits_at_any_thread_count() -> None:
    """The logits themselves, not only the tokens of one reply (a difference of 1e-6 flips a token
    only now and then): torch's CPU flash attention gave a decode step (one query row) logits that
    moved with the count, ~2e-6 for this model at 1 vs 2 threads, so a seeded reply could change
    with the counts the tuner's timings picked. Tuned steps run their attention on the math backend."""
    model = tiny_gpt()
    default = torch.get_num_threads()
    tuner = ThreadTuner((1, 2), torch.set_num_threads)
    engine = Engine(model, thread_tuner=tuner)
    prompt = torch.tensor([[5, 17, 99, 3, 250, 8, 1000, 42] * 5])  # 41+ keys: 32 or fewer matched
    logits = []
    try:
        for count in (1, 2):
            tuner.chosen = count  # the count the step runs at (no turn is due: 0 steps timed)
            slot = engine._slot(1, 64)
            slot.cache.reset()
            with torch.inference_mode():
                model(prompt, cache=slot.cache)
                steps = []
                for token in (7, 11, 13):
                    steps.append(engine._decode_step(slot, torch.tensor([[token]])))
                    slot.cache.advance()
            logits.append(torch.cat(steps))
    finally:
        torch.set_num_threads(default)
    assert torch.equal(logits[0], logits[1]), (logits[0] - logits[1]).abs().max()


@pytest.mark.parametrize("length", [5, 6, 9])
def test_a_reply_gives_the_same_logits_whatever_count_the_last_one_left(
    monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    """The prefill is not a tuned step: it ran at whatever count the last reply's steps left set, and
    its linear layers' few-row products (5 to 11 prompt tokens) moved ~2e-6 between 1 and 2 threads,
    so the second reply of a seeded chat could depend on the counts the tuner had picked."""
    from pipeline import engine as engine_module

    model = tiny_gpt()
    default = torch.get_num_threads()
    seen: list[torch.Tensor] = []
    sample = engine_module.sample
    monkeypatch.setattr(
        engine_module, "sample", lambda logits, *a: seen.append(logits.clone()) or sample(logits, *a)
    )
    prompt = [5, 17, 99, 3, 250, 8, 1000, 42, 77][:length]
    runs = []
    try:
        for left in (1, 2):
            tuner = ThreadTuner((1, 2), torch.set_num_threads, restore_count=2)
            torch.set_num_threads(left)  # what the last reply's steps left set
            seen.clear()
            with torch.inference_mode():
                Engine(model, thread_tuner=tuner).generate_ids([prompt], 3)
            runs.append(torch.cat(seen))
    finally:
        torch.set_num_threads(default)
    assert torch.equal(runs[0], runs[1]), (runs[0] - runs[1]).abs().max()


def test_the_prefill_never_runs_above_a_quota_cap() -> None:
    """Under a CPU quota the tuner's counts stop below torch's default (its restore count): the
    prefill ran at that default, the throttled count the quota cap exists to avoid."""
    model = tiny_gpt()
    default = torch.get_num_threads()
    counts: list[int] = []
    tuner = ThreadTuner((1,), lambda n: counts.append(n) or torch.set_num_threads(n), restore_count=2)
    try:
        with torch.inference_mode():
            Engine(model, thread_tuner=tuner).generate_ids([[5, 17, 99]], 3)
    finally:
        torch.set_num_threads(default)
    assert counts and set(counts) == {1}


def test_the_engine_times_only_its_decode_steps_with_the_tuner() -> None:
    """Each decode step (not the prefill) goes through the tuner: 20 new tokens, 19 steps fed back."""
    model = tiny_gpt()
    default = torch.get_num_threads()
    tuner = ThreadTuner((default,), torch.set_num_threads)
    timed = []
    real = tuner.timed
    tuner.timed = lambda step: timed.append(1) or real(step)  # type: ignore[method-assign]
    try:
        Engine(model, thread_tuner=tuner).generate_ids([[1, 2, 3]], 20, SamplingParams(), stop_token_ids=())
    finally:
        torch.set_num_threads(default)
    assert len(timed) == 19


@pytest.mark.parametrize("cost", [{1: 9.0, 2: 3.0}, {1: 1.5, 2: 1.0}])
def test_slow_steps_keep_the_faster_count_and_turns_under_a_fifth_of_the_time(cost: dict) -> None:
    """Steps of a second or more (a large model, a long context, a loaded CPU): a turn of a few steps
    outlasts the seconds between rounds. Rounds then came after a step or two at the count in use,
    which had no mean and lost to the other, 3x slower (28 switches, 81% of the time at it at 3 s a
    step; at 1 s, 49% of it)."""
    cpu = FakeCPU(cost)
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 400)
    assert tuner.chosen == 2 and tuner.switches == 0
    slow_time = sum(cost[c] for c in counts if c == 1)
    assert slow_time < 0.25 * cpu.now


def test_slow_phases_of_one_thread_do_not_start_a_round_each() -> None:
    """Beside a busy process one thread's steps come in quick and slow phases (here 24 steps of 2 ms,
    then 8 of 14 ms, 2.8x the mean). A slow phase may start a round, but its steps become the
    reference the next phase is held to: the slower count (2 threads, 30 ms) gets under a quarter of
    the time."""
    cpu = FakeCPU({1: lambda n: 0.014 if n % 32 >= 24 else 0.002, 2: 0.030})
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 3000)
    assert tuner.chosen == 1
    time_at_2 = 0.030 * counts.count(2)
    assert time_at_2 < 0.25 * cpu.now


@pytest.mark.parametrize(
    "quick, slow, phase, two", [(1.0, 2.0, 12, 2.5), (0.5, 1.0, 10, 1.2)], ids=["1s-2s", "0.5s-1s"]
)
def test_slow_steps_in_phases_start_rounds_no_oftener_than_the_timed_ones(
    quick: float, slow: float, phase: int, two: float
) -> None:
    """Steps of a second or more at 1 thread, in quick and slow phases: each quick phase is a speed-up,
    and a round that came 2 s after the last (a few steps) gave the slower count 0.29 and 0.31 of
    the time. A speed-up waits for the timed rounds' spacing too (ROUND_SPACING times the last
    round's time): under a quarter."""
    cpu = FakeCPU({1: lambda n: slow if (n // phase) % 2 else quick, 2: two})
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 600)
    assert tuner.chosen == 1
    assert two * counts.count(2) < 0.25 * cpu.now


@pytest.mark.parametrize(
    "load, chosen",
    [({1: 0.050, 2: 0.045}, 2), ({1: 0.060, 2: 0.080}, 1)],
    ids=["old-turn-of-the-other-count", "old-steps-of-the-count-in-use"],
)
def test_after_a_load_arrives_only_steps_since_it_count(load: dict, chosen: int) -> None:
    """After an idle start (1 thread 30 ms, 2 threads 20 ms), a load slows both counts; only steps
    taken beside it may decide. Averaged with its turn from before the load, 1 thread (40 ms) looked
    quicker than the whole team (45 ms) and took over. And the slowdown shows at about the fifth slow
    step, when the last WATCH steps still hold three from before: counted, the whole team's mean
    (58 ms) hid that 1 thread (60 ms) now beats it (80 ms)."""
    cpu = FakeCPU(dict(IDLE))
    tuner = cpu.tuner()
    run(cpu, tuner, 80)
    assert tuner.chosen == 2
    cpu.cost = load
    run(cpu, tuner, 60)
    assert tuner.chosen == chosen and tuner.switches == (chosen != 2)


def test_a_timed_round_after_a_load_left_drops_the_turns_taken_beside_it() -> None:
    """Beside a load whose 2-thread steps crawl (500 ms), a round takes 2.5 s: the next timed round
    and a speed-up's round both wait 10 s (4 x 2.5 s), and fall on one step, where the timed round
    dropped nothing (the speed-up was not looked at). Its 2-thread mean held the turn taken beside
    the load (a GPT-2 124M trace: 257 ms, against 29 ms idle) and kept 1 thread for 8 s more (13.8 s in
    all): a timed round that finds the count in use sped up (or slowed down) drops the old turns."""
    cpu = FakeCPU({1: 0.045, 2: 0.500})
    tuner = cpu.tuner()
    run(cpu, tuner, 400)
    assert tuner.chosen == 1
    cpu.cost = dict(IDLE)
    left, counts = cpu.now, []
    while tuner.chosen == 1 and cpu.now - left < 30.0:
        counts += run(cpu, tuner, 1)
    # The first round after it left decides: one turn at 2 threads, not two rounds (8 s more).
    assert tuner.chosen == 2 and [c for c, _ in itertools.groupby(counts)] == [1, 2]


def test_a_round_started_by_a_load_that_arrives_sets_the_next_one_two_base_intervals_later() -> None:
    """Rounds that changed nothing had spread to MAX_EXPLORE_SECONDS; a load arrives and the round it
    starts keeps the count: the next round comes 2 * EXPLORE_SECONDS after, not 8 s (nor 2 s)."""
    cpu = FakeCPU(dict(IDLE))
    tuner = cpu.tuner()
    run(cpu, tuner, 600)
    cpu.cost = {1: 0.060, 2: 0.045}  # both slower; 2 threads still win
    starts, last = [], 2
    for _ in range(400):
        before = cpu.now
        count = tuner.timed(cpu.step)
        if count == 1 and last == 2:
            starts.append(before)
        last = count
    assert tuner.chosen == 2 and round(starts[1] - starts[0]) == 2 * EXPLORE_SECONDS


def test_a_turn_is_not_cut_at_the_long_wait_it_just_took() -> None:
    """A turn lasts 0.1 s at its steps' typical pace: ended by their sum, 1 thread's first turn (4 ms
    steps, one 100 ms wait at its 11th) ended on the wait, its mean (12.7 ms) lost to the whole
    team's 10 ms, and the quicker count was not tried again for seconds."""
    cpu = FakeCPU({1: lambda n: 0.100 if n == 11 else 0.004, 2: 0.010})
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 60)
    assert counts[17:28] == [1] * 11  # the turn goes on past the wait
    assert tuner.chosen == 1


def test_restore_sets_the_default_count_again() -> None:
    """A chat that ends at 1 thread, or mid-turn, must not leave its caller's process there."""
    cpu = FakeCPU(BUSY)
    tuner = cpu.tuner()
    run(cpu, tuner, 30)
    assert cpu.threads == 1
    tuner.restore()
    assert cpu.threads == 2
    assert run(cpu, tuner, 3) == [1, 1, 1]  # and it goes on at the count it chose


def steps_until_chosen(cpu: FakeCPU, tuner: ThreadTuner, count: int, limit: float) -> float:
    """Decode until `tuner` runs at `count` or `limit` seconds have passed; the seconds it took."""
    start = cpu.now
    while tuner.chosen != count and cpu.now - start < limit:
        run(cpu, tuner, 1)
    return cpu.now - start


@pytest.mark.parametrize("watch", [True, False], ids=["watched", "steps-only"])
def test_a_load_that_leaves_is_seen_in_the_cores_the_others_use(watch: bool) -> None:
    """One thread decodes as fast with the neighbour gone as beside it (its steps say nothing), and
    rounds that changed nothing are MAX_EXPLORE_SECONDS apart by now. The cores the others use fall
    from 1.3 to 0: watched, the whole team takes over within 2 s; from the steps alone, only at the
    timed round."""
    cpu = FakeCPU(dict(BUSY), load=1.3)
    tuner = cpu.tuner(watch=watch)
    run(cpu, tuner, 700)  # 21 s of decoding, rounds 8 s apart
    assert tuner.chosen == 1 and tuner.switches == 1
    cpu.cost, cpu.load = dict(IDLE), 0.0
    took = steps_until_chosen(cpu, tuner, 2, 2 * MAX_EXPLORE_SECONDS)
    assert tuner.chosen == 2
    assert took < 2.0 if watch else took > 2.0


def test_a_load_that_arrives_on_cores_the_steps_do_not_feel_starts_one_round() -> None:
    """The others' cores rise (a process on cores this one does not share) and no count is slower:
    one round tries the other count, and the reading after it is the new reference, so no more
    rounds come than the timed ones."""
    rounds = {}
    for watch in (True, False):
        cpu = FakeCPU(dict(IDLE))
        tuner = cpu.tuner(watch=watch)
        run(cpu, tuner, 700)
        cpu.load = 1.0
        counts = run(cpu, tuner, 700)
        assert tuner.chosen == 2
        rounds[watch] = [c for c, _ in itertools.groupby(counts)].count(1)
    assert rounds[True] == rounds[False] + 1


def test_the_pause_between_replies_is_not_read_as_a_load_that_arrived() -> None:
    """While this process waits for the user, a busy neighbour takes the cores it leaves (2 cores,
    not the 1.3 it gets beside a decode). A reading across the pause would look like a load that
    arrived and start a round after every reply: the tuner does as it does unwatched."""
    counts = {}
    for watch in (True, False):
        cpu = FakeCPU(dict(BUSY), load=1.3)
        tuner = cpu.tuner(watch=watch)
        counts[watch] = []
        for _ in range(30):  # replies of 40 steps, 5 s apart
            counts[watch] += run(cpu, tuner, 40)
            cpu.wait(5.0, load=2.0)
    assert counts[True] == counts[False]


def test_a_neighbour_that_keeps_coming_and_going_gets_under_a_quarter_of_the_time() -> None:
    """The others' cores swing between 0 and 1.3 every 0.6 s and each swing is a change; a round
    waits ROUND_SPACING times the last round's time. With slow steps (a turn at 1 thread takes 1.5 s)
    a round at each swing spent most of the time at the slower count."""
    cpu = FakeCPU({1: 0.300, 2: 0.100})
    tuner = cpu.tuner(watch=True)
    counts = []
    for n in range(3000):
        cpu.load = 1.3 if (n // 6) % 2 else 0.0
        counts += run(cpu, tuner, 1)
    assert tuner.chosen == 2
    assert 0.300 * counts.count(1) < 0.25 * cpu.now


def test_a_load_that_leaves_is_seen_across_short_replies() -> None:
    """Replies of a small model (64 tokens of 5 ms, a second apart) are shorter than a reading of the
    others' cores: readings add up the replies' steps, and the reference from beside the load
    outlasts the pauses, so the whole team is back within a few replies of the load's end, not at
    the timed round 8 s of decoding (25 replies) away."""
    cpu = FakeCPU({1: 0.005, 2: 0.012}, load=1.3)
    tuner = cpu.tuner(watch=True)
    for _ in range(100):
        run(cpu, tuner, 64)
        cpu.wait(1.0, load=2.0)
    assert tuner.chosen == 1
    cpu.cost, cpu.load = {1: 0.005, 2: 0.003}, 0.0
    replies = 0
    while tuner.chosen == 1 and replies < 30:
        run(cpu, tuner, 64)
        cpu.wait(1.0)
        replies += 1
    assert tuner.chosen == 2 and replies <= 4


def test_a_load_that_leaves_right_after_a_round_is_held_to_the_reading_before_it() -> None:
    """The count in use was chosen on the reading taken before the round's turns: a load that leaves
    as the round ends, before any reading after it, still shows, and starts a round once
    EXPLORE_SECONDS of decoding have passed (the first reading after the round, without the load,
    would have been the reference: nothing moved until the timed round 8 s on)."""
    cpu = FakeCPU(dict(BUSY), load=1.3)
    tuner = cpu.tuner(watch=True)
    counts = run(cpu, tuner, 700)
    while counts[-2:] != [2, 1]:  # to the end of a turn at 2 threads: back on 1
        counts += run(cpu, tuner, 1)
    cpu.cost, cpu.load = dict(IDLE), 0.0
    assert steps_until_chosen(cpu, tuner, 2, 2 * MAX_EXPLORE_SECONDS) < EXPLORE_SECONDS + 0.5


def test_a_load_that_leaves_as_slow_steps_wait_out_the_spacing_starts_the_round_that_comes_due() -> None:
    """With slow steps (a large model: a turn at 2 threads beside the load takes 3.5 s) ROUND_SPACING
    times the last round's time outlasts the timed rounds' wait, so the round the others' cores call
    for comes due on the timed round's step. It is theirs all the same: the turns at 2 threads from
    beside the load are dropped, and the first turn after the load left brings the whole team back
    (kept, they made its mean 0.45 s against 1 thread's 0.3 s, and the switch waited 9 s more)."""
    cpu = FakeCPU({1: 0.3, 2: 0.7}, load=1.3)
    tuner = cpu.tuner(watch=True)
    run(cpu, tuner, 400)
    assert tuner.chosen == 1
    cpu.cost, cpu.load = {1: 0.3, 2: 0.2}, 0.0
    counts: list[int] = []
    while tuner.chosen == 1 and len(counts) < 200:
        counts += run(cpu, tuner, 1)
    counts += run(cpu, tuner, 5)
    assert [c for c, _ in itertools.groupby(counts)] == [1, 2]


class YieldingCPU(FakeCPU):
    """A neighbour whose share follows this process's count: `shares[threads]` cores beside a step
    at `threads` (it takes the cores a smaller team leaves)."""

    def __init__(self, cost: dict, shares: dict[int, float]) -> None:
        super().__init__(cost)
        self.shares = shares

    def wait(self, seconds: float, load: float | None = None) -> None:
        share = self.shares[self.threads] if self.threads is not None else 0.0
        super().wait(seconds, share if load is None else load)


@pytest.mark.parametrize(
    ("cost", "shares"),
    [
        (dict(BUSY), {1: 1.35, 2: 1.0}),
        ({1: 0.3, 2: 0.1}, {1: 1.3, 2: 0.3}),
        (dict(BUSY), {1: 1.3, 2: 0.3}),
    ],
    ids=["its-share-moves-less-than-a-load-step", "turns-longer-than-a-reading", "after-a-switch"],
)
def test_a_neighbour_whose_share_follows_this_process_count_starts_no_round(
    cost: dict, shares: dict[int, float]
) -> None:
    """The readings are taken at the count in use only, and a neighbour's share moves by less than
    LOAD_STEP when this process changes its count (1.35 to 1.0 cores): the tuner does as it does
    unwatched. (A turn of slow steps at 1 thread outlasts a reading: read, it became the reference,
    and the reading at 2 threads after it started a round every ROUND_SPACING turns' time. On many
    cores the share can move by more than LOAD_STEP, and after a switch the reading at the old count
    was the reference: the first at the new one started a round.)"""
    counts = {}
    for watch in (True, False):
        cpu = YieldingCPU(cost, shares)
        tuner = cpu.tuner(watch=watch)
        counts[watch] = run(cpu, tuner, 1500)
    assert counts[True] == counts[False]


def test_a_load_that_leaves_after_a_slow_round_beside_it_is_acted_on_at_once() -> None:
    """Beside the load a turn at 2 threads crawls (5 steps of 0.5 s), and rounds wait 4x the last
    round's time: 10 s. The load leaves right after such a round: the turns without it are as quick
    as the idle ones before it came, so the round the others' cores call for waits 4x the quickest
    round's time (and EXPLORE_SECONDS at least, as a speed-up's does), and the whole team is back
    within 2.5 s (not 10)."""
    cpu = FakeCPU(dict(IDLE))
    tuner = cpu.tuner(watch=True)
    run(cpu, tuner, 200)  # idle rounds: quick
    cpu.cost, cpu.load = {1: 0.030, 2: 0.500}, 1.3
    counts = run(cpu, tuner, 300)
    assert tuner.chosen == 1
    while counts[-2:] != [2, 1]:  # to the end of a slow turn at 2 threads
        counts += run(cpu, tuner, 1)
    cpu.cost, cpu.load = dict(IDLE), 0.0
    assert steps_until_chosen(cpu, tuner, 2, 4 * MAX_EXPLORE_SECONDS) < EXPLORE_SECONDS + 0.5


def test_a_load_that_leaves_as_one_thread_takes_over_is_acted_on_at_once() -> None:
    """The switch to 1 thread holds the others' cores to the first reading at it, and the load left
    before that reading: read alone, it was the reference (nothing moved, and the crawled turn at 2
    threads kept 1 thread to the timed round after next, 6 s on). The share of a neighbour can only
    rise when this process takes fewer threads: the fall shows, and the whole team is back within
    EXPLORE_SECONDS and a turn."""
    cpu = FakeCPU(dict(IDLE))
    tuner = cpu.tuner(watch=True)
    run(cpu, tuner, 200)
    cpu.cost, cpu.load = {1: 0.030, 2: 0.500}, 1.3
    while tuner.chosen == 2:
        run(cpu, tuner, 1)
    cpu.cost, cpu.load = dict(IDLE), 0.0
    assert steps_until_chosen(cpu, tuner, 2, 4 * MAX_EXPLORE_SECONDS) < EXPLORE_SECONDS + 0.5


def test_a_neighbour_that_comes_for_seconds_and_leaves_for_one_costs_the_watch_little() -> None:
    """The load is on for 5 s, off for 1 s; beside it 2 threads crawl (0.5 s a step). Each time it
    leaves, the round for it brings the whole team back, and each time it comes back the whole team
    crawls until that shows. A round for a load that left waited only 4x the quickest round: the
    watched tuner made 0.69x the tokens of one that reads only its steps. Waiting EXPLORE_SECONDS
    too, as a speed-up's round does: within a tenth."""
    rates = {}
    for watch in (True, False):
        cpu = FakeCPU(dict(IDLE))
        tuner = cpu.tuner(watch=watch)
        tokens = 0
        while cpu.now < 300.0:
            busy = cpu.now % 6.0 < 5.0
            cpu.cost, cpu.load = ({1: 0.030, 2: 0.500}, 1.3) if busy else (dict(IDLE), 0.0)
            run(cpu, tuner, 1)
            tokens += 1
        rates[watch] = tokens / cpu.now
    assert rates[True] > 0.9 * rates[False]


def test_a_load_that_arrives_after_a_slow_round_waits_four_times_that_round() -> None:
    """A round for a load that arrives waits ROUND_SPACING times the last round's time, not the
    quickest round's (nor EXPLORE_SECONDS), as one for a load that left does: the last round was
    taken beside a load that is still there, and its turns at 2 threads crawl (5 steps of 0.5 s:
    2.5 s). Another load then comes on cores the steps do not feel: its round comes 10 s of decoding
    later, not 0.6 s (4x the idle rounds' 0.15 s) or 2 s, where a crawling turn would take a
    quarter of the time or more. Quiet rounds are 32 s apart by now: the round is the watch's."""
    waits = {}
    for watch in (True, False):
        cpu = FakeCPU(dict(IDLE))
        tuner = cpu.tuner(watch=watch, max_explore_seconds=4 * MAX_EXPLORE_SECONDS)
        run(cpu, tuner, 200)  # idle rounds: quick
        cpu.cost, cpu.load = {1: 0.030, 2: 0.500}, 1.3
        counts = run(cpu, tuner, 3000)  # 1 thread, slow rounds, quiet ones 16 s apart and more
        assert tuner.chosen == 1
        while counts[-2:] != [2, 1]:  # to the end of a slow turn at 2 threads
            counts += run(cpu, tuner, 1)
        cpu.load = 2.3
        ended = cpu.now - cpu.cost[1]  # the round ended at that step at 1 thread's start
        while run(cpu, tuner, 1) == [1] and cpu.now - ended < 4 * MAX_EXPLORE_SECONDS:
            pass
        waits[watch] = cpu.now - cpu.cost[2] - ended  # seconds at 1 thread before the next turn
    assert 4 * 2.5 <= waits[True] < 4 * 2.5 + 0.1
    assert waits[False] > 4 * 2.5 + 1.0
