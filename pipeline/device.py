"""Device resolution shared by training, evaluation, chat and benchmarks.

For training also: mixed precision, TF32, peak FLOP/s and DDP process groups.

Everything CUDA-specific is behind a check, so the CPU path imports and runs without a GPU.
Several processes (torchrun) are recognised by the RANK / WORLD_SIZE / LOCAL_RANK environment
variables that torchrun sets; a plain `python -m stages.train` is one process of world size 1.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# Dense (no sparsity) tensor-core peak in bf16/fp16, FLOP/s, by a substring of the device name.
# Vendor datasheets; the first match wins, so the more specific names come first (the PCIe and
# NVL cards run lower clocks than the SXM parts that torch names plainly "NVIDIA H100 80GB HBM3",
# "NVIDIA H200").
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("A10G", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly one-process) training job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    """Read torchrun's environment; no variables means a single process. ValueError: not integers."""
    return DistInfo(
        rank=_env_int("RANK", 0),
        local_rank=_env_int("LOCAL_RANK", 0),
        world_size=_env_int("WORLD_SIZE", 1),
    )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: not an integer (torchrun sets it)") from None


def dist_env_problem(info: DistInfo) -> str | None:
    """Why `info` cannot be a process torchrun started (None: it can). A RANK left exported in a
    shell made a lone run a non-main rank: it trained, then wrote no checkpoint, model or line."""
    if info.world_size >= 1 and 0 <= info.local_rank <= info.rank < info.world_size:
        return None
    return (
        f"RANK {info.rank}, LOCAL_RANK {info.local_rank}, WORLD_SIZE {info.world_size} in the environment: "
        "torchrun sets 0 <= LOCAL_RANK <= RANK < WORLD_SIZE"
    )


def resolve_device(name: str | None = "auto", info: DistInfo | None = None) -> torch.device:
    """`auto` picks CUDA when present, else CPU; explicit names are checked, not silently changed.

    Under DDP on CUDA each process takes cuda:LOCAL_RANK (torchrun starts one process per GPU).
    """
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {name!r} requested but CUDA is not available here (ask for auto or cpu instead)"
            )
        if info is not None and info.enabled:
            device = torch.device("cuda", info.local_rank)
    return device


def init_process_group(info: DistInfo, device: torch.device) -> None:
    """NCCL between GPUs, gloo on CPU (used by the tests); a no-op for one process."""
    if info.enabled and not dist.is_initialized():
        # Before the group exists: torch.distributed.nn.functional binds the default group into the
        # default arguments of its functions when it is first imported, which DDP's constructor does
        # (through torch._dynamo). Imported after init, it held the group for the life of the process,
        # so destroy_process_group left gloo's threads running into the interpreter's teardown.
        import torch.distributed.nn  # noqa: F401

        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def destroy_process_group() -> None:
    """Destroy the default group. gloo's threads end only once nothing else holds it: a DDP
    wrapper's reducer does (train() drops its run's first). The collection frees the wrappers that
    only reference cycles still reach: an exception caught inside torch or dvclive keeps the frames
    it passed, and through them their callers' (Run.start's local DDP wrapper), until it runs."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End the process with `code`: sys.exit for one process; for one of several torchrun ranks,
    flush and os._exit. A rank's normal exit ran the interpreter's and C++'s teardown with gloo's
    threads still alive after destroy_process_group (the DDP wrapper and torch.distributed.nn's
    default arguments held the group: train() and init_process_group now let it go), and twice in
    CI (a write error's test) that aborted rank 0 after it had said its error (SIGABRT, "terminate
    called without an active exception"): torchrun then reported a crashed rank instead of the
    error. Kept as a belt for any other holder. Nothing is left for the skipped exit handlers by
    then: train() has closed its files, lock and process group."""
    try:
        several = dist_info_from_env().world_size > 1
    except ValueError:  # an unreadable WORLD_SIZE: a refusal the stage already said
        several = False
    if not several:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_ok(info: DistInfo, ok: bool, device: torch.device) -> bool:
    """Whether `ok` holds on every process (a collective: every rank must call it). A check that only
    one rank makes (the main process's run lock) ends all ranks alike, not the others in a collective
    that its peer left (gloo's "Connection closed by peer" traceback)."""
    if not info.enabled:
        return ok
    failed = torch.tensor([0 if ok else 1], device=device)  # NCCL reduces only tensors on the GPU
    dist.all_reduce(failed)
    return int(failed.item()) == 0


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype; CPU trains in float32 (bf16 autocast on CPU is slower there, not faster)."""
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: expected one of {sorted(DTYPES)}")
    if device.type != "cuda":
        return torch.float32
    if name == "bfloat16" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_tf32(enabled: bool) -> None:
    """TF32 matmuls and convolutions on Ampere and later (float32 parts of the model get ~8x)."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def peak_flops(device: torch.device) -> float | None:
    """The GPU's dense bf16 peak by its name, or None (CPU, or a GPU this table does not know)."""
    if device.type != "cuda":
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


def peak_flops_for_name(name: str) -> float | None:
    """PEAK_FLOPS's first entry whose key is part of `name` (torch.cuda.get_device_name), or None."""
    for key, flops in PEAK_FLOPS:
        if key in name:
            return flops
    return None


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Have glibc serve large tensors from its heap and keep freed memory for reuse (Linux only).

    By default glibc gives every block over 32 MB its own mmap and unmaps it on free, so each CPU
    training step's vocabulary-sized tensors (logits, log-softmax and their gradients: ~150 MB each
    for cpu-tiny) come back as fresh pages that the kernel must fault in and zero: measured at 40%
    of the run's time as system time. Process-wide and numerics-neutral (the same weights bit for
    bit); call it once at a process's entry point, not from library code. Returns whether it applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
