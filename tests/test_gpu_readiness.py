"""What the GPU check does where torch sees no CUDA device: stop at once and say why.

A session lent a GPU has minutes of device time; a check that cannot measure anything (a CPU build
of torch, a hidden GPU) must not spend them running a 350M model on the CPU until each step's limit.
These run on any machine: CUDA_VISIBLE_DEVICES="" hides a GPU from torch where there is one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import train_throughput

ROOT = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> list[int]:
    """The processes under `pid`, from Linux's /proc (none found elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the name may hold spaces
            children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        todo = [c for p in todo for c in children.get(p, [])]
        out += todo
    return out


def run_without_cuda(cmd: list[str], out: Path, hang_guard_s: float) -> subprocess.CompletedProcess:
    """`cmd` with no GPU visible; its whole process group is ended if it outlives `hang_guard_s`
    (the unfixed check ran its steps' children on for minutes), and the test then fails."""
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OUT": str(out),
        "GPU_CHECK_SECONDS": "120",
        "PYTHON": sys.executable,
    }
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=hang_guard_s)
    except subprocess.TimeoutExpired:
        for pid in [*descendants(proc.pid), proc.pid]:  # `timeout` puts each step in a group of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"still running after {hang_guard_s} s without CUDA:\n{stdout[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_gpu_check_stops_at_once_without_cuda(tmp_path: Path) -> None:
    done = run_without_cuda(["bash", "benchmarks/gpu_check.sh"], tmp_path, hang_guard_s=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "NO CUDA: torch sees no CUDA device here" in done.stdout
    assert "== decode" not in done.stdout  # no benchmark started
    assert "NO CUDA" in (tmp_path / "summary.txt").read_text()  # the reason comes back in $OUT too


def test_train_throughput_no_cpu_without_cuda_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-cpu (the GPU check's flag) where there is no GPU measured nothing yet exited 0."""
    monkeypatch.setattr(train_throughput.torch.cuda, "is_available", lambda: False)
    assert train_throughput.main(["--no-cpu", "--json", str(tmp_path / "t.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert (tmp_path / "t.json").read_text().strip() == "[]"


def test_gpu_check_runs_only_the_tests_that_need_the_gpu(tmp_path: Path) -> None:
    """The check's test step ran the CPU tests of its files first (about 80 s of CPU compilation
    here; CI runs them anyway), so the CUDA tests, last in each file, could be cut at the step's
    limit. Every benchmark fails at once here (a stand-in python); pytest only collects."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(
        "#!/bin/sh\n"
        f'case "$*" in "-m pytest "*) exec {sys.executable} "$@" --collect-only;; '
        "*cuda.is_available*) exit 0;; esac\nexit 1\n"
    )
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "PYTHON": str(fake / "python"),
        "OUT": str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    collected = (tmp_path / "tests.txt").read_text()
    assert "test_cuda_graph_decode_equals_eager_and_cpu" in collected, done.stdout + collected
    assert "test_bf16_compiled_training_learns_and_reports_mfu" in collected
    assert "test_greedy_equals_full_recomputation" not in collected  # a CPU test
    assert "test_compiled_decode_step_equals_eager_and_writes_only_the_new_slot" not in collected
