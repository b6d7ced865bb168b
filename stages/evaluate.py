"""evaluate: bot-token validation loss (overall and per source) + chat transcripts -> model/eval/
{metrics.json, sources.csv, transcripts.md} (pipeline/evaluate.py `evaluate_model`)."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import atomic
from pipeline.checkpoint import CONFIG_FILE, load_model
from pipeline.device import keep_freed_memory, resolve_device
from pipeline.errortext import run_stage
from pipeline.evaluate import EvalResult, EvalSetupError, evaluate_model, source_loss_csv
from pipeline.params import load_params, project_root, train_variant
from pipeline.transcripts import transcripts_markdown
from pipeline.vocabcheck import check_vocab


def main() -> int:
    root = project_root()
    # Below the cwd (a DVC run: the cwd is the root) paths stay relative, so a message names
    # data/tokens/full/val as the user would type it rather than an absolute path.
    cwd = Path.cwd().resolve()
    base = root.relative_to(cwd) if root.is_relative_to(cwd) else root
    keep_freed_memory()  # the val loss projects onto the vocabulary too: no page faults per batch
    try:
        params, variant = read_params(root / "params.yaml")
        train = params.get("train") or {}
        try:  # `device 'gpu': expected ...` named no setting: the device is params.yaml's train.device
            device = resolve_device(train.get("device", "auto"))
        except (ValueError, RuntimeError) as e:  # no device name, or CUDA asked for but absent
            raise EvalSetupError(f"params.yaml train.device: {e}") from None
        ckpt = base / "model" / "ckpt"
        try:
            model = load_model(ckpt, device)
        except (ValueError, RuntimeError) as e:  # unreadable checkpoint
            raise EvalSetupError(str(e)) from None
        check_vocab(model, str(ckpt / CONFIG_FILE), EvalSetupError)  # before the val-loss pass
        result = evaluate_model(
            model,
            base / "data" / "tokens" / variant / "val",
            base / "data" / "dataset" / variant / "val.parquet",
            params.get("evaluate"),
        )
    except (EvalSetupError, FileNotFoundError) as e:  # settings or missing inputs: one line
        print(f"evaluate: {e}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"evaluate: warning: {warning}", file=sys.stderr)
    write_outputs(base / "model" / "eval", result)
    print(
        f"evaluate: val loss (bot tokens) {result.loss.loss:.3f}, ppl {result.loss.perplexity:.1f}; "
        f"{result.figures['replies']} replies, stop rate {result.figures['stop_rate']:.2f}"
    )
    return 0


def read_params(path: Path) -> tuple[dict, str]:
    """params.yaml and its `train.variant`, or EvalSetupError in one line: a params.yaml that is no
    YAML was a traceback, and a missing variant read data/tokens/None/val, which names no setting."""
    try:
        params = load_params(path)  # no valid YAML: load_yaml names file and line
        return params, train_variant(params)
    except (ValueError, OSError) as e:
        raise EvalSetupError(str(e)) from None


def write_outputs(out: Path, result: EvalResult) -> None:
    """model/eval/{transcripts.md, sources.csv, metrics.json}, replaced together (atomic.atomic_paths):
    a failure or a kill while one is rendered or written leaves the previous three, never new
    transcripts beside the metrics of another run. metrics.json, the DVC metric, is renamed last."""
    names = ("transcripts.md", "sources.csv", "metrics.json")
    with atomic.atomic_paths(*(out / name for name in names)) as (transcripts, sources, metrics):
        transcripts.write_bytes(transcripts_markdown(result.transcripts).encode("utf-8"))
        sources.write_bytes(source_loss_csv(result.sources).encode("utf-8"))
        metrics.write_bytes(atomic.json_bytes(result.metrics))


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", main))
