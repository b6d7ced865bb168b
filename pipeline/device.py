"""Device resolution shared by training, evaluation, chat and benchmarks."""

from __future__ import annotations

import torch


def resolve_device(name: str | None = "auto") -> torch.device:
    """`auto` picks CUDA when present, else CPU; explicit names are checked, not silently changed."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available (use device: auto or cpu)")
    return device
