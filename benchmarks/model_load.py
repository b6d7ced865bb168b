"""Benchmark: loading a checkpoint (`pipeline.checkpoint.load_model`, what chat, serve, export and
evaluate do first) against building the model with its random initialisation and then loading the
weights over it (what load_model did before it skipped the initialisation).

    python -m benchmarks.model_load                       # GPT-2 124M shapes (a 500 MB checkpoint)
    python -m benchmarks.model_load --model gpt2-medium   # 350M (1.4 GB)

Saves a checkpoint of random weights in the project's layout, then loads it in fresh processes, so
that each pays the one-off costs a command pays (torch's lazy imports):

  init     check_fits' meta-device model and the real model both randomly initialised, then
           load_state_dict (the baseline)
  skip     load_model as shipped (SkipWeightInit)

and prints the load's seconds (in the process), the process's seconds and peak RSS, and the ratio.
Both must hold the same weights (a checksum of every tensor, checked).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.child import measure_steps, parser_with_children, ran_as_child, run_child, work_folder

if TYPE_CHECKING:
    import torch  # the children import it; the parent process never needs it

CKPT = "ckpt"
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 64}  # for the test of this benchmark


def _summary(model: torch.nn.Module, t0: float) -> dict:
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.float().numpy().tobytes())
    return {"seconds": seconds, "sha256": digest.hexdigest()}


def child_save(work: Path) -> dict:
    import torch

    from pipeline.checkpoint import save_model
    from pipeline.model import GPT, GPT2_PRESETS, GPTConfig

    torch.manual_seed(0)
    shapes = {"tiny": TINY, **GPT2_PRESETS}[work.joinpath("model").read_text()]
    save_model(GPT(GPTConfig(**shapes)), work / CKPT)
    return {"bytes": sum(p.stat().st_size for p in (work / CKPT).iterdir())}


def child_init(work: Path) -> dict:
    """load_model's steps as they were: every GPT(cfg) randomly initialised before it is overwritten."""
    import torch
    from safetensors.torch import load_file

    from pipeline.checkpoint import WEIGHTS_FILE, check_state, load_config
    from pipeline.model import GPT

    t0 = time.perf_counter()
    cfg = load_config(work / CKPT)
    state = load_file(str(work / CKPT / WEIGHTS_FILE), device="cpu")
    state["lm_head.weight"] = state["transformer.wte.weight"]
    with torch.device("meta"):
        check_state(GPT(cfg), state, str(work / CKPT))
    model = GPT(cfg)
    model.load_state_dict(state)
    return _summary(model.eval(), t0)


def child_skip(work: Path) -> dict:
    from pipeline.checkpoint import load_model

    t0 = time.perf_counter()
    return _summary(load_model(work / CKPT), t0)


CHILDREN = {"save": child_save, "init": child_init, "skip": child_skip}
MEASURED = ("init", "skip")


def main(argv: list[str] | None = None) -> int:
    parser = parser_with_children(__doc__, CHILDREN)
    parser.add_argument("--model", choices=["tiny", "gpt2", "gpt2-medium"], default="gpt2")
    args = parser.parse_args(argv)
    if ran_as_child(args, CHILDREN):
        return 0

    with work_folder(args.workdir, "bench-load-") as work:
        work.joinpath("model").write_text(args.model)
        size = run_child("benchmarks.model_load", "save", work)[2]["bytes"]
        print(f"checkpoint: {args.model}, {size / 1e6:.0f} MB -> {work / CKPT}")
        results = measure_steps("benchmarks.model_load", MEASURED, work, timed="load")
        init, skip = results["init"][2], results["skip"][2]
        same = init["sha256"] == skip["sha256"]
        print(
            f"\nskip vs init: the load {init['seconds'] / skip['seconds']:.1f}x as fast "
            f"({init['seconds'] - skip['seconds']:.2f} s less per command); same weights: {'yes' if same else 'NO'}"
        )
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
