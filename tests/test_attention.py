"""pipeline/attention.py: the attention kernel a run uses (the choice itself matters on CUDA only)."""

from __future__ import annotations

import pytest
import torch

from pipeline import attention
from pipeline.train import TrainConfig


@pytest.fixture
def switches():
    saved = attention.snapshot()
    yield saved
    attention.restore(saved)


def test_probe_times_each_kernel_and_checks_it_against_the_reference():
    probes = {p.kernel: p for p in attention.probe(torch.device("cpu"), 1, 2, 32, 8, torch.bfloat16, reps=1)}
    assert list(probes) == ["flash", "efficient", "cudnn", "math"]
    for name in ("flash", "math"):  # the kernels a CPU has
        assert probes[name].usable and probes[name].ms > 0 and probes[name].error < 2e-2
    for name in ("efficient", "cudnn"):  # CUDA only: refused, and why
        assert probes[name].ms is None and probes[name].why and not probes[name].usable
    assert attention.fastest(list(probes.values())) in ("flash", "math")


def test_fastest_skips_kernels_that_disagree_or_failed():
    probes = [
        attention.Probe("flash", 5.0, 1e-2),
        attention.Probe("cudnn", 1.0, 0.5, "disagrees"),
        attention.Probe("efficient", None, None, "refused"),
    ]
    assert attention.fastest(probes) == "flash"
    assert attention.fastest(probes[1:]) is None


def test_allow_only_leaves_the_math_fallback_and_restore_undoes_it(switches):
    attention.allow_only("efficient")
    now = attention.snapshot()
    assert now["efficient"] and now["math"] and not now["flash"]
    assert now.get("cudnn", False) is False
    attention.allow_only(None)
    assert all(attention.snapshot().values())
    attention.restore(switches)
    assert attention.snapshot() == switches


def test_on_a_cpu_every_setting_leaves_torchs_kernel(switches):
    for setting in attention.CHOICES:
        choice = attention.configure(
            setting, torch.device("cpu"), batch=1, heads=2, block=16, head_dim=8, dtype=torch.float32
        )
        assert choice.kernel is None and "torch's kernel priority" in choice.describe()
        assert attention.snapshot() == switches
    with pytest.raises(ValueError, match="attention 'fast': expected one of auto, torch, flash"):
        attention.configure(
            "fast", torch.device("cpu"), batch=1, heads=2, block=16, head_dim=8, dtype=torch.float32
        )


def test_torch_default_names_the_kernel_torch_picks():
    assert attention.torch_default(torch.device("cpu"), 1, 2, 32, 8, torch.float32) == "flash"


def test_the_training_setting_is_checked():
    assert TrainConfig().attention == "auto"
    with pytest.raises(ValueError, match=r"params.yaml train.attention: must be one of auto, torch, flash"):
        TrainConfig(attention="fast").validated()


def test_auto_falls_back_to_torchs_priority_when_the_probe_cannot_run(monkeypatch, switches):
    """A probe that fails as a whole (out of memory for the float32 reference, say) must not stop
    the run: torch's own priority stays, and the log says why."""

    def failing_probe(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(attention, "probe", failing_probe)
    choice = attention.configure(
        "auto", torch.device("cuda"), batch=8, heads=16, block=4096, head_dim=64, dtype=torch.bfloat16
    )
    assert choice.kernel is None and attention.snapshot() == switches
    assert "reference failed: CUDA out of memory" in choice.describe()
