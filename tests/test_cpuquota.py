"""pipeline.cpuquota: this process's cgroup CPU quota (`docker --cpus`), and what `--threads auto`
makes of it (pipeline/threadtuner.py caps its counts, pipeline/cpuload.py reads the quota's cgroup).

Each test writes a cgroup tree of its own under tmp_path: the root is where cgroupfs would be
mounted, `self` is /proc/self/cgroup's stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline import cpuload, threadtuner
from pipeline.cpuload import default_watch
from pipeline.cpuquota import Quota, cpu_quota, usage_reader
from pipeline.threadtuner import ThreadTuner, auto_tuner, candidate_counts


def cgroups(tmp_path: Path, self_lines: str | bytes, files: dict[str, str | bytes]) -> tuple[Path, Path]:
    """A cgroupfs at tmp_path/fs with `files` (path under it: content), and a /proc/self/cgroup of
    `self_lines`: (root, proc_cgroup)."""
    root = tmp_path / "fs"
    root.mkdir()
    for name, content in files.items():
        file = root / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content.encode() if isinstance(content, str) else content)
    proc = tmp_path / "self-cgroup"
    proc.write_bytes(self_lines.encode() if isinstance(self_lines, str) else self_lines)
    return root, proc


def test_v2_the_smallest_limit_from_the_process_cgroup_up_wins(tmp_path: Path) -> None:
    """A parent's 1.5 cores bind a child allowed 3 (and "max" elsewhere is no limit): 1.5 cores,
    2 threads, from the parent's cgroup."""
    root, proc = cgroups(
        tmp_path,
        "0::/kubepods/pod1/app\n",
        {
            "cpu.max": "max 100000\n",
            "kubepods/cpu.max": "max 100000\n",
            "kubepods/pod1/cpu.max": "150000 100000\n",
            "kubepods/pod1/app/cpu.max": "300000 100000\n",
        },
    )
    quota = cpu_quota(root, proc)
    assert quota == Quota(150000, 100000, root / "kubepods/pod1")
    assert quota.cores == 1.5 and quota.threads == 2


def test_v2_a_child_tighter_than_its_parent_and_whole_cores(tmp_path: Path) -> None:
    root, proc = cgroups(
        tmp_path, "0::/a/b\n", {"a/cpu.max": "400000 100000", "a/b/cpu.max": "200000 100000"}
    )
    quota = cpu_quota(root, proc)
    assert quota is not None and quota.directory == root / "a/b"
    assert quota.threads == 2  # exactly 2 cores: 2, not 3


def test_v2_half_a_core_is_still_one_thread(tmp_path: Path) -> None:
    root, proc = cgroups(tmp_path, "0::/a\n", {"a/cpu.max": "50000 100000"})
    assert cpu_quota(root, proc).threads == 1


def test_v2_max_everywhere_is_no_quota(tmp_path: Path) -> None:
    root, proc = cgroups(tmp_path, "0::/a/b\n", {"a/cpu.max": "max 100000", "a/b/cpu.max": "max 100000"})
    assert cpu_quota(root, proc) is None


def test_a_container_sees_its_own_cgroup_at_the_mount_root(tmp_path: Path) -> None:
    """Without a cgroup namespace the path named is the host's, and only the mount's root (the
    container's cgroup) exists: its limit is found by walking up past the missing levels."""
    root, proc = cgroups(tmp_path, "0::/system.slice/docker-abc.scope\n", {"cpu.max": "100000 100000"})
    assert cpu_quota(root, proc) == Quota(100000, 100000, root)


def test_v1_cfs_quota_and_period(tmp_path: Path) -> None:
    """cgroup v1 (cpu co-mounted with cpuacct, as Docker does): -1 is no limit, the parent's 2.5 cores
    bind the child: 3 threads."""
    base = "cpu,cpuacct/docker"
    root, proc = cgroups(
        tmp_path,
        "5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/\n",
        {
            f"{base}/cpu.cfs_quota_us": "250000\n",
            f"{base}/cpu.cfs_period_us": "100000\n",
            f"{base}/x/cpu.cfs_quota_us": "-1\n",
            f"{base}/x/cpu.cfs_period_us": "100000\n",
            "memory/docker/x/cpu.cfs_quota_us": "10000\n",  # not the cpu controller's: never read
            "memory/docker/x/cpu.cfs_period_us": "100000\n",
        },
    )
    quota = cpu_quota(root, proc)
    assert quota == Quota(250000, 100000, root / base)
    assert quota.threads == 3


