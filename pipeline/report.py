"""Printed after `make repro`: where the artifacts are, the headline metrics, a sample exchange."""

from __future__ import annotations

import json
from pathlib import Path

ARTIFACTS = [
    ("raw downloads + manifests", "data/raw/"),
    ("normalized turn tables", "data/normalized/"),
    ("quarantined rows (with reasons)", "data/quarantine/"),
    ("datasets: full / commercial", "data/dataset/"),
    ("token shards", "data/tokens/"),
    ("checkpoint (safetensors)", "model/ckpt/"),
    ("Hugging Face export", "model/hf/"),
    ("evaluation", "model/eval/"),
]


def _metric(path: str, key: str) -> str:
    p = Path(path)
    if not p.exists():
        return "-"
    value = json.loads(p.read_text()).get(key, "-")
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def sample_exchange(transcripts: Path, max_lines: int = 8) -> list[str]:
    if not transcripts.exists():
        return ["(no transcripts: run `dvc repro evaluate`)"]
    lines = [ln for ln in transcripts.read_text().splitlines() if ln.startswith(("**human:**", "**bot:**"))]
    return [ln.replace("**", "").rstrip() for ln in lines[:max_lines]]


def main() -> None:
    print("\nnanoChatGPT artifacts")
    for label, path in ARTIFACTS:
        print(f"  {label:34s} {path}{'' if Path(path).exists() else '  (missing)'}")
    print("\nmetrics (dvc metrics show for all)")
    print(f"  train: final val loss {_metric('model/metrics.json', 'val_loss')}")
    print(
        f"  eval:  val loss on bot tokens {_metric('model/eval/metrics.json', 'val_loss_bot')}, "
        f"stop rate {_metric('model/eval/metrics.json', 'stop_rate')}"
    )
    print("\nsample exchange (model/eval/transcripts.md)")
    for line in sample_exchange(Path("model/eval/transcripts.md")):
        print(f"  {line}")
    print("\nchat with it: .venv/bin/nanochatgpt chat --context 'You are a cheerful pirate.'")
    print("serve it:     .venv/bin/nanochatgpt serve   (OpenAI-style API on http://127.0.0.1:8000)")


if __name__ == "__main__":
    main()
