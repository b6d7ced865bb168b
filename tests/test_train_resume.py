"""Exact resume after a `kill -9` that lands while the run writes a checkpoint (the kill between two
checkpoints is tests/test_train.py's test_kill_9_then_resume_ends_with_identical_weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import TINY, _env, _run_driver, _weights, kill_after_lines, write_tokens

from pipeline import checkpoint

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
    tokens: Path, tmp_path: Path
) -> None:
    cfg = {**TINY, "device": "cpu", "max_iters": 12, "ckpt_interval": 4, "eval_interval": 6}
    _run_driver(cfg, tmp_path / "straight", tokens)

    killed = tmp_path / "killed"
    steps = [f"STEP {i}" for i in range(1, 8)] + ["SAVING"]  # steps 1-7, then the save
    kill_after_lines(SAVE_DRIVER, cfg, killed, tokens, steps, KILL_IN_SAVE="8")
    torn = list((killed / "run").glob(".step-*.tmp"))
    assert len(torn) == 1 and (torn[0] / checkpoint.WEIGHTS_FILE).exists()  # the write it died in
    assert [p.name for p in checkpoint.run_checkpoints(killed / "run")] == ["step-00000004"]

    again = subprocess.run(  # the same settings: resumed automatically after the step-4 checkpoint
        [sys.executable, "-c", SAVE_DRIVER, json.dumps(cfg), str(killed), str(tokens)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split() == [w for i in range(5, 13) for w in ("STEP", str(i))]
    want, got = _weights(tmp_path / "straight"), _weights(killed)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert sorted(p.name for p in (killed / "run").iterdir()) == ["step-00000012"]  # no torn copy left
    for name in ("train/loss", "val/loss", "train/grad_norm"):
        straight = (tmp_path / f"straight/live/plots/metrics/{name}.tsv").read_text()
        assert (killed / f"live/plots/metrics/{name}.tsv").read_text() == straight
