"""Model weights on disk: safetensors + a JSON config, never pickle.

Layout of a checkpoint directory (model/ckpt/):
    config.json        GPTConfig fields
    model.safetensors  weights, GPT-2 parameter names (lm_head tied to wte, stored once)
    state.pt           training state (optimizer, step, RNG, data position); see pipeline/runstate.py.
                       Only in run checkpoints: model/ckpt (the DVC output) holds the model alone,
                       so the DVC cache does not store two optimizer moments per experiment.

A training run also keeps its latest resumable checkpoint in a run directory (model/run/), one
`step-NNNNNNNN/` subdirectory per checkpoint in the layout above. Each is written into a hidden
temporary directory and renamed into place, so a run killed at any instant (kill -9, power loss)
leaves either the previous complete checkpoint or the new complete one, never weights from one
step next to the optimizer state of another. Older step directories are pruned afterwards.

state.pt holds only tensors, numbers, strings, lists and dicts (RNG states of numpy's
generators are JSON text), so it loads with torch.load(weights_only=True): no pickled objects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.overrides import TorchFunctionMode

from pipeline import atomic
from pipeline.errortext import gist
from pipeline.model import GPT, GPTConfig
from pipeline.params import root_first

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
STEP_DIR = re.compile(r"^step-(\d{8})$")
SET_ASIDE = re.compile(r"^\.step-(\d{8})\.old$")  # a step renamed aside (a re-save, a prune)
_LAYER = re.compile(r"^transformer\.h\.(\d+)\.")


def refuse_special(path: Path) -> None:
    """ValueError for a path that exists but is no regular file (after links): a model folder from
    someone else with `config.json -> /dev/zero` would be read until memory runs out, and one that
    is a FIFO would block forever. A link to a regular file (the Hugging Face cache's layout) is fine."""
    if path.exists() and not path.is_file():
        raise ValueError(f"{path}: not a regular file (a folder, device, FIFO or a link to one)")


def save_model(model: GPT, ckpt_dir: str | Path) -> None:
    """Weights (safetensors) + config.json into `ckpt_dir`, each file written atomically."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # Unwrap DDP / torch.compile wrappers; drop the tied lm_head copy (safetensors refuses shared storage).
    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)
    state = {k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items() if k != "lm_head.weight"}
    with atomic.atomic_path(ckpt_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic.write_json(ckpt_dir / CONFIG_FILE, raw.config.to_dict())


def load_json(path: Path, bad: str) -> Any:
    """The JSON value in `path`, a regular file (refuse_special), or ValueError `<path>: <bad> (why)`
    when it cannot be read: not UTF-8, not JSON, nested too deeply (RecursionError), or an integer
    of more than 4300 digits (a ValueError, as JSONDecodeError is)."""
    refuse_special(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, RecursionError, ValueError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ValueError(f"{path}: {bad} ({why})") from None


def load_config(ckpt_dir: str | Path) -> GPTConfig:
    """config.json of a checkpoint; ValueError naming the file when it is not a GPTConfig."""
    path = Path(ckpt_dir) / CONFIG_FILE
    raw = load_json(path, "not a model config")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a model config (expected a JSON object)")
    try:
        cfg = GPTConfig(**raw)
    except TypeError as e:  # an unknown or missing field
        raise ValueError(f"{path}: not a model config ({str(e)[:200]})") from None
    sizes = (cfg.block_size, cfg.vocab_size, cfg.n_layer, cfg.n_head, cfg.n_embd)
    # bool is an int to Python: `"n_layer": true` is no size
    if not all(type(v) is int and v >= 1 for v in sizes) or cfg.n_embd % cfg.n_head:
        raise ValueError(f"{path}: sizes must be positive integers with n_embd a multiple of n_head")
    dropout_ok = type(cfg.dropout) in (int, float) and 0 <= cfg.dropout < 1
    if not dropout_ok or type(cfg.bias) is not bool:
        raise ValueError(
            f"{path}: dropout must be a number in [0, 1) and bias true or false, "
            f"got {str(cfg.dropout)[:40]} and {str(cfg.bias)[:40]}"
        )
    return cfg


def check_fits(cfg: GPTConfig, state: dict[str, torch.Tensor], where: str) -> None:
    """check_state against a model of `cfg` that holds no memory (on the meta device), so that a
    config.json claiming `n_embd: 100000` beside a small weights file is refused before the real
    model allocates (and randomly initialises) hundreds of gigabytes: once this passes, the model
    is no bigger than the weights file on disk. Layers are Python objects even on the meta device,
    so an `n_layer` far past the layers the weights hold is refused without building them."""
    layers = {int(m.group(1)) for k in state if (m := _LAYER.match(k))}
    if cfg.n_layer > len(layers) + 1:
        raise ValueError(
            f"{where}: weights do not fit the config: n_layer is {cfg.n_layer} but the weights hold "
            f"{len(layers)} layer(s)"
        )
    with torch.device("meta"), SkipWeightInit():
        reference = GPT(cfg)
    check_state(reference, state, where)


class SkipWeightInit(TorchFunctionMode):
    """Inside it, torch.nn.init's random initialisers (normal_, uniform_, kaiming_uniform_: those
    that dispatch to torch-function modes; zeros_ and ones_ do not, and are cheap) return their
    tensor untouched. For a model whose every parameter a weights file is about to overwrite, the
    random initialisation is wasted work: on the CPU, seconds for a 350M model; and on the meta
    device, `normal_` goes through torch's Python reference kernels, whose first use imports
    torch._dynamo (about a second of every chat's and evaluate's start-up). It also leaves torch's
    global random state as it was."""

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else (kwargs or {})["tensor"]
        return func(*args, **(kwargs or {}))


def model_from_state(cfg: GPTConfig, state: dict[str, torch.Tensor], where: str) -> GPT:
    """A GPT of `cfg` holding `state` (every parameter, checked by check_fits before anything is
    allocated), its random initialisation skipped since all of it is overwritten."""
    check_fits(cfg, state, where)
    with SkipWeightInit():
        model = GPT(cfg)
    model.load_state_dict(state)  # strict: no parameter keeps uninitialised memory
    return model


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu", dropout: float | None = None) -> GPT:
    """The model of a checkpoint directory, in eval mode; `dropout` overrides the saved one (training)."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / WEIGHTS_FILE).exists():
        # Training is the cure only for the project's own checkpoint; a typed path that does not
        # exist is a typo far more often than a model not yet trained. And a trained one is usually
        # in DVC's cache (cleared by a failed `dvc exp run`, say): restoring it takes a second, while
        # `dvc repro train` would train again, with whatever params.yaml holds now.
        if ckpt_dir.parts[-2:] == ("model", "ckpt"):
            why = (
                "`dvc checkout model/ckpt` restores the last trained one (`dvc pull train` fetches it "
                "from a remote); `dvc repro train` trains one"
            )
        elif ckpt_dir.is_dir():
            why = f"the folder holds no {WEIGHTS_FILE}"
        else:
            why = "no such folder"
        message = f"no checkpoint at {ckpt_dir}: {why}"
        # a relative path is read from the cwd, whatever NANOCHATGPT_ROOT says
        raise FileNotFoundError(message if ckpt_dir.is_absolute() else root_first(message, Path.cwd()))
    refuse_special(ckpt_dir / WEIGHTS_FILE)
    cfg = load_config(ckpt_dir)
    if dropout is not None:
        cfg.dropout = dropout
    try:
        state = load_file(str(ckpt_dir / WEIGHTS_FILE), device="cpu")
    except Exception as e:  # safetensors' own error type: truncated or not safetensors
        raise ValueError(f"{ckpt_dir / WEIGHTS_FILE}: not a readable safetensors file ({e})") from None
    state.setdefault("lm_head.weight", state.get("transformer.wte.weight"))  # tied, stored once
    state = {k: v for k, v in state.items() if v is not None}
    model = model_from_state(cfg, state, where=str(ckpt_dir / WEIGHTS_FILE))
    return model.to(device).eval()


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """One line naming the first few missing, unexpected or wrongly shaped tensors, if any."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    problems = [
        f"{what} {len(items)}: {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
        for what, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        if items
    ]
    if problems:
        raise ValueError(f"{where}: weights do not fit the config: {'; '.join(problems)}")


# ---------------------------------------------------------------- training state


def save_state(state: dict[str, Any], ckpt_dir: str | Path) -> None:
    """Write the training state (plain tensors/numbers/strings only) atomically as state.pt."""
    with atomic.atomic_path(Path(ckpt_dir) / STATE_FILE) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as e:  # torch's file writer on a full disk: "file write failed", "unexpected pos"
            raise OSError(f"torch.save failed ({gist(e)})") from e


def load_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """The training state of a checkpoint directory; weights_only=True refuses arbitrary pickles."""
    path = Path(ckpt_dir) / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no training state to resume from")
    refuse_special(path)
    return torch.load(path, map_location="cpu", weights_only=True)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a read-only folder); one line for the user."""


