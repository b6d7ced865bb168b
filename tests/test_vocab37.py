"""Session 37: resuming a run folder whose weights (and optimizer moments) have fewer vocabulary rows
than the tokenizer writes ids (a folder placed by hand, or another project's) loaded, restored its
state, and failed at the first step with torch's "IndexError: index out of range in self". It is now
refused before anything runs, in one line naming the folder's config.json, the vocabulary sizes and
the way out (delete the run folder), by init_from: resume and by the automatic resume alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_mutation_audit27 import DATA, LoggedRuntime, run_state
from test_train import paths_in, tiny_config, write_tokens

from pipeline import checkpoint, trainsetup
from pipeline.model import GPT, GPTConfig
from pipeline.optim import make_optimizer
from pipeline.runstate import Progress, make_state
from pipeline.tokenizer import N_VOCAB
from pipeline.train import GlobalBatches, train
from pipeline.trainconfig import TrainConfig, TrainPaths, data_digest
from pipeline.trainsetup import TrainSetupError

GPT2_VOCAB = 50257  # GPT-2's own BPE, without the chat tokens: the likely foreign folder


def _model(vocab_size: int, cfg: TrainConfig) -> GPT:
    torch.manual_seed(0)
    shape = dict(block_size=cfg.block_size, n_layer=1, n_head=2, n_embd=8)
    return GPT(GPTConfig(vocab_size=vocab_size, dropout=cfg.dropout, **shape))


def _run_folder(tmp_path: Path, vocab_size: int, cfg: TrainConfig, step: int = 4) -> TrainPaths:
    """A run folder written by checkpoint's own writer: a model of `vocab_size` rows at `step`."""
    paths = paths_in(tmp_path, tmp_path / "data")
    checkpoint.save_run_checkpoint(_model(vocab_size, cfg), run_state(cfg, step), paths.run_dir, step)
    return paths


def _refusal(paths: TrainPaths, vocab_size: int, step: int = 4) -> str:
    """The start of the one line a run checkpoint of `vocab_size` rows is refused with."""
    config = paths.run_dir / f"step-{step:08d}" / checkpoint.CONFIG_FILE
    return (
        f"{config} vocab_size: the checkpoint's vocabulary has {vocab_size} tokens, but the tokenizer "
        f"writes ids up to {N_VOCAB - 1}"
    )


@pytest.mark.parametrize("vocab_size", [64, GPT2_VOCAB, N_VOCAB - 1])
def test_init_from_resume_refuses_a_run_of_a_smaller_vocabulary(tmp_path: Path, vocab_size: int) -> None:
    """init_from: resume of a folder without the chat tokens' rows: one line, not a later IndexError."""
    paths = _run_folder(tmp_path, vocab_size, tiny_config(max_iters=8))
    with pytest.raises(TrainSetupError) as e:
        trainsetup.init_model(tiny_config(max_iters=8, init_from="resume"), paths, LoggedRuntime(), DATA)
    line = str(e.value)
    assert line.startswith(_refusal(paths, vocab_size))
    assert line.endswith(f"; delete {paths.run_dir} to start afresh")
    assert "\n" not in line and "dvc repro train" not in line  # training would resume it again
    assert checkpoint.latest_run_checkpoint(paths.run_dir) == paths.run_dir / "step-00000004"


def test_the_automatic_resume_refuses_a_run_of_a_smaller_vocabulary(tmp_path: Path) -> None:
    """A leftover run of the same fingerprint is resumed without being asked: refused the same way,
    and kept (only a fresh run's start deletes a leftover)."""
    cfg = tiny_config(max_iters=8)
    paths = _run_folder(tmp_path, GPT2_VOCAB, cfg)
    with pytest.raises(TrainSetupError) as e:
        trainsetup.init_model(cfg, paths, LoggedRuntime(), DATA)
    assert str(e.value).startswith(_refusal(paths, GPT2_VOCAB))
    assert checkpoint.latest_run_checkpoint(paths.run_dir) == paths.run_dir / "step-00000004"


def test_a_run_holding_every_token_id_still_resumes(tmp_path: Path) -> None:
    """The boundary is the tokenizer's last id, not the padded size this code trains with: a run of
    exactly N_VOCAB rows embeds every id the shards hold, and resumes."""
    cfg = tiny_config(max_iters=8)
    paths = _run_folder(tmp_path, N_VOCAB, cfg)
    start = trainsetup.init_model(dataclasses.replace(cfg, init_from="resume"), paths, LoggedRuntime(), DATA)
    assert start.state is not None and start.state["step"] == 4
    assert start.model.config.vocab_size == N_VOCAB


def test_train_refuses_it_before_the_first_step(tmp_path: Path) -> None:
    """Through train(), on real shards and a state.pt with the optimizer moments of that model (what
    such a folder holds): the refusal, where an IndexError traceback came at the first step."""
    tokens = write_tokens(tmp_path / "tokens" / "full", n_train=12, n_val=4)
    cfg = tiny_config(max_iters=4, ckpt_interval=2, eval_interval=2, eval_iters=1)
    paths = paths_in(tmp_path / "out", tokens)
    model = _model(GPT2_VOCAB, cfg)
    rt = trainsetup.setup_runtime(cfg)
    opt = make_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = GlobalBatches(tokens / "train", cfg, rt, cfg.seed)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = make_state(Progress(step=2), opt, scaler, batches, cfg.fingerprint(data_digest(tokens)), cfg)
    checkpoint.save_run_checkpoint(model, state, paths.run_dir, 2)
    with pytest.raises(TrainSetupError) as e:
        train(dataclasses.replace(cfg, init_from="resume"), paths)
    assert str(e.value).startswith(_refusal(paths, GPT2_VOCAB, step=2))
    assert not paths.ckpt_dir.exists()  # no step ran, nothing was written
    assert checkpoint.latest_run_checkpoint(paths.run_dir) == paths.run_dir / "step-00000002"
