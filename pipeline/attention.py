"""Which attention kernel training runs: torch's own choice, a named one, or the fastest that agrees.

torch's scaled_dot_product_attention picks a kernel by a fixed priority (flash first), not by
speed, and on Hopper GPUs the cuDNN kernel can be faster than flash at GPT-2's shapes. Attention
is about a tenth of a 350M model's training FLOPs, so the kernel shows in the MFU. `train.attention`:

- `torch` leaves torch's priority alone;
- `flash` | `efficient` | `cudnn` | `math` allows that kernel only (with the math kernel as the
  fallback for a shape it refuses);
- `auto` (the default) times each kernel's forward and backward at the run's own shape for a
  second at start, keeps those whose output and gradients agree with a float32 reference, and
  uses the fastest. Under DDP rank 0's choice is used by every rank.

The choice is made through torch's process-wide switches (torch.backends.cuda.enable_*_sdp), which
torch.compile reads when it traces, so eager and compiled runs both follow it. Only CUDA has a
choice: on a CPU every setting leaves torch's kernel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# Setting name -> (torch's SDPBackend name, its switch in torch.backends.cuda, the switch's query).
KERNELS: dict[str, tuple[str, str, str]] = {
    "flash": ("FLASH_ATTENTION", "enable_flash_sdp", "flash_sdp_enabled"),
    "efficient": ("EFFICIENT_ATTENTION", "enable_mem_efficient_sdp", "mem_efficient_sdp_enabled"),
    "cudnn": ("CUDNN_ATTENTION", "enable_cudnn_sdp", "cudnn_sdp_enabled"),
    "math": ("MATH", "enable_math_sdp", "math_sdp_enabled"),
}
CHOICES = ("auto", "torch", *KERNELS)
# Largest error (relative to the reference's largest value) a kernel may show and still be chosen:
# bf16 rounding gives about 1e-2; a broken kernel gives order 1.
AGREEMENT = 5e-2
# The probe runs at most this many sequences: the float32 reference materialises the whole
# attention matrix, and a few sequences of a 1024 window already fill the GPU's SMs.
PROBE_BATCH = 8


def _switches() -> dict[str, tuple[Callable[[bool], None], Callable[[], bool]]]:
    """Each kernel's (set, get) switch pair that this torch has."""
    cuda = torch.backends.cuda
    return {
        key: (getattr(cuda, setter), getattr(cuda, getter))
        for key, (_, setter, getter) in KERNELS.items()
        if hasattr(cuda, setter) and hasattr(cuda, getter)
    }


@dataclass(frozen=True)
class Probe:
    """One kernel at one shape: forward+backward time, and how far it is from the reference."""

    kernel: str
    ms: float | None  # None: the kernel refused the shape, is missing, or disagreed
    error: float | None  # max |difference| / max |reference| over the output and the gradients
    why: str = ""

    @property
    def usable(self) -> bool:
        return self.ms is not None and self.error is not None and self.error <= AGREEMENT


@dataclass(frozen=True)
class Choice:
    """What configure did: the kernel in force (None = torch's priority) and what it measured."""

    setting: str
    kernel: str | None
    probes: tuple[Probe, ...] = ()

    def describe(self) -> str:
        if self.kernel is None:
            why = "; ".join(p.why for p in self.probes if p.why and p.ms is None and "reference" in p.why)
            return f"attention: torch's kernel priority (train.attention: {self.setting}{'; ' + why if why else ''})"
        timed = ", ".join(f"{p.kernel} {p.ms:.2f} ms" for p in self.probes if p.usable)
        return f"attention: {self.kernel} (train.attention: {self.setting}{'; ' + timed if timed else ''})"


