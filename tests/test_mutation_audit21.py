"""Mutation audit 21: pipeline/cpuquota.py, cpuload.py, threadtuner.py and errortext.py.

Each test names the mutation it kills (module, function, what was changed). The cgroup trees are
written under tmp_path and the tuner runs on test_threadtuner's fake clock: nothing here depends on
this machine's cgroups, load or timing."""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path

import pytest
from test_cpuload import READING, FakeOthers, steps
from test_cpuquota import cgroups
from test_threadtuner import BUSY, IDLE, FakeCPU, run

from pipeline import cpuload, streamencoding, threadtuner
from pipeline.cpuload import NeighbourLoad, default_watch, others_in_cgroup
from pipeline.cpuquota import Quota, cpu_quota, usage_reader
from pipeline.errortext import first_line, run_stage
from pipeline.threadtuner import ThreadTuner, default_tuner, fixed_threads, restoring

# pipeline/cpuquota.py


@pytest.mark.parametrize(
    ("name", "content"), [("cpu.stat", "usage_usec \u00b2\u00b3\n"), ("cpuacct.usage", "\u00b9\u00b2\n")]
)
def test_a_usage_count_of_non_ascii_digits_is_no_count_not_a_crash(
    tmp_path: Path, name: str, content: str
) -> None:
    """BUG (fixed): cpuquota._v2_usage/_v1_usage checked the count with str.isdigit, which is true of
    superscript digits ("\u00b2") that int() refuses: a garbled cgroup file raised ValueError out of
    usage_reader (default_watch catches OSError only: `--threads auto` failed to start), or out of a
    watch mid-decode (NeighbourLoad.observe catches OSError). A garbled count is no count: OSError,
    and the watch falls back to the cores."""
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(OSError, match="no cpu.stat usage_usec or cpuacct.usage"):
        usage_reader(tmp_path)


def test_a_usage_count_garbled_mid_run_stops_the_watch_not_the_decode(tmp_path: Path) -> None:
    """Kills cpuquota._usage_or_error without its `raise OSError` (it returned None, and
    others_in_cgroup's None - float raised TypeError out of the decode step) and the bug above in the
    reader's path: a count that can no longer be read, or reads garbled, breaks the watch only."""
    for garbled in ("", "usage_usec \u00b2\n"):
        (tmp_path / "cpu.stat").write_text("usage_usec 2000000\n", encoding="utf-8")
        read = usage_reader(tmp_path)
        assert read() == 2.0
        (tmp_path / "cpu.stat").write_text(garbled, encoding="utf-8")
        with pytest.raises(OSError, match="can no longer be read"):
            read()
        watch = NeighbourLoad(lambda read=read: others_in_cgroup(read), cores=2)
        watch.observe(0.0, 0.01)
        assert watch.broken and watch.shift() == 0.0


def test_a_cpuset_line_does_not_name_the_cpu_cgroup(tmp_path: Path) -> None:
    """Kills cpuquota._cpu_cgroups matching `"cpu" in controllers` (a substring) rather than in its
    list: v1 lists each hierarchy on its own line, and the cpuset hierarchy's path ("/pinned") is not
    this process's cgroup in the cpu hierarchy; its limit there (a quarter core) is another's."""
    root, proc = cgroups(
        tmp_path,
        "5:cpuset:/pinned\n4:cpu,cpuacct:/mine\n",
        {
            "cpu/pinned/cpu.cfs_quota_us": "25000",
            "cpu/pinned/cpu.cfs_period_us": "100000",
            "cpu/mine/cpu.cfs_quota_us": "200000",
            "cpu/mine/cpu.cfs_period_us": "100000",
        },
    )
    assert cpu_quota(root, proc) == Quota(200000, 100000, root / "cpu/mine")


def test_no_limit_is_read_above_the_hierarchy_root(tmp_path: Path) -> None:
    """Kills cpuquota._smallest reading every parent directory (its `is_relative_to(mount)` filter
    dropped): the levels end at the mount, and a cpu.max beside it is no cgroup's limit."""
    root, proc = cgroups(tmp_path, "0::/a\n", {"a/cpu.max": "200000 100000"})
    (tmp_path / "cpu.max").write_text("10000 100000")  # outside the cgroupfs at tmp_path/fs
    assert cpu_quota(root, proc) == Quota(200000, 100000, root / "a")


def test_the_smallest_limit_is_in_cores_not_in_microseconds(tmp_path: Path) -> None:
    """Kills cpuquota._smallest comparing limits by their quota (microseconds a period) rather than
    by cores: the child's 150 ms a 300 ms period is half a core, tighter than its parent's 100 ms of
    100 ms (a core), so it binds: 1 thread."""
    root, proc = cgroups(
        tmp_path, "0::/p/c\n", {"p/cpu.max": "100000 100000", "p/c/cpu.max": "150000 300000"}
    )
    quota = cpu_quota(root, proc)
    assert quota == Quota(150000, 300000, root / "p/c") and quota.cores == 0.5 and quota.threads == 1


