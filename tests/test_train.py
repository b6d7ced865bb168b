"""The training loop on CPU: config, schedule, optimizer groups, masked loss, learning, outputs,
exact resume after `kill -9`, and DDP (gloo, 2 processes) against one process.

Data are small synthetic conversations written with the real shard writer and read through
pipeline.shards.TokenShards, the same path the stage uses.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipeline import atomic, checkpoint, hfexport
from pipeline.lr import lr_at
from pipeline.model import GPT, GPTConfig
from pipeline.optim import param_groups
from pipeline.shards import ShardWriter
from pipeline.tokenizer import ENDOFTEXT_ID, render
from pipeline.train import MaskedLM, train
from pipeline.trainconfig import TrainConfig, TrainPaths, data_digest
from pipeline.trainsetup import TrainSetupError, refuse_endless_cpu_run, setup_runtime

ROOT = Path(__file__).resolve().parents[1]

# A tiny model and short run: seconds on one core.
TINY = dict(
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=4,
    grad_accum=2,
    max_iters=16,
    lr=1e-2,
    min_lr=1e-3,
    warmup_iters=2,
    eval_interval=8,
    eval_iters=4,
    ckpt_interval=4,
    dropout=0.1,
)

HUMAN_LINES = [
    "hello there",
    "how are you today?",
    "what do you like to eat?",
    "tell me a joke",
    "where do you live?",
    "do you have a pet?",
    "what is your name?",
    "good night",
]
BOT_LINES = [
    "I am fine, thank you.",
    "I like pizza and pasta.",
    "Why did the chicken cross the road?",
    "I live in a small town.",
    "Yes, I have a cat.",
    "My name is Bot.",
    "Good night to you too!",
]


def write_tokens(variant_dir: Path, n_train: int = 200, n_val: int = 24, seed: int = 0) -> Path:
    """Synthetic conversations rendered by the chat tokenizer into train/ and val/ shards."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        ids, mask, lengths = [], [], []
        for _ in range(n):
            turns = []
            for _ in range(int(rng.integers(1, 4))):
                turns.append({"role": "human", "content": str(rng.choice(HUMAN_LINES))})
                turns.append({"role": "bot", "content": str(rng.choice(BOT_LINES))})
            i, m = render(turns)
            ids += i
            mask += m
            lengths.append(len(i))
        writer = ShardWriter(variant_dir / split, shard_tokens=4000)  # several shards per split
        writer.add(np.array(ids), np.array(mask), np.array(lengths))
        writer.close()
    return variant_dir


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokens(tmp_path_factory.mktemp("tokens") / "full")


def paths_in(root: Path, data_dir: Path) -> TrainPaths:
    return TrainPaths(
        data_dir=data_dir,
        run_dir=root / "run",
        ckpt_dir=root / "ckpt",
        live_dir=root / "live",
        metrics_file=root / "metrics.json",
    )


def tiny_config(**over) -> TrainConfig:
    return TrainConfig(**{**TINY, "device": "cpu", **over}).validated()


# ---------------------------------------------------------------- pieces


def test_params_yaml_profiles_parse() -> None:
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    train, profiles = params["train"], params["train_profiles"]
    for profile in profiles:
        cfg = TrainConfig.from_params({**train, "profile": profile}, profiles)
        assert cfg.max_iters > 0 and cfg.block_size > 0
    gpu = TrainConfig.from_params({**train, "profile": "gpt2-medium"}, profiles)
    assert gpu.dtype == "bfloat16" and gpu.compile


def test_unknown_profile_or_key_is_refused() -> None:
    base, profiles = {"variant": "full", "profile": "p", "init_from": "scratch"}, {"p": {"max_iters": 3}}
    assert TrainConfig.from_params(base, profiles).max_iters == 3
    with pytest.raises(
        ValueError, match=r"train.profile='q' is not one of \['p'\] \(the keys of train_profiles:\)"
    ):
        TrainConfig.from_params({**base, "profile": "q"}, profiles)
    with pytest.raises(KeyError, match=r"train_profiles.p.max_iter\b"):
        TrainConfig.from_params(base, {"p": {"max_iter": 3}})
    # where profiles lived before: a mapping there is refused, not ignored
    with pytest.raises(ValueError, match=r"train\.profiles: profiles are the top-level `train_profiles:`"):
        TrainConfig.from_params({**base, "profiles": profiles}, profiles)
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2).validated()
    with pytest.raises(ValueError, match="loss_head"):
        TrainConfig(loss_head="sparse").validated()
    with pytest.raises(ValueError, match="train.device: must be"):
        TrainConfig(device="tpu").validated()
    assert TrainConfig(device="cuda:1").validated().device == "cuda:1"


def test_loss_head_auto_gathers_unless_compiled() -> None:
    assert TrainConfig(compile=False).gather_loss and not TrainConfig(compile=True).gather_loss
    assert TrainConfig(compile=True, loss_head="gathered").gather_loss
    assert not TrainConfig(compile=False, loss_head="full").gather_loss


def test_lr_warms_up_then_decays_to_min_lr() -> None:
    kw = dict(lr=1.0, min_lr=0.1, warmup_iters=10, decay_iters=100)
    lrs = [lr_at(s, **kw) for s in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1.0
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101], strict=True))  # monotone decay
    assert lrs[10] == pytest.approx(1.0, abs=1e-3) and lrs[100] == lrs[119] == 0.1
    assert lrs[55] == pytest.approx(0.55, abs=1e-6)  # cosine midpoint


def test_no_weight_decay_on_biases_and_layernorm() -> None:
    model = GPT(GPTConfig(block_size=8, n_layer=1, n_head=2, n_embd=8))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") or ".ln_" in names[id(p)] for p in no_decay["params"])
    assert {names[id(p)] for p in decay["params"]} >= {
        "transformer.wte.weight",
        "transformer.h.0.attn.c_attn.weight",
    }
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == model.num_params(False)


def test_gathered_masked_loss_equals_full_masked_loss() -> None:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    x = torch.randint(0, 50000, (3, 16))
    y = torch.randint(0, 50000, (3, 16))
    m = (torch.rand(3, 16) < 0.4).long()
    full = MaskedLM(gpt, gather=False)(x, y, m)
    gathered = MaskedLM(gpt, gather=True)(x, y, m)
    torch.testing.assert_close(gathered, full, atol=1e-5, rtol=1e-5)
    # Unmasked positions carry no gradient at all: changing their targets changes nothing.
    y2 = torch.where(m.bool(), y, torch.zeros_like(y))
    assert MaskedLM(gpt, gather=True)(x, y2, m).item() == pytest.approx(gathered.item())
    zero = MaskedLM(gpt, gather=True)(x, y, torch.zeros_like(m))
    assert zero.item() == 0.0 and zero.requires_grad


def test_compiled_loss_heads_match_eager_loss_and_gradients() -> None:
    """What CUDA runs with `compile: true`, checked on CPU: the full head compiles as one graph
    (fullgraph: no break), the gathered head compiles around its data-dependent gather, and both
    give eager's loss and gradients, also when the number of loss positions changes."""
    import torch._dynamo

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=256, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, 256, (3, 16))
    y = torch.randint(0, 256, (3, 16))
    masks = [(torch.rand(3, 16) < p).long() for p in (0.4, 0.7)]
    assert masks[0].sum() != masks[1].sum()

    def loss_and_grads(module: torch.nn.Module, m: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        gpt.zero_grad(set_to_none=True)
        loss = module(x, y, m)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in gpt.parameters()]

    try:
        for gather in (False, True):
            compiled = torch.compile(MaskedLM(gpt, gather=gather), fullgraph=not gather)
            for m in masks:
                want_loss, want_grads = loss_and_grads(MaskedLM(gpt, gather=False), m)
                got_loss, got_grads = loss_and_grads(compiled, m)
                torch.testing.assert_close(got_loss, want_loss, atol=1e-5, rtol=1e-5)
                for got, want in zip(got_grads, want_grads, strict=True):
                    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    finally:
        torch._dynamo.reset()


