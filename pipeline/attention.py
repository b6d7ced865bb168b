"""Which attention kernel training runs: torch's own choice, a named one, or the fastest that agrees.

torch's scaled_dot_product_attention picks a kernel by a fixed priority (flash first; recent
torch puts cuDNN first on H100/H200 with a recent cuDNN), not by speed, and at GPT-2's shapes
another kernel can be the faster one. Attention is about a tenth of a 350M model's training FLOPs,
so the kernel shows in the MFU. `train.attention`:

- `torch` leaves torch's priority alone;
- `flash` | `efficient` | `cudnn` | `math` allows that kernel only (with the math kernel as the
  fallback for a shape it refuses);
- `auto` (the default) times each kernel's forward and backward at the run's own shape for a
  second at start, keeps those whose output and gradients agree with a float32 reference, and
  uses the fastest. Under DDP rank 0's choice is used by every rank.

The choice is made through torch's process-wide state, which torch.compile reads when it first
traces a function (lazily, at its first call; dynamo does not guard on it, so set it before that):
- the switches torch.backends.cuda.enable_*_sdp: the kernel and math are left on;
- torch's priority order (torch._C._set_sdp_priority_order): the kernel first, math last. torch
  takes the first enabled kernel in that order that accepts the shape, and its default order
  (flash, efficient, math, cuDNN, where cuDNN is not preferred) puts math before cuDNN: cuDNN
  with math left on would run math;
- torch.compiler.config.cache_key_tag, which names the kernel: compiled code is cached on disk by
  a key that holds none of the above, so without it a compilation made under another kernel (an
  earlier run, or an earlier case of the training benchmark) would be reused as is.
So eager and compiled runs both follow it. Only CUDA has a choice: on a CPU every setting leaves
torch's kernel.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.errortext import first_line

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
# What allow_only appends to torch.compiler.config.cache_key_tag (after what the user set there).
TAG_MARK = "|attention="


def _switches() -> dict[str, tuple[Callable[[bool], None], Callable[[], bool]]]:
    """Each kernel's (set, get) switch pair that this torch has."""
    cuda = torch.backends.cuda
    return {
        key: (getattr(cuda, setter), getattr(cuda, getter))
        for key, (_, setter, getter) in KERNELS.items()
        if hasattr(cuda, setter) and hasattr(cuda, getter)
    }


def _priority_api() -> tuple[Callable[[], list[int]], Callable[[list[int]], None]] | None:
    """torch's (get, set) of the SDPA priority order (private; torch 2.11 has both), or None."""
    get = getattr(torch._C, "_get_sdp_priority_order", None)
    put = getattr(torch._C, "_set_sdp_priority_order", None)
    return (get, put) if get is not None and put is not None else None


def _first_line(e: BaseException) -> str:
    """An error's first line, without torch's "(Triggered internally at ...)" (or its type, if empty)."""
    text = first_line(e).split(" (Triggered internally at")[0].strip()
    return (text or type(e).__name__)[:100]


# How torch's warnings name each kernel when it explains why the kernel was not used.
_WARNED_AS = {"efficient": "Memory efficient", "flash": "Flash attention", "cudnn": "cuDNN attention"}


def _refusal(kernel: str, caught: list[warnings.WarningMessage], e: RuntimeError) -> str:
    """Why a kernel refused: torch raises "No available kernel" after warning, kernel by kernel,
    "<kernel> not used because:" then the reasons. This kernel's first reason, else the error."""
    said = [str(w.message) for w in caught]
    name = _WARNED_AS.get(kernel)
    for header, reason in zip(said, said[1:], strict=False):
        if name and header.startswith(name) and "not used because" in header and "not used" not in reason:
            return _first_line(RuntimeError(reason))
    return _first_line(e)


@dataclass(frozen=True)
class Settings:
    """torch's attention state that allow_only changes (snapshot() takes it, restore() puts it back)."""

    enabled: dict[str, bool]
    priority: tuple[int, ...] | None
    cache_key_tag: str


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


def _model_layout(
    batch: int,
    heads: int,
    block: int,
    head_dim: int,
    dev: torch.device,
    dtype: torch.dtype,
    g: torch.Generator,
) -> list[torch.Tensor]:
    """q, k, v (B, H, T, D) laid out as CausalSelfAttention makes them (views of one (B, T, 3, H, D)
    projection), and an upstream gradient laid out as the output's transpose back to (B, T, H, D)
    makes it: kernels check strides (cuDNN's "packed QKV" layout), so contiguous tensors could time
    or refuse differently."""
    qkv = torch.randn(batch, block, 3, heads, head_dim, device=dev, dtype=dtype, generator=g)
    grad = torch.randn(batch, block, heads, head_dim, device=dev, dtype=dtype, generator=g)
    return [qkv[:, :, i].transpose(1, 2) for i in range(3)] + [grad.transpose(1, 2)]


