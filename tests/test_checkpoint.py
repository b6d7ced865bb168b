"""Checkpoint IO: safetensors weights, a weights_only training state, atomic step directories."""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import checkpoint
from pipeline.model import GPT, GPTConfig
from pipeline.optim import make_optimizer
from pipeline.train import finish
from pipeline.trainconfig import TrainPaths


def _tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=16))


def _state(model: GPT, step: int) -> dict:
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    model(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    rng = np.random.default_rng(7)
    rng.integers(0, 100, size=5)
    return {
        "step": step,
        "best_val_loss": 3.5,
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "data_rng": json.dumps(rng.bit_generator.state),
    }


def test_model_round_trip_and_dropout_override(tmp_path: Path) -> None:
    model = _tiny()
    checkpoint.save_model(model, tmp_path)
    again = checkpoint.load_model(tmp_path, dropout=0.25)
    assert again.config.dropout == 0.25 and again.transformer.h[0].mlp.dropout.p == 0.25
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_state_round_trips_through_weights_only_load(tmp_path: Path) -> None:
    model = _tiny()
    state = _state(model, 12)
    checkpoint.save_state(state, tmp_path)
    loaded = checkpoint.load_state(tmp_path)
    assert loaded["step"] == 12 and loaded["best_val_loss"] == 3.5
    assert torch.equal(loaded["torch_rng"], state["torch_rng"])
    exp_avg = state["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], exp_avg)
    # The sampler's generator continues exactly where it was.
    a, b = np.random.default_rng(), np.random.default_rng()
    a.bit_generator.state = json.loads(state["data_rng"])
    b.bit_generator.state = json.loads(loaded["data_rng"])
    assert np.array_equal(a.integers(0, 1 << 30, size=8), b.integers(0, 1 << 30, size=8))


def test_state_with_arbitrary_pickled_object_is_refused(tmp_path: Path) -> None:
    torch.save({"step": 1, "payload": OrderedDict(a=Path("/etc/passwd"))}, tmp_path / checkpoint.STATE_FILE)
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load_state(tmp_path)


def test_run_checkpoints_are_whole_and_pruned(tmp_path: Path) -> None:
    model = _tiny()
    run = tmp_path / "run"
    first = checkpoint.save_run_checkpoint(model, _state(model, 5), run, 5)
    assert first.name == "step-00000005"
    # A run killed while writing leaves a hidden temporary directory: never picked up.
    half = run / ".step-abc.tmp"
    half.mkdir()
    (half / checkpoint.WEIGHTS_FILE).write_bytes(b"partial")
    assert checkpoint.latest_run_checkpoint(run) == first
    second = checkpoint.save_run_checkpoint(model, _state(model, 10), run, 10)
    assert checkpoint.run_checkpoints(run) == [second]
    assert not first.exists()
    assert checkpoint.load_state(second)["step"] == 10
    # Saving the same step again replaces it whole.
    third = checkpoint.save_run_checkpoint(model, _state(model, 10), run, 10)
    assert third == second and checkpoint.run_checkpoints(run) == [second]
    assert not [p for p in run.iterdir() if p.name.endswith(".old")]


def test_a_step_killed_while_it_was_pruned_is_pruned_later(tmp_path: Path) -> None:
    """rmtree deletes a step's files one by one: a kill after its weights went left `step-N/` with
    the optimizer state (gigabytes at GPT-2 sizes), which no later prune saw (it listed complete
    steps only) for the rest of the run."""
    model = _tiny()
    run = tmp_path / "run"
    checkpoint.save_run_checkpoint(model, _state(model, 5), run, 5)
    half_pruned = checkpoint.save_run_checkpoint(model, _state(model, 10), run, 10)
    (half_pruned / checkpoint.WEIGHTS_FILE).unlink()  # where the kill struck
    assert checkpoint.run_checkpoints(run) == []
    latest = checkpoint.save_run_checkpoint(model, _state(model, 15), run, 15)
    assert sorted(p.name for p in run.iterdir()) == [latest.name]


def test_missing_state_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no training state"):
        checkpoint.load_state(tmp_path)
    assert checkpoint.latest_run_checkpoint(tmp_path / "absent") is None


def test_broken_checkpoint_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """evaluate, chat and a resume load model/ckpt: a damaged one used to raise safetensors' or
    torch's own multi-line errors without the file name."""
    checkpoint.save_model(_tiny(), tmp_path)
    weights = tmp_path / checkpoint.WEIGHTS_FILE
    good = weights.read_bytes()
    weights.write_bytes(good[:100])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file") as info:
        checkpoint.load_model(tmp_path)
    assert "\n" not in str(info.value)
    weights.write_bytes(good)
    config = tmp_path / checkpoint.CONFIG_FILE
    config.write_text(json.dumps({**json.loads(config.read_text()), "n_embd": 32}))
    with pytest.raises(ValueError, match=r"weights do not fit the config: wrong shape") as info:
        checkpoint.load_model(tmp_path)
    assert "\n" not in str(info.value)
    config.write_text('{"block_size": 16, "n_layers": 2}')
    with pytest.raises(ValueError, match=r"config\.json: not a model config"):
        checkpoint.load_model(tmp_path)
    config.write_text('{"block_size": 16, "n_layer": 1, "n_head": 3, "n_embd": 16}')
    with pytest.raises(ValueError, match=r"config\.json: sizes must be positive integers"):
        checkpoint.load_model(tmp_path)


def test_loading_skips_the_random_initialisation(tmp_path: Path) -> None:
    """Every parameter comes from the weights file, so load_model does not draw random initial
    weights first: torch's global random state is as it was (a chat's `--seed` or a resumed run's
    RNG is not moved by loading), and the weights are the file's, not a mix."""
    model = _tiny()
    checkpoint.save_model(model, tmp_path)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = checkpoint.load_model(tmp_path)
    assert torch.equal(torch.get_rng_state(), before)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_loading_does_not_start_torchs_compiler(tmp_path: Path) -> None:
    """Randomly initialising the meta-device model that check_fits sizes goes through torch's
    Python reference kernels, whose first use imports torch._dynamo: about a second added to every
    chat's, serve's and evaluate's start (benchmarks/model_load.py). A fresh process loads a
    checkpoint without it."""
    import subprocess
    import sys

    checkpoint.save_model(_tiny(), tmp_path)
    code = (
        "import sys; from pipeline.checkpoint import load_model; "
        f"load_model({str(tmp_path)!r}); print('torch._dynamo' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_skipping_the_initialisation_leaves_other_work_alone() -> None:
    """SkipWeightInit passes over torch.nn.init's random initialisers only: the tensor keeps its
    values, no random number is drawn, and tensors made inside it are made."""
    t = torch.ones(3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with checkpoint.SkipWeightInit():
        torch.nn.init.normal_(t)
        torch.nn.init.kaiming_uniform_(t.view(3, 1))
        made = torch.arange(3.0) * 2
    assert torch.equal(t, torch.ones(3)) and torch.equal(torch.get_rng_state(), before)
    assert torch.equal(made, torch.tensor([0.0, 2.0, 4.0]))
    torch.nn.init.normal_(t)  # and outside it, initialisation works again
    assert not torch.equal(t, torch.ones(3))


def test_a_bug_while_writing_a_checkpoint_is_not_blamed_on_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: both writes caught every Exception as "cannot write" (once the disk has room), so a
    bug there (a TypeError, say) became one line blaming the disk, its traceback gone. Only what a
    refused write raises is that line; a bug keeps its own error."""
    model = _tiny()
    paths = TrainPaths(data_dir=tmp_path / "data", run_dir=tmp_path / "run", ckpt_dir=tmp_path / "ckpt")

    def bug(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug in the writer")

    monkeypatch.setattr(checkpoint, "save_model", bug)
    with pytest.raises(TypeError, match="a bug in the writer"):
        checkpoint.save_run_checkpoint(model, _state(model, 5), paths.run_dir, 5)
    with pytest.raises(TypeError, match="a bug in the writer"):
        finish(model, paths, {"iters": 5})


def test_a_state_write_the_disk_refuses_is_a_checkpoint_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save's writer raises RuntimeError on a full disk (not OSError): still the one line."""
    model = _tiny()
    state = _state(model, 5)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(
        checkpoint.CheckpointWriteError,
        match=r"step-00000005: cannot write this run checkpoint \(OSError: torch.save failed \(RuntimeError: "
        r"\[enforce fail.*\); the run has no earlier checkpoint",
    ):
        checkpoint.save_run_checkpoint(model, state, tmp_path / "run", 5)
    assert list((tmp_path / "run").iterdir()) == []  # no half-written step left behind
