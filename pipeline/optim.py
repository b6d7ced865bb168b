"""AdamW with GPT-2's usual split: weight decay on matrices and embeddings, none on biases and LayerNorm."""

from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups by tensor rank: 2-D (matmul weights, embeddings) decay, 1-D (biases, LayerNorm) don't.

    Tied parameters (wte / lm_head) appear once, since named_parameters() deduplicates them.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    device_type: str = "cpu",
) -> torch.optim.AdamW:
    """AdamW; the fused CUDA kernel when the parameters are on a GPU (one launch for all tensors)."""
    fused = device_type == "cuda"
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, fused=fused)
