"""The training loop: masked-loss fine-tuning of the GPT on token shards, one GPU, CPU or several GPUs.

`train(cfg, paths)` is the whole run; each piece does one job:
    TrainConfig      the knobs (params.yaml `train` + the chosen profile), validated (pipeline/trainconfig.py)
    setup_runtime    device, autocast dtype, TF32, DDP process group
    init_model       scratch | gpt2* (Hub) | local HF dir | resume, plus automatic resume
    GlobalBatches    the data sampler: one seeded draw per optimizer step, split across ranks
    train_step       gradient accumulation, token-weighted masked loss, clipping, AdamW step
    evaluate         validation loss over bot tokens
    RunLogger        dvclive metrics (rank 0) and a tqdm bar (pipeline/runlog.py)
    finish           model/ckpt (safetensors) and model/metrics.json (the export stage makes model/hf)

Loss weighting. Each micro-batch's loss is the mean over its bot tokens; the step's loss is the
sum over every bot token of the global batch divided by their count, so every bot token weighs
the same however the batch is split into micro-batches and processes. This is what makes one
process with grad_accum=A and A processes with grad_accum=1 follow the same trajectory.

Data. Every rank draws the same global batch (B * grad_accum windows) from the same seeded
numpy generator and keeps its own rows, so the sample stream depends on the seed alone and the
sampler's state is one small JSON object in the checkpoint.

Resume. A run writes model/run/step-N/ (weights + state.pt) every ckpt_interval steps. With
init_from=resume it continues from the newest one (or fails clearly). Without it, an unfinished
run whose fingerprint (config, data meta.json, and the code that decides the weights: see
trainconfig.FINGERPRINT_CODE) matches the current one is resumed automatically, so a killed
`dvc repro` picks up where it stopped (a run that reached max_iters but died before writing
model/ckpt is only finalised: no step runs again); any other leftover run is discarded, with a
warning naming what changed when it was unfinished. Resumed runs end bitwise equal to uninterrupted
ones on CPU: the optimizer moments, step, sampler state and RNG states are restored, and dropout is
reseeded from (seed, step, micro-batch place in the global batch), so the process count does not
change the trajectory either.

One run at a time: the main process holds `<run_dir>.lock` (pipeline/runlock.py) while it trains.

Extending a run (init_from=resume, a larger max_iters) stretches its cosine schedule to the new
max_iters: the learning rate continues from lr_at(step) of the longer schedule (for a finished run, a
jump from min_lr back up; no new warmup), which the run logs when it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from pipeline import atomic, attention, checkpoint, device, hf
from pipeline.lr import lr_at
from pipeline.model import GPT, GPTConfig, masked_token_losses
from pipeline.optim import make_optimizer
from pipeline.runlock import RunLocked, exclusive_run
from pipeline.runlog import RunLogger, snapshot_plots
from pipeline.tokenizer import PADDED_VOCAB
from pipeline.trainconfig import NON_TRAJECTORY_KEYS, TrainConfig, TrainPaths

# ---------------------------------------------------------------- runtime


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype
    dist: device.DistInfo

    def autocast(self) -> contextlib.AbstractContextManager:
        return device.autocast(self.device, self.dtype)

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(f"train: {msg}", file=sys.stderr)


def setup_runtime(cfg: TrainConfig) -> Runtime:
    info = device.dist_info_from_env()
    if cfg.grad_accum % info.world_size:  # before anything is loaded or discarded
        raise TrainSetupError(
            f"params.yaml train: grad_accum {cfg.grad_accum} must be a multiple of the "
            f"{info.world_size} processes (each process runs grad_accum / processes micro-batches)"
        )
    try:
        dev = device.resolve_device(cfg.device, info)
    except (ValueError, RuntimeError) as e:  # e.g. cuda asked for on a machine without it
        raise TrainSetupError(f"params.yaml train.device: {e}") from None
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)  # DDP: this process's GPU becomes the default for NCCL and allocations
    device.init_process_group(info, dev)
    device.set_tf32(cfg.tf32)
    return Runtime(device=dev, dtype=device.resolve_dtype(cfg.dtype, dev), dist=info)


# ---------------------------------------------------------------- model


@dataclass
class Start:
    """Where a run starts: its model (on CPU) and, when resuming, the saved state and its directory."""

    model: GPT
    state: dict[str, Any] | None = None
    source: Path | None = None


class TrainSetupError(ValueError):
    """The run cannot start as asked (nothing to resume, a run of other settings); one line for the user."""


# What `init_from: resume` may change about a run: extend it (max_iters), and say "resume".
EXTENSION_KEYS = NON_TRAJECTORY_KEYS | {"max_iters", "init_from"}


def resume_mismatch(
    cfg: TrainConfig, state: dict[str, Any], ignore: frozenset[str] | set[str] = EXTENSION_KEYS
) -> dict[str, tuple[Any, Any]]:
    """Settings (other than `ignore`: max_iters and logging) in which the saved run differs from
    `cfg`: name -> (the run's value, the asked value). Empty: `cfg` extends that run."""
    saved = json.loads(state.get("config") or "{}")
    current = dataclasses.asdict(cfg)
    return {k: (saved[k], v) for k, v in current.items() if k not in ignore and k in saved and saved[k] != v}


def discard_notice(cfg: TrainConfig, state: dict[str, Any], ckpt: Path) -> str:
    """The line logged before a leftover run of another fingerprint is deleted: its step, why it
    cannot be resumed automatically, and (when it was unfinished) how to continue it instead."""
    differ = resume_mismatch(cfg, state, ignore=NON_TRAJECTORY_KEYS)
    why = (
        ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in sorted(differ.items()))
        if differ
        else "the code, the data or the files in init_from changed"
        if cfg.init_from_folder  # its files are in the fingerprint too
        else "the code or the data changed"
    )
    step = int(state["step"])
    planned = json.loads(state.get("config") or "{}").get("max_iters")
    if isinstance(planned, int) and step >= planned:  # finished: its model is the previous model/ckpt
        return f"replacing the finished run at {ckpt} (step {step}): {why}"
    if set(differ) <= {"max_iters", "init_from"}:
        how = "`init_from: resume` continues it instead"
    else:
        how = "to continue it instead, set those back and `init_from: resume`"
    return f"warning: discarding the unfinished run at {ckpt} (step {step} of {planned}): {why}; {how}"


