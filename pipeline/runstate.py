"""What a run checkpoint's state.pt carries so that a resumed run continues exactly: the loop's
progress, the optimizer moments, the loss scaler, the RNG states and the sampler's position.

With these restored (and dropout reseeded from (seed, step, micro-batch place): train.GlobalBatches),
a resumed run ends bitwise equal to an uninterrupted one on CPU, whatever the process count. The
state is plain data, so it loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from pipeline.errortext import gist
from pipeline.trainconfig import TrainConfig

if TYPE_CHECKING:  # train.py imports this module: a runtime import back would be a cycle
    from pipeline.train import GlobalBatches


@dataclass
class Progress:
    """What the loop tracks and a checkpoint must carry to continue exactly."""

    step: int = 0
    best_val_loss: float = float("inf")
    initial_val_loss: float | None = None
    last_val_loss: float | None = None
    recent_train_losses: list[float] = field(default_factory=list)
    # Tokens and seconds of the timed steps: each process leaves out its first log interval
    # (compilation, warm-up: trainmetrics.Interval.warm), a resumed process too.
    train_tokens: int = 0
    train_seconds: float = 0.0
    # Wall time of the earlier processes of this run, each up to its last checkpoint (work lost to
    # a crash after it is not counted): a resumed or only-finalised run reports the whole run's time.
    earlier_wall_seconds: float = 0.0
    # Where the run's weights first came from (scratch, gpt2*, a directory): an extension
    # (init_from=resume) keeps it, so metrics.json and the model card name the real start.
    origin: str | None = None
    # The sha256 of the token shards' data_digest the run trains on now, and whether its weights
    # also trained on other data: an extension (init_from=resume) after the variant was rebuilt
    # (a file's commercial flag corrected, say). Sticky, so that the model card never calls weights
    # fit for commercial use from the current data's sources alone (pipeline/modelcard.py).
    data_sha: str | None = None
    data_changed: bool = False


# What a state.pt must hold for restore_state to continue the run. make_state also writes
# train_tokens, train_seconds, wall_seconds, origin, data_sha and data_changed; a state without them
# (older code) still resumes.
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
        "data_sha": progress.data_sha,
        "data_changed": progress.data_changed,
    }


def restore_state(
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: GlobalBatches,
) -> Progress:
    """The run's progress from `state`, with the optimizer, scaler, RNGs and sampler restored from it.
    ValueError naming the field when one cannot be restored (a tampered or foreign state.pt): torch's
    and numpy's own errors (an RNG state of another size, a PCG64 state for another generator, an
    optimizer of other parameter groups) were tracebacks, and Adam moments of other shapes were
    loaded without a word and failed at the first step."""
    # Every key is read here, outside _field: a missing one stays a KeyError (STATE_KEYS lists them,
    # and trainsetup refuses a state without one before anything is restored).
    saved_optimizer, saved_scaler = state["optimizer"], state["scaler"]
    torch_rng, cuda_rng, data_rng = state["torch_rng"], state["cuda_rng"], state["data_rng"]
    step, best, recent = state["step"], state["best_val_loss"], state["recent_train_losses"]
    initial, last, config = state["initial_val_loss"], state["last_val_loss"], state["config"]
    with _field("optimizer"):
        optimizer.load_state_dict(saved_optimizer)
        check_moments(optimizer)
    # The loss scaler exists only under float16 autocast, and `dtype` may resolve differently on
    # another machine (bfloat16 -> float16 on a GPU without bf16; float16 -> float32 on CPU): a
    # disabled scaler saved {}, which an enabled one refuses. Without a saved scale, start afresh.
    with _field("scaler"):
        if saved_scaler and scaler.is_enabled():
            scaler.load_state_dict(saved_scaler)
    with _field("torch_rng"):
        torch.set_rng_state(torch_rng)
    with _field("cuda_rng"):
        if cuda_rng and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)
    with _field("data_rng"):
        batches.restore(data_rng)
    with _field("progress"):
        return Progress(
            step=int(step),
            best_val_loss=float(best),
            initial_val_loss=_loss(initial),
            last_val_loss=_loss(last),
            recent_train_losses=[float(x) for x in recent],
            train_tokens=int(state.get("train_tokens", 0)),
            train_seconds=float(state.get("train_seconds", 0.0)),
            earlier_wall_seconds=float(state.get("wall_seconds", 0.0)),
            origin=state.get("origin") or json.loads(config).get("init_from"),
            data_sha=state.get("data_sha"),
            data_changed=state.get("data_changed") is True,
        )


def _loss(value: Any) -> float | None:
    """A saved loss (None before it was measured); float() refuses what no loss is (a string)."""
    return None if value is None else float(value)


@contextlib.contextmanager
def _field(name: str) -> Iterator[None]:
    """Turn what restoring the state's `name` raises into one ValueError naming it."""
    try:
        yield
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError, AttributeError) as e:
        raise ValueError(f"{name}: {gist(e)}") from None


def check_moments(optimizer: torch.optim.Optimizer) -> None:
    """RuntimeError when a loaded optimizer state holds a tensor of another shape than its parameter
    (torch's load_state_dict checks the parameter groups' sizes, not the moments')."""
    for param, moments in optimizer.state.items():
        for key, value in moments.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                raise RuntimeError(
                    f"{key} of shape {tuple(value.shape)} for a parameter of shape {tuple(param.shape)}"
                )
