"""Exact resume after a `kill -9` that lands while the run writes a checkpoint (the kill between two
checkpoints is tests/test_train.py's test_kill_9_then_resume_ends_with_identical_weights), and after
a checkpoint write that fails (a full disk)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from test_train import (
    KILL_RUN,
    TINY,
    Stopped,
    _env,
    _weights,
    kill_after_lines,
    paths_in,
    resume_in_process,
    stop_at,
    write_tokens,
)

from pipeline import atomic, checkpoint
from pipeline.checkpoint import CheckpointWriteError
from pipeline.train import train
from pipeline.trainconfig import TrainConfig, TrainPaths

# A run that prints each step it trains; its checkpoint at step KILL_IN_SAVE (if set) stops
# half-written (weights in the hidden temporary folder, a torn state.pt) and waits to be killed.
SAVE_DRIVER = """
import json, os, sys, time
from pathlib import Path
from pipeline import checkpoint
from pipeline.train import train
from pipeline.trainconfig import TrainConfig, TrainPaths
real = checkpoint.save_state
def save_state(state, folder):
    if state["step"] == int(os.environ.get("KILL_IN_SAVE", "0")):
        Path(folder, checkpoint.STATE_FILE).write_bytes(b"half a state")
        print("SAVING", flush=True)
        time.sleep(600)
    real(state, folder)
checkpoint.save_state = save_state
cfg = TrainConfig(**json.loads(sys.argv[1]))
root, data = Path(sys.argv[2]), Path(sys.argv[3])
train(cfg, TrainPaths(data_dir=data, run_dir=root / "run", ckpt_dir=root / "ckpt",
                      live_dir=root / "live", metrics_file=root / "metrics.json"),
      on_step=lambda step: print("STEP", step, flush=True))
"""


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokens(tmp_path_factory.mktemp("tokens") / "full")


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_resumes_to_the_uninterrupted_weights(
    straight_kill_run: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = KILL_RUN
    tokens, straight = straight_kill_run

    killed = tmp_path / "killed"
    steps = [f"STEP {i}" for i in range(1, 8)] + ["SAVING"]  # steps 1-7, then the save
    kill_after_lines(SAVE_DRIVER, cfg, killed, tokens, steps, KILL_IN_SAVE="8")
    torn = list((killed / "run").glob(".step-*.tmp"))
    assert len(torn) == 1 and (torn[0] / checkpoint.WEIGHTS_FILE).exists()  # the write it died in
    assert [p.name for p in checkpoint.run_checkpoints(killed / "run")] == ["step-00000004"]

    # the same settings: resumed automatically after the step-4 checkpoint
    assert resume_in_process(cfg, killed, tokens) == list(range(5, 13))
    want, got = _weights(straight), _weights(killed)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert sorted(p.name for p in (killed / "run").iterdir()) == ["step-00000012"]  # no torn copy left
    for name in ("train/loss", "val/loss", "train/grad_norm"):
        logged = (straight / f"live/plots/metrics/{name}.tsv").read_text()
        assert (killed / f"live/plots/metrics/{name}.tsv").read_text() == logged


def _limit_file_size() -> None:
    """In the child: no file may grow past 1 MiB (a write past it fails with EFBIG), as on a full
    disk: the run's tiny dvclive rows fit, a checkpoint's weights (6.5 MB) do not."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_a_checkpoint_write_that_fails_keeps_the_last_one_and_says_so_in_one_line(
    tokens: Path, tmp_path: Path
) -> None:
    """A write that fails (a full disk) raised safetensors' own error, which names no file, as a
    traceback out of the stage. It is one line now, naming the checkpoint and the one kept; the
    kept one resumes to the uninterrupted run's weights."""
    profile = {**TINY, "max_iters": 12, "eval_interval": 6}
    params = {
        "train": {"variant": "full", "profile": "p", "init_from": "scratch", "seed": 1337, "device": "cpu"}
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "train_profiles": {"p": profile}}))
    shutil.copytree(tokens, tmp_path / "data" / "tokens" / "full")
    paths = TrainPaths.under(tmp_path, "full")
    cfg = TrainConfig(**profile, device="cpu").validated()
    assert cfg == TrainConfig.from_params(params["train"], {"p": profile})  # the stage's run
    train(cfg, paths_in(tmp_path / "straight", paths.data_dir))
    with pytest.raises(Stopped):
        train(cfg, paths, on_step=stop_at(6))  # step-4 on disk

    stage = subprocess.run(
        [sys.executable, "-m", "stages.train"],
        cwd=tmp_path,  # no DVC repository around: dvclive's DVC cache (sqlite) stays out of the limit
        env=_env(NANOCHATGPT_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
    )
    assert stage.returncode == 1, stage.stderr[-3000:]
    assert "Traceback" not in stage.stderr, stage.stderr[-3000:]
    assert re.search(
        r"train: \S+/run/step-00000008: cannot write this run checkpoint \(SafetensorError: .*File too "
        r"large.*\); its checkpoint step-00000004 is kept: the next run of these settings resumes from it",
        stage.stderr,
    ), stage.stderr[-3000:]
    assert sorted(p.name for p in paths.run_dir.iterdir()) == ["step-00000004"]  # no half copy

    seen: list[int] = []
    train(cfg, paths, on_step=seen.append)
    assert seen == list(range(5, 13))
    want, got = _weights(tmp_path / "straight"), _weights(tmp_path / "model")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_a_model_ckpt_write_that_fails_keeps_the_final_checkpoint_to_finalise(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model/ckpt written on a full disk: one line naming it and the run checkpoint that finalises
    the run on the next start (no step runs again), not a bare I/O error."""
    cfg = TrainConfig(**{**TINY, "max_iters": 4, "eval_interval": 4}, device="cpu").validated()
    paths = paths_in(tmp_path, tokens)

    @contextlib.contextmanager
    def full_disk(target: Path) -> Iterator[Path]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        yield target

    with monkeypatch.context() as patch:
        patch.setattr(atomic, "atomic_dir", full_disk)
        with pytest.raises(
            CheckpointWriteError,
            match=rf"cannot write {re.escape(str(paths.ckpt_dir))} and .*\(OSError: \[Errno 28\] No space "
            rf"left on device\); the run's final checkpoint in {re.escape(str(paths.run_dir))} is kept",
        ):
            train(cfg, paths)
    assert not paths.ckpt_dir.exists()
    seen: list[int] = []
    train(cfg, paths, on_step=seen.append)
    assert seen == [] and (paths.ckpt_dir / checkpoint.WEIGHTS_FILE).exists()
