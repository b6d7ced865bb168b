"""The CUDA path of training: bf16 autocast, TF32, torch.compile, fused AdamW, MFU (skipped without a GPU),
and, on CPU, that the GPU check runs on the device image, which lacks dvc, dvclive, scmrepo, polars,
pandera and datasets."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_train import paths_in, tiny_config, write_tokens

from pipeline import checkpoint, device
from pipeline.model import GPT, GPTConfig
from pipeline.train import MaskedLM, train

ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class _LiveStandIn:
    """GPU images may lack dvc/dvclive (dvclive imports dvc); this test is about CUDA, so stand in."""

    def __init__(self, dir: str, **_: object) -> None:  # noqa: A002 - dvclive's signature
        self.dir, self.step, self.summary = Path(dir), 0, {}

    def log_metric(self, name: str, val: float) -> None:
        self.summary[name] = val

    def next_step(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "metrics.json").write_text(json.dumps(self.summary))

    def end(self) -> None:
        pass


class _SCMError(Exception):
    pass


def logging_stand_ins(force: bool = False) -> dict[str, types.ModuleType]:
    """Modules to put in sys.modules for what train's logger imports (pipeline.runlog.make_live:
    dvclive.Live and scmrepo.exceptions.SCMError) where they are missing (always with `force`)."""
    out: dict[str, types.ModuleType] = {}
    try:
        if force:
            raise ImportError
        import dvclive  # noqa: F401
    except ImportError:
        out["dvclive"] = types.SimpleNamespace(Live=_LiveStandIn)
    try:
        if force:
            raise ImportError
        import scmrepo.exceptions  # noqa: F401
    except ImportError:
        out["scmrepo"] = types.SimpleNamespace()
        out["scmrepo.exceptions"] = types.SimpleNamespace(SCMError=_SCMError)
    return out


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, module in logging_stand_ins().items():
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.usefixtures("live")
def test_bf16_compiled_training_learns_and_reports_mfu(tmp_path: Path) -> None:
    data = write_tokens(tmp_path / "tokens" / "full")
    cfg = tiny_config(
        device="cuda",
        dtype="bfloat16",
        compile=True,
        max_iters=30,
        eval_interval=15,
        ckpt_interval=15,
        n_embd=64,
        block_size=64,
        batch_size=8,
    )
    summary = train(cfg, paths_in(tmp_path / "out", data))
    assert summary["device"] == "cuda"
    assert summary["val_loss"] < summary["initial_val_loss"] - 4.0, summary
    if "H100" in torch.cuda.get_device_name() or "H200" in torch.cuda.get_device_name():
        assert 0 < summary["mfu"] < 1
    state = checkpoint.load_state(checkpoint.latest_run_checkpoint(tmp_path / "out" / "run"))
    assert state["optimizer"]["param_groups"][0]["fused"] is True
    assert checkpoint.load_model(tmp_path / "out" / "ckpt").config.n_embd == 64


def check_gathered_and_full_masked_loss_agree_in_bf16(dev: str) -> None:
    """Under bf16 autocast the gathered head gives the full head's masked loss, within a tolerance
    that a loss over the wrong positions could not meet: on a random-init model every position's
    loss is near ln(vocab), so the mask would hardly matter. Here the (tied) embedding is scaled up
    so that per-position losses spread (std ~0.8), and the mask is the easier half of the positions:
    the loss over the other half, or over the mask shifted by one, is > 5x the tolerance away."""
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=64)).to(dev).eval()
    x = torch.randint(0, 50000, (4, 64), device=dev)
    y = torch.randint(0, 50000, (4, 64), device=dev)
    with torch.no_grad():
        gpt.transformer.wte.weight.mul_(5.0)
        logits = gpt.logits_all(x).float()
        per_position = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(4, 64)
    m = (per_position < per_position.median()).long()
    with torch.autocast(dev, dtype=torch.bfloat16):
        full = MaskedLM(gpt, gather=False)(x, y, m).float()
        gathered = MaskedLM(gpt, gather=True)(x, y, m).float()
        wrong = [MaskedLM(gpt, gather=False)(x, y, w).float() for w in (1 - m, m.roll(1, dims=1))]
    atol, rtol = 2e-2, 2e-3
    tolerance = atol + rtol * abs(full.item())
    for other in wrong:
        assert abs(other.item() - full.item()) > 5 * tolerance, (other.item(), full.item(), tolerance)
    torch.testing.assert_close(gathered, full, atol=atol, rtol=rtol)


@pytest.mark.cuda
@needs_cuda
def test_gathered_and_full_masked_loss_agree_in_bf16() -> None:
    check_gathered_and_full_masked_loss_agree_in_bf16("cuda")


def test_gathered_and_full_masked_loss_agree_in_bf16_autocast_on_cpu() -> None:
    """The same check where it runs without a GPU (CPU bf16 autocast): it proves its own margins."""
    check_gathered_and_full_masked_loss_agree_in_bf16("cpu")


# The aten op each kernel is, as compiled code calls it.
KERNEL_OPS = {
    "flash": "_scaled_dot_product_flash_attention",
    "efficient": "_scaled_dot_product_efficient_attention",
    "cudnn": "_scaled_dot_product_cudnn_attention",
}


@pytest.mark.cuda
@needs_cuda
def test_auto_attention_picks_an_agreeing_kernel_that_compiled_code_follows() -> None:
    """The choice must reach compiled code: each kernel that agrees, once allowed, is the op the
    compiled forward calls (math comes before cuDNN in torch's default priority, and compiled graphs
    are cached by a key that holds no switch: both once hid the choice)."""
    from torch._inductor.utils import run_and_get_code

    from pipeline import attention

    saved = attention.snapshot()
    try:
        choice = attention.configure(
            "auto", torch.device("cuda"), batch=4, heads=4, block=128, head_dim=64, dtype=torch.bfloat16
        )
        assert choice.kernel in attention.KERNELS and any(p.usable for p in choice.probes)
        assert attention.snapshot().enabled[choice.kernel] and attention.snapshot().enabled["math"]
        qkv = torch.randn(4, 128, 3, 4, 64, device="cuda", dtype=torch.bfloat16)
        q, k, v = (qkv[:, :, i].transpose(1, 2).requires_grad_() for i in range(3))  # the model's layout

        def attend(q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

        usable = [p.kernel for p in choice.probes if p.usable and p.kernel in KERNEL_OPS]
        for kernel in dict.fromkeys([choice.kernel, *usable]):
            if kernel not in KERNEL_OPS:
                continue
            attention.allow_only(kernel)
            compiled, codes = run_and_get_code(torch.compile(attend, fullgraph=True), q, k, v)
            assert codes and KERNEL_OPS[kernel] in "\n".join(codes), kernel
            compiled.float().sum().backward()
            torch.testing.assert_close(compiled, attend(q, k, v), atol=2e-2, rtol=2e-2)
    finally:
        attention.restore(saved)
        torch._dynamo.reset()


# ---- on CPU: what the GPU check needs of the device image ----------------------------------------

# The device image's python lacks these (benchmarks/gpu_check.sh); the stand-ins above cover the two
# that training imports, and nothing else on the check's paths may import any of them.
DEVICE_IMAGE_LACKS = ("polars", "pandera", "dvc", "dvclive", "scmrepo", "datasets")

# A process in which the packages `lacks` names cannot be imported, with the repo and tests/ on its path.
_WITHOUT = """
import importlib.abc, sys, tempfile
from pathlib import Path

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {lacks!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the device image)", name=name)
        return None