class _GradRecorder(torch.optim.Optimizer):
    """An optimizer whose step only copies the gradients it is handed (train_step zeroes them after)."""

    def __init__(self, params) -> None:
        super().__init__(params, {"lr": 0.0})
        self.grads: list[torch.Tensor] = []

    def step(self, closure=None) -> None:
        self.grads = [p.grad.clone() for g in self.param_groups for p in g["params"]]


@pytest.mark.parametrize("gather", [True, False])
@pytest.mark.parametrize(
    ("grad_clip", "loss_scale"),
    [(1e9, False), (0.0, False), (0.0, True)],
    ids=["clip-not-reached", "no-clip", "no-clip-float16-scaler"],
)
def test_train_step_gradient_is_the_global_batch_mean_over_bot_tokens(
    gather: bool, grad_clip: float, loss_scale: bool
) -> None:
    """Micro-batches with 3 and 40 bot tokens: the step's gradient and loss are those of one masked
    cross-entropy over the concatenated global batch, not a mean of the two micro-batch means (which
    would give each of the 3 tokens 13x the weight of one of the 40) nor a weighting by window size.

    The gradient norm is reported with clipping off too (it was None, so no run with grad_clip 0
    logged one), without touching the gradients, and under a float16 loss scaler it is the norm
    of the unscaled gradient (not 65536x it)."""
    from pipeline.device import DistInfo
    from pipeline.model import masked_cross_entropy
    from pipeline.train import train_step
    from pipeline.trainsetup import Runtime

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=32, vocab_size=256, n_layer=2, n_head=2, n_embd=16))
    b, t = 2, 32
    x = torch.randint(0, 256, (2 * b, t))
    y = torch.randint(0, 256, (2 * b, t))
    m = torch.zeros(2 * b, t, dtype=torch.long)
    m[0, [3, 17, 30]] = 1  # micro-batch 0: 3 bot tokens
    m[2, 4:24] = 1  # micro-batch 1: 40 bot tokens
    m[3, 10:30] = 1
    micro = [(x[i * b : (i + 1) * b], y[i * b : (i + 1) * b], m[i * b : (i + 1) * b]) for i in range(2)]
    assert [int(mb[2].sum()) for mb in micro] == [3, 40]

    gpt.zero_grad(set_to_none=True)
    want_loss = masked_cross_entropy(gpt.lm_head(gpt.hidden(x)), y, m)  # logits_all is no_grad
    want_loss.backward()
    want_grads = [p.grad.clone() for p in gpt.parameters()]
    want_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in want_grads]))
    gpt.zero_grad(set_to_none=True)

    optimizer = _GradRecorder(gpt.parameters())
    scaler = torch.amp.GradScaler("cpu", enabled=loss_scale)
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    cfg = TrainConfig(grad_clip=grad_clip, grad_accum=2, batch_size=b, block_size=t)  # never clips
    loss, grad_norm = train_step(MaskedLM(gpt, gather=gather), optimizer, scaler, micro, 43.0, 0.0, cfg, rt)

    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-5)
    assert scaler.get_scale() == (65536.0 if loss_scale else 1.0)  # the gradients were scaled by it
    assert grad_norm is not None and grad_norm.item() == pytest.approx(want_norm.item(), rel=1e-4)
    names = [n for n, _ in gpt.named_parameters()]
    assert len(optimizer.grads) == len(want_grads)
    for name, got, want in zip(names, optimizer.grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4, msg=lambda s, n=name: f"{n}: {s}")


def test_eval_bot_token_loss_equals_full_logits_masked_loss(tokens: Path) -> None:
    """pipeline.evaluate projects only bot positions; it must equal the full-logits masked mean."""
    from pipeline.evaluate import bot_token_loss
    from pipeline.shards import TokenShards

    torch.manual_seed(1)
    gpt = GPT(GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    report = bot_token_loss(gpt, tokens / "val", batch_size=4)  # the whole split
    shards = TokenShards(tokens / "val")
    total, count, windows = 0.0, 0, 0
    for start in range(0, shards.n_tokens - 1, 32):  # every window, by hand (one shard here)
        ids = np.full(33, ENDOFTEXT_ID, dtype=np.int64)
        mask = np.zeros(33, dtype=np.int64)
        piece = np.asarray(shards.shards[0].tokens[start : start + 33], dtype=np.int64)
        ids[: len(piece)] = piece
        mask[: len(piece)] = shards.shards[0].mask[start : start + 33]
        logits = gpt.logits_all(torch.from_numpy(ids[None, :-1]))
        ce = torch.nn.functional.cross_entropy(logits[0], torch.from_numpy(ids[1:]), reduction="none")
        total += float((ce * torch.from_numpy(mask[1:]).float()).sum())
        count += int(mask[1:].sum())
        windows += 1
    assert len(shards.shards) == 1 and report.tokens == count > 0 and report.windows == windows
    assert report.split_tokens == count and report.share == 1.0
    assert report.loss == pytest.approx(total / count, rel=1e-5)
    assert report.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    part = bot_token_loss(gpt, tokens / "val", batch_size=4, max_batches=3)
    assert part.windows == 12 < windows and 0 < part.share < 1 and part.split_tokens == count


@pytest.mark.parametrize("gather", [True, False])
def test_run_val_loss_equals_evaluate_bot_token_loss(tokens: Path, gather: bool) -> None:
    """The val loss a run logs and the evaluate stage's bot-token loss are one definition (a mean
    over every bot token of the windows, not a mean of per-batch means): on the same windows
    (eval_iters batches spread over the split) they agree, whichever loss head trains."""
    from pipeline.device import DistInfo
    from pipeline.evaluate import bot_token_loss
    from pipeline.train import evaluate
    from pipeline.trainsetup import Runtime

    torch.manual_seed(2)
    gpt = GPT(GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=16))
    rt = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=DistInfo())
    cfg = tiny_config(batch_size=3, eval_iters=5, loss_head="gathered" if gather else "full")
    run_val = evaluate(MaskedLM(gpt, gather=gather), tokens / "val", cfg, rt)
    stage = bot_token_loss(gpt.eval(), tokens / "val", batch_size=3, max_batches=5)
    assert stage.windows == 15 and stage.loss == pytest.approx(run_val, rel=1e-6)


# ---------------------------------------------------------------- a whole run


def test_a_run_logged_once_still_reports_its_speed(tokens: Path, tmp_path: Path) -> None:
    """The first logged interval (compilation, warm-up) is left out of the speed: with
    log_interval >= max_iters it was the only one, and the run said `None tokens/s`."""
    summary = train(tiny_config(max_iters=3, log_interval=5, eval_interval=3), paths_in(tmp_path, tokens))
    assert summary["tokens_per_sec"] is not None and summary["tokens_per_sec"] > 0


