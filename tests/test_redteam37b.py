"""Red team of the training side (session 37): a tampered or foreign run checkpoint's state.pt.

A state.pt is read with torch.load(weights_only=True), so it holds no code; but its values are
whatever its writer put there. Each must be refused in one line naming the file and the field,
never a traceback, and never resumed from a step other than its folder's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_mutation_audit27 import DATA, LoggedRuntime, run_state, tiny_model
from test_train import paths_in, tiny_config, write_tokens

from pipeline import checkpoint, trainsetup
from pipeline.model import GPT, GPTConfig
from pipeline.optim import make_optimizer
from pipeline.runstate import Progress, make_state, restore_state
from pipeline.shards import TokenShards
from pipeline.tokenizer import PADDED_VOCAB
from pipeline.train import GlobalBatches, train
from pipeline.trainconfig import data_digest
from pipeline.trainsetup import TrainSetupError

# ---------------------------------------------------------------- the fields init_model decides by


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"step": "4"}, "step '4' is not this folder's step"),
        ({"step": -3}, "step -3 is not this folder's step"),  # resumed, it trained 7 steps to reach 4
        ({"step": 7}, "step 7 is not this folder's step"),
        ({"step": True}, "step True is not"),
        ({"config": "not json"}, "config is not the JSON text"),
        ({"config": "[1]"}, "config is not the JSON text"),
        ({"fingerprint": 5}, "fingerprint is not a string"),
    ],
)
def test_a_state_whose_step_config_or_fingerprint_is_no_such_thing_is_unreadable(
    tmp_path: Path, over: dict[str, Any], why: str
) -> None:
    """Was: `step: "4"` a TypeError traceback in init_model, a config of no JSON a JSONDecodeError
    one, and `step: -3` in step-00000004/ resumed (from step -3)."""
    cfg = tiny_config(init_from="resume")
    paths = paths_in(tmp_path, tmp_path / "data")
    checkpoint.save_run_checkpoint(tiny_model(), {**run_state(cfg, 4), **over}, paths.run_dir, 4)
    with pytest.raises(trainsetup.UnreadableState, match=why) as raised:
        trainsetup.init_model(cfg, paths, LoggedRuntime(), DATA)
    assert "step-00000004/state.pt" in str(raised.value)


def test_a_state_of_its_folders_step_still_reads(tmp_path: Path) -> None:
    """The check refuses only what is wrong: the state a run saves is read as it was."""
    cfg = tiny_config()
    paths = paths_in(tmp_path, tmp_path / "data")
    checkpoint.save_run_checkpoint(tiny_model(), run_state(cfg, 4), paths.run_dir, 4)
    assert trainsetup._load_state(paths.run_dir / "step-00000004")["step"] == 4


# ---------------------------------------------------------------- what restore_state restores


class _Batches:
    """GlobalBatches' state side alone (a numpy PCG64 generator), without shards."""

    restore = GlobalBatches.restore
    state = GlobalBatches.state

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)


def _tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=2, n_embd=8))


def _saved_state() -> dict[str, Any]:
    """A state as make_state writes it, with Adam moments (one real step taken)."""
    model = _tiny()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    model(torch.tensor([[1, 2, 3]]), torch.tensor([[2, 3, 4]]))[1].backward()
    opt.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return make_state(Progress(step=3), opt, scaler, _Batches(), "fp", tiny_config())


def _restore(state: dict[str, Any], scaler_enabled: bool = False) -> Progress:
    """restore_state(state) into a fresh tiny model's optimizer, the process's RNG state kept."""
    rng = torch.get_rng_state()
    try:
        return restore_state(
            state,
            make_optimizer(_tiny(), lr=1e-2, weight_decay=0.1),
            torch.amp.GradScaler("cpu", enabled=scaler_enabled),
            _Batches(),
        )
    finally:
        torch.set_rng_state(rng)


def _moments_of_another_shape(state: dict[str, Any]) -> None:
    moments = next(iter(state["optimizer"]["state"].values()))
    moments["exp_avg"] = torch.zeros(3)


@pytest.mark.parametrize(
    ("tamper", "field"),
    [
        (lambda s: s.update(torch_rng=torch.zeros(10, dtype=torch.uint8)), "torch_rng"),
        (lambda s: s.update(torch_rng=torch.zeros(5056)), "torch_rng"),
        (lambda s: s.update(data_rng="not json"), "data_rng"),
        (lambda s: s.update(data_rng=json.dumps({"bit_generator": "MT19937"})), "data_rng"),
        (lambda s: s.update(optimizer={}), "optimizer"),
        (_moments_of_another_shape, "optimizer: RuntimeError: exp_avg of shape"),
        (lambda s: s.update(best_val_loss="x"), "progress"),
        (lambda s: s.update(recent_train_losses=3), "progress"),
        (lambda s: s.update(last_val_loss="low"), "progress"),
    ],
)
def test_restore_state_names_the_field_it_cannot_restore(tamper: Any, field: str) -> None:
    """Was: torch's and numpy's own tracebacks (an RNG state of another size, a PCG64 state of
    another generator, an optimizer state without param_groups), and Adam moments of another shape
    loaded without a word, to fail at the run's first step."""
    state = _saved_state()
    tamper(state)
    with pytest.raises(ValueError, match=f"^{field}"):
        _restore(state)