# pipeline/threadtuner.py


def round_starts(cpu: FakeCPU, tuner, steps: int) -> list[float]:
    """The clock at the first step of each turn at 1 thread over `steps` steps (the tuner runs at 2)."""
    starts, last = [], 2
    for _ in range(steps):
        before = cpu.now
        count = tuner.timed(cpu.step)
        if count == 1 and last == 2:
            starts.append(before)
        last = count
    return starts


def test_rounds_never_come_oftener_than_explore_seconds_whatever_the_maximum() -> None:
    """Kills threadtuner.ThreadTuner.__init__ taking max_explore_seconds as given rather than at least
    explore_seconds: a maximum under the base (2 s against 1 s) spaced quiet rounds 1 s apart, more
    often than the base allows."""
    cpu = FakeCPU(IDLE)
    tuner = cpu.tuner(explore_seconds=2.0, max_explore_seconds=1.0)
    starts = round_starts(cpu, tuner, 1500)  # 30 s of decoding
    gaps = [round(b - a) for a, b in pairwise(starts)]  # each a wait plus a turn of 0.15 s
    assert len(gaps) > 5 and set(gaps) == {2}
    assert tuner.chosen == 2 and tuner.switches == 0


def test_replies_too_short_to_time_the_count_in_use_start_no_round(monkeypatch) -> None:
    """Kills threadtuner.ThreadTuner._record without its `due` check (MIN_TURN steps of the count in
    use since the last round): replies of 3 steps (each after a prefill: a new stint, its first step
    not counted) leave 2 threads with no mean of their own, and a round, timed or started by the
    cores the others use falling, handed the count to 1 thread, 1.5x slower."""
    cpu = FakeCPU(IDLE, load=1.3)
    tuner = cpu.tuner(watch=True)
    run(cpu, tuner, 400)  # rounds that keep 2 threads, the neighbour's 1.3 cores the reference
    assert tuner.chosen == 2
    cpu.load = 0.0  # the neighbour leaves
    for _ in range(300):  # 18 s of decoding in replies of 3 steps
        tuner.before_untimed()
        run(cpu, tuner, 3)
    assert tuner.chosen == 2 and tuner.switches == 0


def test_a_turn_that_runs_into_short_replies_ends() -> None:
    """BUG (fixed): threadtuner.ThreadTuner._record ended a turn on the turn count's last stint only,
    and each reply's prefill (before_untimed) starts a new stint: a turn that began in one reply ran
    on through every later reply shorter than a turn (steps of 3.5 ms, cpu-tiny's, need 29: replies
    of 10 here) and the decode never went back to the quicker count (before the fix: all of the
    last 1,000 steps at 1 thread, 1.3x slower). A turn counts its steps across replies."""
    cpu = FakeCPU({1: 0.0045, 2: 0.0035})
    tuner = cpu.tuner()
    assert run(cpu, tuner, 18)[-1] == 1  # the first round's turn starts as the first reply ends
    counts = []
    for _ in range(200):  # replies of 10 steps, 7 s of decoding
        tuner.before_untimed()
        counts += run(cpu, tuner, 10)
    assert counts[60:500] == [2] * 440  # the turn ended within 5 replies; the next round is 2 s away
    assert tuner.chosen == 2 and counts[-1000:].count(1) < 100  # later rounds' turns only


def test_a_burst_of_three_waits_in_twelve_steps_starts_no_round() -> None:
    """Kills threadtuner.ThreadTuner._load_change taking the median of the last MIN_TURN steps, not
    WATCH: beside a busy process waits come in bursts, here 3 of 100 ms every 12 steps of 10 ms;
    the median of 8 steps stays at 10 ms, that of 4 reads a load arriving at every burst, and each
    started a round: a turn at the slower count every 0.4 s of decoding, not every 2 to 8 s."""
    cpu = FakeCPU({1: 0.050, 2: lambda n: 0.100 if n % 12 >= 9 else 0.010})
    tuner = cpu.tuner()
    starts = round_starts(cpu, tuner, 1200)  # 39 s of decoding at 2 threads' 32.5 ms mean step
    assert tuner.chosen == 2 and 3 <= len(starts) <= 8


def test_a_tie_goes_to_the_larger_count() -> None:
    """Kills threadtuner.ThreadTuner._choose breaking a tie of mean steps towards the smaller count
    (`c` for `-c`): 1 and 2 threads both beat 4 by as much, and the larger takes over."""
    cpu = FakeCPU({1: 0.010, 2: 0.010, 4: 0.030})
    tuner = cpu.tuner()
    run(cpu, tuner, 60)
    assert tuner.chosen == 2 and tuner.switches == 1


