"""What a run reports about its speed: training FLOPs per token (for MFU), the timing of the steps
between two logs, and model/metrics.json's summary.

None of it changes a weight (so it is not in trainconfig.FINGERPRINT_CODE); the formulas live here
because the run and benchmarks/train_throughput.py must count the same work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.model import GPTConfig
from pipeline.runstate import Progress
from pipeline.trainconfig import TrainConfig
from pipeline.trainsetup import Runtime


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
        "tokens_per_iter": cfg.tokens_per_iter,
        "wall_time_s": _round(wall_seconds, 1),
        "device": str(rt.device.type),
        "processes": rt.dist.world_size,
        "init_from": progress.origin or cfg.init_from,
        "variant": cfg.variant,  # the export labels the model card with it (stages/export.py checks)
        # weights that also learned other data than the variant's current build (an extension after
        # a rebuild): the model card then claims no commercial use
        "data_changed": progress.data_changed,
    }
    if peak and flops_per_token is not None:
        summary["mfu"] = _round(flops_per_token * tok_s / (peak * rt.dist.world_size))
    return summary


def _round(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)