def test_an_untampered_state_restores() -> None:
    """The wrapping changes nothing for a state as the run saved it."""
    progress = _restore(_saved_state())
    assert progress.step == 3


# ---------------------------------------------------------------- through train()


def test_train_refuses_a_state_it_cannot_restore_in_one_line(tmp_path: Path) -> None:
    """A finished run (nothing left to train) whose state.pt holds an RNG state of another size:
    train() raised torch's RuntimeError traceback; now a TrainSetupError naming the file, the field
    and the way out. The run checkpoint is kept."""
    tokens = write_tokens(tmp_path / "tokens" / "full", n_train=12, n_val=4)
    cfg = tiny_config(max_iters=2, ckpt_interval=2, eval_interval=2, eval_iters=1)
    paths = paths_in(tmp_path / "out", tokens)
    rt = trainsetup.setup_runtime(cfg)
    shape = dict(block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    model = GPT(GPTConfig(vocab_size=PADDED_VOCAB, dropout=cfg.dropout, **shape))
    opt = make_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = GlobalBatches(tokens / "train", cfg, rt, cfg.seed)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    fingerprint = cfg.fingerprint(data_digest(tokens))
    state = make_state(Progress(step=2), opt, scaler, batches, fingerprint, dataclasses.replace(cfg))
    state["torch_rng"] = torch.zeros(10, dtype=torch.uint8)
    checkpoint.save_run_checkpoint(model, state, paths.run_dir, 2)
    with pytest.raises(TrainSetupError, match=r"step-00000002/state.pt: cannot restore .*\(torch_rng: ") as e:
        train(cfg, paths)
    assert f"delete {paths.run_dir} to start afresh" in str(e.value)
    assert checkpoint.latest_run_checkpoint(paths.run_dir) == paths.run_dir / "step-00000002"


# ---------------------------------------------------------------- sizes no machine holds


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"block_size": 10**12}, r"global batch of 8,000,000,000,000 tokens needs .* GiB"),
        ({"batch_size": 2**40}, r"batch_size 1099511627776 x grad_accum 2 x block_size 32"),
        ({"grad_accum": 2**40}, r"for its token arrays alone, more than this machine's"),
        ({"n_layer": 10**9}, r"n_layer 1000000000, n_embd 32, block_size 32: a model of about 1.2e\+13"),
        ({"n_embd": 2**40, "n_head": 1}, r"parameters needs .* to train \(weights, gradients"),
    ],
)
def test_sizes_no_memory_holds_are_refused_before_anything_is_allocated(
    tmp_path: Path, over: dict[str, Any], why: str
) -> None:
    """Was: an allocator RuntimeError or numpy MemoryError traceback, or (n_layer 10**9) layers built
    one by one until the OOM killer. Refused first thing in the run: here without any data at all."""
    cfg = tiny_config(**over)
    with pytest.raises(TrainSetupError, match=why):
        train(cfg, paths_in(tmp_path, tmp_path / "no-data"))
    assert not (tmp_path / "run").exists()


def test_a_pretrained_start_is_not_judged_by_the_profiles_shape() -> None:
    """A pretrained model brings its own shape (no bigger than its weights file): the profile's
    n_layer is not the model trained, so it is no reason to refuse; the batch still counts."""
    rt = LoggedRuntime()
    trainsetup.refuse_oversized(tiny_config(init_from="gpt2", n_layer=10**9), rt)
    trainsetup.refuse_oversized(tiny_config(), rt)
    with pytest.raises(TrainSetupError, match="global batch"):
        trainsetup.refuse_oversized(tiny_config(init_from="gpt2", batch_size=2**40), rt)


# ---------------------------------------------------------------- shards


def test_a_starts_file_with_a_damaged_npy_header_is_one_line_naming_it(tmp_path: Path) -> None:
    """One byte of a starts-*.npy header's dict changed (`'descr'` -> `(descr'`): numpy's header parse
    raised tokenize's TokenError, which no caller caught (check_data, evaluate: a traceback); now the
    ValueError of any unreadable shard file, naming it."""
    tokens = write_tokens(tmp_path / "full", n_train=4, n_val=2)
    starts = tokens / "train" / "starts-00000.npy"
    data = bytearray(starts.read_bytes())
    assert data[11:18] == b"'descr'"  # magic (6), version (2), header length (2), then the dict
    data[11] = ord("(")
    starts.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"starts-00000.npy: not a readable shard file \(its .npy header"):
        TokenShards(tokens / "train")