def init_model(cfg: TrainConfig, paths: TrainPaths, rt: Runtime, fingerprint: str) -> Start:
    """Build the model for `cfg.init_from`, or pick up an unfinished run with the same fingerprint."""
    latest = checkpoint.latest_run_checkpoint(paths.run_dir)
    if cfg.init_from == "resume":
        if latest is None:
            raise TrainSetupError(f"init_from=resume: no checkpoint under {paths.run_dir} to resume from")
        state = _load_state(latest)
        # model/run holds the newest run only: after a run of other settings (a `dvc exp run`, say)
        # it is that run's state, and extending it would train something nobody asked for.
        differ = resume_mismatch(cfg, state)
        if differ:
            shown = ", ".join(f"{k} {a!r} (asked: {b!r})" for k, (a, b) in sorted(differ.items()))
            raise TrainSetupError(
                f"init_from=resume: the run under {paths.run_dir} ({latest.name}) was made with other "
                f"settings: {shown}; there is no run of these settings to extend (train it with "
                "init_from: scratch, or ask for the run's settings)"
            )
        saved = json.loads(state["config"])
        # An extension that died between its final checkpoint and finish(): finalise it. (With its
        # model/ckpt written, the run is done: asking to extend it without more steps is refused.)
        died_finishing = not (paths.ckpt_dir / checkpoint.WEIGHTS_FILE).exists()
        if state["step"] == cfg.max_iters == saved["max_iters"] and died_finishing:
            rt.log(f"the run at {latest} reached max_iters but has no model/ckpt yet: finalising it")
            return _resume(cfg, latest, state, rt)
        if state["step"] >= cfg.max_iters:
            raise TrainSetupError(
                f"init_from=resume: the run under {paths.run_dir} is at step {state['step']} already; "
                f"set max_iters above {state['step']} to extend it"
            )
        same = dataclasses.replace(cfg, max_iters=saved["max_iters"], init_from=saved["init_from"])
        if same.fingerprint(paths.data_dir) != state["fingerprint"]:
            rt.log("warning: the data or the code changed since this run's checkpoint; extending it anyway")
        rt.log(extension_notice(cfg, int(state["step"]), saved["max_iters"]))
        return _resume(cfg, latest, state, rt)
    if latest is not None:
        try:
            state = _load_state(latest)
        except UnreadableState as e:  # nothing could resume it: start afresh (it is discarded below)
            rt.log(f"warning: {e.problem}; starting a fresh run instead")
            state = None
        # Same fingerprint, so the same max_iters: step == max_iters is a run that died between its
        # final checkpoint and finish(); resuming it runs no step and writes its outputs.
        if state is not None and state["fingerprint"] == fingerprint and state["step"] <= cfg.max_iters:
            if state["step"] < cfg.max_iters:
                rt.log(f"resuming the unfinished run at {latest} (same config, data and code)")
            else:
                rt.log(f"the run at {latest} reached max_iters but has no model/ckpt yet: finalising it")
            return _resume(cfg, latest, state, rt)
        if state is not None:
            rt.log(discard_notice(cfg, state, latest))
        del state
    model = fresh_model(cfg, rt)
    # A fresh run: leftovers of another run must not be resumed later by mistake. Removed only once
    # the new model exists, so a typo in init_from (or no network) does not cost the old run.
    device.barrier(rt.dist)
    if rt.dist.is_main and paths.run_dir.exists():
        shutil.rmtree(paths.run_dir)
    device.barrier(rt.dist)
    return Start(model)