def test_v1_through_the_cpu_link_and_no_limit(tmp_path: Path) -> None:
    """The cpu controller found at root/cpu (the usual link to cpu,cpuacct); quota -1: none."""
    root, proc = cgroups(
        tmp_path,
        "3:cpu,cpuacct:/x\n",
        {"cpu/x/cpu.cfs_quota_us": "100000", "cpu/x/cpu.cfs_period_us": "100000"},
    )
    assert cpu_quota(root, proc) == Quota(100000, 100000, root / "cpu/x")
    (root / "cpu/x/cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(root, proc) is None


def test_hybrid_takes_the_smaller_of_v1_and_v2(tmp_path: Path) -> None:
    root, proc = cgroups(
        tmp_path,
        "2:cpu:/s\n0::/s\n",
        {
            "s/cpu.max": "300000 100000",
            "cpu/s/cpu.cfs_quota_us": "100000",
            "cpu/s/cpu.cfs_period_us": "100000",
        },
    )
    assert cpu_quota(root, proc).cores == 1.0


@pytest.mark.parametrize(
    "content",
    ["", "lots 100000", "150000", "150000 0", "0 100000", "-5 100000", "1.5 1", "a b c", b"\xff\xfe 1"],
)
def test_garbled_cpu_max_is_no_quota(tmp_path: Path, content: str | bytes) -> None:
    root, proc = cgroups(tmp_path, "0::/a\n", {"a/cpu.max": content})
    assert cpu_quota(root, proc) is None


@pytest.mark.parametrize(
    "self_lines", ["", "garbage\n", "0::\n", b"\xff\xfe\n", "0::/../../elsewhere\n", "1:cpu:/../x\n"]
)
def test_garbled_or_escaping_proc_cgroup_is_no_quota(tmp_path: Path, self_lines: str | bytes) -> None:
    """A path out of the namespace's root ("/../x") names a cgroup this tree does not hold: the
    mount root's limit is not this process's."""
    root, proc = cgroups(
        tmp_path,
        self_lines,
        {"cpu.max": "100000 100000", "cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"},
    )
    if self_lines == "0::\n":  # an empty path is the root: its limit is read
        assert cpu_quota(root, proc) == Quota(100000, 100000, root)
    else:
        assert cpu_quota(root, proc) is None


def test_missing_files_are_no_quota(tmp_path: Path) -> None:
    """No /proc/self/cgroup (macOS), no cgroupfs, a cgroup directory that is a file: None, no error."""
    assert cpu_quota(tmp_path / "no-fs", tmp_path / "no-proc") is None
    root, proc = cgroups(tmp_path, "0::/a/b\n", {})
    assert cpu_quota(root, proc) is None
    (root / "a").write_text("not a directory")
    assert cpu_quota(root, proc) is None


def test_this_machine_reads_without_error() -> None:
    """Whatever cgroups this machine has, the real files read as a quota or none."""
    quota = cpu_quota()
    assert quota is None or quota.threads >= 1


def usage_seconds(directory: Path) -> float:
    """The CPU seconds cgroup `directory` has used, read once (as cpuload's watch reads it)."""
    return usage_reader(directory)()


def test_usage_seconds_v2_v1_and_neither(tmp_path: Path) -> None:
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2/cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    assert usage_seconds(tmp_path / "v2") == 2.5
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1/cpuacct.usage").write_text("3000000000\n")
    assert usage_seconds(tmp_path / "v1") == 3.0
    (tmp_path / "none").mkdir()
    (tmp_path / "none/cpu.stat").write_text("usage_usec lots\n")
    with pytest.raises(OSError, match="none: no cpu.stat usage_usec or cpuacct.usage"):
        usage_seconds(tmp_path / "none")


# The tuner under a quota.


def test_candidate_counts_never_pass_the_quota_threads() -> None:
    assert candidate_counts(2, 1) == (1,)
    assert candidate_counts(16, 3) == (1, 3)
    assert candidate_counts(16, 8) == (1, 4, 8)
    assert candidate_counts(2, 64) == (1, 2)  # a quota above the cores caps nothing


def quota_tree(tmp_path: Path, quota: int) -> Quota | None:
    """A cgroup v2 tree whose cgroup has `quota` microseconds a 100 ms period, read as the tuner
    would (cpu_quota), its usage readable."""
    root, proc = cgroups(
        tmp_path, "0::/c\n", {"c/cpu.max": f"{quota} 100000", "c/cpu.stat": "usage_usec 7000000\n"}
    )
    return cpu_quota(root, proc)


def test_one_core_of_quota_on_two_cores_decodes_on_one_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """torch's default is 2 threads (a 2-core machine) and the quota 1 core: `--threads auto` tries
    and runs at 1 thread only, every step, with nothing to watch; its restore gives torch its 2."""
    quota = quota_tree(tmp_path, 100000)
    monkeypatch.setattr(threadtuner, "cpu_quota", lambda: quota)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    tuner = auto_tuner("auto")
    assert tuner is not None and tuner.counts == (1,) and tuner.chosen == 1
    for _ in range(100):
        tuner.timed(lambda: None)
    assert set(seen) == {1}
    tuner.restore()
    assert seen[-1] == 2


def test_a_quota_of_one_and_a_half_cores_on_eight_tries_two(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """1.5 cores: at most 2 threads (ceil), of torch's 8; the neighbour watch reads the quota's
    cgroup, over its 2 threads' cores."""
    quota = quota_tree(tmp_path, 150000)
    monkeypatch.setattr(threadtuner, "cpu_quota", lambda: quota)
    monkeypatch.setattr(cpuload, "watched_cpus", lambda: None)
    monkeypatch.setattr(cpuload.psutil, "cpu_count", lambda logical=True: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    tuner = auto_tuner("auto")
    assert tuner is not None and tuner.counts == (1, 2) and tuner.chosen == 2


def test_no_quota_keeps_torch_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threadtuner, "cpu_quota", lambda: None)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert auto_tuner("auto").counts == (1, 4, 8)


def test_restore_count_defaults_to_the_largest_count() -> None:
    seen: list[int] = []
    ThreadTuner((1, 2), seen.append).restore()
    ThreadTuner((1,), seen.append, restore_count=4).restore()
    assert seen == [2, 4]


# The neighbour watch under a quota.


def test_under_a_quota_the_others_are_those_in_its_cgroup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """1.5 cores of a 64-core host: the others are the quota cgroup's CPU time less this process's
    (7 s less 1 s), read over 2 cores' window, not the host's 64 cores."""
    quota = quota_tree(tmp_path, 150000)
    monkeypatch.setattr(cpuload, "watched_cpus", lambda: None)
    monkeypatch.setattr(cpuload.psutil, "cpu_count", lambda logical=True: 64)
    monkeypatch.setattr(cpuload.time, "process_time", lambda: 1.0)
    others, cores = default_watch(quota)
    assert others() == pytest.approx(6.0) and cores == 2
    watch = cpuload.NeighbourLoad(quota=quota)
    assert watch.window_seconds == cpuload.WINDOW_SECONDS  # 2 cores' window, not 64's 5.12 s


def test_a_quota_that_caps_nothing_or_cannot_be_read_keeps_the_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A quota of 4 cores on a 2-core cpuset binds less than the cpuset: its cores are read. A quota
    whose cgroup's CPU time cannot be read (v1, cpuacct mounted apart): the cores are read too."""
    monkeypatch.setattr(cpuload, "watched_cpus", lambda: (0, 1))
    monkeypatch.setattr(cpuload.psutil, "cpu_count", lambda logical=True: 64)
    others, cores = default_watch(Quota(400000, 100000, tmp_path))
    assert others.func is cpuload.others_cpu_seconds and others.args == ((0, 1),) and cores == 2
    others, cores = default_watch(Quota(100000, 100000, tmp_path / "unreadable"))
    assert others.func is cpuload.others_cpu_seconds and cores == 2
