"""The training loop: masked-loss fine-tuning of the GPT on token shards, one GPU, CPU or several GPUs.

`train(cfg, paths)` is the whole run; each piece does one job:
    TrainConfig      the knobs (params.yaml `train` + the chosen profile), validated (pipeline/trainconfig.py)
    setup_runtime    device, autocast dtype, TF32, DDP process group (pipeline/trainsetup.py)
    init_model       scratch | gpt2* (Hub) | local HF dir | resume, and automatic resume (trainsetup.py)
    GlobalBatches    the data sampler: one seeded draw per optimizer step, split across ranks
    train_step       gradient accumulation, token-weighted masked loss, clipping, AdamW step
    evaluate         validation loss over bot tokens
    Run              one run's live objects and the loop over its steps, with checkpoints
    make_state       what a run checkpoint carries to continue exactly (pipeline/runstate.py)
    summarize        speed, MFU and model/metrics.json's summary (pipeline/trainmetrics.py)
    RunLogger        dvclive metrics (rank 0) and a tqdm bar (pipeline/runlog.py)
    finish           model/ckpt (safetensors) and model/metrics.json (the export stage makes model/hf)

Loss weighting. Each micro-batch's loss is the mean over its bot tokens; the step's loss is the
sum over every bot token of the global batch divided by their count, so every bot token weighs
the same however the batch is split into micro-batches and processes. This is what makes one
process with grad_accum=A and A processes with grad_accum=1 follow the same trajectory.

Data. Every rank draws the same global batch (B * grad_accum windows) from the same seeded
numpy generator and keeps its own rows, so the sample stream depends on the seed alone and the
sampler's state is one small JSON object in the checkpoint.

Resume. Every ckpt_interval steps the run writes model/run/step-N/; a killed run resumes from it,
automatically when nothing that decides the weights changed (pipeline/trainsetup.py), and ends
bitwise equal to an uninterrupted one on CPU, whatever the process count (pipeline/runstate.py).

One run at a time: the main process holds `<run_dir>.lock` (pipeline/runlock.py) while it trains.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from pipeline import atomic, attention, checkpoint, device
from pipeline.errortext import gist
from pipeline.lr import lr_at
from pipeline.model import GPT, masked_token_losses
from pipeline.optim import make_optimizer
from pipeline.runlock import RunLocked, exclusive_run
from pipeline.runlog import RunLogger, snapshot_plots
from pipeline.runstate import Progress, make_state, restore_state
from pipeline.trainconfig import TrainConfig, TrainPaths, data_digest, data_sha
from pipeline.trainmetrics import Interval, summarize, train_flops_per_token
from pipeline.trainsetup import (
    Runtime,
    Start,
    TrainSetupError,
    check_data,
    init_model,
    refuse_oversized,
    setup_runtime,
)

# ---------------------------------------------------------------- data


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step; returns this rank's share of the step's loss and the global gradient
    norm (before clipping; measured whether or not grad_clip clips).

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
    # The norm is of the true gradient, so the loss scale (float16) comes off first: what step()
    # would do itself (the same multiplications), so the weights are those of a step without it.
    scaler.unscale_(optimizer)
    if cfg.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    else:  # no clipping, but the norm is still the first sign of a diverging run: measured, grads untouched
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
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
    """Train per `cfg` on `paths.data_dir`; write the run checkpoints (model/run), model/ckpt and
    model/metrics.json; return the summary. (The export, model/hf, is a stage of its own:
    pipeline/hfexport.py.)

    `on_step(step)` runs after every optimizer step (after its checkpoint, if any), on every rank.
    """
    wall_start = time.perf_counter()
    rt = setup_runtime(cfg)
    run: Run | None = None
    try:
        with contextlib.ExitStack() as held:
            # the only writer of the run folder holds its lock for the whole run; the others stop with it
            on_main(
                rt,
                lambda: lock_run(held, paths, rt),
                TrainSetupError("the main process (rank 0) could not lock the run folder"),
            )
            run = Run.start(cfg, paths, rt, wall_start)
            run.loop(on_step)
            summary = run.summary()
            main_writes(rt, lambda: finish(run.raw, paths, summary))
            return summary
    finally:
        if run is not None:  # (a traceback on its way up still holds the run: its frames' locals)
            run.release_wrapper()
        device.destroy_process_group()


def _restored(
    start: Start,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: GlobalBatches,
    run_dir: Path,
) -> Progress:
    """restore_state of `start`, a resume (its state and source set); TrainSetupError naming its
    state.pt (and the field, in restore_state's words) when a tampered or foreign one cannot be
    restored."""
    try:
        return restore_state(start.state, optimizer, scaler, batches)
    except ValueError as e:
        raise TrainSetupError(
            f"{start.source / checkpoint.STATE_FILE}: cannot restore this run's training state "
            f"({e}); delete {run_dir} to start afresh"
        ) from None


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
        refuse_oversized(cfg, rt)
        check_data(paths.data_dir, rt, cfg)
        for warning in cfg.warnings():
            rt.log(f"warning: {warning}")
        data = data_digest(paths.data_dir)
        start = init_model(cfg, paths, rt, data)
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
            progress = _restored(start, optimizer, scaler, batches, paths.run_dir)
            rt.log(f"resumed at step {progress.step} from {start.source}")
        progress.data_sha = data_sha(data)
        progress.data_changed = progress.data_changed or start.data_changed
        peak = device.peak_flops(rt.device)
        logger = RunLogger(
            paths.live_dir,
            rt.dist.is_main,
            cfg.max_iters,
            progress.step,
            resume=start.state is not None,
            history=start.source if start.state is not None else None,
            unlogged=() if peak else ("mfu",),  # MFU needs the GPU's peak FLOP/s
        )
        return cls(
            cfg=cfg,
            paths=paths,
            rt=rt,
            fingerprint=start.fingerprint,
            raw=raw,
            model=model,
            eval_model=eval_model,
            optimizer=optimizer,
            scaler=scaler,
            batches=batches,
            progress=progress,
            logger=logger,
            n_params=n_params,
            peak=peak,
            wall_start=wall_start,
            remeasure_val=start.state is not None
            and progress.step >= cfg.max_iters
            and json.loads(start.state.get("config") or "{}").get("eval_iters") != cfg.eval_iters,
        )

    def release_wrapper(self) -> None:
        """Drop the DDP wrapper once the run is over: its reducer holds the process group, so gloo's
        threads outlived destroy_process_group while it was alive (into the interpreter's exit)."""
        self.model = self.eval_model

    def loop(self, on_step: Callable[[int], None] | None = None) -> None:
        cfg, progress = self.cfg, self.progress
        if self.remeasure_val:
            # The only val loss of the current setting: best_val_loss too (left as it was, it came
            # out worse than val_loss; a min with the old history would mix two settings).
            progress.last_val_loss = progress.best_val_loss = self.evaluate()
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
            timer.add(self.cfg.tokens_per_iter, time.perf_counter() - t0, n_total)
            self.logger.advance({})
            return {}
        if rt.dist.enabled:
            dist.all_reduce(loss_share)
        metrics = {"lr": lr}
        if n_total > 0:  # no bot token in this step's batch: no loss to log (0 would be a lie)
            metrics["train/loss"] = float(loss_share)  # float() waits for the GPU
        metrics["train/grad_norm"] = float(grad_norm)
        timer.add(self.cfg.tokens_per_iter, time.perf_counter() - t0, n_total)
        tok_s = timer.rate()
        if self.peak:
            flops = self.flops_per_token(timer.loss_tokens / timer.tokens)
            metrics["mfu"] = flops * tok_s / (self.peak * rt.dist.world_size)
        # The first interval of a process includes compilation and warm-up: left out, unless the
        # run ends with nothing else timed (log_interval >= max_iters), where it is all there is.
        if timer.warm or (progress.step == cfg.max_iters and progress.train_seconds == 0):
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
        main_writes(self.rt, self.write_run_checkpoint)

    def write_run_checkpoint(self) -> None:
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


def on_main(rt: Runtime, action: Callable[[], None], others: Exception) -> None:
    """`action` on the main process alone while the others wait for it. An exception there ends
    every rank: raised on the main process, `others` on the rest. The others, left waiting in a
    collective, ended in gloo's "Connection closed by peer" traceback (their line is one that
    stages.train's say() leaves out)."""
    failed: Exception | None = None
    if rt.dist.is_main:
        try:
            action()
        except Exception as e:  # any: a bug's traceback too is raised here once the others know
            failed = e
    if not device.all_ok(rt.dist, failed is None, rt.device):  # a barrier too: the others wait here
        raise failed or others


def main_writes(rt: Runtime, write: Callable[[], None]) -> None:
    """`write` (the run's files) on the main process while the others wait for it (on_main)."""
    on_main(
        rt,
        write,
        checkpoint.CheckpointWriteError("the main process (rank 0) could not write the run's files"),
    )


def lock_run(held: contextlib.ExitStack, paths: TrainPaths, rt: Runtime) -> None:
    """Hold the run folder's lock in `held`, or TrainSetupError in one line: another run holds it,
    or it cannot be taken at all (its folder cannot be made: a path through a file, no permission),
    which was a traceback here and left the other ranks in gloo's."""
    lock = paths.run_dir.with_name(paths.run_dir.name + ".lock")
    try:
        held.enter_context(exclusive_run(lock, warn=lambda m: rt.log(f"warning: {m}")))
    except RunLocked as e:
        raise TrainSetupError(str(e)) from None
    except OSError as e:
        raise TrainSetupError(f"{lock}: cannot take the run's lock ({gist(e)})") from None


def finish(model: GPT, paths: TrainPaths, summary: dict[str, Any]) -> None:
    """The run's outputs: model/ckpt (replaced as a whole) and model/metrics.json. The transformers
    export (model/hf, pipeline.hfexport.export_run) is a stage of its own, so that a new model card or
    chat template is a re-export of seconds, never a re-training."""
    try:
        with atomic.atomic_dir(paths.ckpt_dir) as tmp:
            checkpoint.save_model(model, tmp)
        atomic.write_json(paths.metrics_file, summary)
    except checkpoint.WRITE_ERRORS as e:  # the disk full, the folder read-only
        raise checkpoint.CheckpointWriteError(
            f"cannot write {paths.ckpt_dir} and {paths.metrics_file} ({gist(e)}); the "
            f"run's final checkpoint in {paths.run_dir} is kept: the next run writes them from it, "
            "running no step again (once the disk has room or the folder is writable)"
        ) from e