sys.meta_path.insert(0, Missing())
sys.path[:0] = [{root!r}, {tests!r}]
"""

_WITHOUT_MISSING_PACKAGES = (
    _WITHOUT
    + """
import benchmarks.decode, benchmarks.gpu_summary, benchmarks.train_throughput, pipeline.engine  # noqa
import test_train_cuda as t
from test_train import paths_in, tiny_config, write_tokens
from pipeline.train import train

sys.modules.update(t.logging_stand_ins())
tmp = Path(tempfile.mkdtemp(dir={tmp!r}))
cfg = tiny_config(max_iters=2, eval_interval=2, ckpt_interval=2, dropout=0.0)
summary = train(cfg, paths_in(tmp / "out", write_tokens(tmp / "tokens" / "full", n_train=40, n_val=8)))
print("TRAINED", summary["iters"])
"""
)


def test_train_and_the_benchmarks_run_without_the_packages_the_device_lacks(tmp_path: Path) -> None:
    """The CUDA training test's stand-ins are enough: train() on CPU, in a process where dvc, dvclive,
    scmrepo, polars, pandera and datasets cannot be imported (dvclive's scmrepo import once failed
    the GPU test), and the benchmarks gpu_check.sh runs import."""
    script = _WITHOUT_MISSING_PACKAGES.format(
        lacks=DEVICE_IMAGE_LACKS, root=str(ROOT), tests=str(ROOT / "tests"), tmp=str(tmp_path)
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TRAINED 2" in done.stdout


def test_the_shared_conftest_loads_without_hypothesis() -> None:
    """gpu_check.sh runs pytest on the CUDA tests, so tests/conftest.py loads there too; only the
    property tests need hypothesis, and an image without it must still run the CUDA tests."""
    script = _WITHOUT.format(lacks=("hypothesis",), root=str(ROOT), tests=str(ROOT / "tests"))
    script += "import conftest\nprint('LOADED', conftest.settings)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOADED None" in done.stdout


def test_peak_flops_by_device_name() -> None:
    """PCIe and NVL parts have lower clocks than the SXM H100/H200 whose name they contain."""
    assert device.peak_flops_for_name("NVIDIA H200") == 989e12
    assert device.peak_flops_for_name("NVIDIA H100 80GB HBM3") == 989e12
    assert device.peak_flops_for_name("NVIDIA H200 NVL") == 835e12
    assert device.peak_flops_for_name("NVIDIA H100 NVL") == 835e12
    assert device.peak_flops_for_name("NVIDIA H100 PCIe") == 756e12
    assert device.peak_flops_for_name("NVIDIA A100-SXM4-80GB") == 312e12
    assert device.peak_flops_for_name("Some Future GPU") is None
    assert device.peak_flops(torch.device("cpu")) is None