def test_training_learns_and_writes_every_output(tokens: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_iters=24, eval_interval=12, ckpt_interval=12)
    summary = train(cfg, paths_in(tmp_path, tokens))
    assert summary["initial_val_loss"] > 10.0  # ln(50304) = 10.8 at init
    assert summary["val_loss"] < summary["initial_val_loss"] - 4.0, summary
    assert summary["iters"] == 24 and summary["params"] > 0 and summary["tokens_per_sec"] > 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == summary
    # dvclive plots: one row per step for train loss, one per eval for val loss (step 0 included).
    rows = (tmp_path / "live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "loss"] and len(rows) == 1 + 24
    val = (tmp_path / "live/plots/metrics/val/loss.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in val[1:]] == ["0", "12", "24"]
    for name in ("lr", "tokens_per_sec"):
        assert (tmp_path / f"live/plots/metrics/{name}.tsv").exists()
    # model/ckpt loads and reproduces the trained weights; the run keeps its final resumable state.
    model = checkpoint.load_model(tmp_path / "ckpt")
    assert model.config.n_embd == 32
    final = checkpoint.latest_run_checkpoint(tmp_path / "run")
    assert final is not None and checkpoint.load_state(final)["step"] == 24
    # The export stage turns the run into model/hf, whose model card states this run: its losses
    # and the data variant (no sources.csv here).
    hfexport.export_run(tmp_path / "ckpt", tmp_path / "hf", tmp_path / "metrics.json", tokens)
    assert (tmp_path / "hf/config.json").exists() and (tmp_path / "hf/vocab.json").exists()
    card = (tmp_path / "hf/README.md").read_text()
    assert f"| 24 | {24 * summary['tokens_per_iter']:,} | {summary['initial_val_loss']:.4f} |" in card
    assert f"on the `{tokens.name}` dataset variant" in card


def test_resume_with_nothing_to_resume_fails_clearly(tokens: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainSetupError, match="nothing|no checkpoint"):
        train(tiny_config(init_from="resume"), paths_in(tmp_path, tokens))


def test_resume_extends_only_a_run_of_the_same_settings(
    tokens: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a run of other settings (a `dvc exp run`) replaced model/run, extending the earlier run
    is refused, naming what differs, instead of silently extending the other one."""
    paths = paths_in(tmp_path, tokens)
    short = dict(max_iters=4, ckpt_interval=4, eval_interval=4)
    train(tiny_config(**short), paths)
    seen: list[int] = []
    capsys.readouterr()
    train(tiny_config(**{**short, "max_iters": 6}, init_from="resume"), paths, on_step=seen.append)
    assert seen == [5, 6]  # extended: same settings, more steps
    # The schedule is stretched to the new max_iters, and the log says what that does to lr.
    assert (
        "cosine schedule is stretched to 6 steps, lr 0.0055 -> 0.0055 (no new warmup)"
        in capsys.readouterr().err
    )
    # The summary (and so the model card) names where the weights came from, not `resume`; so does
    # a second extension, whose saved config says init_from=resume.
    train(tiny_config(**{**short, "max_iters": 7}, init_from="resume"), paths)
    summary = json.loads(paths.metrics_file.read_text())
    assert (summary["init_from"], summary["variant"]) == ("scratch", "full")  # variant: the export checks it
    train(tiny_config(**short, lr=5e-3), paths)  # another run replaces model/run
    with pytest.raises(TrainSetupError, match=r"other settings: lr 0\.005 \(asked: 0\.01\)"):
        train(tiny_config(**{**short, "max_iters": 8}, init_from="resume"), paths)


# ---------------------------------------------------------------- kill -9 and resume

# Runs one training in a fresh process; with KILL_AT it announces that step and waits to be killed.
DRIVER = """
import json, os, sys, time
from collections.abc import Callable
from pathlib import Path
from pipeline.train import train
from pipeline.trainconfig import TrainConfig, TrainPaths
cfg = TrainConfig(**json.loads(sys.argv[1]))
root, data = Path(sys.argv[2]), Path(sys.argv[3])
kill_at = int(os.environ.get("KILL_AT", "0"))
def on_step(step):
    if step == kill_at:
        print("STEP", step, flush=True)
        time.sleep(600)
paths = TrainPaths(data_dir=data, run_dir=root / "run", ckpt_dir=root / "ckpt",
                   live_dir=root / "live", metrics_file=root / "metrics.json")
train(cfg, paths, on_step=on_step)
"""


def _env(**extra: str) -> dict[str, str]:
    # One thread per process: deterministic kernels, and room for two processes on a small machine.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("KILL_AT", None)
    return {**env, **extra}


def _run_driver(cfg: dict, root: Path, data: Path, **env: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cfg), str(root), str(data)],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def kill_after_lines(driver: str, cfg: dict, root: Path, data: Path, lines: list[str], **env: str) -> None:
    """Run `driver` (DRIVER's arguments) until it has printed `lines`, then kill -9 it."""
    log = root.with_name(root.name + ".log")  # a file, not a pipe: a chatty child never blocks on it
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", driver, json.dumps(cfg), str(root), str(data)],
            env=_env(**env),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            seen = [proc.stdout.readline().strip() for _ in lines]
            assert seen == lines, log.read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def resume_in_process(cfg: dict, root: Path, data: Path) -> list[int]:
    """DRIVER's run (`cfg` in `root` on `data`) in this process, with the one torch thread its process
    has (OMP_NUM_THREADS=1, as straight_kill_run's): the same kernels, so the same weights bit for bit,
    without a fresh process's imports (torch, dvclive, dynamo: more CPU than the steps). The steps it
    trained."""
    seen: list[int] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(**cfg), paths_in(root, data), on_step=seen.append)
    finally:
        torch.set_num_threads(threads)
    return seen


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return load_file(str(root / "ckpt" / checkpoint.WEIGHTS_FILE))


# The run the kill tests interrupt (here and in tests/test_train_resume.py). Its uninterrupted run,
# which they compare with, is tests/conftest.py's session fixture `straight_kill_run`.
KILL_RUN = {**TINY, "device": "cpu", "max_iters": 12, "ckpt_interval": 4, "eval_interval": 6}


@pytest.mark.slow
def test_kill_9_then_resume_ends_with_identical_weights(
    straight_kill_run: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = KILL_RUN
    tokens, straight = straight_kill_run

    killed = tmp_path / "killed"
    # step 6: checkpoint of step 4 on disk, steps 5-6 not saved
    kill_after_lines(DRIVER, cfg, killed, tokens, ["STEP 6"], KILL_AT="6")
    assert [p.name for p in checkpoint.run_checkpoints(killed / "run")] == ["step-00000004"]
    assert not (killed / "ckpt").exists()

    assert resume_in_process({**cfg, "init_from": "resume"}, killed, tokens) == list(range(5, 13))
    want, got = _weights(straight), _weights(killed)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    # The logged trajectory is the same too, without the killed run's unsaved steps 5-6 twice.
    for name in ("train/loss", "val/loss"):
        logged = (straight / f"live/plots/metrics/{name}.tsv").read_text()
        assert (killed / f"live/plots/metrics/{name}.tsv").read_text() == logged


class Stopped(Exception):
    """Raised by stop_at's callback: a run interrupted after a given step, in process."""


def stop_at(last: int) -> Callable[[int], None]:
    """An on_step that stops the run once step `last` is done (after its checkpoint, if any)."""

    def on_step(step: int) -> None:
        if step == last:
            raise Stopped

    return on_step


def test_unfinished_run_resumes_automatically(tokens: Path, tmp_path: Path) -> None:
    """Without init_from=resume, an interrupted run with the same fingerprint continues (DVC reruns)."""
    cfg = tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4)
    paths = paths_in(tmp_path, tokens)

    with pytest.raises(Stopped):
        train(cfg, paths, on_step=stop_at(5))
    seen: list[int] = []
    train(cfg, paths, on_step=seen.append)
    assert seen == [5, 6, 7, 8]  # picked up after the step-4 checkpoint
    # A different config is a different run: it starts over and discards the old state.
    seen.clear()
    train(tiny_config(max_iters=3, ckpt_interval=4, eval_interval=4, lr=5e-3), paths, on_step=seen.append)
    assert seen == [1, 2, 3]


def test_an_unfinished_run_is_not_resumed_on_shards_that_changed_without_a_meta_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards without meta.json were fingerprinted as just "no meta.json": after they were replaced,
    the killed run resumed on the new ones (its sampler position on other data), logging "same
    config, data and code". Their bytes count now: the run starts afresh, saying why."""
    data = write_tokens(tmp_path / "tokens" / "full")
    assert not (data / "meta.json").exists()
    cfg = tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4)
    paths = paths_in(tmp_path / "out", data)
    with pytest.raises(Stopped):
        train(cfg, paths, on_step=stop_at(5))
    shutil.rmtree(data)
    write_tokens(data, seed=1)  # other conversations, same layout
    capsys.readouterr()
    seen: list[int] = []
    train(cfg, paths, on_step=seen.append)
    assert seen == list(range(1, 9))
    assert "discarding the unfinished run" in capsys.readouterr().err
    # The same shards again: resumed as before.
    with pytest.raises(Stopped):
        train(tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4, lr=5e-3), paths, on_step=stop_at(5))
    seen.clear()
    train(tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4, lr=5e-3), paths, on_step=seen.append)
    assert seen == [5, 6, 7, 8]
    # Extended with init_from: resume, each shard file is hashed once: the extension's fingerprint
    # and the extended run's (is the data the same?) share one data digest.
    hashed: list[Path] = []
    sha256_file = atomic.sha256_file
    monkeypatch.setattr(atomic, "sha256_file", lambda p: hashed.append(Path(p)) or sha256_file(p))
    seen.clear()
    extend = tiny_config(max_iters=10, ckpt_interval=4, eval_interval=4, lr=5e-3, init_from="resume")
    train(extend, paths, on_step=seen.append)
    assert seen == [9, 10]
    shard_files = sorted(p for p in data.rglob("*") if p.is_file())
    assert sorted(p for p in hashed if p.is_relative_to(data)) == shard_files


