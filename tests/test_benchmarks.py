"""The training benchmark's CPU path: the code the GPU check runs on CUDA, at a tiny size."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchmarks import train_throughput as tt
from pipeline import attention
from pipeline.model import GPT, GPTConfig
from pipeline.params import load_params
from pipeline.trainconfig import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_one_compilation_serves_each_accumulation_row():
    case = tt.Case("tiny", dict(n_layer=1, n_head=2, n_embd=32), 2, 16, "cpu", "float32", False, "full")
    rows = tt.run_case(case, steps=4, warmup=1, accums=(1, 2))
    assert [r.case.grad_accum for r in rows] == [1, 2]
    assert all(r.tokens_per_sec > 0 and r.mfu is None for r in rows)  # no peak FLOP/s on a CPU
    assert all(r.gpu is None and r.peak_flops is None for r in rows)
    assert rows[0].compile_s == rows[1].compile_s  # one warm-up for both rows
    assert case.grad_accum == 1  # the case itself is left as it was


def test_rows_name_their_gpu_and_peak_and_the_gathered_mfu_counts_work_done(monkeypatch, tmp_path):
    """Neither the JSON rows nor the verdict said which GPU and peak an MFU came from; and the
    gathered head's MFU counted the vocabulary projection at every position, which it skips at the
    unmasked ones. A fake GPU (name and peak) stands in for CUDA."""
    import json

    peak = 1e9
    monkeypatch.setattr(tt.device, "peak_flops", lambda dev: peak)
    monkeypatch.setattr(tt, "gpu_name", lambda dev: "NVIDIA H200")
    shape = dict(n_layer=1, n_head=2, n_embd=32)
    results = []
    for objective in ("gathered", "full"):
        case = tt.Case("tiny", shape, 2, 16, "cpu", "float32", False, objective)
        results += tt.run_case(case, steps=2, warmup=1)
    tt.write_json(tmp_path / "train.json", results)
    gathered, full = json.loads((tmp_path / "train.json").read_text())
    for row in (gathered, full):
        assert (row["gpu"], row["peak_flops"]) == ("NVIDIA H200", peak)
    assert 0.3 < gathered["head_share"] < 0.7 and full["head_share"] == 1.0
    n, d, block, vocab = full["params"], shape["n_embd"], 16, GPTConfig().vocab_size
    full_formula = 6 * n + 12 * shape["n_layer"] * d * block  # 6N + 12·L·H·Q·T per token
    head = 6 * vocab * d  # the vocabulary projection's part of 6N
    assert full["mfu"] == pytest.approx(full_formula * full["tokens_per_sec"] / peak, rel=1e-9)
    factor = 1 - (1 - gathered["head_share"]) * head / full_formula  # about 0.5 at this size
    assert factor < 0.8
    assert gathered["mfu"] == pytest.approx(
        factor * full_formula * gathered["tokens_per_sec"] / peak, rel=1e-9
    )


def test_the_350m_cases_train_what_the_gpt2_medium_profile_trains():
    """The GPU check's 350M figures stand for `train.profile: gpt2-medium`: same shape, micro-batch,
    window, dtype and compilation, and its grad_accum is the second row's. A profile edit in
    params.yaml must not leave the check measuring another set-up."""
    params = load_params(ROOT / "params.yaml")
    train = params["train"]
    profile = TrainConfig.from_params({**train, "profile": "gpt2-medium"}, params["train_profiles"])
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


@pytest.fixture
def small_gpt2(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--model gpt2` at one narrow layer, for tests of benchmarks.decode's bookkeeping (rows, runs,
    statistics, failures) that no assertion ties to the 124M shape: its CPU init alone took seconds
    a call. The vocabulary and block size stay the preset's."""
    from benchmarks import decode

    monkeypatch.setitem(decode.GPT2_PRESETS, "gpt2", dict(n_layer=1, n_head=2, n_embd=32))


def test_a_failed_naive_baseline_keeps_the_engine_rows(monkeypatch, tmp_path, capsys, small_gpt2):
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


