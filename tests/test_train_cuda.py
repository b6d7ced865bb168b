"""The CUDA path of training: bf16 autocast, TF32, torch.compile, fused AdamW, MFU. Skipped without a GPU."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from test_train import paths_in, tiny_config, write_tokens

from pipeline import checkpoint
from pipeline.model import GPT, GPTConfig
from pipeline.train import MaskedLM, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


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


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("dvclive") is None:
        monkeypatch.setitem(sys.modules, "dvclive", types.SimpleNamespace(Live=_LiveStandIn))


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


def test_gathered_and_full_masked_loss_agree_in_bf16() -> None:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=64)).cuda().eval()
    x = torch.randint(0, 50000, (4, 64), device="cuda")
    y = torch.randint(0, 50000, (4, 64), device="cuda")
    m = (torch.rand(4, 64, device="cuda") < 0.5).long()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        full = MaskedLM(gpt, gather=False)(x, y, m)
        gathered = MaskedLM(gpt, gather=True)(x, y, m)
    torch.testing.assert_close(gathered.float(), full.float(), atol=2e-2, rtol=2e-3)