def test_a_second_run_on_the_same_run_folder_is_refused_while_the_first_lives(
    tokens: Path, tmp_path: Path
) -> None:
    """Two jobs on one model/run would prune each other's checkpoints (a torchrun killed with -9
    leaves its workers training): the second is refused, naming the first's pid."""
    paths = paths_in(tmp_path, tokens)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrainSetupError, match=rf"another training run \(pid {holder.pid}\) is using"):
            train(tiny_config(max_iters=2), paths)
        assert not paths.ckpt_dir.exists() and not paths.run_dir.exists()
    finally:
        holder.kill()  # -9: the kernel drops the lock with its holder, no stale lock remains
        holder.wait()
    seen: list[int] = []
    train(tiny_config(max_iters=2), paths, on_step=seen.append)
    assert seen == [1, 2] and (paths.ckpt_dir / "model.safetensors").exists()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipeline.runlock import exclusive_run
with exclusive_run(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_process_count_that_does_not_divide_grad_accum_is_refused_before_the_old_run_goes(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4)
    paths = paths_in(tmp_path, tokens)

    with pytest.raises(Stopped):
        train(cfg, paths, on_step=stop_at(5))
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc_per_node=2 sets it, seen from rank 0
    with pytest.raises(TrainSetupError, match="grad_accum 3 must be a multiple of the 2 processes") as e:
        train(tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4, grad_accum=3), paths)
    # a profile sets grad_accum (it said "params.yaml train:", where the shipped profiles never set it)
    assert "train_profiles.<profile>.grad_accum" in str(e.value)
    assert (paths.run_dir / "step-00000004").is_dir()  # the unfinished run is still there to resume
    monkeypatch.delenv("WORLD_SIZE")
    seen: list[int] = []
    train(cfg, paths, on_step=seen.append)
    assert seen == [5, 6, 7, 8]


@pytest.mark.skipif(torch.cuda.is_available(), reason="device auto picks the GPU there")
def test_a_gpu_sized_run_on_device_auto_without_a_gpu_is_refused_before_the_old_run_goes(
    tokens: Path, tmp_path: Path
) -> None:
    """`dvc exp run -S train.profile=gpt2-medium` on a CPU-only machine sat at step 0 of 5000 (days of
    work) after replacing model/run; now it is refused at once, unless train.device says cpu."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    medium = TrainConfig.from_params(
        {**params["train"], "profile": "gpt2-medium", "device": "auto"}, params["train_profiles"]
    )
    paths = paths_in(tmp_path, tokens)
    with pytest.raises(Stopped):
        train(tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4), paths, on_step=stop_at(5))
    with pytest.raises(TrainSetupError, match=r"355M parameters.*train.device: cpu") as refused:
        train(medium, paths)
    assert "hours" in str(refused.value) and "cpu-tiny" in str(refused.value)
    assert (paths.run_dir / "step-00000004").is_dir()  # the unfinished run is still there
    # What the profile trains on the CPU is let through, as is any run with device: cpu said outright.
    cpu = setup_runtime(tiny_config())
    refuse_endless_cpu_run(dataclasses.replace(tiny_config(), device="auto"), cpu)
    refuse_endless_cpu_run(dataclasses.replace(medium, device="cpu"), cpu)
    # An init_from of a Hub size is judged by that size, not the profile's.
    small = dataclasses.replace(
        tiny_config(), device="auto", init_from="gpt2-xl", max_iters=20_000, batch_size=64, block_size=1024
    )
    with pytest.raises(TrainSetupError, match="1,5[0-9]{2}M parameters"):
        refuse_endless_cpu_run(small, cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="device auto picks the GPU there")
def test_the_cpu_refusal_counts_only_the_steps_a_resumed_run_has_left(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal judged a run by its whole max_iters, so a GPU run resumed (or extended a little) on
    a CPU machine near its end was refused too. Here the CPU is made slow enough that the tiny run's 8
    steps take 30 "hours" and 4 take 15: a fresh start is refused, resuming at step 4 is not."""
    from pipeline import trainsetup

    cfg = tiny_config(max_iters=8, ckpt_interval=4, eval_interval=4)
    paths = paths_in(tmp_path, tokens)
    with pytest.raises(Stopped):
        train(cfg, paths, on_step=stop_at(5))  # device: cpu, as a GPU run would have been elsewhere
    monkeypatch.setattr(trainsetup, "CPU_FLOPS", trainsetup.training_flops(cfg)[1] / (30 * 3600))
    auto = dataclasses.replace(cfg, device="auto")  # device is not in the fingerprint: it resumes
    capsys.readouterr()
    with pytest.raises(TrainSetupError, match="30 hours"):  # another seed: a fresh run of 8 steps
        train(dataclasses.replace(auto, seed=7), paths)
    assert (paths.run_dir / "step-00000004").is_dir()  # still there, and not called discarded
    assert "discarding" not in capsys.readouterr().err
    seen: list[int] = []
    train(auto, paths, on_step=seen.append)  # 4 steps left: 15 hours
    assert seen == [5, 6, 7, 8]
    # Extending the finished run: 8 more steps are refused (counted as left, of 16), 4 more are not.
    with pytest.raises(TrainSetupError, match="8 of 16 iters"):
        train(dataclasses.replace(auto, init_from="resume", max_iters=16), paths)
    train(dataclasses.replace(auto, init_from="resume", max_iters=12), paths, on_step=seen.append)
    assert seen[4:] == [9, 10, 11, 12]


