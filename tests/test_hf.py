"""Hugging Face GPT-2 import (local dir, Hub cache offline) and export (transformers loads it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from pipeline import hf
from pipeline.model import GPT, GPTConfig
from pipeline.tokenizer import BOT_ID, END_OF_TURN_ID, HUMAN_ID, N_VOCAB, PADDED_VOCAB, get_encoding

transformers = pytest.importorskip("transformers")

TINY = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64)


def _hf_tiny(tmp: Path, vocab_size: int = 50257) -> tuple[Path, torch.nn.Module]:
    """A tiny random GPT-2 saved by transformers (safetensors) in the Hugging Face layout."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**TINY, vocab_size=vocab_size)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm affine, so a transposition slip would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp, safe_serialization=True)
    return tmp, model


def _ordinary_ids(n: int = 24) -> torch.Tensor:
    return torch.tensor(
        [get_encoding().encode_ordinary("Hello there! How are you doing today, my friend?")[:n]] * 2
    )


def test_local_hf_dir_matches_transformers_logits(tmp_path: Path) -> None:
    path, ref = _hf_tiny(tmp_path / "tiny")
    ours = hf.load_pretrained(str(path)).eval()
    assert ours.config.vocab_size == PADDED_VOCAB and ours.config.block_size == TINY["n_positions"]
    idx = _ordinary_ids()
    with torch.no_grad():
        want = ref(idx).logits
        got = ours.logits_all(idx)
    torch.testing.assert_close(got[..., :50257], want, atol=1e-4, rtol=0)


def test_new_token_rows_start_at_mean_embedding(tmp_path: Path) -> None:
    path, ref = _hf_tiny(tmp_path / "tiny")
    ours = hf.load_pretrained(str(path))
    wte = ours.transformer.wte.weight.detach()
    mean = ref.transformer.wte.weight.detach().mean(0)
    for token in (HUMAN_ID, BOT_ID, END_OF_TURN_ID, PADDED_VOCAB - 1):
        torch.testing.assert_close(wte[token], mean)
    assert ours.lm_head.weight is ours.transformer.wte.weight  # still tied


def test_hub_name_loads_from_offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """init_from=gpt2 goes through hf_hub_download; with HF_HUB_OFFLINE it must use the local cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    src, ref = _hf_tiny(tmp_path / "tiny")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--openai-community--gpt2"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    ours = hf.load_pretrained("gpt2", cache_dir=tmp_path / "hub").eval()
    idx = _ordinary_ids()
    with torch.no_grad():
        torch.testing.assert_close(ours.logits_all(idx)[..., :50257], ref(idx).logits, atol=1e-4, rtol=0)


def test_hub_name_missing_from_cache_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="openai-community/gpt2-medium"):
        hf.load_pretrained("gpt2-medium", cache_dir=tmp_path / "empty")


def test_unknown_source_and_non_gpt2_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not one of"):
        hf.load_pretrained(str(tmp_path / "nowhere"))
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "llama" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model_type 'llama'"):
        hf.load_pretrained(str(tmp_path / "llama"))


def _our_tiny() -> GPT:
    torch.manual_seed(1)
    model = GPT(GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def test_export_loads_in_transformers_with_same_logits(tmp_path: Path) -> None:
    ours = _our_tiny()
    out = tmp_path / "hf"
    hf.export_hf(ours, out)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    assert theirs.config.vocab_size == N_VOCAB
    idx = torch.tensor([[50256, HUMAN_ID, 15496, 11, 703, 389, 345, 30, END_OF_TURN_ID, BOT_ID, 40, 1101]])
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours.logits_all(idx)[..., :N_VOCAB], atol=1e-4, rtol=0)
    # And back: our importer reads our export (a fine-tuned model can seed another run).
    again = hf.load_pretrained(str(out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(again.logits_all(idx)[..., :N_VOCAB], ours.logits_all(idx)[..., :N_VOCAB])


def test_export_tokenizer_knows_the_chat_tokens(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    hf.export_hf(_our_tiny(), out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert len(tok) == N_VOCAB
    text = "Hi there, how's it going?"
    assert tok(text)["input_ids"] == get_encoding().encode_ordinary(text)
    ids = tok("<human>hello<endOfText><bot>")["input_ids"]
    assert ids[0] == HUMAN_ID and ids[-2:] == [END_OF_TURN_ID, BOT_ID]
    assert tok.decode([BOT_ID]) == "<bot>"
    gen = json.loads((out / "generation_config.json").read_text())
    assert END_OF_TURN_ID in gen["eos_token_id"]