def test_decode_scores_the_engine_and_the_naive_generate_by_the_same_statistic(
    monkeypatch, tmp_path, capsys, small_gpt2
):
    """The engine was scored as the best of 3 runs and the naive generate by one run, which
    flattered the speedup. Both are now the median of --repeats runs; the naive repeats stop at
    --naive-seconds (the GPU check's time limit), and the rows and header say what was counted."""
    import json

    from benchmarks import decode

    calls: list[int] = []

    def fake_naive(model, prompts, max_new_tokens):
        calls.append(max_new_tokens)
        return [[0] * max_new_tokens for _ in prompts]

    def fake_timed(fn, device):
        before = len(calls)
        out = fn()
        kind = "naive" if len(calls) > before else "engine"
        return next(seconds[kind]), out

    monkeypatch.setattr(decode, "naive_generate", fake_naive)
    monkeypatch.setattr(decode, "timed", fake_timed)
    out = tmp_path / "decode.json"
    argv = ["--model", "gpt2", "--device", "cpu", "--batch-sizes", "1", "--prompt-len", "4"]
    argv += ["--new-tokens", "3", "--repeats", "3", "--json", str(out)]
    # naive runs of 4, 1, 2 s (median 2, best 1); the engine's first run, then 1, 0.5, 0.75 s
    seconds = {"naive": iter([4.0, 1.0, 2.0]), "engine": iter([9.0, 1.0, 0.5, 0.75])}
    assert decode.main(argv) == 0
    assert calls == [2, 3, 3, 3]  # the warm-up, then three timed naive runs
    (row,) = json.loads(out.read_text())
    assert row["naive_tokens_per_sec"] == pytest.approx(3 / 2.0)  # the median, not the first run
    assert row["tokens_per_sec"] == pytest.approx(3 / 0.75)  # the median, not the best
    assert (row["statistic"], row["runs"], row["naive_runs"]) == ("median", 3, 3)
    printed = capsys.readouterr().out
    assert "new tokens x batch / a whole generate call (prefill included" in printed
    assert "median of 3 timed runs each" in printed and "|   3/3" in printed
    # a slow naive generate stops repeating where another run would pass --naive-seconds
    calls.clear()
    seconds = {"naive": iter([4.0, 3.0]), "engine": iter([9.0, 1.0, 0.5, 0.75])}
    assert decode.main([*argv, "--naive-seconds", "9"]) == 0
    assert calls == [2, 3, 3]
    (row,) = json.loads(out.read_text())
    assert (row["naive_runs"], row["naive_tokens_per_sec"]) == (2, pytest.approx(3 / 3.5))
    assert "naive repeats stop after 9 s" in capsys.readouterr().out


def test_the_first_case_runs_whatever_budget_is_left() -> None:
    """gpu_check.sh hands train_throughput what is left of its time, less 70 s: a check given a short
    GPU_CHECK_SECONDS passed zero or less, and every case was skipped, the decisive 350M one too."""
    assert not tt.past_budget(0, elapsed=500.0, budget=-5.0)
    assert tt.past_budget(1, elapsed=0.1, budget=-5.0)
    assert not tt.past_budget(3, elapsed=100.0, budget=140.0)
    assert tt.past_budget(3, elapsed=141.0, budget=140.0)