def extension_notice(cfg: TrainConfig, step: int, planned: int) -> str:
    """What extending a run at `step` (planned to `planned` steps) to cfg.max_iters does to its schedule."""
    if cfg.max_iters == planned:  # an unfinished run continued: its schedule is unchanged
        return f"continuing the run from step {step} to {cfg.max_iters}"
    kw = dict(lr=cfg.lr, min_lr=cfg.min_lr, warmup_iters=cfg.warmup_iters)
    before = lr_at(step - 1, **kw, decay_iters=planned)
    after = lr_at(step, **kw, decay_iters=cfg.max_iters)
    return (
        f"extending the run from step {step} to {cfg.max_iters}: its cosine schedule is stretched to "
        f"{cfg.max_iters} steps, lr {before:.3g} -> {after:.3g} (no new warmup)"
    )


def fresh_model(cfg: TrainConfig, rt: Runtime) -> GPT:
    """The model a new run starts from: seeded random weights, or GPT-2 weights (Hub or local dir)."""
    torch.manual_seed(cfg.seed)
    if cfg.init_from == "scratch":
        mcfg = GPTConfig(
            block_size=cfg.block_size,
            vocab_size=PADDED_VOCAB,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            dropout=cfg.dropout,
        )
        return GPT(mcfg)
    rt.log(f"initialising from Hugging Face GPT-2 weights: {cfg.init_from}")
    try:
        model = hf.load_pretrained(cfg.init_from, dropout=cfg.dropout, log=rt.log)
    except (OSError, ValueError, RuntimeError) as e:  # missing files, not GPT-2, unreadable weights
        raise TrainSetupError(f"params.yaml train.init_from: {e}") from None
    shape = model.config
    if (shape.n_layer, shape.n_head, shape.n_embd) != (cfg.n_layer, cfg.n_head, cfg.n_embd):
        rt.log(  # a pretrained model brings its own shape: say so where the profile asks for another
            f"model shape from {cfg.init_from}: n_layer {shape.n_layer}, n_head {shape.n_head}, "
            f"n_embd {shape.n_embd} (the profile's n_layer/n_head/n_embd are not used)"
        )
    if cfg.block_size > model.config.block_size:
        raise TrainSetupError(
            f"params.yaml train block_size {cfg.block_size} exceeds the context of {cfg.init_from} "
            f"({model.config.block_size} tokens)"
        )
    if cfg.block_size < model.config.block_size:
        rt.log(f"cropping the context from {model.config.block_size} to block_size {cfg.block_size} tokens")
        model.crop_block_size(cfg.block_size)
    return model


def _load_state(ckpt: Path) -> dict[str, Any]:
    """A run checkpoint's state.pt, or one line saying why it cannot be read."""
    try:
        state = checkpoint.load_state(ckpt)
    except Exception as e:  # truncated, not a torch file, a pickle weights_only refuses
        raise UnreadableState(
            ckpt, f"cannot read this run's training state ({type(e).__name__}: {_first_sentence(e)})"
        ) from None
    missing = sorted(STATE_KEYS - set(state)) if isinstance(state, dict) else ["(not a mapping)"]
    if missing:
        raise UnreadableState(ckpt, f"not a training state of this code (missing {missing})")
    return state


class UnreadableState(TrainSetupError):
    """A run checkpoint whose state.pt cannot be read: nothing can resume it."""

    def __init__(self, ckpt: Path, problem: str) -> None:
        self.problem = f"{ckpt / checkpoint.STATE_FILE}: {problem}"
        super().__init__(f"{self.problem}; delete {ckpt.parent} to start afresh")


