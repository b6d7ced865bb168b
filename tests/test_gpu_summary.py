"""benchmarks/gpu_summary.py: the GPU check's verdict lines, from the benchmarks' JSON rows."""

from __future__ import annotations

from benchmarks.gpu_summary import verdict

TRAIN = [
    {"name": "gpt2-medium 350M", "objective": "full", "mfu": 0.50, "tokens_per_sec": 200_000.0},
    {
        "name": "gpt2-medium 350M",
        "objective": "full",
        "grad_accum": 4,
        "mfu": 0.49,
        "tokens_per_sec": 196_000.0,
    },
    {"name": "gpt2-medium 350M", "objective": "gathered", "mfu": 0.57, "tokens_per_sec": 228_000.0},
    {"name": "gpt2 124M", "objective": "full", "mfu": 0.45, "tokens_per_sec": 520_000.0},
    {"name": "cpu-tiny 7M", "objective": "full", "mfu": None, "tokens_per_sec": 2_000.0},
]
DECODE = [
    {"model": "gpt2-medium", "batch": 1, "decode": "graph", "tokens_per_sec": 800.0},
    {"model": "gpt2-medium", "batch": 1, "decode": "graph+compile", "tokens_per_sec": 1200.0},
    {"model": "gpt2-medium", "batch": 16, "decode": "graph", "tokens_per_sec": 9000.0},
]


def test_mfu_is_judged_on_the_full_head_and_decode_on_the_best_row() -> None:
    """The gathered head skips FLOPs the MFU formula counts: its 57% must not pass the 55% target."""
    lines = verdict(DECODE, TRAIN)
    assert lines[0].startswith("#6 train 350M: MFU 50.0% (full head, grad_accum 1,") and lines[0].endswith(
        ": NOT met"
    )
    assert "full      grad_accum 4  196,000 tokens/s (0.98x the best full head" in lines[1]
    assert "228,000 tokens/s (1.14x the best full head" in lines[2]
    lines = verdict(DECODE, [{**r, "mfu": 0.56} if r["objective"] == "full" else r for r in TRAIN])
    assert lines[0].endswith(": met")
    decode_line = next(line for line in lines if line.startswith("#7"))
    assert "best 1,200 tokens/s (graph+compile)" in decode_line and decode_line.endswith(": met")


def test_a_miss_and_a_missing_figure_are_said() -> None:
    slow = [{**r, "mfu": 0.40} for r in TRAIN if r["mfu"] is not None]
    lines = verdict([], slow)
    assert lines[0].endswith("NOT met")
    assert lines[-1] == "#7 decode 350M batch 1: no figure (see decode.txt)"
    assert verdict([], [])[0] == "#6 train 350M: no CUDA figure (see train_throughput.txt)"
    gathered_only = [r for r in TRAIN if r["objective"] == "gathered"]
    assert "no full-head figure" in verdict([], gathered_only)[0]


def test_the_verdict_names_a_forced_attention_kernel() -> None:
    cudnn = {"name": "gpt2-medium 350M", "objective": "full", "attention": "cudnn", "grad_accum": 4}
    lines = verdict(DECODE, [*TRAIN, {**cudnn, "mfu": 0.551, "tokens_per_sec": 222_000.0}])
    assert lines[0].startswith("#6 train 350M: MFU 55.1% (full head, grad_accum 4, cudnn attention,")
    assert lines[0].endswith(": met")
