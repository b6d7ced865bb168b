"""torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR) seen by a process that torchrun
did not start: a RANK left exported in a shell made `python -m stages.train` train as a non-main rank,
writing no checkpoint, no model and no line, and exit 0; WORLD_SIZE alone ended in a torch traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_mutation_audit18 import Flushed
from test_train import HOLD_LOCK, TINY, _env, paths_in, tiny_config, write_tokens

from pipeline import device
from pipeline.train import train
from pipeline.trainsetup import TrainSetupError
from stages import train as stage

DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokens(tmp_path_factory.mktemp("tokens") / "full", n_train=40, n_val=8)


@pytest.fixture(autouse=True)
def no_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DIST_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RANK": "1"}, r"RANK 1, LOCAL_RANK 0, WORLD_SIZE 1"),  # a lone process that is not rank 0
        ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK 2, LOCAL_RANK 0, WORLD_SIZE 2"),
        ({"LOCAL_RANK": "1"}, r"RANK 0, LOCAL_RANK 1, WORLD_SIZE 1"),  # LOCAL_RANK is never above RANK
        ({"WORLD_SIZE": "0"}, r"RANK 0, LOCAL_RANK 0, WORLD_SIZE 0"),
        ({"RANK": "one"}, r"RANK='one': not an integer"),
    ],
)
def test_a_torchrun_environment_that_torchrun_never_sets_is_refused_before_any_work(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    paths = paths_in(tmp_path, tokens)
    with pytest.raises(TrainSetupError, match=named) as refused:
        train(tiny_config(max_iters=2), paths)
    assert "unset RANK, LOCAL_RANK and WORLD_SIZE" in str(refused.value)
    assert not tmp_path.joinpath("run").exists() and not paths.ckpt_dir.exists()


def test_world_size_without_torchrun_rendezvous_is_a_setup_error(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WORLD_SIZE=2 by hand: torch's env:// rendezvous wants MASTER_ADDR, a ValueError and traceback."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainSetupError, match=r"WORLD_SIZE 2: cannot join the other processes.*MASTER_ADDR"):
        train(tiny_config(max_iters=2), paths_in(tmp_path, tokens))


def test_the_stage_says_the_refusal_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """say() reads the rank again: an unreadable RANK must not turn the refusal into a traceback."""
    monkeypatch.setenv("RANK", "one")
    stage.say("refused")
    assert capsys.readouterr().err == "train: refused\n"


REFUSAL_DRIVER = """
import json, os, sys
from pathlib import Path
from pipeline.device import exit_process
from pipeline.train import train
from pipeline.trainconfig import TrainConfig, TrainPaths
from pipeline.trainsetup import TrainSetupError
root, data = Path(sys.argv[2]), Path(sys.argv[3])
paths = TrainPaths(data_dir=data, run_dir=root / "run", ckpt_dir=root / "ckpt",
                   live_dir=root / "live", metrics_file=root / "metrics.json")
try:
    train(TrainConfig(**json.loads(sys.argv[1])), paths)
except TrainSetupError as e:
    print(f"REFUSED {os.environ['RANK']}: {e}", flush=True)
