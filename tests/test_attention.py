"""pipeline/attention.py: the attention kernel a run uses (the choice itself matters on CUDA only)."""

from __future__ import annotations

import pytest
import torch

from pipeline import attention
from pipeline.trainconfig import TrainConfig


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
    now = attention.snapshot().enabled
    assert now["efficient"] and now["math"] and not now["flash"]
    assert now.get("cudnn", False) is False
    attention.allow_only(None)
    assert all(attention.snapshot().enabled.values())
    attention.restore(switches)
    assert attention.snapshot() == switches


@pytest.mark.parametrize("kernel", list(attention.KERNELS))
def test_the_kernel_allowed_comes_first_in_torchs_priority_and_math_last(kernel, switches):
    """torch takes the first enabled kernel in its priority order, and its default order puts math
    before cuDNN (flash, efficient, math, cuDNN): cuDNN allowed with the math fallback ran math."""
    order = torch._C._get_sdp_priority_order()
    attention.allow_only(kernel)
    now = attention.snapshot().priority
    assert sorted(now) == sorted(order)  # still a whole permutation
    assert now[0] == int(getattr(attention.SDPBackend, attention.KERNELS[kernel][0]))
    assert now[-1] == int(attention.SDPBackend.MATH) or kernel == "math"
    attention.allow_only(None)  # all on again; the order stays
    assert attention.snapshot().priority == now
    attention.restore(switches)
    assert attention.snapshot() == switches and torch._C._get_sdp_priority_order() == order


def test_the_kernel_tags_compiled_code_caches_and_keeps_the_users_tag(switches):
    torch.compiler.config.cache_key_tag = "mine"
    attention.allow_only("cudnn")
    assert torch.compiler.config.cache_key_tag == "mine|attention=cudnn"
    attention.allow_only("flash")
    assert torch.compiler.config.cache_key_tag == "mine|attention=flash"
    attention.allow_only(None)
    assert torch.compiler.config.cache_key_tag == "mine"
    attention.restore(switches)
    assert torch.compiler.config.cache_key_tag == switches.cache_key_tag


def test_compiled_code_follows_the_kernel_even_with_an_earlier_compilation_cached(tmp_path, switches):
    """torch.compile reads the switches when it traces, but its on-disk cache of compiled graphs is
    keyed by the traced Python graph, which holds none of them: without the kernel in the cache key,
    a second compilation under another kernel (the training benchmark's extra case, a later run)
    reused the first one's code. On a CPU, turning flash off makes torch run math."""
    import torch._dynamo
    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
    from torch._inductor.utils import run_and_get_code

    def attend(q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).sum()

    q, k, v = (torch.randn(1, 2, 16, 8, requires_grad=True) for _ in range(3))

    def compiled_code() -> str:
        torch._dynamo.reset()

        def step():
            torch.compile(attend)(q, k, v).backward()

        return "\n".join(run_and_get_code(step)[1])

    flash = "_scaled_dot_product_flash_attention_for_cpu"
    with (
        temporary_cache_dir(str(tmp_path)),
        functorch_config.patch(enable_autograd_cache=True),
        inductor_config.patch(fx_graph_cache=True),
    ):
        try:
            assert flash in compiled_code()  # torch's priority: flash (and now cached)
            attention.allow_only("math")
            code = compiled_code()
            assert code and flash not in code
        finally:
            torch._dynamo.reset()


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


class _NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient: a kernel whose output agrees but whose backward is broken."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def test_a_kernel_with_nan_gradients_or_an_empty_error_is_never_chosen(monkeypatch):
    """max() over the errors skipped a NaN that came after a finite one (NaN compares False), so a
    kernel with a good output and NaN gradients counted as agreeing; and an error without a message
    (an IndexError while reading its first line) stopped the probe, and with it the run."""
    real = attention.F.scaled_dot_product_attention
    cuda = torch.backends.cuda

    def fake(q, k, v, **kwargs):
        only = {name for name in ("flash", "math") if getattr(cuda, f"{name}_sdp_enabled")()}
        if only == {"math"} and q.dtype == torch.bfloat16:
            raise RuntimeError()  # the math kernel alone, at the probed dtype (not the reference)
        out = real(q, k, v, **kwargs)
        return _NanGrad.apply(out) if only == {"flash"} else out

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", fake)
    probes = {p.kernel: p for p in attention.probe(torch.device("cpu"), 1, 2, 32, 8, torch.bfloat16, reps=1)}
    assert probes["flash"].ms is not None and probes["flash"].error == float("inf")
    assert not probes["flash"].usable and "disagrees" in probes["flash"].why
    assert probes["math"].ms is None and probes["math"].why == "RuntimeError"
    assert attention.fastest(list(probes.values())) is None


def test_a_refused_kernel_says_why_from_torchs_warnings(monkeypatch):
    """On CUDA torch refuses with "No available kernel" after warning why, kernel by kernel; the
    probe keeps that kernel's reason (the warnings themselves are not shown)."""
    import warnings

    real = attention.F.scaled_dot_product_attention
    cuda = torch.backends.cuda

    def fake(q, k, v, **kwargs):
        if cuda.cudnn_sdp_enabled() and not cuda.math_sdp_enabled():  # as sdp_utils.cpp words it
            for said in (
                "Memory efficient kernel not used because:",
                "Memory efficient attention has been runtime disabled.",
                "Flash attention kernel not used because:",
                "Flash attention has been runtime disabled.",
                "cuDNN attention kernel not used because:",
                "head_dim should be a multiple of 8 (Triggered internally at sdp_utils.cpp:123.)",
            ):
                warnings.warn(said, UserWarning, stacklevel=1)
            raise RuntimeError("No available kernel. Aborting execution.")
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", fake)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        probes = {
            p.kernel: p for p in attention.probe(torch.device("cpu"), 1, 2, 16, 8, torch.float32, reps=1)
        }
    assert probes["cudnn"].ms is None and probes["cudnn"].why == "head_dim should be a multiple of 8"
    assert probes["efficient"].why.startswith("No viable backend")  # CPU's own refusal: no warnings
    assert not [w for w in shown if "not used because" in str(w.message)]
