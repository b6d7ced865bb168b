"""How a training run starts: its runtime (device, dtype, process group), a check of its data, and its
first weights (a fresh model, pretrained GPT-2 weights, or a run checkpoint to resume).

Everything here runs before the first step and either returns what the loop needs or refuses with
one line (TrainSetupError), so a mistake costs no training and no leftover run by accident.

Resume. A run writes model/run/step-N/ (weights + state.pt) every ckpt_interval steps. With
init_from=resume it continues from the newest one (or fails clearly). Without it, an unfinished
run whose fingerprint (config, data meta.json, and the code that decides the weights: see
trainconfig.FINGERPRINT_CODE) matches the current one is resumed automatically, so a killed
`dvc repro` picks up where it stopped (a run that reached max_iters but died before writing
model/ckpt is only finalised: no step runs again); any other leftover run is discarded, with a
warning naming what changed when it was unfinished. What a checkpoint carries to continue
exactly is pipeline/runstate.py.

Extending a run (init_from=resume, a larger max_iters) stretches its cosine schedule to the new
max_iters: the learning rate continues from lr_at(step) of the longer schedule (for a finished run, a
jump from min_lr back up; no new warmup), which the run logs when it starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import filecmp
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline import checkpoint, device, hf
from pipeline.errortext import first_line, gist
from pipeline.lr import lr_at
from pipeline.model import GPT, GPTConfig
from pipeline.runstate import STATE_KEYS
from pipeline.tokenizer import PADDED_VOCAB
from pipeline.trainconfig import NON_TRAJECTORY_KEYS, TrainConfig, TrainPaths, data_sha
from pipeline.vocabcheck import check_vocab


class TrainSetupError(ValueError):
    """The run cannot start as asked (nothing to resume, a run of other settings); one line for the user."""


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


# How a refused torchrun environment ends: one process needs none of it.
DIST_ENV_FIX = "unset RANK, LOCAL_RANK and WORLD_SIZE for one process, or start several with torchrun"


def setup_runtime(cfg: TrainConfig) -> Runtime:
    try:
        info = device.dist_info_from_env()
    except ValueError as e:
        raise TrainSetupError(f"{e}; {DIST_ENV_FIX}") from None
    problem = device.dist_env_problem(info)
    if problem is not None:
        raise TrainSetupError(f"{problem}; {DIST_ENV_FIX}")
    if cfg.grad_accum % info.world_size:  # before anything is loaded or discarded
        raise TrainSetupError(
            f"grad_accum {cfg.grad_accum} must be a multiple of the {info.world_size} processes (each "
            "process runs grad_accum / processes micro-batches); params.yaml sets it in the train "
            "profile (train_profiles.<profile>.grad_accum) or at train.grad_accum"
        )
    try:
        dev = device.resolve_device(cfg.device, info)
    except (ValueError, RuntimeError) as e:  # e.g. cuda asked for on a machine without it
        raise TrainSetupError(f"params.yaml train.device: {e}") from None
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)  # DDP: this process's GPU becomes the default for NCCL and allocations
    try:
        device.init_process_group(info, dev)
    except ValueError as e:  # env:// rendezvous without MASTER_ADDR/MASTER_PORT: WORLD_SIZE set by hand
        raise TrainSetupError(
            f"WORLD_SIZE {info.world_size}: cannot join the other processes ({first_line(e)}); {DIST_ENV_FIX}"
        ) from None
    device.set_tf32(cfg.tf32)
    return Runtime(device=dev, dtype=device.resolve_dtype(cfg.dtype, dev), dist=info)


# `device: auto` on a machine without a GPU falls back to the CPU. For a GPU profile that run never
# ends: gpt2-medium sat at step 0 of 5000 with no word of why (about 8 days of work at 1 TFLOP/s),
# after its start had already replaced model/run/. Such a run is refused; `train.device: cpu` still
# runs it. The estimate is rough on purpose: 6 FLOPs per parameter per token (forward and backward)
# at a generous CPU_FLOPS (the 2-core machine this project is developed on reaches about 0.2e12).
# Only the steps still to run count: a GPU run resumed (or finalised) near its end is let through.
CPU_FLOPS = 1e12
CPU_HOURS_LIMIT = 24.0
# The refusal's way to a run this CPU finishes. init_from is named too: `dvc exp run -S` leaves the
# GPU run's `init_from: gpt2-medium` in params.yaml, and the CPU profile alone would then download
# and fine-tune that 355M model (or, offline, fail on the Hub), not train the 7M one from scratch.
CPU_RUN = "`dvc exp run -S train.profile=cpu-tiny -S train.init_from=scratch`"
# (n_layer, n_embd) of the Hub's GPT-2 sizes: an init_from of these keeps its own, not the profile's.
HUB_SHAPES = {"gpt2": (12, 768), "gpt2-medium": (24, 1024), "gpt2-large": (36, 1280), "gpt2-xl": (48, 1600)}


def start_shape(init_from: str) -> tuple[int, int] | None:
    """(n_layer, n_embd) of the model `init_from` brings: a Hub GPT-2's, or a local Hugging Face
    folder's config.json (a local copy of gpt2-xl is as slow as the Hub's); None where the profile's
    shape is trained (scratch) or the folder's config cannot be read (loading it says why)."""
    if init_from in HUB_SHAPES:
        return HUB_SHAPES[init_from]
    if init_from in ("scratch", "resume"):
        return None
    try:  # config.json only: the weights are not read to judge the run
        shape = hf.config_from_hf(hf.read_json(Path(init_from) / "config.json"))
    except (OSError, ValueError):
        return None
    return shape.n_layer, shape.n_embd