@pytest.mark.skipif(torch.cuda.is_available(), reason="device auto picks the GPU there")
def test_the_cpu_refusal_judges_an_extended_hub_start_by_its_hub_shape(tokens: Path, tmp_path: Path) -> None:
    """An extension (init_from: resume) was judged by the profile's n_layer/n_embd, not the shape of
    the GPT-2 it started from: 100,000 more steps of a gpt2-xl start (1.5B parameters, days on a
    CPU) were let through as a tiny model's. The run's state names its start (`origin`)."""
    from pipeline import checkpoint

    cfg = tiny_config(max_iters=4, ckpt_interval=4, eval_interval=4)
    paths = paths_in(tmp_path, tokens)
    train(cfg, paths)  # stands for a gpt2-xl start trained on a GPU (its weights are not fetched here)
    latest = checkpoint.latest_run_checkpoint(paths.run_dir)
    state = checkpoint.load_state(latest)
    checkpoint.save_state({**state, "origin": "gpt2-xl"}, latest)
    longer = dataclasses.replace(cfg, device="auto", init_from="resume", max_iters=100_004)
    with pytest.raises(TrainSetupError, match=r"1,5[0-9]{2}M parameters, 100,000 of 100,004 iters"):
        train(longer, paths, on_step=stop_at(5))  # let through, it stops after one step
    assert checkpoint.load_state(latest)["step"] == 4  # untouched