def _first_sentence(e: BaseException) -> str:
    """The gist of a library's error message (torch's run to several sentences and lines)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text.split(". ")[0]


def _resume(cfg: TrainConfig, ckpt: Path, state: dict[str, Any], rt: Runtime) -> Start:
    try:
        model = checkpoint.load_model(ckpt, "cpu", dropout=cfg.dropout).train()
    except (OSError, ValueError, RuntimeError) as e:
        raise TrainSetupError(
            f"{ckpt}: cannot load the run's weights ({_first_sentence(e)}); delete {ckpt.parent} to start afresh"
        ) from None
    if cfg.block_size > model.config.block_size:
        raise TrainSetupError(
            f"params.yaml train block_size {cfg.block_size} exceeds the checkpoint's {model.config.block_size}"
        )
    return Start(model, state, ckpt)


def train_flops_per_token(
    model_cfg: GPTConfig, n_params: int, seq_len: int, head_share: float = 1.0
) -> float:
    """Training FLOPs per token at window `seq_len` (PaLM appendix B: 6N + 12·L·H·Q·T), with the
    vocabulary projection run at `head_share` of the positions.

    6N counts the projection at every position (its weight is wte's, tied), which is the work of the
    full loss head. The gathered head (MaskedLM(gather=True)) projects only the loss positions, so
    its share is theirs (about half of a chat window): counting it in full would report FLOPs never
    run as utilisation (x1.07 at 350M, x1.16 at 124M with half the positions).
    """
    full = 6 * n_params + 12 * model_cfg.n_layer * model_cfg.n_head * model_cfg.head_dim * seq_len
    return full - (1.0 - head_share) * lm_head_flops_per_token(model_cfg)


def lm_head_flops_per_token(model_cfg: GPTConfig) -> float:
    """The vocabulary projection's part of train_flops_per_token at one position: forward 2·V·C,
    backward 4·V·C (gradients of its input and of its weight)."""
    return 6 * model_cfg.vocab_size * model_cfg.n_embd


# ---------------------------------------------------------------- data


def check_data(data_dir: Path, rt: Runtime) -> None:
    """Refuse, before any work, token shards that cannot train a run; warn when validation is empty.

    The shards must match their meta.json (sha256 of every file, counts, special ids), the train
    split must hold at least one loss (bot) token, and an empty val split means no val loss.
    """
    from pipeline.shards import TokenShards, verify_variant

    for split in ("train", "val"):
        if not (data_dir / split).is_dir():
            raise TrainSetupError(
                f"{data_dir / split}: no token shards (is params.yaml train.variant a variant "
                "`dvc repro tokenize` has written?)"
            )
    try:
        meta = verify_variant(data_dir) if (data_dir / "meta.json").exists() else None
        train_split, val_split = TokenShards(data_dir / "train"), TokenShards(data_dir / "val")
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise TrainSetupError(f"{data_dir}: broken token shards: {e} (re-run `dvc repro tokenize`)") from None
    if train_split.n_conversations == 0:
        raise TrainSetupError(f"{data_dir / 'train'}: the train split holds no conversation")
    # Verified shards are the bytes meta.json counted: its loss-token count stands for a scan.
    if meta is not None:
        has_loss = meta["splits"]["train"]["n_loss_tokens"] > 0
    else:
        has_loss = any(np.any(shard.mask) for shard in train_split.shards)
    if not has_loss:
        raise TrainSetupError(f"{data_dir / 'train'}: no loss token (bot turn) in the train split")
    if val_split.n_conversations == 0:
        rt.log(f"warning: {data_dir / 'val'} is empty: no validation loss (val_loss is null)")


class GlobalBatches:
    """One seeded draw of the global batch per optimizer step; each rank keeps its micro-batches."""

    def __init__(self, split_dir: Path, cfg: TrainConfig, rt: Runtime, seed: int) -> None:
        from pipeline.shards import TokenShards

        self.shards = TokenShards(split_dir)
        self.cfg = cfg
        self.rt = rt
        self.rng = np.random.default_rng(seed)
        self.local_accum = cfg.grad_accum // rt.dist.world_size

    def next(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], float]:
        """This rank's micro-batches (x, y, mask on the device) and the global count of loss tokens."""
        b = self.cfg.batch_size
        x, y, m = self.shards.sample_batch(
            b * self.cfg.grad_accum, self.cfg.block_size, self.rng, align=self.cfg.window_align
        )
        n_total = float(np.asarray(m, dtype=np.int64).sum())
        first = self.rt.dist.rank * self.local_accum * b
        micro = [
            tuple(to_device(a[first + i * b : first + (i + 1) * b], self.rt.device) for a in (x, y, m))
            for i in range(self.local_accum)
        ]
        return micro, n_total

    def dropout_seeds(self, step: int) -> list[int]:
        """A seed per micro-batch of this rank, from its place in the step's global batch: the
        noise a micro-batch gets depends on (seed, step, place) only, so any number of processes
        follows the one-process run, a resume too, with another process count as well."""
        first = self.cfg.seed + step * self.cfg.grad_accum + self.rt.dist.rank * self.local_accum
        return [first + i for i in range(self.local_accum)]

    def state(self) -> str:
        return json.dumps(self.rng.bit_generator.state)

    def restore(self, state: str) -> None:
        self.rng.bit_generator.state = json.loads(state)


def to_device(a: np.ndarray, dev: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a).astype(np.int64, copy=False))
    if dev.type == "cuda":
        return t.pin_memory().to(dev, non_blocking=True)
    return t