def training_flops(cfg: TrainConfig, done: int = 0) -> tuple[float, float]:
    """(parameters, FLOPs) of the steps from `done` to max_iters, roughly: 6 per parameter per token."""
    n_layer, n_embd = start_shape(cfg.init_from) or (cfg.n_layer, cfg.n_embd)
    params = 12 * n_layer * n_embd**2 + (PADDED_VOCAB + cfg.block_size) * n_embd
    return params, 6 * params * cfg.tokens_per_iter * max(cfg.max_iters - done, 0)


def refuse_endless_cpu_run(cfg: TrainConfig, rt: Runtime, done: int = 0) -> None:
    """TrainSetupError when `device: auto` fell back to the CPU for steps (`done` of max_iters run
    already) that no CPU finishes in a day."""
    if cfg.device != "auto" or rt.device.type != "cpu":
        return
    params, flops = training_flops(cfg, done)
    hours = flops / CPU_FLOPS / 3600
    if hours > CPU_HOURS_LIMIT:
        left = f"{cfg.max_iters - done:,} of {cfg.max_iters:,}" if done else f"{cfg.max_iters:,}"
        raise TrainSetupError(
            f"train.device auto found no GPU, and this run ({params / 1e6:,.0f}M parameters, "
            f"{left} iters of {cfg.tokens_per_iter:,} tokens to go) needs about {flops:.1e} FLOPs: over "
            f"{hours:,.0f} hours even on a fast CPU ({CPU_FLOPS / 1e12:g} TFLOP/s). Train it on a GPU, "
            f"use the CPU profile ({CPU_RUN}), or set train.device: cpu to run it here anyway"
        )


# What training costs in memory that no setting can lower: a float32 parameter with its gradient and
# AdamW's two moments (16 bytes), and a token of the global batch as the sampler's arrays (x and y
# int64, the mask uint8: 17 bytes; every process draws the whole global batch).
TRAIN_BYTES_PER_PARAM = 16
BATCH_BYTES_PER_TOKEN = 17


def memory_of(dev: torch.device) -> int | None:
    """Bytes of memory `dev` has in all (a GPU's, or the machine's for the CPU); None if unknown."""
    if dev.type == "cuda":
        return torch.cuda.get_device_properties(dev).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name
        return None


