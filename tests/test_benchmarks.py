"""The training benchmark's CPU path: the code the GPU check runs on CUDA, at a tiny size."""

from __future__ import annotations

import torch

from benchmarks import train_throughput as tt


def test_one_compilation_serves_each_accumulation_row():
    case = tt.Case("tiny", dict(n_layer=1, n_head=2, n_embd=32), 2, 16, "cpu", "float32", False, "full")
    rows = tt.run_case(case, steps=4, warmup=1, accums=(1, 2))
    assert [r.case.grad_accum for r in rows] == [1, 2]
    assert all(r.tokens_per_sec > 0 and r.mfu is None for r in rows)  # no peak FLOP/s on a CPU
    assert rows[0].compile_s == rows[1].compile_s  # one warm-up for both rows
    assert case.grad_accum == 1  # the case itself is left as it was


def test_attention_backends_report_a_figure_or_why_not():
    rows = tt.attention_backends(torch.device("cpu"), batch=1, heads=2, block=32, head_dim=8, reps=1)
    names = [r.backend for r in rows]
    assert names == ["FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"]
    math_row = rows[-1]
    assert math_row.ms is not None and math_row.tflops > 0  # the math kernel runs everywhere
    assert all((r.ms is None) == bool(r.error) for r in rows)
