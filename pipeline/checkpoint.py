"""Model weights on disk: safetensors + a JSON config, never pickle.

Layout of a checkpoint directory (model/ckpt/):
    config.json        GPTConfig fields
    model.safetensors  weights, GPT-2 parameter names (lm_head tied to wte, stored once)
    state.pt           training state (optimizer, step, RNG, data position); see pipeline/train.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline import atomic
from pipeline.model import GPT, GPTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_model(model: GPT, ckpt_dir: str | Path) -> None:
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # Unwrap DDP / torch.compile wrappers; drop the tied lm_head copy (safetensors refuses shared storage).
    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)
    state = {k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items() if k != "lm_head.weight"}
    with atomic.atomic_path(ckpt_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic.write_json(ckpt_dir / CONFIG_FILE, raw.config.to_dict())


def load_config(ckpt_dir: str | Path) -> GPTConfig:
    return GPTConfig(**json.loads((Path(ckpt_dir) / CONFIG_FILE).read_text()))


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> GPT:
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / WEIGHTS_FILE).exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt_dir}: run `dvc repro train` first")
    model = GPT(load_config(ckpt_dir))
    state = load_file(str(ckpt_dir / WEIGHTS_FILE), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"{ckpt_dir / WEIGHTS_FILE}: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval()
