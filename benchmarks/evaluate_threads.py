"""The evaluate stage's reply decoding (its `decode_tokens_per_s`) at torch's default thread count and
through `--threads auto`'s tuner, as the stage now decodes, on an idle CPU and beside a busy process.

The stage plays params.yaml's scripted chats (`evaluate.prompts`) on the trained model; a second
`dvc repro` or a test run beside it is the busy process (benchmarks.decode_threads's neighbour: torch
matmuls on torch's default thread count). Each row is the stage's own figure (decode steps per second
of a reply, prefill included, after an untimed warm-up reply); the transcripts are checked to be the
same in every row. `--repeats` runs each condition that many times, alternating, so a drift in the
machine's speed shows as a spread rather than as a difference.

    python -m benchmarks.evaluate_threads                 # model/ckpt (dvc repro or dvc pull first)
    python -m benchmarks.evaluate_threads --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.args import positive_int  # noqa: E402
from benchmarks.decode_threads import busy_process  # noqa: E402
from pipeline.checkpoint import load_model  # noqa: E402
from pipeline.engine import Engine  # noqa: E402
from pipeline.evaluate import check_eval_params, check_prompts_fit, run_transcripts  # noqa: E402
from pipeline.params import load_params, project_root  # noqa: E402
from pipeline.threadtuner import AUTO, auto_tuner, restoring  # noqa: E402


def transcripts_rate(model, cfg: dict, tuned: bool) -> tuple[float, list]:
    """(the stage's decode_tokens_per_s, its transcripts) on a fresh engine, with a fresh tuner if `tuned`."""
    with restoring(auto_tuner(AUTO) if tuned else None) as tuner:
        sessions = check_prompts_fit(Engine(model, thread_tuner=tuner), cfg["prompts"], cfg)
        transcripts, figures = run_transcripts(model, cfg["prompts"], cfg, sessions)
    return figures["decode_tokens_per_s"], transcripts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=project_root() / "model" / "ckpt", help="default model/ckpt")
    p.add_argument("--repeats", type=positive_int, default=1, help="runs of each condition (default 1)")
    args = p.parse_args(argv)
    model = load_model(args.ckpt).eval()
    cfg = check_eval_params(load_params(project_root() / "params.yaml")["evaluate"], model.config.block_size)
    default = torch.get_num_threads()
    print(f"{args.ckpt}: evaluate's {len(cfg['prompts'])} scripted chats; torch's default: {default} threads")
    print(f"{'neighbour':<9} | {'threads':<20} | {'tokens/s':>8}\n" + "-" * 43, flush=True)
    first = None
    try:
        for _ in range(args.repeats):
            for neighbour in ("idle", "busy"):
                with busy_process() if neighbour == "busy" else contextlib.nullcontext():
                    for tuned in (False, True):
                        rate, transcripts = transcripts_rate(model, cfg, tuned)
                        first = first or transcripts
                        if transcripts != first:
                            raise RuntimeError(f"{neighbour}: the transcripts differ between thread counts")
                        label = "auto (the stage's)" if tuned else f"default ({default})"
                        print(f"{neighbour:<9} | {label:<20} | {rate:>8.1f}", flush=True)
    finally:
        torch.set_num_threads(default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