# What a write the disk or the folder refuses raises: OSError (save_state turns torch.save's into
# one) and safetensors' own error, which names no file. Anything else is a bug, whose traceback must
# not be turned into one line that blames the disk.
WRITE_ERRORS = (OSError, SafetensorError)


def _write_step(
    model: GPT, state: dict[str, Any], target: Path, extra: Callable[[Path], None] | None
) -> None:
    """Write `target` (a step folder) whole into a hidden temporary beside it, then rename it in."""
    run_dir = target.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".step-", suffix=".tmp", dir=run_dir))
    try:
        save_model(model, tmp)
        save_state(state, tmp)
        if extra is not None:
            extra(tmp)
        atomic.fsync_tree(tmp)  # on disk before the name says it is there (power loss, not only kill -9)
        if target.exists() and atomic.exchange(tmp, target):
            pass  # the same step saved again (a resumed run): the old copy is now at tmp, removed below
        elif target.exists():  # no exchange here: set the old one aside first
            aside = tmp.with_name(f".{target.name}.old")
            # A save killed after its own set-aside left one: renaming onto a full folder fails.
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(target, aside)
            os.replace(tmp, target)
        else:
            os.replace(tmp, target)
        atomic.fsync_dir(run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_run_checkpoint(
    model: GPT,
    state: dict[str, Any],
    run_dir: str | Path,
    step: int,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Add `run_dir/step-NNNNNNNN/` (atomically: temp dir + rename), then drop older steps.

    `extra(folder)` may add files of its own before the rename (the run's plot history)."""
    run_dir = Path(run_dir)
    target = run_dir / f"step-{step:08d}"
    try:
        _write_step(model, state, target, extra)
    except WRITE_ERRORS as e:  # the disk full, the folder read-only
        kept = latest_run_checkpoint(run_dir)
        left = (
            f"its checkpoint {kept.name} is kept: the next run of these settings resumes from it "
            "(once the disk has room or the folder is writable)"
            if kept is not None
            else "the run has no earlier checkpoint (the next run starts afresh)"
        )
        raise CheckpointWriteError(f"{target}: cannot write this run checkpoint ({gist(e)}); {left}") from e
    # Older steps, and what a save killed half-way left (a full-size `.step-*.tmp` copy, or the
    # `.step-*.old` a re-save set aside): nothing else would ever remove those hidden folders. An
    # old step is first renamed to a hidden `.step-*.old` (one atomic step): a kill while its files
    # are deleted one by one must not leave a `step-N/` without weights, which no later prune sees
    # (it lists complete steps), holding the optimizer state (gigabytes at GPT-2 sizes).
    for leftover in [*run_dir.glob(".step-*.tmp"), *run_dir.glob(".step-*.old")]:
        shutil.rmtree(leftover, ignore_errors=True)
    for step_dir in [p for p in run_dir.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and p != target]:
        aside = step_dir.with_name(f".{step_dir.name}.old")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(step_dir, aside)
        shutil.rmtree(aside, ignore_errors=True)
    return target


def _complete(step_dir: Path) -> bool:
    return (step_dir / STATE_FILE).exists() and (step_dir / WEIGHTS_FILE).exists()


def _complete_steps(run_dir: Path) -> list[Path]:
    steps = [p for p in run_dir.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(p for p in steps if _complete(p))


def _put_back_set_aside(run_dir: Path) -> None:
    """Rename a re-save's set-aside `.step-N.old` back to `step-N/` when it is the run's newest whole
    copy. Without renameat2 a re-save of step N renames the old copy aside, then the new one in: a
    kill (or Ctrl-C) between the two left only the `.old` (older steps pruned long before), and the
    next run found no checkpoint, trained afresh and deleted it. A `.old` of a step older than one
    that is there is what a prune left (perhaps half-deleted): never resumed from.
    Only the run lock's holder writes the run folder; a reader putting a copy back in the instant
    between a live re-save's renames makes that save fail (CheckpointWriteError, step N kept)."""
    steps = _complete_steps(run_dir)
    newest = int(STEP_DIR.match(steps[-1].name).group(1)) if steps else -1
    candidates = sorted(
        (int(m.group(1)), p)
        for p in run_dir.glob(".step-*.old")
        if (m := SET_ASIDE.match(p.name)) and p.is_dir() and not p.is_symlink()
    )
    if not candidates or candidates[-1][0] <= newest or not _complete(candidates[-1][1]):
        return
    step, aside = candidates[-1]
    target = run_dir / f"step-{step:08d}"
    if target.exists() or target.is_symlink():
        return  # another rank put it back first, or a step-N without weights or state: not ours
    try:
        os.replace(aside, target)
    except OSError:  # another rank put it back first, or a folder we may not write: read as it is
        return
    atomic.fsync_dir(run_dir)  # the next run must not find it set aside again after a power loss


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step directories of a run, oldest first (hidden temporaries are ignored; a re-save's
    set-aside copy that is the newest whole one is put back first: _put_back_set_aside). Listed after
    the put-back, by every rank: one that lost the race to put it back still lists the step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    _put_back_set_aside(run_dir)
    return _complete_steps(run_dir)


def latest_run_checkpoint(run_dir: str | Path) -> Path | None:
    found = run_checkpoints(run_dir)
    return found[-1] if found else None
