"""Decode speed: the KV-cache engine against a naive generate that recomputes the whole context.

A GPT-2-sized model with random weights (speed does not depend on the weights), a 32-token
prompt and 128 new tokens, greedy, no stops (every row makes all 128 tokens). The naive generate
is nanoGPT's: one full forward over the growing sequence per new token. Both run in the same
process on the same model. Prints one table row per batch size and engine variant; on CUDA the
batch sizes of --compile-batch-sizes (default 1) also run with the decode step compiled
(Engine(compile_decode=True), its compilation counted in "first run s").

tokens/s counts new tokens only: new tokens x batch / the wall time of one whole generate call.
The prompt's prefill is inside that time, and so, for the engine, is a host read-back of every new
token (it yields each token to Python; the naive generate reads back once at the end): the engine's
figure is conservative. Both generators are scored alike, by the median of --repeats timed runs
(the engine's after its first run, shown as "first run s"; the naive one's after a 2-token
warm-up). On CUDA the naive repeats stop once they have taken --naive-seconds (default 15; the GPU
check's decode step has 150 s, compilation included); the "runs" column says how many counted.

    python benchmarks/decode.py                                   # gpt2-medium, batch 1 and 16
    python benchmarks/decode.py --model gpt2 --device cpu --batch-sizes 1
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts benchmarks/ first on sys.path; put the repository root there
# instead, which is what `import pipeline` needs.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)
else:
    sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from benchmarks.args import positive_int, positive_ints  # noqa: E402
from pipeline import atomic  # noqa: E402
from pipeline.device import resolve_device  # noqa: E402
from pipeline.engine import Engine  # noqa: E402
from pipeline.model import GPT, GPT2_PRESETS, GPTConfig  # noqa: E402
from pipeline.sampling import SamplingParams  # noqa: E402
from pipeline.tokenizer import N_VOCAB  # noqa: E402


@torch.inference_mode()
def naive_generate(model: GPT, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """nanoGPT's generate: the full (cropped) sequence through the model for every new token."""
    idx = torch.tensor(prompts, dtype=torch.long, device=next(model.parameters()).device)
    start = idx.size(1)
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size :])
        nxt = logits[:, -1, :N_VOCAB].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
    return idx[:, start:].tolist()