def test_a_count_quicker_by_less_than_the_margin_does_not_take_over() -> None:
    """Kills threadtuner.ThreadTuner._choose without MARGIN (any quicker mean took over): 1 thread
    at 19 ms against 2 at 20 ms is within the noise of a few dozen steps, and 2 are kept."""
    cpu = FakeCPU({1: 0.019, 2: 0.020})
    tuner = cpu.tuner()
    run(cpu, tuner, 600)
    assert tuner.chosen == 2 and tuner.switches == 0


def test_slow_first_steps_of_each_reply_start_no_round() -> None:
    """Kills threadtuner.ThreadTuner._load_change judging a load on fewer than WATCH steps of the
    count in use (MIN_TURN): where each reply's first 3 counted steps are slow (100 ms against
    10 ms), the median of a reply's first 4 to 7 steps is slow and read as a load arriving, a round
    every reply; the median of 8 is not."""
    cpu = FakeCPU({1: 0.050, 2: 0.010})
    tuner = cpu.tuner()
    counts = []
    for _ in range(100):  # replies of 16 steps: 1 s of decoding each
        tuner.before_untimed()
        for i in range(16):
            cpu.cost[2] = 0.100 if i < 4 else 0.010  # the first step regroups: not counted
            counts.append(tuner.timed(cpu.step))
    turns = sum(1 for a, b in pairwise(counts) if (a, b) == (2, 1))
    assert tuner.chosen == 2 and 3 <= turns <= 20


def test_the_first_step_after_a_prefill_is_not_counted() -> None:
    """Kills threadtuner.ThreadTuner.before_untimed not marking the next step as a regroup: the
    prefill runs at the largest count, and the first step back at 1 thread (1 s here, the team
    regrouping) was counted at 1 thread's mean whenever 1 thread was already the count in use."""
    cpu = FakeCPU(dict(BUSY))
    tuner = cpu.tuner()
    run(cpu, tuner, 60)
    assert tuner.chosen == 1
    for _ in range(5):  # replies of 10 steps, each after a prefill
        tuner.before_untimed()
        for i in range(10):
            cpu.cost[1] = 1.0 if i == 0 else BUSY[1]
            tuner.timed(cpu.step)
    assert tuner.mean_step(1) == pytest.approx(BUSY[1]) and tuner.chosen == 1


def test_threads_equal_to_the_quota_are_taken_without_a_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills threadtuner.fixed_threads capping at `threads < quota.threads` (for `<=`): `--threads 2`
    under 1.5 cores (2 threads, rounded up) is within the quota, and says nothing; 3 is capped."""
    monkeypatch.setattr(threadtuner, "cpu_quota", lambda: Quota(150000, 100000, Path("/q")))
    said: list[str] = []
    assert fixed_threads(2, said.append) == 2 and said == []
    assert fixed_threads(3, said.append) == 2 and len(said) == 1


def test_restoring_sets_the_default_count_when_the_block_raises() -> None:
    """Kills threadtuner.restoring without its try/finally: a reply that fails mid-turn (or a
    Ctrl-C) left the process at the turn's count."""
    seen: list[int] = []
    tuner = ThreadTuner((1, 2), seen.append, restore_count=4)
    with pytest.raises(KeyboardInterrupt), restoring(tuner):
        tuner.timed(lambda: None)
        raise KeyboardInterrupt
    assert seen[-1] == 4


def test_a_quota_of_one_core_watches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills threadtuner.default_tuner making a NeighbourLoad for a single count: under a quota of a
    core there is nothing to choose, and a watch would only read the cgroup's CPU time every 20 ms."""
    made: list[object] = []
    monkeypatch.setattr(threadtuner, "cpu_quota", lambda: Quota(100000, 100000, Path("/q")))
    monkeypatch.setattr(threadtuner, "NeighbourLoad", lambda **kwargs: made.append(kwargs))
    tuner = default_tuner(2)
    assert tuner.counts == (1,) and made == []
    monkeypatch.setattr(threadtuner, "cpu_quota", lambda: None)
    assert default_tuner(2).counts == (1, 2) and len(made) == 1  # the spy sees a watch when there is one


def test_rare_waits_of_the_count_in_use_are_not_read_as_a_load_that_left() -> None:
    """Kills threadtuner.ThreadTuner._choose keeping the count in use's mean, not its median, as the
    reference a speed-up is read against: 1 thread's steps of 20 ms with a 200 ms wait every 10th
    (mean 38 ms) read 1.25x quicker than that mean, as a load that left: a round 2 s of decoding
    after each timed one, a turn at 2 threads (100 ms steps) each time (17 turns in 80 s of
    decoding). Against the median, quiet rounds spread to 8 s (10 turns)."""
    cpu = FakeCPU({1: lambda n: 0.200 if n % 10 == 9 else 0.020, 2: 0.100})
    tuner = cpu.tuner()
    counts = run(cpu, tuner, 2000)  # 80 s of decoding at 1 thread
    turns = sum(1 for a, b in pairwise(counts) if (a, b) == (1, 2))
    assert tuner.chosen == 1 and turns <= 12