def refuse_oversized(cfg: TrainConfig, rt: Runtime) -> None:
    """TrainSetupError when the global batch's token arrays, or a scratch model's parameters with
    their gradients and optimizer moments, cannot fit in memory at all. A typo (block_size 10**12,
    batch_size 2**40, n_layer 10**9) was an allocator traceback, a MemoryError, or layers built one
    by one until the kernel's OOM killer ended the process. (A pretrained or resumed model is no
    bigger than its weights file, and a block_size beyond its context is refused by name.)"""
    host = memory_of(torch.device("cpu"))
    batch = cfg.tokens_per_iter * BATCH_BYTES_PER_TOKEN
    if host is not None and batch > host:
        raise TrainSetupError(
            f"params.yaml train batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum} x block_size "
            f"{cfg.block_size}: a global batch of {cfg.tokens_per_iter:,} tokens needs {_gib(batch)} for "
            f"its token arrays alone, more than this machine's {_gib(host)} of memory"
        )
    mem = memory_of(rt.device)
    if cfg.init_from != "scratch" or mem is None:
        return
    params = 12 * cfg.n_layer * cfg.n_embd**2 + (PADDED_VOCAB + cfg.block_size) * cfg.n_embd
    if params * TRAIN_BYTES_PER_PARAM > mem:
        raise TrainSetupError(
            f"params.yaml train n_layer {cfg.n_layer}, n_embd {cfg.n_embd}, block_size {cfg.block_size}: "
            f"a model of about {params:.2g} parameters needs {_gib(params * TRAIN_BYTES_PER_PARAM)} to "
            f"train (weights, gradients, optimizer moments), more than the {_gib(mem)} of {rt.device}"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


# ---------------------------------------------------------------- data


# Windows drawn to see whether the run's windows reach bot tokens (check_data), from a generator of
# their own: the run's sample stream is untouched.
PROBE_WINDOWS = 256


def check_data(data_dir: Path, rt: Runtime, cfg: TrainConfig | None = None) -> None:
    """Refuse, before any work, token shards that cannot train a run; warn when validation is empty.

    The shards must match their meta.json (sha256 of every file, counts, special ids); shards
    without one are read whole for ids, mask bytes and conversation starts
    (TokenShards.check_contents). The train split must hold at least one loss (bot) token, and an
    empty val split means no val loss. With `cfg`, windows of its block_size must reach bot
    tokens: a window starts at a human turn, so a block_size of a few tokens sees only human text
    and every step's gradient is zero (a run that "trained" and changed nothing); under half of
    them reaching one is worth a warning.
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
        if meta is None:  # no sha256 vouch for the writer's bytes: read them (ids, mask, starts)
            train_split.check_contents()
            val_split.check_contents()
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
    if cfg is not None:
        probe = np.random.default_rng(0)
        # A window past its shard's end is padding (mask 0), and a turn-aligned one holds at most a
        # header and the rest of the shard: twice the longest shard reaches every bot token a
        # longer window would. A typo'd block_size of 10**12 asked numpy for 1.8 PiB here, a
        # traceback before the run's own size checks could refuse it in one line.
        longest = max(shard.n_tokens for shard in train_split.shards)
        window = min(cfg.block_size, 2 * longest)
        _, _, mask = train_split.sample_batch(PROBE_WINDOWS, window, probe, cfg.window_align)
        reaching = float(mask.any(axis=1).mean())
        if reaching == 0:
            raise TrainSetupError(
                f"{data_dir / 'train'}: none of {PROBE_WINDOWS} windows of block_size {cfg.block_size} "
                "reaches a bot token (a window starts at a human turn): raise block_size"
            )
        if reaching < 0.5:
            rt.log(
                f"warning: only {reaching:.0%} of windows of block_size {cfg.block_size} reach a bot "
                "token; the other steps' windows teach nothing (raise block_size)"
            )
    if val_split.n_conversations == 0:
        rt.log(f"warning: {data_dir / 'val'} is empty: no validation loss (val_loss is null)")


# ---------------------------------------------------------------- first weights


@dataclass
class Start:
    """Where a run starts: its model (on CPU) and, when resuming, the saved state and its directory."""

    model: GPT
    fingerprint: str  # what decides this run's weights (TrainConfig.fingerprint): saved in its state
    state: dict[str, Any] | None = None
    source: Path | None = None
    # An extension of weights that trained on other data than the shards now in data_dir (the
    # variant was rebuilt since): the run records it, and the model card claims no commercial use.
    data_changed: bool = False


def data_changed(state: dict[str, Any], data: bytes, fingerprint: str) -> bool:
    """Whether the run saved in `state` trained on other data than `data` (the shards' data_digest).
    A state from before `data_sha` was saved tells data from code apart by nothing but its
    fingerprint (`fingerprint`: the run's settings, on `data`, with today's code): a change of
    either counts, since the data may be what changed."""
    saved = state.get("data_sha")
    if isinstance(saved, str):
        return saved != data_sha(data)
    return fingerprint != state["fingerprint"]


def _warn_data_changed(changed: bool, state: dict[str, Any], rt: Runtime) -> None:
    """Say, when `changed`, that the run continues weights of other data, and what that costs. A
    state saved before `data_sha` cannot tell the data from the code: the line says either."""
    if changed:
        what = (
            "the training data changed since this run's checkpoint (the variant was rebuilt): the "
            "weights also learned the earlier data"
            if isinstance(state.get("data_sha"), str)
            else "the data or the code changed since this run's checkpoint (saved before runs recorded "
            "their data, so the two cannot be told apart): the weights may have learned other data"
        )
        rt.log(
            f"warning: {what}, so the model card will not call them fit for commercial use; train from "
            "scratch for a model of the current data alone"
        )


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
    cannot be resumed automatically, and (when it was unfinished) what would have continued it. In
    the past tense: the folder is deleted right after this line, so it is no advice for this run."""
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
        how = "`init_from: resume` would have continued it"
    else:
        how = "with those set back, `init_from: resume` would have continued it"
    return (
        f"warning: discarding the unfinished run at {ckpt} (step {step} of {planned}): {why}; "
        f"it is deleted as this run starts ({how})"
    )


def init_model(cfg: TrainConfig, paths: TrainPaths, rt: Runtime, data: bytes) -> Start:
    """Build the model for `cfg.init_from`, or pick up an unfinished run with the same fingerprint.
    `data` is the shards' data_digest, taken once: both fingerprints below are of it."""
    fingerprint = cfg.fingerprint(data)
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
        same = dataclasses.replace(cfg, max_iters=saved["max_iters"], init_from=saved["init_from"])
        same_fingerprint = same.fingerprint(data)  # the saved run's settings, on today's data and code
        changed = data_changed(state, data, same_fingerprint)
        # An extension that died between its final checkpoint and finish(): finalise it. (With its
        # outputs written, the run is done: asking to extend it without more steps is refused.)
        died_finishing = not finished(paths, latest, int(state["step"]))
        if state["step"] == cfg.max_iters == saved["max_iters"] and died_finishing:
            # model/ckpt may be there, but the extended run's (finished() tells them apart)
            rt.log(f"the run at {latest} reached max_iters but has not written its model/ckpt: finalising it")
            _warn_data_changed(changed, state, rt)
            return dataclasses.replace(_resume(cfg, latest, state, rt, fingerprint), data_changed=changed)
        if state["step"] >= cfg.max_iters:
            raise TrainSetupError(
                f"init_from=resume: the run under {paths.run_dir} is at step {state['step']} already; "
                f"set max_iters above {state['step']} to extend it"
            )
        # Judged by the shape it trains: a run started from a Hub GPT-2 keeps that model's shape, and
        # `origin` (not the config, which an extension saves with init_from: resume) names its start.
        origin = str(state.get("origin") or saved.get("init_from") or cfg.init_from)
        refuse_endless_cpu_run(dataclasses.replace(cfg, init_from=origin), rt, done=int(state["step"]))
        # One warning for what moved: the data's (which says what it costs), else the code's.
        if not changed and same_fingerprint != state["fingerprint"]:
            what = "the code or the files in init_from" if same.init_from_folder else "the code"
            rt.log(f"warning: {what} changed since this run's checkpoint; extending it anyway")
        rt.log(extension_notice(cfg, int(state["step"]), saved["max_iters"]))
        _warn_data_changed(changed, state, rt)
        return dataclasses.replace(_resume(cfg, latest, state, rt, fingerprint), data_changed=changed)
    leftover: dict[str, Any] | None = None  # the state of the run in model/run, if it can be read
    if latest is not None:
        try:
            leftover = _load_state(latest)
        except UnreadableState as e:  # nothing could resume it: start afresh (it is discarded below)
            rt.log(f"warning: {e.problem}; starting a fresh run instead")
        # Same fingerprint, so the same max_iters: step == max_iters is a run that died between its
        # final checkpoint and finish(); resuming it runs no step and writes its outputs.
        if (
            leftover is not None
            and leftover["fingerprint"] == fingerprint
            and leftover["step"] <= cfg.max_iters
        ):
            refuse_endless_cpu_run(cfg, rt, done=int(leftover["step"]))
            if leftover["step"] < cfg.max_iters:
                rt.log(f"resuming the unfinished run at {latest} (same config, data and code)")
            else:
                rt.log(f"the run at {latest} reached max_iters but has no model/ckpt yet: finalising it")
            return _resume(cfg, latest, leftover, rt, fingerprint)
    # A fresh run: refused here, if at all, before a Hub download, before model/run is replaced, and
    # before a leftover run is logged as discarded.
    refuse_endless_cpu_run(cfg, rt)
    if latest is not None and leftover is not None:
        rt.log(discard_notice(cfg, leftover, latest))
    leftover = None  # a large run's optimizer state: freed before the new model is built
    model = fresh_model(cfg, rt)
    # A fresh run: leftovers of another run must not be resumed later by mistake. Removed only once
    # the new model exists, so a typo in init_from (or no network) does not cost the old run.
    device.barrier(rt.dist)
    if rt.dist.is_main and paths.run_dir.exists():
        shutil.rmtree(paths.run_dir)
    device.barrier(rt.dist)
    return Start(model, fingerprint)


def finished(paths: TrainPaths, ckpt: Path, step: int) -> bool:
    """Whether finish() wrote the outputs of the run checkpoint `ckpt` (at `step`): model/ckpt holds
    its weights and model/metrics.json, written last, its step. DVC deletes both before the stage
    runs; a run started by hand (torchrun) finds those of the run it extended, and an extension
    killed before finish() was refused as "at step N already", its outputs left stale for good."""
    weights = paths.ckpt_dir / checkpoint.WEIGHTS_FILE
    try:
        iters = json.loads(paths.metrics_file.read_text(encoding="utf-8")).get("iters")
    except (OSError, ValueError, AttributeError):  # missing, torn, or not a summary
        return False
    if iters != step or not weights.is_file():
        return False
    # sizes first, then the bytes, each file read once (hashing the run's copy first read both whole)
    return filecmp.cmp(weights, ckpt / checkpoint.WEIGHTS_FILE, shallow=False)


def extension_notice(cfg: TrainConfig, step: int, planned: int) -> str:
    """What extending a run at `step` (planned to `planned` steps) to cfg.max_iters does to its schedule
    (or shortening it: an unfinished run may be resumed with a max_iters between its step and its plan)."""
    if cfg.max_iters == planned:  # an unfinished run continued: its schedule is unchanged
        return f"continuing the run from step {step} to {cfg.max_iters}"
    kw = dict(lr=cfg.lr, min_lr=cfg.min_lr, warmup_iters=cfg.warmup_iters)
    before = lr_at(step - 1, **kw, decay_iters=planned)
    after = lr_at(step, **kw, decay_iters=cfg.max_iters)
    if cfg.max_iters < planned:  # an unfinished run told to end sooner: its lr drops, it is no extension
        return (
            f"shortening the run at step {step} from {planned} to {cfg.max_iters} steps: its cosine "
            f"schedule is compressed to {cfg.max_iters} steps, lr {before:.3g} -> {after:.3g}"
        )
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
            ckpt, f"cannot read this run's training state ({_first_sentence(gist(e))})"
        ) from None
    missing = sorted(STATE_KEYS - set(state)) if isinstance(state, dict) else ["(not a mapping)"]
    if missing:
        raise UnreadableState(ckpt, f"not a training state of this code (missing {missing})")
    problem = _state_problem(ckpt, state)
    if problem is not None:
        raise UnreadableState(ckpt, problem)
    return state


def _state_problem(ckpt: Path, state: dict[str, Any]) -> str | None:
    """What is wrong with the fields init_model decides by (step, fingerprint, config), if anything.
    A tampered or foreign state.pt with `step: "4"` was a TypeError traceback, `step: -3` resumed and
    trained 7 steps to reach 4, and a config that is no JSON object a JSONDecodeError traceback."""
    step = state["step"]
    match = checkpoint.STEP_DIR.match(ckpt.name)
    # bool is an int to Python; the folder's name is the step its writer saved (save_run_checkpoint)
    if type(step) is not int or (match is not None and step != int(match.group(1))):
        return f"step {repr(step)[:40]} is not this folder's step ({ckpt.name})"
    if not isinstance(state["fingerprint"], str):
        return "fingerprint is not a string"
    try:
        config = json.loads(state["config"]) if isinstance(state["config"], str) else None
    except ValueError:  # JSONDecodeError, or an integer of thousands of digits
        config = None
    if not isinstance(config, dict):
        return "config is not the JSON text of the run's settings"
    return None


class UnreadableState(TrainSetupError):
    """A run checkpoint whose state.pt cannot be read: nothing can resume it."""

    def __init__(self, ckpt: Path, problem: str) -> None:
        self.problem = f"{ckpt / checkpoint.STATE_FILE}: {problem}"
        super().__init__(f"{self.problem}; delete {ckpt.parent} to start afresh")


def _first_sentence(text: str) -> str:
    """The gist of a library's error message (torch's run to several sentences and lines)."""
    return text.split(". ")[0]


def _resume(cfg: TrainConfig, ckpt: Path, state: dict[str, Any], rt: Runtime, fingerprint: str) -> Start:
    try:
        model = checkpoint.load_model(ckpt, "cpu", dropout=cfg.dropout).train()
    except (OSError, ValueError, RuntimeError) as e:
        raise TrainSetupError(
            f"{ckpt}: cannot load the run's weights ({_first_sentence(first_line(e))}); "
            f"delete {ckpt.parent} to start afresh"
        ) from None
    # A folder placed by hand (or of another project) whose weights, and optimizer moments with
    # them, have fewer rows than the tokenizer's ids loaded and restored, then failed at the first
    # step with torch's IndexError. Deleting it is the way out: with a fingerprint that matches, a
    # run of init_from: scratch would resume the same folder again.
    check_vocab(
        model, str(ckpt / checkpoint.CONFIG_FILE), TrainSetupError, f"delete {ckpt.parent} to start afresh"
    )
    if cfg.block_size > model.config.block_size:
        raise TrainSetupError(
            f"params.yaml train block_size {cfg.block_size} exceeds the checkpoint's "
            f"{model.config.block_size}"
        )
    return Start(model, fingerprint, state, ckpt)