def test_discarding_an_unfinished_run_says_why(
    tokens: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unfinished run of another fingerprint used to be deleted without a word: the log now names
    it, its step, what changed, and what would have continued it (the decision itself is unchanged)."""
    paths = paths_in(tmp_path, tokens)
    short = dict(max_iters=4, ckpt_interval=2, eval_interval=4)

    class Stop(Exception):
        pass

    def run(**over) -> tuple[str | None, list[int]]:
        """Train until step 3; the discard line it logged (if any) and the steps it ran."""
        seen: list[int] = []

        def on_step(step: int) -> None:
            seen.append(step)
            if step == 3:
                raise Stop

        capsys.readouterr()
        with pytest.raises(Stop):
            train(tiny_config(**{**short, **over}), paths, on_step=on_step)
        lines = [line for line in capsys.readouterr().err.splitlines() if "discarding" in line]
        assert len(lines) <= 1
        return (lines[0] if lines else None), seen

    assert run() == (None, [1, 2, 3])  # nothing to discard
    line, seen = run(lr=5e-3)
    assert seen[0] == 1  # started afresh, as before
    assert line.startswith("train: warning: discarding the unfinished run at ")
    assert "step-00000002 (step 2 of 4): lr 0.01 (now 0.005); it is deleted as this run starts" in line
    # Same settings, other code (any edit of a FINGERPRINT_CODE file): init_from=resume continues it.
    monkeypatch.setattr(TrainConfig, "fingerprint", lambda self, data_dir: "edited")
    line, seen = run(lr=5e-3)
    assert seen[0] == 1
    assert line.endswith(
        "(step 2 of 4): the code or the data changed; it is deleted as this run starts "
        "(`init_from: resume` would have continued it)"
    )


EXTENSION_SHORT = dict(max_iters=4, ckpt_interval=2, eval_interval=2)


@pytest.fixture(scope="module")
def extended_straight(tokens: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """(summary, folder): a 4-step run extended to 6 uninterrupted, the reference both cases of
    test_an_extension_killed_after_its_final_checkpoint_is_finalised_too compare with (trained once:
    the same settings on the same shards give the same weights; the tests only read it)."""
    root = tmp_path_factory.mktemp("extended-straight")
    straight = paths_in(root, tokens)
    train(tiny_config(**EXTENSION_SHORT), straight)
    return train(tiny_config(**{**EXTENSION_SHORT, "max_iters": 6}, init_from="resume"), straight), root


@pytest.mark.parametrize("dvc_cleared_outputs", [True, False])
def test_an_extension_killed_after_its_final_checkpoint_is_finalised_too(
    tokens: Path, tmp_path: Path, dvc_cleared_outputs: bool, extended_straight: tuple[dict, Path]
) -> None:
    """With init_from: resume the same settings raised "is at step N already", and going back to
    scratch discarded the extension; now the extension is finalised like any finished run. Started
    by hand (torchrun, no DVC to clear the outputs), the killed extension found the extended run's
    model/ckpt and metrics.json in place: it was refused as "at step 6 already", its outputs left
    those of step 4. Once finished, extending without more steps is refused as before."""
    short = EXTENSION_SHORT
    want, straight = extended_straight
    paths = paths_in(tmp_path / "killed", tokens)
    train(tiny_config(**short), paths)
    if dvc_cleared_outputs:
        shutil.rmtree(paths.ckpt_dir)  # as DVC does before the stage runs again
    with pytest.raises(Stopped):  # after the step-6 checkpoint, before model/ckpt and metrics.json
        train(tiny_config(**{**short, "max_iters": 6}, init_from="resume"), paths, on_step=stop_at(6))
    assert json.loads(paths.metrics_file.read_text())["iters"] == 4
    seen: list[int] = []
    got = train(tiny_config(**{**short, "max_iters": 6}, init_from="resume"), paths, on_step=seen.append)
    assert seen == [] and got["iters"] == 6 and got["val_loss"] == want["val_loss"]
    assert json.loads(paths.metrics_file.read_text())["iters"] == 6
    want_w, got_w = _weights(straight), _weights(tmp_path / "killed")
    assert all(torch.equal(want_w[k], got_w[k]) for k in want_w)
    for max_iters in (5, 6):
        with pytest.raises(TrainSetupError, match="is at step 6 already; set max_iters above 6"):
            train(tiny_config(**{**short, "max_iters": max_iters}, init_from="resume"), paths)


def test_finalising_under_other_eval_settings_measures_the_val_loss_again(
    tokens: Path, tmp_path: Path
) -> None:
    """eval_iters is not in the run's fingerprint: a finished run finalised after it changed kept
    the old setting's val loss while dvc.lock recorded the new one."""
    cfg = tiny_config(max_iters=4, ckpt_interval=2, eval_interval=2, eval_iters=1)
    paths = paths_in(tmp_path / "run", tokens)
    first = train(cfg, paths)
    shutil.rmtree(paths.ckpt_dir)
    seen: list[int] = []
    again = train(dataclasses.replace(cfg, eval_iters=3), paths, on_step=seen.append)
    fresh = train(dataclasses.replace(cfg, eval_iters=3), paths_in(tmp_path / "fresh", tokens))
    assert seen == [] and again["val_loss"] == fresh["val_loss"] != first["val_loss"]
    # The best was left at the old setting's value (worse than the last, or better by another
    # measure): the re-measured loss is the one value of the current setting.
    assert again["best_val_loss"] == again["val_loss"]


def test_a_checkpoint_save_killed_half_way_leaves_no_copy_behind(tmp_path: Path) -> None:
    """A kill during a save left a hidden full-size `.step-*.tmp` (weights and optimizer moments)
    that no later save removed."""
    model = GPT(GPTConfig(block_size=8, n_layer=1, n_head=1, n_embd=8))
    run_dir = tmp_path / "run"
    checkpoint.save_run_checkpoint(model, {"step": 1}, run_dir, 1)
    debris = [run_dir / ".step-k1ll3d.tmp", run_dir / ".step-00000001.old"]
    for folder in debris:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    checkpoint.save_run_checkpoint(model, {"step": 2}, run_dir, 2)
    assert sorted(p.name for p in run_dir.iterdir()) == ["step-00000002"]


def test_run_killed_after_its_final_checkpoint_is_only_finalised(tokens: Path, tmp_path: Path) -> None:
    """A run that saved its step-max_iters checkpoint but died before writing model/ckpt used to be
    retrained from step 0; now it runs no step and writes the uninterrupted run's weights and summary."""
    cfg = tiny_config(max_iters=6, ckpt_interval=3, eval_interval=3)
    want = train(cfg, paths_in(tmp_path / "straight", tokens))

    class Killed(Exception):
        pass

    def die_at_6(step: int) -> None:
        if step == 6:
            raise Killed

    paths = paths_in(tmp_path / "killed", tokens)
    with pytest.raises(Killed):
        train(cfg, paths, on_step=die_at_6)
    assert not paths.ckpt_dir.exists()
    killed_wall = checkpoint.load_state(checkpoint.latest_run_checkpoint(paths.run_dir))["wall_seconds"]
    shutil.rmtree(paths.live_dir)  # as DVC does: a stage's plots are deleted before it runs again
    seen: list[int] = []
    t0 = time.perf_counter()
    got = train(cfg, paths, on_step=seen.append)
    finalise_wall = time.perf_counter() - t0
    assert seen == []
    # The run's wall time: the killed process's (to its checkpoint) plus this one's, not only this one's.
    assert killed_wall > 0
    assert killed_wall - 0.05 <= got["wall_time_s"] <= killed_wall + finalise_wall + 0.05
    for curve in ("train/loss.tsv", "val/loss.tsv", "lr.tsv"):  # the whole history, from the checkpoint
        want_rows = (tmp_path / "straight/live/plots/metrics" / curve).read_text()
        assert (paths.live_dir / "plots/metrics" / curve).read_text() == want_rows
    # dvclive's summary (a DVC output of train) is the run's last values too, not an empty {"step": 0}
    summary = json.loads((paths.live_dir / "metrics.json").read_text())
    want_summary = json.loads((tmp_path / "straight/live/metrics.json").read_text())
    assert summary["step"] == 6 and summary["val"] == want_summary["val"]
    want_w, got_w = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert want_w.keys() == got_w.keys() and all(torch.equal(want_w[k], got_w[k]) for k in want_w)
    timing = {"wall_time_s", "tokens_per_sec"}
    assert {k: v for k, v in got.items() if k not in timing} == {
        k: v for k, v in want.items() if k not in timing
    }
    assert got["tokens_per_sec"] > 0  # measured by the killed run, carried in its state


def test_resume_where_dtype_resolves_to_float16(
    tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run saved with a disabled loss scaler (float32/bfloat16 autocast) resumed where `dtype`
    resolves to float16 (scaler enabled) used to die with torch's RuntimeError; and back."""
    from pipeline import device

    paths = paths_in(tmp_path, tokens)
    short = dict(ckpt_interval=2, eval_interval=2, dtype="float16", dropout=0.0)
    train(tiny_config(**short, max_iters=2), paths)  # CPU: float16 resolves to float32
    assert checkpoint.load_state(checkpoint.latest_run_checkpoint(paths.run_dir))["scaler"] == {}
    real = device.resolve_dtype
    monkeypatch.setattr(device, "resolve_dtype", lambda name, dev: torch.float16)
    train(tiny_config(**short, max_iters=3, init_from="resume"), paths)
    assert "scale" in checkpoint.load_state(checkpoint.latest_run_checkpoint(paths.run_dir))["scaler"]
    monkeypatch.setattr(device, "resolve_dtype", real)  # a saved scale, a disabled scaler: ignored
    assert train(tiny_config(**short, max_iters=4, init_from="resume"), paths)["iters"] == 4


def _write_convs(split_dir: Path, convs: list[list[dict]]) -> None:
    ids, mask, lengths = [], [], []
    for turns in convs:
        i, m = render(turns)
        ids, mask, lengths = ids + i, mask + m, [*lengths, len(i)]
    writer = ShardWriter(split_dir, shard_tokens=100_000)
    if convs:
        writer.add(np.array(ids), np.array(mask), np.array(lengths))
    writer.close()


SHORT = [{"role": "human", "content": "hi"}, {"role": "bot", "content": "hello there"}]
# A human turn longer than the window: a window starting at such a conversation holds no bot token.
LONG_HUMAN = [{"role": "human", "content": "tell me " * 30}, {"role": "bot", "content": "ok"}]


def test_steps_without_bot_tokens_log_no_train_loss(tmp_path: Path) -> None:
    """A global batch with no loss token used to log train loss 0.0 and pull train_loss down."""
    data = tmp_path / "data"
    _write_convs(data / "train", [SHORT, LONG_HUMAN] * 10)
    _write_convs(data / "val", [SHORT] * 3)
    cfg = tiny_config(
        batch_size=1, grad_accum=1, block_size=8, window_align="conversation", max_iters=12, warmup_iters=1
    )
    summary = train(cfg, paths_in(tmp_path, data))
    rows = (tmp_path / "live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    losses = [float(r.split("\t")[1]) for r in rows]
    assert 0 < len(losses) < 12  # some steps had no bot token and logged no loss
    assert min(losses) > 1.0, losses
    assert summary["train_loss"] > 5.0  # the mean of real losses only (was ~ half of it)
    assert len((tmp_path / "live/plots/metrics/lr.tsv").read_text().splitlines()) == 1 + 12


def test_a_run_without_clipping_logs_its_gradient_norm(tokens: Path, tmp_path: Path) -> None:
    """train/grad_norm was logged only where grad_clip > 0 (clipping computed it): with clipping
    off a run had no gradient-norm curve, the first sign of a diverging run. Measuring it moves no
    weight: the run ends as one whose clip threshold is never reached, with the same norms."""
    short = dict(max_iters=3, eval_interval=3, ckpt_interval=3)
    train(tiny_config(**short, grad_clip=0.0), paths_in(tmp_path / "off", tokens))
    train(tiny_config(**short, grad_clip=1e30), paths_in(tmp_path / "unreached", tokens))
    off, unreached = (
        _tsv(tmp_path / name / "live/plots/metrics/train/grad_norm.tsv") for name in ("off", "unreached")
    )
    assert sorted(off) == [1, 2, 3] and off == unreached
    assert all(0 < norm < 1e3 for norm in off.values())
    want, got = _weights(tmp_path / "unreached"), _weights(tmp_path / "off")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_unusable_data_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny_config(max_iters=2, eval_interval=2, ckpt_interval=2)
    with pytest.raises(TrainSetupError, match=r"nope/train: no token shards .*train\.variant"):
        train(cfg, paths_in(tmp_path, tmp_path / "nope"))
    empty = tmp_path / "empty"
    _write_convs(empty / "train", [])
    _write_convs(empty / "val", [SHORT])
    with pytest.raises(TrainSetupError, match="the train split holds no conversation"):
        train(cfg, paths_in(tmp_path, empty))
    no_bot = tmp_path / "no_bot"
    _write_convs(no_bot / "train", [[{"role": "human", "content": "hi"}]] * 4)
    _write_convs(no_bot / "val", [SHORT])
    with pytest.raises(TrainSetupError, match=r"no loss token \(bot turn\) in the train split"):
        train(cfg, paths_in(tmp_path, no_bot))
    # An empty val split trains, but says that there is no validation loss.
    no_val = tmp_path / "no_val"
    _write_convs(no_val / "train", [SHORT] * 8)
    _write_convs(no_val / "val", [])
    capsys.readouterr()
    summary = train(cfg, paths_in(tmp_path, no_val))
    assert summary["val_loss"] is None and "is empty: no validation loss" in capsys.readouterr().err


def test_bad_init_from_keeps_the_run_and_resume_must_extend(tokens: Path, tmp_path: Path) -> None:
    """A typo in init_from (or the Hub out of reach) used to delete model/run before failing."""
    paths = paths_in(tmp_path, tokens)
    short = dict(max_iters=4, ckpt_interval=4, eval_interval=4)
    train(tiny_config(**short), paths)
    with pytest.raises(
        TrainSetupError, match=r"^params\.yaml train\.init_from: '/nonexistent' is not one of"
    ):
        train(tiny_config(**short, init_from="/nonexistent"), paths)
    assert [p.name for p in checkpoint.run_checkpoints(tmp_path / "run")] == ["step-00000004"]
    # init_from=resume with max_iters not above the run's step used to re-export the run silently.
    for max_iters in (4, 2):
        with pytest.raises(TrainSetupError, match="is at step 4 already; set max_iters above 4"):
            train(tiny_config(**{**short, "max_iters": max_iters}, init_from="resume"), paths)


def test_unreadable_run_state(tokens: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated state.pt: init_from=resume says which file; an automatic resume starts afresh."""
    paths = paths_in(tmp_path, tokens)
    short = dict(max_iters=4, ckpt_interval=2, eval_interval=4)
    train(tiny_config(**short), paths)
    state = checkpoint.latest_run_checkpoint(tmp_path / "run") / checkpoint.STATE_FILE
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(
        TrainSetupError, match=r"step-00000004/state\.pt: cannot read this run's training state"
    ):
        train(tiny_config(**{**short, "max_iters": 6}, init_from="resume"), paths)
    capsys.readouterr()
    seen: list[int] = []
    train(tiny_config(**{**short, "max_iters": 6}), paths, on_step=seen.append)
    assert seen[0] == 1 and "starting a fresh run instead" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_is_a_setup_error(tokens: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainSetupError, match=r"params\.yaml train\.device: .*CUDA is not available"):
        train(tiny_config(device="cuda"), paths_in(tmp_path, tokens))


# ---------------------------------------------------------------- DDP


@pytest.mark.slow
def test_ddp_two_processes_follow_the_single_process_trajectory(tokens: Path, tmp_path: Path) -> None:
    # dropout on: its noise comes from each micro-batch's place in the global batch, not the process
    cfg = {**TINY, "device": "cpu", "max_iters": 6, "ckpt_interval": 6, "eval_interval": 3, "dropout": 0.1}
    # The one-process reference trains in this process: a fresh one would cost more to start (torch,
    # dvclive, dynamo imports) than the six steps; the comparison is within a tolerance either way.
    train(TrainConfig(**cfg), paths_in(tmp_path / "one", tokens))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "--no-python",
            sys.executable,
            "-c",
            DRIVER,
            json.dumps(cfg),
            str(tmp_path / "two"),
            str(tokens),
        ],
        # torchrun makes a torchelastic_* log folder under TMPDIR and leaves it: one per run piled
        # up in /tmp; the test's own folder is removed with it
        env={**_env(), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("torchelastic_*")), "torchrun's log folder was made outside the test's folder"

    def losses(root: Path, name: str) -> list[float]:
        rows = (root / f"live/plots/metrics/{name}.tsv").read_text().splitlines()[1:]
        return [float(r.split("\t")[1]) for r in rows]

    for name in ("train/loss", "val/loss"):
        one, two = losses(tmp_path / "one", name), losses(tmp_path / "two", name)
        assert len(one) == len(two) > 1
        assert np.allclose(one, two, rtol=0, atol=1e-4), (name, one, two)
    assert losses(tmp_path / "one", "train/loss")[-1] < losses(tmp_path / "one", "train/loss")[0]
    want, got = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-3)
    assert math.isfinite(json.loads((tmp_path / "two/metrics.json").read_text())["val_loss"])


def test_resume_compares_the_dataset_variant() -> None:
    """A run on the commercial variant must not be extended on the full one (or back)."""
    import dataclasses

    from pipeline.trainsetup import resume_mismatch

    base, profiles = {"profile": "p", "init_from": "resume"}, {"p": {"max_iters": 3}}
    commercial = TrainConfig.from_params({**base, "variant": "commercial"}, profiles)
    full = TrainConfig.from_params({**base, "variant": "full"}, profiles)
    state = {"config": json.dumps(dataclasses.asdict(commercial))}
    assert resume_mismatch(full, state) == {"variant": ("commercial", "full")}
    assert resume_mismatch(commercial, state) == {}
    assert commercial.fingerprint(b"shards") != full.fingerprint(b"shards")


def test_fingerprint_hashes_the_code_that_decides_the_weights() -> None:
    """An unfinished run must not resume once the settings' defaults, the sampler, the training step,
    the first weights, what a resume restores, the learning-rate schedule, the optimizer's parameter
    groups, the model or the loading of pretrained weights changed: the fingerprint hashes the files
    that define them (a module split must keep them)."""
    from pipeline.hf import load_pretrained
    from pipeline.lr import lr_at
    from pipeline.optim import make_optimizer
    from pipeline.runstate import restore_state
    from pipeline.shards import TokenShards
    from pipeline.train import GlobalBatches, train_step
    from pipeline.trainconfig import FINGERPRINT_CODE
    from pipeline.trainsetup import fresh_model

    defining = {
        Path(sys.modules[obj.__module__].__file__)
        for obj in (
            TrainConfig,
            GlobalBatches,
            TokenShards,
            train_step,
            lr_at,
            param_groups,
            make_optimizer,
            GPT,
            load_pretrained,
            fresh_model,
            restore_state,
        )
    }
    hashed = {Path(sys.modules[TrainConfig.__module__].__file__).with_name(name) for name in FINGERPRINT_CODE}
    assert defining <= hashed
    assert all(path.is_file() for path in hashed)


# ---------------------------------------------------------------- MFU


def _tsv(path: Path) -> dict[int, float]:
    """A dvclive plot file as {step: value}."""
    rows = [r.split("\t") for r in path.read_text().splitlines()[1:]]
    return {int(step): float(value) for step, value in rows}


@pytest.mark.parametrize("loss_head", ["gathered", "full"])
def test_mfu_counts_the_vocabulary_projection_where_the_loss_head_runs_it(
    loss_head: str, tokens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logged and summarised MFU counted the vocabulary projection at every position even when
    the gathered head projects only the loss positions: FLOPs never run, reported as utilisation.
    Per step, the projection counts at that step's share of loss positions (gathered) or at all of
    them (full, the formula unchanged); the summary uses the share of its timed steps."""
    from pipeline import device
    from pipeline import train as train_module

    peak = 1e9  # a fake GPU peak, so that a CPU run logs an MFU (of the order of 10 for this model)
    monkeypatch.setattr(device, "peak_flops", lambda dev: peak)
    shares: list[float] = []  # each step's share of loss positions in its global batch
    draw = train_module.GlobalBatches.next

    def recording_next(self):
        micro, n_total = draw(self)
        shares.append(n_total / (self.cfg.batch_size * self.cfg.grad_accum * self.cfg.block_size))
        return micro, n_total

    monkeypatch.setattr(train_module.GlobalBatches, "next", recording_next)
    cfg = tiny_config(max_iters=6, eval_interval=6, ckpt_interval=6, loss_head=loss_head)
    summary = train(cfg, paths_in(tmp_path, tokens))

    n, d, vocab = summary["params"], TINY["n_embd"], GPTConfig().vocab_size
    full = 6 * n + 12 * TINY["n_layer"] * d * TINY["block_size"]  # 6N + 12·L·H·Q·T, H·Q = n_embd
    head = 6 * vocab * d  # the projection's part of 6N (wte, tied to lm_head)
    assert len(shares) == 6 and all(0.1 < s < 0.9 for s in shares), shares  # a real ~half mask
    mfu = _tsv(tmp_path / "live/plots/metrics/mfu.tsv")
    tok_s = _tsv(tmp_path / "live/plots/metrics/tokens_per_sec.tsv")
    assert sorted(mfu) == list(range(1, 7))
    for step, share in enumerate(shares, start=1):
        counted_share = share if loss_head == "gathered" else 1.0
        # the factor below the full formula: 1 - (1 - share)·head / full, about 0.5 at this size
        factor = 1 - (1 - counted_share) * head / full
        assert mfu[step] == pytest.approx(factor * full * tok_s[step] / peak, rel=1e-6)
        assert (factor < 0.8) == (loss_head == "gathered")
    timed = shares[1:]  # the first interval (compilation, warm-up) is not in the summary's speed
    counted_share = sum(timed) / len(timed) if loss_head == "gathered" else 1.0
    expected = (full - (1 - counted_share) * head) * summary["tokens_per_sec"] / peak
    # metrics.json rounds tokens/s to 0.1 (a slow, loaded machine logs a few hundred) and MFU to 1e-4
    assert summary["mfu"] == pytest.approx(expected, rel=0.06 / summary["tokens_per_sec"] + 1e-5, abs=6e-5)


# ---------------------------------------------------------------- a local init_from folder


def _local_start(path: Path, seed: int = 3, n_layer: int = TINY["n_layer"]) -> Path:
    """A Hugging Face GPT-2 folder (our export) of the tiny shape, to start a run from."""
    torch.manual_seed(seed)
    shape = dict(n_layer=n_layer, n_head=TINY["n_head"], n_embd=TINY["n_embd"])
    hfexport.export_hf(GPT(GPTConfig(block_size=TINY["block_size"], **shape)), path)
    return path


def test_fingerprint_follows_the_files_of_a_local_init_from(tmp_path: Path) -> None:
    """init_from is only a path: the fingerprint hashed the string, so after the weights in that
    folder changed an unfinished run still resumed as "same config, data and code"."""
    start = _local_start(tmp_path / "start")
    cfg = tiny_config(init_from=str(start))
    first = cfg.fingerprint(data_digest(tmp_path))
    assert cfg.fingerprint(data_digest(tmp_path)) == first  # nothing changed
    _local_start(start, seed=4)  # other weights, same path and shape
    assert cfg.fingerprint(data_digest(tmp_path)) != first
    # A folder that is gone or not a model does not break the fingerprint (loading it says why).
    assert tiny_config(init_from=str(tmp_path / "gone")).fingerprint(data_digest(tmp_path)) != first


def test_an_unfinished_run_from_a_local_folder_is_not_resumed_after_its_weights_change(
    tokens: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = paths_in(tmp_path, tokens)
    start = _local_start(tmp_path / "start")
    cfg = tiny_config(init_from=str(start), max_iters=4, ckpt_interval=2, eval_interval=4)

    class Stop(Exception):
        pass

    def run() -> list[int]:
        seen: list[int] = []

        def on_step(step: int) -> None:
            seen.append(step)
            if step == 3:
                raise Stop

        with pytest.raises(Stop):
            train(cfg, paths, on_step=on_step)
        return seen

    assert run() == [1, 2, 3]
    assert run() == [3]  # same folder: resumed after the step-2 checkpoint
    _local_start(start, seed=4)
    capsys.readouterr()
    assert run() == [1, 2, 3]  # other weights there: a fresh run
    assert "the code, the data or the files in init_from changed" in capsys.readouterr().err


def test_a_pretrained_start_says_the_profiles_shape_is_not_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline import device
    from pipeline.trainsetup import Runtime, fresh_model

    start = _local_start(tmp_path / "start", n_layer=1)
    rt = Runtime(torch.device("cpu"), torch.float32, device.DistInfo())
    capsys.readouterr()
    model = fresh_model(tiny_config(init_from=str(start)), rt)
    assert model.config.n_layer == 1
    err = capsys.readouterr().err
    assert (
        f"train: model shape from {start}: n_layer 1, n_head {TINY['n_head']}, n_embd {TINY['n_embd']} "
        "(the profile's n_layer/n_head/n_embd are not used)\n"
    ) in err
    fresh_model(tiny_config(init_from=str(start), n_layer=1), rt)
    assert "model shape from" not in capsys.readouterr().err


def test_a_file_system_without_locks_trains_unlocked_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flock fails with ENOSYS/ENOLCK on some mounts (Lustre noflock, FUSE): training ran there
    before the run lock existed and must still run; other errors are not swallowed."""
    import errno

    from pipeline import runlock

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(runlock.fcntl, "flock", no_locks)
    said: list[str] = []
    ran = False
    with runlock.exclusive_run(tmp_path / "run.lock", warn=said.append):
        ran = True
    assert ran and said == [
        f"{tmp_path} has no file locks (Function not implemented): a second run there is not refused"
    ]

    def broken(fd: int, op: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(runlock.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"), runlock.exclusive_run(tmp_path / "run.lock"):
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensors_are_reused_not_faulted_in_again() -> None:
    """glibc maps every block over 32 MB on its own and unmaps it when freed, so each CPU step's
    vocabulary-sized tensors were fresh pages to fault in and zero: 40% of the default run was
    system time. keep_freed_memory (the train and evaluate stages) keeps them for reuse."""
    import subprocess

    script = (
        "import resource, sys, torch\n"
        "from pipeline.device import keep_freed_memory\n"
        "if sys.argv[1] == 'on': assert keep_freed_memory()\n"
        "def step():\n"
        "    x = torch.ones(64 << 20, dtype=torch.uint8)  # a step's worth: made, used, freed\n"
        "    del x\n"
        "for _ in range(100 if sys.argv[1] == 'on' else 10): step()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(30): step()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, cwd=ROOT)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    # Page faults of 30 steps after 100 to warm up: without it every step faults its pages in again
    # (16,384 of 4 KiB, or a few dozen where transparent huge pages back the tensor); with it, next
    # to none. The warm-up is needed because glibc's heap reaches its steady state only once the
    # small chunks freed beside each tensor (held in tcache, so not yet merged) let the big ones
    # coalesce: 6-10 steps here, more on the CI machine, where counting from step 10 failed. Without
    # it (off) no heap state carries a tensor's pages from one step to the next (64 MiB is above
    # glibc's largest mmap threshold, 32 MiB: each is mapped and unmapped whole), so every step faults
    # alike from the first: 10 steps of warm-up there, as its 100 only cost ~6 CPU s of fresh pages.
    off = faults("off")
    on = faults("on")
    assert off >= 30, off
    assert on < off / 10, (on, off)
