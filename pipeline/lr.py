"""Learning-rate schedule: linear warmup, then cosine decay to `min_lr` (nanoGPT's, with decay to max_iters)."""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, warmup_iters: int, decay_iters: int) -> float:
    """The learning rate for optimizer step `step` (0-based)."""
    if step < warmup_iters:
        return lr * (step + 1) / (warmup_iters + 1)
    if step >= decay_iters:
        return min_lr
    ratio = (step - warmup_iters) / max(1, decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return min_lr + coeff * (lr - min_lr)