# ---------------------------------------------------------------- steps


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    micro: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    n_total: float,
    lr: float,
    cfg: TrainConfig,
    rt: Runtime,
    seeds: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step; returns this rank's share of the step's loss and the gradient norm.

    `seeds[i]` seeds the dropout noise of micro-batch i (GlobalBatches.dropout_seeds)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    ddp = isinstance(model, DDP)
    # DDP averages gradients over processes; scaling by world size makes that a sum over bot tokens.
    # A global batch without a single bot token has no loss: its gradient is zero (weight decay and
    # the schedule still advance, so the step count and RNG streams stay those of any other step).
    n_total = max(n_total, 1.0)
    weight = rt.dist.world_size / n_total
    loss_share = torch.zeros((), device=rt.device)
    for i, (x, y, m) in enumerate(micro):
        last = i == len(micro) - 1
        sync = contextlib.nullcontext() if (not ddp or last) else model.no_sync()
        if seeds is not None:
            torch.manual_seed(seeds[i])
        with sync:
            with rt.autocast():
                loss = model(x, y, m)
            n_tokens = m.sum()
            scaler.scale(loss * n_tokens * weight).backward()
        loss_share += loss.detach().float() * n_tokens / n_total
    grad_norm = None
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss_share, grad_norm


@torch.no_grad()
def evaluate(model: nn.Module, split_dir: Path, cfg: TrainConfig, rt: Runtime) -> float:
    """Mean cross-entropy over the bot tokens of `eval_iters` validation batches, their windows
    spread evenly over the split (TokenShards.iter_eval_batches).

    The batches are split across processes and the sums reduced, so every rank returns the same.
    """
    from pipeline.shards import TokenShards

    was_training = model.training
    model.eval()
    sums = torch.zeros(2, device=rt.device, dtype=torch.float64)  # (loss * tokens, tokens)
    batches = TokenShards(split_dir).iter_eval_batches(cfg.batch_size, cfg.block_size, cfg.eval_iters)
    for i, (x, y, m) in enumerate(batches):
        if i % rt.dist.world_size != rt.dist.rank:
            continue
        xt, yt, mt = (to_device(a, rt.device) for a in (x, y, m))
        with rt.autocast():
            loss = model(xt, yt, mt)
        n = mt.sum()
        sums += torch.stack([loss.double() * n, n.double()])
    if rt.dist.enabled:
        dist.all_reduce(sums)
    model.train(was_training)
    return float(sums[0] / sums[1]) if sums[1] > 0 else float("nan")


# ---------------------------------------------------------------- state


@dataclass
class Progress:
    """What the loop tracks and a checkpoint must carry to continue exactly."""

    step: int = 0
    best_val_loss: float = float("inf")
    initial_val_loss: float | None = None
    last_val_loss: float | None = None
    recent_train_losses: list[float] = field(default_factory=list)
    train_tokens: int = 0  # tokens of timed steps (the first step of a process compiles, so it is not)
    train_seconds: float = 0.0
    # Wall time of the earlier processes of this run, each up to its last checkpoint (work lost to
    # a crash after it is not counted): a resumed or only-finalised run reports the whole run's time.
    earlier_wall_seconds: float = 0.0
    # Where the run's weights first came from (scratch, gpt2*, a directory): an extension
    # (init_from=resume) keeps it, so metrics.json and the model card name the real start.
    origin: str | None = None


# What a state.pt must hold for restore_state to continue the run. make_state also writes
# train_tokens, train_seconds, wall_seconds and origin; a state without them (older code) still resumes.
STATE_KEYS = frozenset(
    {
        "step",
        "best_val_loss",
        "initial_val_loss",
        "last_val_loss",
        "recent_train_losses",
        "optimizer",
        "scaler",
        "torch_rng",
        "cuda_rng",
        "data_rng",
        "fingerprint",
        "config",
    }
)


def make_state(
    progress: Progress,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: GlobalBatches,
    fingerprint: str,
    cfg: TrainConfig,
    wall_seconds: float = 0.0,
) -> dict[str, Any]:
    """The training state as plain data (loads with torch.load(weights_only=True)). `wall_seconds`:
    the run's wall time so far, all its processes."""
    return {
        "step": progress.step,
        "best_val_loss": progress.best_val_loss,
        "initial_val_loss": progress.initial_val_loss,
        "last_val_loss": progress.last_val_loss,
        "recent_train_losses": list(progress.recent_train_losses),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data_rng": batches.state(),
        "fingerprint": fingerprint,
        "config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
        "train_tokens": progress.train_tokens,
        "train_seconds": progress.train_seconds,
        "wall_seconds": wall_seconds,
        "origin": progress.origin or cfg.init_from,
    }


