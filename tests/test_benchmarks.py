"""The training benchmark's CPU path: the code the GPU check runs on CUDA, at a tiny size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from benchmarks import train_throughput as tt
from pipeline import attention
from pipeline.params import section
from pipeline.trainconfig import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_one_compilation_serves_each_accumulation_row():
    case = tt.Case("tiny", dict(n_layer=1, n_head=2, n_embd=32), 2, 16, "cpu", "float32", False, "full")
    rows = tt.run_case(case, steps=4, warmup=1, accums=(1, 2))
    assert [r.case.grad_accum for r in rows] == [1, 2]
    assert all(r.tokens_per_sec > 0 and r.mfu is None for r in rows)  # no peak FLOP/s on a CPU
    assert rows[0].compile_s == rows[1].compile_s  # one warm-up for both rows
    assert case.grad_accum == 1  # the case itself is left as it was


def test_the_350m_cases_train_what_the_gpt2_medium_profile_trains():
    """The GPU check's 350M figures stand for `train.profile: gpt2-medium`: same shape, micro-batch,
    window, dtype and compilation, and its grad_accum is the second row's. A profile edit in
    params.yaml must not leave the check measuring another set-up."""
    train = section("train", ROOT / "params.yaml")
    profile = TrainConfig.from_params({**train, "profile": "gpt2-medium"})
    medium = [c for c in tt.cuda_cases(quick=False) if c.name.startswith("gpt2-medium")]
    assert {c.objective for c in medium} == {"full", "gathered"}
    for c in medium:
        assert c.shape == {k: getattr(profile, k) for k in ("n_layer", "n_head", "n_embd")}
        assert (c.batch, c.block, c.dtype, c.compile) == (
            profile.batch_size,
            profile.block_size,
            profile.dtype,
            profile.compile,
        )
    assert profile.grad_accum == tt.PROFILE_GRAD_ACCUM
    # the profile's loss head is the one the verdict judges (compiled: full, unless set otherwise)
    assert not profile.gather_loss


def test_the_fastest_agreeing_kernel_gets_a_case_of_its_own(monkeypatch, capsys):
    """When the attention probe finds a kernel faster than torch's pick, the 350M full case runs
    again with it, second (so the time budget reaches it); a kernel that disagrees is never chosen."""
    probes = [
        attention.Probe("flash", 10.0, 1e-3),
        attention.Probe("efficient", 12.0, 1e-3),
        attention.Probe("cudnn", 7.0, 2e-3),
        attention.Probe("math", 3.0, 0.9, "disagrees"),  # fastest, but wrong
    ]
    monkeypatch.setattr(attention, "probe", lambda *a, **k: probes)
    monkeypatch.setattr(attention, "torch_default", lambda *a, **k: "flash")
    cases = tt.cuda_cases(quick=False)
    planned = tt.with_fastest_attention([replace(c, device="cpu") for c in cases])
    assert [(c.objective, c.attention) for c in planned[:3]] == [
        ("full", "torch"),
        ("full", "cudnn"),
        ("gathered", "torch"),
    ]
    assert len(planned) == len(cases) + 1
    assert "cudnn" in capsys.readouterr().out
    monkeypatch.setattr(attention, "torch_default", lambda *a, **k: "cudnn")
    assert len(tt.with_fastest_attention(cases)) == len(cases)  # torch already picks it


def test_a_failed_attention_probe_leaves_the_cases_to_run(monkeypatch, capsys):
    """The probe runs before any case; its failure (the float32 reference out of memory) stopped
    the whole benchmark, and the GPU check lost every training figure."""

    def failing(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")

    monkeypatch.setattr(attention, "probe", failing)
    cases = [replace(c, device="cpu") for c in tt.cuda_cases(quick=False)]
    assert tt.with_fastest_attention(cases) == cases
    assert "attention probe failed: OutOfMemoryError" in capsys.readouterr().out


def test_a_failed_naive_baseline_keeps_the_engine_rows(monkeypatch, tmp_path, capsys):
    """The naive generate ran outside the per-variant guard: its failure (on the GPU, a kernel the
    full-context forward meets and the engine does not) ended the decode benchmark with no row."""
    import json

    from benchmarks import decode

    def failing(*args, **kwargs):
        raise RuntimeError("no kernel for this shape (simulated)")

    monkeypatch.setattr(decode, "naive_generate", failing)
    out = tmp_path / "decode.json"
    argv = ["--model", "gpt2", "--device", "cpu", "--batch-sizes", "1", "--prompt-len", "4"]
    status = decode.main([*argv, "--new-tokens", "3", "--repeats", "1", "--json", str(out)])
    assert status == 1 and "naive FAILED RuntimeError" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())
    assert row["batch"] == 1 and row["tokens_per_sec"] > 0 and row["naive_tokens_per_sec"] is None