# pipeline/cpuload.py


@pytest.mark.parametrize("quota", [200000, 400000])
def test_a_quota_of_as_many_cores_as_the_cpuset_or_more_reads_the_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, quota: int
) -> None:
    """Kills cpuload.default_watch reading the quota's cgroup where the quota allows as many cores as
    this process may run on (`<=` for `<`), or more (the comparison dropped): the cgroup's count is
    readable here, so only the comparison keeps the watch on the 2 cores."""
    (tmp_path / "cpu.stat").write_text("usage_usec 7000000\n")
    monkeypatch.setattr(cpuload, "watched_cpus", lambda: (0, 1))
    others, cores = default_watch(Quota(quota, 100000, tmp_path))
    assert others.func is cpuload.others_cpu_seconds and others.args == ((0, 1),) and cores == 2
    others, cores = default_watch(Quota(150000, 100000, tmp_path))  # and 1.5 cores reads the cgroup
    assert others.func is cpuload.others_in_cgroup and cores == 2


def watch_at(load: float) -> tuple[NeighbourLoad, FakeOthers]:
    """A watch over 2 cores whose first two readings saw the others use `load` cores: the reference."""
    others = FakeOthers()
    others.load = load
    watch = NeighbourLoad(others, cores=2)
    steps(watch, others, 2 * READING)
    return watch, others


def test_a_round_kept_before_a_reading_keeps_the_reference() -> None:
    """Kills cpuload.NeighbourLoad.mark dropping its reference where no reading came since the last
    mark (`else` for `elif self._latest is not None`): two rounds within a reading (a load seen in
    8 steps) lost the 1.3 cores the count was chosen on, and the first reading after, with the
    neighbour gone, became the reference: its leaving never showed."""
    watch, others = watch_at(1.3)
    watch.mark()
    watch.mark()  # a second round that kept the count, before a reading
    others.load = 0.0
    steps(watch, others, 2 * READING)
    assert watch.shift() == pytest.approx(-1.3)


def test_a_switch_before_a_reading_holds_the_new_count_to_the_reference() -> None:
    """Kills cpuload.NeighbourLoad.mark taking `before` from the last reading only (not the
    reference where none came since the last mark): a switch to fewer threads right after a round
    that kept the count lost the bound (1.3 cores), and a neighbour that left as the count changed
    went unseen (shift 0, not -1.3)."""
    watch, others = watch_at(1.3)
    watch.mark()
    watch.mark(fewer=True)  # a round that switched to fewer threads, before a reading
    others.load = 0.0
    steps(watch, others, 2 * READING)
    assert watch.shift() == pytest.approx(-1.3)


def test_a_count_switched_to_is_not_measured_against_a_reading_at_the_old_count() -> None:
    """Kills cpuload.NeighbourLoad.mark keeping the last reading (`self._latest = None` dropped): a
    switch to fewer threads, then a round that kept them before a reading, took the reading at the
    old count (1.0 cores) as the new count's reference, and the neighbour's larger share beside
    fewer threads (1.8 cores) read as a load arriving."""
    watch, others = watch_at(1.0)
    watch.mark(fewer=True)
    watch.mark()  # kept, before a reading at the new count
    others.load = 1.8
    steps(watch, others, 2 * READING)
    assert watch.shift() == 0.0


# pipeline/errortext.py


def test_the_first_line_loses_its_trailing_spaces() -> None:
    """Kills errortext.first_line without stripping the line it keeps: only the message's outer
    whitespace was stripped, and a first line's trailing spaces went into the report line."""
    assert first_line(RuntimeError("disk full \t\nmore context")) == "disk full"


def test_a_stage_names_its_item_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    """Kills errortext.run_stage naming every argument (`sys.argv[1:]` for `[1:2]`): the line names
    the stage and its item, build@full, not the options after it."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["stages.build", "full", "--verbose"])

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_stage("build", interrupted) == 130
    assert capsys.readouterr().err == "build@full: interrupted; its outputs are unchanged\n"


def test_a_stage_in_an_unopenable_root_does_not_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    """Kills errortext.run_stage going on to main() after saying the project root cannot be opened
    (its `return 1` dropped): the stage must not run there."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["stages.registry"])
    monkeypatch.setattr(streamencoding, "unopenable_root", lambda root: "the project folder is gone")
    ran: list[bool] = []
    assert run_stage("registry", lambda: ran.append(True) or 0) == 1 and ran == []
    assert capsys.readouterr().err == "registry: the project folder is gone\n"