def probe(
    dev: torch.device,
    batch: int,
    heads: int,
    block: int,
    head_dim: int,
    dtype: torch.dtype = torch.bfloat16,
    reps: int = 5,
) -> list[Probe]:
    """Time causal attention forward+backward with each kernel alone, and check it against the math
    kernel in float32. A kernel that cannot run the shape gets ms None and the reason."""
    g = torch.Generator(device=dev).manual_seed(0)
    shape = (batch, heads, block, head_dim)
    q, k, v, w = (torch.randn(shape, device=dev, dtype=dtype, generator=g) for _ in range(4))

    def run(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        leaves = [x.detach().requires_grad_() for x in inputs]
        out = F.scaled_dot_product_attention(*leaves, is_causal=True)
        (out * w.to(out.dtype)).sum().backward()
        return [out.detach().float()] + [x.grad.float() for x in leaves]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with sdpa_kernel([SDPBackend.MATH]):
        reference = run([q.float(), k.float(), v.float()])
    probes = []
    for kernel, (backend_name, _, _) in KERNELS.items():
        backend = getattr(SDPBackend, backend_name, None)
        if backend is None:
            probes.append(Probe(kernel, None, None, "not in this torch"))
            continue
        try:
            with sdpa_kernel([backend]):
                got = run([q, k, v])  # also the warm-up (lazy initialisation, cuDNN plans)
                sync()
                t0 = time.perf_counter()
                for _ in range(reps):
                    run([q, k, v])
                sync()
        except RuntimeError as e:  # this kernel cannot run this shape, dtype or GPU
            probes.append(Probe(kernel, None, None, str(e).strip().splitlines()[0][:100]))
            continue
        ms = 1000 * (time.perf_counter() - t0) / reps
        error = max(
            float((a - b).abs().max() / b.abs().max().clamp(min=1e-6))
            for a, b in zip(got, reference, strict=True)
        )
        why = "" if error <= AGREEMENT else f"disagrees with the reference ({error:.2g})"
        probes.append(Probe(kernel, ms, error, why))
    return probes


def torch_default(
    dev: torch.device, batch: int, heads: int, block: int, head_dim: int, dtype: torch.dtype
) -> str | None:
    """The kernel torch's own priority picks for causal attention at this shape, or None if unknown
    (the query is a private torch function: best effort, for reports only)."""
    q = torch.empty(batch, heads, block, head_dim, device=dev, dtype=dtype)
    try:
        index = int(torch._fused_sdp_choice(q, q, q, is_causal=True))
    except (AttributeError, RuntimeError, TypeError):
        return None
    by_index = {int(member.value): member.name for member in SDPBackend.__members__.values()}
    return next((key for key, (name, _, _) in KERNELS.items() if name == by_index.get(index)), None)


def fastest(probes: list[Probe]) -> str | None:
    """The quickest kernel that agrees with the reference, or None."""
    usable = [p for p in probes if p.usable]
    return min(usable, key=lambda p: p.ms).kernel if usable else None


def allow_only(kernel: str | None) -> None:
    """Allow one kernel (plus math, the fallback for shapes it refuses); None allows them all again."""
    for key, (switch, _) in _switches().items():
        switch(kernel is None or key in (kernel, "math"))


def configure(
    setting: str,
    dev: torch.device,
    *,
    batch: int,
    heads: int,
    block: int,
    head_dim: int,
    dtype: torch.dtype,
) -> Choice:
    """Apply `train.attention` for a run at this shape (see the module docstring)."""
    if setting not in CHOICES:
        raise ValueError(f"attention {setting!r}: expected one of {', '.join(CHOICES)}")
    if dev.type != "cuda" or setting == "torch":
        return Choice(setting, None)
    if setting != "auto":
        allow_only(setting)
        return Choice(setting, setting)
    try:
        probes = probe(dev, min(batch, PROBE_BATCH), heads, block, head_dim, dtype)
    except RuntimeError as e:  # the float32 reference itself failed (out of memory at a huge shape)
        probes = [Probe("math", None, None, f"reference failed: {str(e).strip().splitlines()[0][:100]}")]
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    kernel = fastest(probes)
    if dist.is_available() and dist.is_initialized():  # every rank runs rank 0's choice
        shared = [kernel]
        dist.broadcast_object_list(shared, src=0)
        kernel = shared[0]
    allow_only(kernel)
    return Choice(setting, kernel, tuple(probes))


def snapshot() -> dict[str, bool]:
    """The switches as they are (restore() puts them back): for benchmarks and tests."""
    return {key: get() for key, (_, get) in _switches().items()}


def restore(saved: dict[str, bool]) -> None:
    for key, (switch, _) in _switches().items():
        if key in saved:
            switch(saved[key])
