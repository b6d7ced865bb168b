"""Decode speed by CPU thread count, on an idle CPU and beside a busy process (chat/serve --threads).

The KV-cache engine decodes at batch 1 (random weights, a 32-token prompt, greedy, no stops) with
torch's default thread count (one per core) and with each count of --threads: first alone, then
beside a child process that keeps the cores busy with torch matmuls at its own default thread count,
as a training run would. Then the same with the thread tuner of `--threads auto`, chat's and serve's
default (pipeline/threadtuner.py: a fresh one per condition, its row named `auto:<the count it
settled on>`; its first runs include its first turn at the other count). Then each tuner meets the
other condition: the idle one beside the busy process (`busy, was idle`: a training run starts while
you chat), the busy one idle again (`idle, was busy`: it ends), timed from their first run so the time
they take to adapt counts. Prints new tokens/s (prefill included; the median of --repeats runs after
a warm-up, or all of them for a tuner meeting a new condition) and each row's ratio to the default
count's in the same condition.

torch's CPU kernels run on an OpenMP team that waits, spinning, at each kernel's end for its slowest
thread; beside a busy process that thread is often descheduled, and a decode step made of hundreds of
short kernels crawls. The tokens are the same at any thread count (checked here, row by row).

    python -m benchmarks.decode_threads                    # GPT-2 124M shape, threads 1
    python -m benchmarks.decode_threads --model cpu-tiny   # the default profile's shape
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.args import positive_int, positive_ints  # noqa: E402
from benchmarks.decode import repeat_timed  # noqa: E402
from pipeline.engine import Engine  # noqa: E402
from pipeline.model import GPT, GPT2_PRESETS, GPTConfig  # noqa: E402
from pipeline.params import load_params, project_root  # noqa: E402
from pipeline.sampling import SamplingParams  # noqa: E402
from pipeline.threadtuner import default_tuner  # noqa: E402

# The busy neighbour: matmuls on torch's default thread count until it is killed.
BUSY = "import torch\na = torch.randn(512, 512)\nwhile True:\n    a = torch.tanh(a @ a)\n"


def model_config(name: str) -> GPTConfig:
    if name == "cpu-tiny":
        profile = load_params(project_root() / "params.yaml")["train_profiles"]["cpu-tiny"]
        keys = ("n_layer", "n_head", "n_embd", "block_size")
        return GPTConfig(**{k: profile[k] for k in keys})
    return GPTConfig(block_size=1024, **GPT2_PRESETS[name])


@contextlib.contextmanager
def busy_process(warmup_s: float = 2.0) -> Iterator[subprocess.Popen]:
    """A child process keeping the CPU busy for the body of the `with`; killed and reaped after."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(warmup_s)  # past its torch import, into the loop
        if proc.poll() is not None:
            raise RuntimeError(f"the busy process exited at once (status {proc.returncode})")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def decode(
    engine: Engine, prompt: list[int], new_tokens: int, threads: int, repeats: int, warm_up: bool = True
) -> tuple[float, list[int]]:
    """(new tokens/s, the tokens) at `threads`, the engine's thread tuner then picking the count of
    each decode step if it has one. With a warm-up, tokens/s is the median of `repeats` runs after
    it; without (a tuner meeting a new load), all the runs' tokens over all their time, so the
    tuner's time to adapt counts."""
    torch.set_num_threads(threads)
    greedy = SamplingParams(temperature=0.0)
    tokens: list[int] = []

    def run() -> list[int]:
        tokens[:] = engine.generate_ids([prompt], new_tokens, greedy, stop_token_ids=())[0]
        return tokens

    if warm_up:
        run()  # the cache and this thread count's kernels
    times = repeat_timed(run, torch.device("cpu"), repeats)
    rate = new_tokens / statistics.median(times) if warm_up else new_tokens * len(times) / sum(times)
    return rate, tokens


def compare(model: GPT, prompt: list[int], new_tokens: int, counts: list[int], repeats: int) -> None:
    """A row per neighbour (idle, busy) and thread count, then the tuner's row (`auto`, a fresh one
    per neighbour); the first count is the ratios' base. Then the tuners meet the other condition:
    the idle one beside the busy process (a load arrives: `busy, was idle`), the busy one idle again
    (it leaves: `idle, was busy`), timed from their first run."""
    fixed = Engine(model)
    first_tokens: list[int] = []
    tuned: dict[str, Engine] = {}
    base: dict[str, float] = {}  # each condition's tokens/s at the first count

    def row(neighbour: str, label: str, tps: float, tokens: list[int], came_from: str | None = None) -> None:
        nonlocal first_tokens
        first_tokens = first_tokens or tokens
        shown = f"{neighbour}, was {came_from}" if came_from else neighbour
        if tokens != first_tokens:
            raise RuntimeError(f"{label} threads ({shown}) decoded other tokens than {counts[0]}")
        ratio = tps / base.setdefault(neighbour, tps)
        print(f"{shown:<14} | {label:>7} | {tps:>8.1f} | {ratio:>9.2f}x", flush=True)

    def auto_row(neighbour: str, came_from: str | None = None) -> None:
        """The tuner made in `came_from` (a fresh one, warmed up, if None) beside `neighbour`."""
        if came_from is None:
            tuned[neighbour] = Engine(model, thread_tuner=default_tuner(counts[0]))
        engine = tuned[came_from or neighbour]
        tuner = engine.thread_tuner
        assert tuner is not None
        before = tuner.switches
        tps, tokens = decode(engine, prompt, new_tokens, counts[0], repeats, warm_up=came_from is None)
        row(neighbour, f"auto:{tuner.chosen}", tps, tokens, came_from)
        print(
            f"{'':<14} | (auto over {tuner.counts}: {tuner.switches - before} switches, chose {tuner.chosen})"
        )

    for neighbour in ("idle", "busy"):
        with busy_process() if neighbour == "busy" else contextlib.nullcontext():
            for n in counts:
                row(neighbour, str(n), *decode(fixed, prompt, new_tokens, n, repeats))
            auto_row(neighbour)
            if neighbour == "busy":
                auto_row("busy", came_from="idle")
    auto_row("idle", came_from="busy")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["cpu-tiny", "gpt2"], default="gpt2", help="shape (default gpt2, 124M)")
    p.add_argument("--threads", type=positive_ints, default="1", help="counts beside the default (default 1)")
    p.add_argument("--new-tokens", type=positive_int, default=64, help="tokens per run (default 64)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs per row (default 3)")
    args = p.parse_args(argv)
    default = torch.get_num_threads()
    counts = [default, *(n for n in args.threads if n != default)]
    torch.manual_seed(0)
    model = GPT(model_config(args.model)).eval()
    prompt = torch.randint(0, 50256, (32,), generator=torch.Generator().manual_seed(1)).tolist()
    print(
        f"{args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params), CPU, batch 1, "
        f"prompt 32 + {args.new_tokens} new tokens, greedy; torch's default: {default} threads",
        flush=True,
    )
    if counts == [default]:
        print(f"(every count asked for is the default, {default}: no other count to compare)", flush=True)
    header = f"{'neighbour':<14} | {'threads':>7} | {'tok/s':>8} | {'vs default':>10}"
    print(header + "\n" + "-" * len(header), flush=True)
    try:
        compare(model, prompt, args.new_tokens, counts, args.repeats)
    finally:  # a failed row must not leave the caller's process (a test run) on another count
        torch.set_num_threads(default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