exit_process(0)  # as stages.train ends: a normal exit could abort in gloo's teardown
"""


@pytest.mark.slow
def test_a_refusal_of_the_main_process_alone_ends_every_rank_the_same_way(
    tokens: Path, tmp_path: Path
) -> None:
    """Only rank 0 takes the run lock: refused, it left, and rank 1 died at its next collective in a
    gloo "Connection closed by peer" traceback under rank 0's one line. Every rank now refuses."""
    root = tmp_path / "job"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root / "run.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = {**TINY, "device": "cpu", "max_iters": 2}
        proc = _torchrun(REFUSAL_DRIVER, cfg, root, tokens, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    # (the ranks share torchrun's stdout: their lines may run into each other)
    assert "REFUSED 1: " in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert f"REFUSED 0: another training run (pid {holder.pid}) is using" in proc.stdout  # rank 0 says why
    assert "Traceback" not in proc.stderr
    assert not (root / "run").exists() and not (root / "ckpt").exists()


def test_a_run_lock_that_cannot_be_taken_is_a_setup_error(tokens: Path, tmp_path: Path) -> None:
    """An OSError of the lock other than another run's hold (its folder cannot be made: here a
    path through a file) was a traceback, and under torchrun left the other ranks in gloo's."""
    (tmp_path / "job").write_text("a file where the run's folder goes")
    with pytest.raises(
        TrainSetupError, match=r"job/run\.lock: cannot take the run's lock \(FileExistsError: "
    ):
        train(tiny_config(max_iters=2), paths_in(tmp_path / "job", tokens))


@pytest.mark.slow
def test_a_lock_error_of_the_main_process_alone_ends_every_rank_the_same_way(
    tokens: Path, tmp_path: Path
) -> None:
    """Rank 0 raised the lock's OSError and left; rank 1 died in gloo's "Connection closed by peer"."""
    root = tmp_path / "job"
    root.write_text("a file where the run's folder goes")
    cfg = {**TINY, "device": "cpu", "max_iters": 2}
    proc = _torchrun(REFUSAL_DRIVER, cfg, root, tokens, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # (the ranks share torchrun's stdout: their lines may run into each other)
    assert "REFUSED 1: the main process (rank 0) could not lock the run folder" in proc.stdout, (
        proc.stdout + proc.stderr[-3000:]
    )
    assert f"REFUSED 0: {root / 'run.lock'}: cannot take the run's lock (FileExistsError" in proc.stdout
    assert "Traceback" not in proc.stderr


WRITE_FAILS_DRIVER = """
import gc, json, os, sys
from pathlib import Path
from pipeline import checkpoint
from pipeline.device import exit_process
from pipeline.train import train
from pipeline.trainconfig import TrainConfig, TrainPaths
what = os.environ["FAIL"]
def fail(*args, **kwargs):
    raise checkpoint.CheckpointWriteError("disk full")
def bug(*args, **kwargs):
    raise RuntimeError("a bug in finish")
if os.environ["RANK"] == "0":
    if what == "bug":
        import pipeline.train
        pipeline.train.finish = bug
    elif what == "ckpt":
        checkpoint.save_run_checkpoint = fail
    else:
        import pipeline.train
        pipeline.train.finish = fail
root, data = Path(sys.argv[2]), Path(sys.argv[3])
paths = TrainPaths(data_dir=data, run_dir=root / "run", ckpt_dir=root / "ckpt",
                   live_dir=root / "live", metrics_file=root / "metrics.json")
# The collector off: what reference cycles alone reach (Run.start's frame with its DDP wrapper, kept
# by exceptions caught inside torch and dvclive) stays until collected explicitly, whenever the
# automatic collection would have run.
gc.disable()
try:
    train(TrainConfig(**json.loads(sys.argv[1])), paths)
except checkpoint.CheckpointWriteError as e:
    print(f"FAILED {os.environ['RANK']}: {e}", flush=True)
names = []
for task in Path("/proc/self/task").iterdir():
    try:
        names.append((task / "comm").read_text().strip())
    except OSError:  # a thread that ended meanwhile
        pass
print(f"GLOO THREADS {os.environ['RANK']}: {sorted(n for n in names if 'gloo' in n)}", flush=True)
exit_process(0)  # as stages.train ends: a normal exit could abort in gloo's teardown
"""


@pytest.mark.slow
@pytest.mark.parametrize("what", ["ckpt", "finish"])
def test_a_write_error_of_the_main_process_ends_every_rank_the_same_way(
    tokens: Path, tmp_path: Path, what: str
) -> None:
    """Only rank 0 writes (run checkpoints, model/ckpt): when it cannot, the others, waiting for it,
    ended in gloo's "Connection closed by peer" traceback. Every rank now ends with the write error."""
    cfg = {**TINY, "device": "cpu", "max_iters": 2, "ckpt_interval": 2, "eval_interval": 2}
    proc = _torchrun(WRITE_FAILS_DRIVER, cfg, tmp_path / "job", tokens, tmp_path, FAIL=what)
    # (the ranks' own output first: once, under load, rank 0 ended in SIGABRT and torchrun's summary
    # alone did not say where)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[:3000] + proc.stderr[-1500:]
    # (the ranks share torchrun's stdout: their lines may run into each other)
    assert "FAILED 0: disk full" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "FAILED 1: the main process (rank 0) could not write the run's files" in proc.stdout
    assert "Traceback" not in proc.stderr
    # train() destroyed the process group: nothing holds it any more, so gloo's threads have ended
    # (the DDP wrapper's reducer, and a torch module's default arguments, kept them into the exit's
    # teardown, where rank 0 aborted in CI)
    assert "GLOO THREADS 0: []" in proc.stdout and "GLOO THREADS 1: []" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_a_bug_in_the_main_process_write_ends_the_others_without_a_gloo_traceback(
    tokens: Path, tmp_path: Path
) -> None:
    """Not only a write error: any exception of rank 0's write (a bug in finish) left the others in
    the collective, ending in gloo's "Connection closed by peer". The bug keeps its traceback."""
    cfg = {**TINY, "device": "cpu", "max_iters": 2, "ckpt_interval": 2, "eval_interval": 2}
    proc = _torchrun(WRITE_FAILS_DRIVER, cfg, tmp_path / "job", tokens, tmp_path, FAIL="bug")
    assert proc.returncode != 0
    assert "FAILED 1: the main process (rank 0) could not write the run's files" in proc.stdout
    assert "RuntimeError: a bug in finish" in proc.stderr
    assert "Connection closed by peer" not in proc.stderr


def _torchrun(
    driver: str, cfg: dict, root: Path, data: Path, tmp_path: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """`driver` in 2 gloo processes under torchrun (its log folder in the test's own folder)."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
            *("--no-python", sys.executable, "-c", driver, json.dumps(cfg), str(root), str(data)),
        ],
        env={**_env(**env), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_torchrun_rank_ends_past_the_cpp_teardown_with_its_output_flushed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stages.train ends through exit_process: a rank of several leaves by os._exit (its normal exit,
    the C++ static destructors with gloo's threads alive, aborted rank 0 in CI after it had said its
    error), its output flushed first; a lone process exits as usual (exit handlers run)."""
    exits: list[int] = []
    out, err = Flushed(), Flushed()
    monkeypatch.setattr(os, "_exit", exits.append)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    out.write("FAILED 1: the line a rank says last")
    err.write("train: warning")
    device.exit_process(3)
    assert exits == [3]
    assert out.seen == ["FAILED 1: the line a rank says last"] and err.seen == ["train: warning"]
    for name in DIST_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as lone:
        device.exit_process(3)
    assert lone.value.code == 3 and exits == [3]
