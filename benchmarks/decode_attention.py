"""What `--threads auto`'s thread-invariant attention costs a CPU decode step, and what it buys.

A decode step the thread tuner times runs its attention on torch's math backend
(pipeline.engine._thread_invariant), because torch's CPU flash kernel gives a one-query-row result
that moves with the thread count (~1e-6 in the logits), so a `--seed` reply could depend on the
counts the tuner's timings picked. This measures both sides, in one process on one model (random
weights): the decode step's median latency with torch's own backend choice and with the math
backend, alternating, at each cache length and thread count, and the largest logit difference
between thread counts for each backend (0 is what the tuner needs).

    python -m benchmarks.decode_attention                   # GPT-2 124M shape
    python -m benchmarks.decode_attention --model cpu-tiny  # the default profile's shape
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.args import positive_int, positive_ints  # noqa: E402
from benchmarks.decode_threads import model_config  # noqa: E402
from pipeline.engine import _thread_invariant  # noqa: E402
from pipeline.model import GPT, GPTConfig, KVCache  # noqa: E402

BACKENDS = ("default", "math")


@dataclass(frozen=True)
class Row:
    context: int  # cache length the decode step attends over
    threads: int
    ms: dict[str, float]  # backend -> median milliseconds per decode step


def _step(model: GPT, cache: KVCache, token: torch.Tensor, backend: str) -> torch.Tensor:
    """One decode step at the cache's current length (not advanced: every call repeats it); "math"
    as the engine runs a tuned step (engine._thread_invariant)."""
    if backend == "math":
        return _thread_invariant(lambda t: model.decode_step(t, cache), token)
    return model.decode_step(token, cache)


def _filled_cache(model: GPT, context: int) -> KVCache:
    cache = KVCache(model.config, 1, model.config.block_size, "cpu", torch.float32)
    seeded = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.config.vocab_size, (1, context - 1), generator=seeded)
    model(prompt, cache=cache)
    return cache


def _ms_per_step(model: GPT, cache: KVCache, token: torch.Tensor, backend: str, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        _step(model, cache, token, backend)
    return (time.perf_counter() - start) / steps * 1e3


@torch.no_grad()
def measure(
    cfg: GPTConfig, contexts: list[int], threads: list[int], repeats: int, steps: int
) -> tuple[list[Row], dict[str, float]]:
    """Rows of median step times, and per backend the largest |logit difference| between the
    thread counts (at every context)."""
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    token = torch.tensor([[5]])
    default_threads = torch.get_num_threads()
    rows: list[Row] = []
    drift = dict.fromkeys(BACKENDS, 0.0)
    try:
        for context in contexts:
            cache = _filled_cache(model, context)
            logits: dict[str, list[torch.Tensor]] = {b: [] for b in BACKENDS}
            for n in threads:
                torch.set_num_threads(n)
                for backend in BACKENDS:
                    logits[backend].append(_step(model, cache, token, backend))
                times: dict[str, list[float]] = {b: [] for b in BACKENDS}
                for _ in range(repeats):  # alternating, so that a load that comes and goes hits both
                    for backend in BACKENDS:
                        times[backend].append(_ms_per_step(model, cache, token, backend, steps))
                rows.append(Row(context, n, {b: statistics.median(t) for b, t in times.items()}))
            for backend, got in logits.items():
                drift[backend] = max([drift[backend]] + [float((g - got[0]).abs().max()) for g in got[1:]])
    finally:
        torch.set_num_threads(default_threads)
    return rows, drift


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gpt2", help="gpt2 (124M shape, default) or cpu-tiny")
    ap.add_argument("--contexts", type=positive_ints, help="cache lengths (default: 64,256,1000)")
    ap.add_argument("--threads", type=positive_ints, default=[1, 2], help="thread counts (default 1,2)")
    ap.add_argument("--repeats", type=positive_int, default=7)
    ap.add_argument("--steps", type=positive_int, default=4, help="decode steps per timed run")
    args = ap.parse_args(argv)
    cfg = model_config(args.model)
    contexts = args.contexts or [c for c in (64, 256, 1000) if c <= cfg.block_size] or [cfg.block_size]
    if max(contexts) > cfg.block_size or min(contexts) < 2:
        ap.error(f"--contexts: each from 2 (a prompt token and the step's) to block_size {cfg.block_size}")
    rows, drift = measure(cfg, contexts, args.threads, args.repeats, args.steps)
    print(f"decode step, batch 1, {args.model} shape: median of {args.repeats} runs of {args.steps} steps")
    print(f"{'context':>8} {'threads':>8} {'default ms':>11} {'math ms':>8} {'math/default':>13}")
    for r in rows:
        ratio = r.ms["math"] / r.ms["default"]
        print(f"{r.context:>8} {r.threads:>8} {r.ms['default']:>11.2f} {r.ms['math']:>8.2f} {ratio:>13.3f}")
    counts = ", ".join(str(n) for n in args.threads)
    for backend in BACKENDS:
        print(f"largest logit difference between {counts} threads, {backend}: {drift[backend]:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