def probe(
    dev: torch.device,
    batch: int,
    heads: int,
    block: int,
    head_dim: int,
    dtype: torch.dtype = torch.bfloat16,
    reps: int = 10,
) -> list[Probe]:
    """Time causal attention forward+backward with each kernel alone, and check it against the math
    kernel in float32. A kernel that cannot run the shape gets ms None and the reason."""
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v, w = _model_layout(batch, heads, block, head_dim, dev, dtype, g)

    def run(inputs: list[torch.Tensor], grad: torch.Tensor) -> list[torch.Tensor]:
        leaves = [x.detach().requires_grad_() for x in inputs]
        out = F.scaled_dot_product_attention(*leaves, is_causal=True)
        return [out.detach(), *torch.autograd.grad(out, leaves, grad)]

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    with sdpa_kernel([SDPBackend.MATH]):
        reference = [t.float() for t in run([q.float(), k.float(), v.float()], w.float())]
    probes = []
    for kernel, (backend_name, _, _) in KERNELS.items():
        backend = getattr(SDPBackend, backend_name, None)
        if backend is None:
            probes.append(Probe(kernel, None, None, "not in this torch"))
            continue
        # A kernel that refuses the shape raises (every other kernel is off), after warning why:
        # the warnings are kept for the reason, not shown.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with sdpa_kernel([backend]):
                    got = run([q, k, v], w)  # also the warm-up (lazy initialisation, cuDNN plans)
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(reps):  # the kernel's forward and backward only
                        run([q, k, v], w)
                    sync()
            except RuntimeError as e:  # this kernel cannot run this shape, dtype or GPU
                probes.append(Probe(kernel, None, None, _refusal(kernel, caught, e)))
                continue
        ms = 1000 * (time.perf_counter() - t0) / reps
        errors = [
            float((a.float() - b).abs().max() / b.abs().max().clamp(min=1e-6))
            for a, b in zip(got, reference, strict=True)
        ]
        # A NaN (a broken kernel) compares False with everything, so max() could pass over it.
        error = float("inf") if any(e != e for e in errors) else max(errors)
        why = "" if error <= AGREEMENT else f"disagrees with the reference ({error:.2g})"
        probes.append(Probe(kernel, ms, error, why))
    return probes


def torch_default(
    dev: torch.device, batch: int, heads: int, block: int, head_dim: int, dtype: torch.dtype
) -> str | None:
    """The kernel torch's own priority picks for causal attention at this shape, or None if unknown
    (the query is a private torch function: best effort, for reports only)."""
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v, _ = (
        x.detach().requires_grad_() for x in _model_layout(batch, heads, block, head_dim, dev, dtype, g)
    )
    try:  # (with inputs that need gradients, as training's: some kernels check that)
        index = int(torch._fused_sdp_choice(q, k, v, is_causal=True))
    except (AttributeError, RuntimeError, TypeError):
        return None
    by_index = {int(member.value): member.name for member in SDPBackend.__members__.values()}
    return next((key for key, (name, _, _) in KERNELS.items() if name == by_index.get(index)), None)


def fastest(probes: list[Probe]) -> str | None:
    """The quickest kernel that agrees with the reference, or None."""
    usable = [p for p in probes if p.usable]
    return min(usable, key=lambda p: p.ms).kernel if usable else None


def allow_only(kernel: str | None) -> None:
    """Allow one kernel (plus math, the fallback for shapes it refuses) and put it first in torch's
    priority, math last; None allows them all again (torch's priority order is left as it is).
    Also tags torch.compile's cache keys with the kernel (see the module docstring)."""
    switches = _switches()
    if kernel is not None and kernel not in switches:
        raise ValueError(f"attention {kernel!r}: this torch has no switch for it")
    for key, (switch, _) in switches.items():
        switch(kernel is None or key in (kernel, "math"))
    api = _priority_api()
    if kernel is not None and api is not None:
        get, put = api
        first, math = int(getattr(SDPBackend, KERNELS[kernel][0])), int(SDPBackend.MATH)
        order = [first, *(b for b in get() if b not in (first, math))]
        put(order if first == math else [*order, math])  # whole: torch does not check a partial one
    cfg = torch.compiler.config
    base = cfg.cache_key_tag.split(TAG_MARK)[0]
    cfg.cache_key_tag = base if kernel is None else f"{base}{TAG_MARK}{kernel}"


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
        probes = [Probe("math", None, None, f"reference failed: {_first_line(e)}")]
        torch.cuda.empty_cache()  # (dev is a CUDA device here)
    kernel = fastest(probes)
    if dist.is_available() and dist.is_initialized():  # every rank runs rank 0's choice
        shared = [kernel]
        dist.broadcast_object_list(shared, src=0, device=dev)  # (NCCL: through this rank's GPU)
        kernel = shared[0]
    allow_only(kernel)
    return Choice(setting, kernel, tuple(probes))


def snapshot() -> Settings:
    """The switches, priority order and cache tag as they are (restore() puts them back): for
    benchmarks and tests."""
    api = _priority_api()
    return Settings(
        enabled={key: get() for key, (_, get) in _switches().items()},
        priority=tuple(api[0]()) if api is not None else None,
        cache_key_tag=torch.compiler.config.cache_key_tag,
    )


def restore(saved: Settings) -> None:
    for key, (switch, _) in _switches().items():
        if key in saved.enabled:
            switch(saved.enabled[key])
    api = _priority_api()
    if api is not None and saved.priority is not None:
        api[1](list(saved.priority))
    torch.compiler.config.cache_key_tag = saved.cache_key_tag