def timed(fn, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, out


def repeat_timed(fn, device: torch.device, repeats: int, seconds: float = float("inf")) -> list[float]:
    """Seconds of each of up to `repeats` calls of `fn`, at least one; no further call once another
    as long as the last would take the calls past `seconds`."""
    runs: list[float] = []
    while len(runs) < repeats and (not runs or sum(runs) + runs[-1] <= seconds):
        runs.append(timed(fn, device)[0])
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        choices=["gpt2", "gpt2-medium"],
        default="gpt2-medium",
        help="the GPT-2 shape, random weights (default gpt2-medium)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--batch-sizes", type=positive_ints, default="1,16", help="comma-separated (default 1,16)")
    p.add_argument("--prompt-len", type=positive_int, default=32, help="prompt tokens per row (default 32)")
    p.add_argument(
        "--new-tokens", type=positive_int, default=128, help="tokens each row generates (default 128)"
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="timed runs per generator and batch size; the median counts (default 3)",
    )
    p.add_argument(
        "--naive-seconds",
        type=float,
        default=None,
        help="no further naive run once they took this long (default: 15 on CUDA, no limit on CPU)",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="weights of both generators (auto: bfloat16 on CUDA, float32 on CPU)",
    )
    p.add_argument("--no-naive", action="store_true", help="skip the naive generate")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--no-graphs", action="store_true", help="decode eagerly on CUDA too")
    p.add_argument(
        "--compile-batch-sizes",
        default=None,
        help="batch sizes also run with a compiled decode step (default: 1 on CUDA, none on CPU)",
    )
    args = p.parse_args(argv)
    if args.json:  # at once: a run that dies before its first row leaves [] here, not an older run's rows
        atomic.write_text(args.json, "[]\n")
    batch_sizes: list[int] = args.batch_sizes

    device = resolve_device(args.device)
    compile_sizes = _ints(args.compile_batch_sizes or ("1" if device.type == "cuda" else ""))
    repeats = args.repeats
    naive_seconds = args.naive_seconds
    if naive_seconds is None:
        naive_seconds = 15.0 if device.type == "cuda" else float("inf")
    if args.dtype == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if cuda_bf16 else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    t_init = time.perf_counter()
    with torch.device(device):  # initialise on the device: a 350M CPU init takes seconds
        model = GPT(GPTConfig(**GPT2_PRESETS[args.model], block_size=1024)).to(dtype).eval()
    t_init = time.perf_counter() - t_init
    engines = {False: Engine(model, cuda_graphs=not args.no_graphs)}
    if compile_sizes:
        engines[True] = Engine(model, cuda_graphs=not args.no_graphs, compile_decode=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{args.model} ({model.num_params() / 1e6:.0f}M params, {dtype}) on {name}, "
        f"threads={torch.get_num_threads()}, cuda_graphs={engines[False].cuda_graphs}, "
        f"prompt {args.prompt_len} + {args.new_tokens} new tokens, greedy; init {t_init:.1f}s\n"
        f"tok/s = new tokens x batch / a whole generate call (prefill included; the engine also reads "
        f"each token back to the host), median of {repeats} timed runs each (runs: engine/naive"
        + (f"; naive repeats stop after {naive_seconds:g} s" if naive_seconds < float("inf") else "")
        + ")",
        flush=True,
    )
    greedy = SamplingParams(temperature=0.0)
    gen = torch.Generator().manual_seed(1)
    header = (
        f"{'batch':>5} | {'decode':>13} | {'engine tok/s':>12} | {'first run s':>11} | "
        f"{'naive tok/s':>11} | {'speedup':>7} | {'runs':>5}"
    )
    rows = [header, "-" * len(header)]
    records: list[dict] = []
    failed = 0
    print("\n".join(rows), flush=True)
    for b in batch_sizes:
        prompts = torch.randint(0, 50256, (b, args.prompt_len), generator=gen).tolist()
        naive_tps = None
        naive_runs: list[float] = []
        if not args.no_naive:
            try:  # the baseline only: its failure must not cost the engine's rows
                naive_generate(model, prompts, 2)  # warm up kernels for this shape family
                naive_runs = repeat_timed(
                    lambda prompts=prompts: naive_generate(model, prompts, args.new_tokens),
                    device,
                    repeats,
                    naive_seconds,
                )
                naive_tps = b * args.new_tokens / statistics.median(naive_runs)
            except Exception as e:
                print(f"{b:>5} | naive FAILED {type(e).__name__}: {e}", flush=True)
                failed += 1
        for compiled in (False, True) if b in compile_sizes else (False,):
            engine = engines[compiled]

            def run_engine(prompts=prompts, engine=engine):
                return engine.generate_ids(prompts, args.new_tokens, greedy, stop_token_ids=())

            try:
                first, out = timed(run_engine, device)  # cache allocation, graph capture, compilation
                if not all(len(r) == args.new_tokens for r in out):
                    raise RuntimeError(
                        f"rows of {sorted({len(r) for r in out})} tokens, not {args.new_tokens}"
                    )
                runs = repeat_timed(run_engine, device, repeats)
            except Exception as e:  # one failing variant (a compilation, say) must not hide the others
                label = "compiled" if compiled else "engine"
                print(f"{b:>5} | {label} FAILED {type(e).__name__}: {e}", flush=True)
                failed += 1
                continue
            engine_tps = b * args.new_tokens / statistics.median(runs)
            slot = next(reversed(engine._slots.values()))  # this shape's: the engine keeps it last
            mode = "graph" if slot.graph is not None else "eager"
            if compiled:  # a step that failed to compile or capture falls back to the plain step
                mode += "+compile" if slot.step is engine._step else "+compile-failed"
            naive_col = f"{naive_tps:11.1f}" if naive_tps else "-"
            speed_col = f"{engine_tps / naive_tps:6.1f}x" if naive_tps else "-"
            runs_col = f"{len(runs)}/{len(naive_runs) if naive_tps else '-'}"
            rows.append(
                f"{b:>5} | {mode:>13} | {engine_tps:12.1f} | {first:11.2f} | {naive_col:>11} | {speed_col:>7}"
                f" | {runs_col:>5}"
            )
            print(rows[-1], flush=True)
            records.append(
                {
                    "model": args.model,
                    "device": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "batch": b,
                    "prompt_len": args.prompt_len,
                    "new_tokens": args.new_tokens,
                    "decode": mode,
                    "tokens_per_sec": engine_tps,
                    "first_run_s": first,
                    "naive_tokens_per_sec": naive_tps,
                    "statistic": "median",
                    "runs": len(runs),
                    "naive_runs": len(naive_runs) if naive_tps else 0,
                }
            )
            if args.json:  # after every row: a run stopped by its time limit keeps the rows it made
                atomic.write_text(args.json, json.dumps(records, indent=2) + "\n")
    if len(rows) > 3:  # the whole table again, last, where a log tail shows it
        print("\n" + "\n".join(rows))
    return 1 if failed else 0


def _ints(text: str) -> list[int]:
    return [int(b) for b in text.split(",") if b.strip()]


if __name__ == "__main__":
    sys.exit(main())