def test_the_budget_counts_from_the_process_start(monkeypatch, capsys) -> None:
    """gpu_check.sh's time limit counts from the process's start, and it hands on that limit less
    70 s; the budget counted from the first case, so torch's import, CUDA's start-up and the
    attention probe came on top, and a case could start too late to compile before the limit. A
    fake clock: 100 s have passed when the cases begin, against a budget of 50."""
    import types

    ran: list[str] = []
    monkeypatch.setattr(tt, "STARTED", 0.0, raising=False)
    monkeypatch.setattr(tt, "time", types.SimpleNamespace(perf_counter=lambda: 100.0))
    monkeypatch.setattr(tt.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tt.torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    monkeypatch.setattr(tt.device, "set_tf32", lambda enabled: None)
    monkeypatch.setattr(tt.device, "keep_freed_memory", lambda: True)
    monkeypatch.setattr(tt, "with_fastest_attention", lambda cases: cases)
    monkeypatch.setattr(tt, "run_case", lambda case, *a, **k: ran.append(case.objective) or [])
    assert tt.main(["--no-cpu", "--budget", "50"]) == 0
    assert ran == ["full"]  # the first case (350M, full head) only: it always runs
    assert capsys.readouterr().out.count("skipped (past the 50 s budget)") == len(tt.cuda_cases(False)) - 1


def test_the_quarantine_benchmark_lists_the_same_rows_both_ways(capsys) -> None:
    """benchmarks.quarantine at a small size: the command's lazy read and the eager baseline agree."""
    from benchmarks import quarantine

    assert quarantine.main(["--rows-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "same rows and count: yes" in out and "2,000 rows" in out


def test_the_parquet_read_benchmark_sees_the_same_rows_both_ways(capsys) -> None:
    """benchmarks.parquet_read at a small size: the batched reader and the whole-file baseline agree."""
    from benchmarks import parquet_read

    assert parquet_read.main(["--rows-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "same rows and text: yes" in out and "3,000 rows" in out


def test_the_archive_list_benchmark_lists_the_same_members_both_ways(tmp_path) -> None:
    """benchmarks.archive_list's steps at a small size, in this process (its main runs each in a
    child of its own): archive's listing and tarfile's stream reader agree on every archive."""
    from benchmarks import archive_list

    archive_list.generate(tmp_path, zeros_mib=1, bz2_mib=1, text_mib=1, small=30)
    counts = {}
    for name in archive_list.ARCHIVES:
        tmp_path.joinpath(archive_list.CURRENT).write_text(name)
        before, now = archive_list.child_stream(tmp_path), archive_list.child_new(tmp_path)
        assert (before["members"], before["sha256"]) == (now["members"], now["sha256"]), name
        counts[name] = now["members"]
    assert counts == {"zeros.tar.gz": 1, "zeros.tar.bz2": 1, "text.tar.gz": 1, "small.tar.gz": 30}


def test_the_model_load_benchmark_loads_the_same_weights_both_ways(capsys) -> None:
    """benchmarks.model_load at a tiny size: load_model and the initialise-then-load baseline agree."""
    from benchmarks import model_load

    assert model_load.main(["--model", "tiny"]) == 0
    assert "same weights: yes" in capsys.readouterr().out


def test_the_thread_benchmark_decodes_alike_at_each_count_and_reaps_its_busy_neighbour(
    monkeypatch, capsys
) -> None:
    """benchmarks.decode_threads (chat/serve --threads): a row per neighbour and thread count, one
    for a fresh thread tuner (`auto:<count it chose>`) and one for each tuner in the other condition,
    the same tokens in every row (it raises otherwise), and its busy child process gone at the end."""
    from benchmarks import decode_threads as dt

    started = []
    real_popen = dt.subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(dt.subprocess, "Popen", popen)
    # The cpu-tiny profile's shape as --model cpu-tiny reads it, cut to one layer: the
    # rows, the tokens compared across them and the reaping do not depend on the depth, but beside the
    # busy neighbour each kernel of a decode step can wait out a descheduled thread (the benchmark's
    # subject), so the real shape's four layers only made it slower.
    real_config = dt.model_config
    monkeypatch.setattr(dt, "model_config", lambda name: replace(real_config(name), n_layer=1))
    default = torch.get_num_threads()
    # 16 tokens: 30 decode steps a row (with its warm-up), past a fresh tuner's first round (step 17)
    assert dt.main(["--model", "cpu-tiny", "--new-tokens", "16", "--repeats", "1", "--threads", "1"]) == 0
    assert torch.get_num_threads() == default
    rows = [
        line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith(("idle", "busy"))
    ]
    counts = sorted({default, 1})
    fixed = [r for r in rows if not r[1].strip().startswith("auto:")]
    assert sorted((r[0].strip(), int(r[1])) for r in fixed) == [
        (n, c) for n in ("busy", "idle") for c in counts
    ]
    tuned = [(r[0].strip(), int(r[1].strip().removeprefix("auto:"))) for r in rows if r not in fixed]
    # a fresh tuner per condition, then each meets the other condition (a load arrives, it leaves)
    assert sorted(n for n, _ in tuned) == ["busy", "busy, was idle", "idle", "idle, was busy"]
    assert all(c in counts for _, c in tuned)
    assert len(started) == 1 and started[0].poll() is not None


def test_the_evaluate_thread_benchmark_decodes_the_same_transcripts_both_ways(
    monkeypatch, tmp_path, capsys
) -> None:
    """benchmarks.evaluate_threads: the stage's scripted chats on torch's default count and through the
    tuner, idle and beside a busy process: four rows, the same transcripts (it raises otherwise), and
    torch's default count given back by each tuner. (The first scripted chat, 8 tokens a reply: an untrained model
    runs every reply to its budget.)"""
    from test_threadtuner import SpyTuner

    from benchmarks import evaluate_threads
    from pipeline.checkpoint import save_model
    from pipeline.params import load_params

    def short_params(path: Path) -> dict:
        params = load_params(path)
        params["evaluate"].update(prompts=params["evaluate"]["prompts"][:1], max_new_tokens=8)
        return params

    monkeypatch.setattr(evaluate_threads, "load_params", short_params)
    made: list[SpyTuner] = []
    monkeypatch.setattr(evaluate_threads, "auto_tuner", SpyTuner.maker(made))

    torch.manual_seed(0)
    save_model(GPT(GPTConfig(block_size=128, n_layer=1, n_head=2, n_embd=16)).eval(), tmp_path / "ckpt")
    default = torch.get_num_threads()
    assert evaluate_threads.main(["--ckpt", str(tmp_path / "ckpt")]) == 0
    assert torch.get_num_threads() == default
    rows = [
        line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith(("idle", "busy"))
    ]
    assert [(r[0].strip(), r[1].strip().split()[0]) for r in rows] == [
        (n, label) for n in ("idle", "busy") for label in ("default", "auto")
    ]
    assert all(float(r[2]) > 0 for r in rows)
    # a tuner per `auto` row, each through decode steps and given torch's default back
    assert len(made) == 2 and all(t.set_counts and t.restored for t in made)


def test_the_attention_benchmark_times_both_backends_and_the_math_one_keeps_its_logits(capsys) -> None:
    """benchmarks.decode_attention: a row per context and thread count with both backends timed,
    and the math backend (what a tuned decode step runs) gives the same logits at 1 and 2 threads."""
    from benchmarks import decode_attention as da

    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=64)
    rows, drift = da.measure(cfg, contexts=[8, 40], threads=[1, 2], repeats=1, steps=1)
    assert [(r.context, r.threads) for r in rows] == [(8, 1), (8, 2), (40, 1), (40, 2)]
    assert all(r.ms["default"] > 0 and r.ms["math"] > 0 for r in rows)
    assert drift["math"] == 0.0
    assert da.main(["--model", "cpu-tiny", "--contexts", "16", "--threads", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "math/default" in out and "largest logit difference between 1 threads, math: 0" in out


def test_the_stage_start_benchmark_writes_the_same_outputs_both_ways(capsys) -> None:
    """benchmarks.stage_start, one run of each step: the stages as they ran before and as they run now
    write the same registry JSON and download."""
    from benchmarks import stage_start

    assert stage_start.main(["--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "outputs identical: True" in out and "registry" in out and "download" in out


def test_the_check_benchmark_gives_the_same_accounts_both_ways(capsys) -> None:
    """benchmarks.check_contrib at a small size: the folder check and the per-file baseline agree,
    and the refused file is counted."""
    from benchmarks import check_contrib

    assert check_contrib.main(["--files", "7", "--refused", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "7 files, 2 refused" in out and "the same accounts" in out