def restore_state(
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: GlobalBatches,
) -> Progress:
    optimizer.load_state_dict(state["optimizer"])
    # The loss scaler exists only under float16 autocast, and `dtype` may resolve differently on
    # another machine (bfloat16 -> float16 on a GPU without bf16; float16 -> float32 on CPU): a
    # disabled scaler saved {}, which an enabled one refuses. Without a saved scale, start afresh.
    if state["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if (
        state["cuda_rng"]
        and torch.cuda.is_available()
        and len(state["cuda_rng"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    batches.restore(state["data_rng"])
    return Progress(
        step=int(state["step"]),
        best_val_loss=float(state["best_val_loss"]),
        initial_val_loss=state["initial_val_loss"],
        last_val_loss=state["last_val_loss"],
        recent_train_losses=list(state["recent_train_losses"]),
        train_tokens=int(state.get("train_tokens", 0)),
        train_seconds=float(state.get("train_seconds", 0.0)),
        earlier_wall_seconds=float(state.get("wall_seconds", 0.0)),
        origin=state.get("origin") or json.loads(state["config"]).get("init_from"),
    )


# ---------------------------------------------------------------- the run


class MaskedLM(nn.Module):
    """The training objective around a GPT: mean cross-entropy over the positions where the mask is 1.

    With `gather`, the vocabulary projection runs only at those positions (about half of a chat
    window are bot tokens), which halves the dominant cost of a small model on CPU. It makes shapes
    data-dependent: torch.compile then compiles the trunk as one graph and the head as a second,
    dynamic-shape one (a host sync per micro-batch). Without it the GPT's own static-shape masked
    loss runs, as nanoGPT's does. Both give the same loss and gradients (tested, eager and compiled).
    """

    def __init__(self, gpt: GPT, gather: bool) -> None:
        super().__init__()
        self.gpt = gpt
        self.gather = gather

    def forward(self, idx: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.gather:
            return self.gpt(idx, targets, mask)[1]
        x = self.gpt.hidden(idx)
        losses = masked_token_losses(self.gpt, x, targets, mask)
        if losses.numel() == 0:
            return x.sum() * 0.0  # no loss token in this micro-batch: zero loss, graph intact
        return losses.mean()


def wrap_model(model: GPT, cfg: TrainConfig, rt: Runtime) -> tuple[nn.Module, nn.Module]:
    """(loss module to train, loss module to evaluate): compiled on request, DDP-wrapped under torchrun."""
    model = model.to(rt.device)
    loss_model: nn.Module = MaskedLM(model, gather=cfg.gather_loss)
    if cfg.compile:
        loss_model = torch.compile(loss_model)
    evaluator = loss_model
    if rt.dist.enabled:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        loss_model = DDP(loss_model, device_ids=ids)
    return loss_model, evaluator


def train(
    cfg: TrainConfig,
    paths: TrainPaths,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train per `cfg` on `paths.data_dir`; write checkpoints, metrics and exports; return the summary.

    `on_step(step)` runs after every optimizer step (after its checkpoint, if any), on every rank.
    """
    wall_start = time.perf_counter()
    rt = setup_runtime(cfg)
    try:
        with contextlib.ExitStack() as held:
            if rt.dist.is_main:  # the only writer of the run folder holds its lock for the whole run
                try:
                    lock = paths.run_dir.with_name(paths.run_dir.name + ".lock")
                    held.enter_context(exclusive_run(lock, warn=lambda m: rt.log(f"warning: {m}")))
                except RunLocked as e:
                    raise TrainSetupError(str(e)) from None
            run = Run.start(cfg, paths, rt, wall_start)
            run.loop(on_step)
            summary = run.summary()
            if rt.dist.is_main:
                finish(run.raw, paths, summary)
            device.barrier(rt.dist)
            return summary
    finally:
        device.destroy_process_group()


@dataclass
class Run:
    """One training run's live objects; `loop` advances it to max_iters."""

    cfg: TrainConfig
    paths: TrainPaths
    rt: Runtime
    fingerprint: str
    raw: GPT  # the plain model (weights to save)
    model: nn.Module  # what trains: maybe compiled, maybe DDP-wrapped
    eval_model: nn.Module  # maybe compiled, never DDP-wrapped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    batches: GlobalBatches
    progress: Progress
    logger: RunLogger
    n_params: int
    peak: float | None
    wall_start: float  # time.perf_counter() when this process began the run
    # Tokens and loss positions of this process's timed steps (those in progress.train_tokens): the
    # share of positions the gathered head projects, for the summary's MFU. Not saved: a resumed
    # run measures its share afresh (a property of the data, not of the step).
    timed_tokens: int = 0
    timed_loss_tokens: float = 0.0
    # A finished run finalised under other eval settings (not in the fingerprint): its last val loss
    # was measured by those, so it is measured again before the summary reports it.
    remeasure_val: bool = False

    @classmethod
    def start(cls, cfg: TrainConfig, paths: TrainPaths, rt: Runtime, wall_start: float) -> Run:
        check_data(paths.data_dir, rt)
        for warning in cfg.warnings():
            rt.log(f"warning: {warning}")
        fingerprint = cfg.fingerprint(paths.data_dir)
        start = init_model(cfg, paths, rt, fingerprint)
        raw = start.model.to(rt.device).train()
        n_params = raw.num_params()
        rt.log(
            f"{n_params / 1e6:.2f}M parameters on {rt.device} ({rt.dtype}), {rt.dist.world_size} process(es)"
        )
        if rt.device.type == "cuda":  # before compiling: torch.compile bakes the kernel in when it traces
            shape = raw.config
            choice = attention.configure(
                cfg.attention,
                rt.device,
                batch=cfg.batch_size,
                heads=shape.n_head,
                block=cfg.block_size,
                head_dim=shape.head_dim,
                dtype=rt.dtype,
            )
            rt.log(choice.describe())
        model, eval_model = wrap_model(raw, cfg, rt)
        optimizer = make_optimizer(
            raw,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            betas=(cfg.beta1, cfg.beta2),
            device_type=rt.device.type,
        )
        scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.dtype == torch.float16)
        batches = GlobalBatches(paths.data_dir / "train", cfg, rt, cfg.seed)
        progress = Progress(origin=cfg.init_from)
        if start.state is not None:
            progress = restore_state(start.state, optimizer, scaler, batches)
            rt.log(f"resumed at step {progress.step} from {start.source}")
        logger = RunLogger(
            paths.live_dir,
            rt.dist.is_main,
            cfg.max_iters,
            progress.step,
            resume=start.state is not None,
            history=start.source if start.state is not None else None,
        )
        return cls(
            cfg=cfg,
            paths=paths,
            rt=rt,
            fingerprint=fingerprint,
            raw=raw,
            model=model,
            eval_model=eval_model,
            optimizer=optimizer,
            scaler=scaler,
            batches=batches,
            progress=progress,
            logger=logger,
            n_params=n_params,
            peak=device.peak_flops(rt.device),
            wall_start=wall_start,
            remeasure_val=start.state is not None
            and progress.step >= cfg.max_iters
            and json.loads(start.state.get("config") or "{}").get("eval_iters") != cfg.eval_iters,
        )

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.cfg.block_size

    def loop(self, on_step: Callable[[int], None] | None = None) -> None:
        cfg, progress = self.cfg, self.progress
        if self.remeasure_val:
            progress.last_val_loss = evaluate(self.eval_model, self.paths.data_dir / "val", cfg, self.rt)
            self.rt.log(
                f"val loss measured again with eval_iters {cfg.eval_iters}: {progress.last_val_loss:.4f} "
                "(the run's logged history keeps the values of its own eval_iters)"
            )
        if progress.step == 0:
            progress.initial_val_loss = progress.last_val_loss = self.evaluate()
            self.logger.log(0, {"val/loss": progress.initial_val_loss})
            self.rt.log(f"step 0: val loss {progress.initial_val_loss:.4f}")
        timer = Interval()
        while progress.step < cfg.max_iters:
            metrics = self.step(timer)
            done = progress.step == cfg.max_iters
            if progress.step % cfg.eval_interval == 0 or done:
                metrics["val/loss"] = self.evaluate()
                train_loss = metrics.get("train/loss", float("nan"))
                self.rt.log(
                    f"step {progress.step}: train loss {train_loss:.4f}, val loss {metrics['val/loss']:.4f}"
                )
            self.logger.log(progress.step, metrics)
            if progress.step % cfg.ckpt_interval == 0 or done:
                self.save_run_checkpoint()
            if on_step is not None:
                on_step(progress.step)
        self.logger.close()

    def step(self, timer: Interval) -> dict[str, float]:
        """One optimizer step; the metrics to log at this step (empty between log_interval steps)."""
        cfg, rt, progress = self.cfg, self.rt, self.progress
        step = progress.step
        lr = lr_at(
            step, lr=cfg.lr, min_lr=cfg.min_lr, warmup_iters=cfg.warmup_iters, decay_iters=cfg.max_iters
        )
        t0 = time.perf_counter()
        micro, n_total = self.batches.next()
        loss_share, grad_norm = train_step(
            self.model,
            self.optimizer,
            self.scaler,
            micro,
            n_total,
            lr,
            cfg,
            rt,
            self.batches.dropout_seeds(step),
        )
        progress.step += 1
        if progress.step % cfg.log_interval and progress.step != cfg.max_iters:
            # The GPU may still be busy: the sync at the next logged step charges it to this interval.
            timer.add(self.tokens_per_step, time.perf_counter() - t0, n_total)
            self.logger.advance({})
            return {}
        if rt.dist.enabled:
            dist.all_reduce(loss_share)
        metrics = {"lr": lr}
        if n_total > 0:  # no bot token in this step's batch: no loss to log (0 would be a lie)
            metrics["train/loss"] = float(loss_share)  # float() waits for the GPU
        if grad_norm is not None:
            metrics["train/grad_norm"] = float(grad_norm)
        timer.add(self.tokens_per_step, time.perf_counter() - t0, n_total)
        tok_s = timer.rate()
        if self.peak:
            flops = self.flops_per_token(timer.loss_tokens / timer.tokens)
            metrics["mfu"] = flops * tok_s / (self.peak * rt.dist.world_size)
        if timer.warm:  # the first interval of a process includes compilation and warm-up
            progress.train_tokens += timer.tokens
            progress.train_seconds += timer.seconds
            self.timed_tokens += timer.tokens
            self.timed_loss_tokens += timer.loss_tokens
        timer.reset()
        metrics["tokens_per_sec"] = tok_s
        if "train/loss" in metrics:
            progress.recent_train_losses = [*progress.recent_train_losses, metrics["train/loss"]][-10:]
        self.logger.advance({"loss": metrics["train/loss"]} if "train/loss" in metrics else {})
        return metrics

    def flops_per_token(self, loss_share: float) -> float:
        """Training FLOPs per token done by this run's loss head, at `loss_share` loss positions."""
        head_share = loss_share if self.cfg.gather_loss else 1.0
        return train_flops_per_token(self.raw.config, self.n_params, self.cfg.block_size, head_share)

    def evaluate(self) -> float:
        val = evaluate(self.eval_model, self.paths.data_dir / "val", self.cfg, self.rt)
        self.progress.last_val_loss = val
        if math.isfinite(val):
            self.progress.best_val_loss = min(self.progress.best_val_loss, val)
        return val

    def save_run_checkpoint(self) -> None:
        if self.rt.dist.is_main:
            state = make_state(
                self.progress,
                self.optimizer,
                self.scaler,
                self.batches,
                self.fingerprint,
                self.cfg,
                self.wall_seconds(),
            )
            checkpoint.save_run_checkpoint(
                self.raw,
                state,
                self.paths.run_dir,
                self.progress.step,
                extra=lambda folder: snapshot_plots(self.paths.live_dir, folder),
            )
        device.barrier(self.rt.dist)

    def wall_seconds(self) -> float:
        """The run's wall time: earlier processes (to their last checkpoint) and this one so far."""
        return self.progress.earlier_wall_seconds + time.perf_counter() - self.wall_start

    def summary(self) -> dict[str, Any]:
        flops = None  # a gathered head with no timed step in this process: no share measured, no MFU
        if self.timed_tokens or not self.cfg.gather_loss:
            flops = self.flops_per_token(self.timed_loss_tokens / max(self.timed_tokens, 1))
        return summarize(
            self.progress, self.cfg, self.rt, self.n_params, flops, self.peak, self.wall_seconds()
        )


@dataclass
class Interval:
    """Tokens, loss positions and seconds of training steps since the last log (evaluation and
    checkpoints excluded)."""

    tokens: int = 0
    seconds: float = 0.0
    warm: bool = False  # False during the first interval (compilation, warm-up)
    loss_tokens: float = 0.0  # where the gathered head projects onto the vocabulary

    def add(self, tokens: int, seconds: float, loss_tokens: float) -> None:
        self.tokens += tokens
        self.seconds += seconds
        self.loss_tokens += loss_tokens

    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    def reset(self) -> None:
        self.tokens, self.seconds, self.warm, self.loss_tokens = 0, 0.0, True, 0.0


def summarize(
    progress: Progress,
    cfg: TrainConfig,
    rt: Runtime,
    n_params: int,
    flops_per_token: float | None,
    peak: float | None,
    wall_seconds: float,
) -> dict[str, Any]:
    """model/metrics.json: final losses, speed, size. train_loss is the mean of the last 10 logged steps.
    `flops_per_token`: the work of the run's loss head (Run.flops_per_token); None: no MFU."""
    tok_s = progress.train_tokens / progress.train_seconds if progress.train_seconds > 0 else float("nan")
    losses = progress.recent_train_losses
    summary: dict[str, Any] = {
        "train_loss": _round(sum(losses) / len(losses)) if losses else None,
        "val_loss": _round(progress.last_val_loss),
        "best_val_loss": _round(progress.best_val_loss),
        "initial_val_loss": _round(progress.initial_val_loss),
        "tokens_per_sec": _round(tok_s, 1),
        "params": n_params,
        "iters": progress.step,
        "tokens_per_iter": cfg.batch_size * cfg.grad_accum * cfg.block_size,
        "wall_time_s": _round(wall_seconds, 1),
        "device": str(rt.device.type),
        "processes": rt.dist.world_size,
        "init_from": progress.origin or cfg.init_from,
    }
    if peak and flops_per_token is not None:
        summary["mfu"] = _round(flops_per_token * tok_s / (peak * rt.dist.world_size))
    return summary


def _round(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def finish(model: GPT, paths: TrainPaths, summary: dict[str, Any]) -> None:
    """The run's outputs: model/ckpt (replaced as a whole) and model/metrics.json. The transformers
    export (model/hf, pipeline.hfexport.export_run) is a stage of its own, so that a new model card or
    chat template is a re-export of seconds, never a re-training."""
    with atomic.atomic_dir(paths.ckpt_dir) as tmp:
        checkpoint.save_model(model, tmp)
    atomic.write_json(paths.metrics_file, summary)
