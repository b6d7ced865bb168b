"""Tests from mutation audit 34 (loading GPT-2 weights: pipeline/hf.py's names, Conv1D transposes, rows
past GPT-2's vocabulary, safetensors reading and shape checks; model.py's tying and crop_block_size;
trainsetup.py's HUB_SHAPES): each kills a hand-made mutant that the suite let through; its docstring
names which."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_mutation_audit27 import LoggedRuntime

from pipeline import hf
from pipeline.hf import GPT2_VOCAB
from pipeline.model import GPT, GPTConfig
from pipeline.tokenizer import BOT_ID, HUMAN_ID, PADDED_VOCAB, get_encoding
from pipeline.trainconfig import TrainConfig
from pipeline.trainsetup import fresh_model

transformers = pytest.importorskip("transformers")


def _tiny(path: Path, model_cls=None, dtype: torch.dtype | None = None, **config) -> torch.nn.Module:
    """A tiny random GPT-2 written by transformers' save_pretrained (biases and LayerNorms non-zero, so
    a slip in any tensor shows in the logits); returns it in float32, as saved."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**{"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 32, **config})
    model = (model_cls or transformers.GPT2LMHeadModel)(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    (model.to(dtype) if dtype else model).save_pretrained(path)
    return model.float()


def _store(path: Path, **tensors: torch.Tensor) -> None:
    """model.safetensors with `tensors` added (or replaced)."""
    weights = path / "model.safetensors"
    save_file({**load_file(str(weights)), **tensors}, str(weights), metadata={"format": "pt"})


def _ids() -> torch.Tensor:
    return torch.tensor([get_encoding().encode_ordinary("Hello there! How are you doing today?")])


def _logits(path: Path) -> torch.Tensor:
    with torch.no_grad():
        return hf.load_pretrained(str(path), log=lambda _: None).eval().logits_all(_ids())


# ---------------------------------------------------------------- hf: rows past GPT-2's vocabulary


def _wte_with_an_outlier_row() -> torch.Tensor:
    """GPT-2's 50257 rows plus one added row far from them (a trained [PAD], say)."""
    torch.manual_seed(0)
    wte = torch.randn(GPT2_VOCAB + 1, 4) * 0.02
    wte[GPT2_VOCAB] = 100.0
    return wte


def test_padding_rows_are_the_mean_of_gpt2s_own_rows_only() -> None:
    """Mutation hf.pad_vocab: `wte[: min(n, GPT2_VOCAB)].mean` -> `wte.mean`. The new rows must be the
    average GPT-2 token: a checkpoint's own added row (here an outlier) was averaged in, so every new
    row (the chat markers among them) started near that token instead."""
    wte = _wte_with_an_outlier_row()
    padded = hf.pad_vocab(wte, PADDED_VOCAB)
    assert padded.shape == (PADDED_VOCAB, 4)
    assert torch.equal(padded[: GPT2_VOCAB + 1], wte)
    want = wte[:GPT2_VOCAB].mean(0).expand(PADDED_VOCAB - GPT2_VOCAB - 1, -1)
    torch.testing.assert_close(padded[GPT2_VOCAB + 1 :], want)
    # (Mutation `wte[:vocab_size]` -> `wte[-vocab_size:]`: a longer embedding keeps its first rows.)
    assert torch.equal(hf.pad_vocab(wte, GPT2_VOCAB), wte[:GPT2_VOCAB])


def test_a_row_named_as_another_token_is_reset_to_gpt2s_mean(tmp_path: Path) -> None:
    """Mutation hf.check_added_rows: `wte[:GPT2_VOCAB].mean(dim=0)` -> `wte.mean(dim=0)`. A row its
    tokenizer files name as another token ([PAD]) starts at GPT-2's mean embedding, as pad_vocab's new
    rows do; the mean over all rows took in that very [PAD] row (and the padding)."""
    wte = _wte_with_an_outlier_row()
    (tmp_path / "added_tokens.json").write_text(json.dumps({"[PAD]": GPT2_VOCAB}))
    padded = hf.pad_vocab(wte, PADDED_VOCAB)
    lines = hf.check_added_rows(padded, GPT2_VOCAB + 1, tmp_path)
    assert len(lines) == 1 and "row 50257 is '[PAD]' in added_tokens.json, not <human>" in lines[0]
    torch.testing.assert_close(padded[HUMAN_ID], wte[:GPT2_VOCAB].mean(0))
    torch.testing.assert_close(padded[BOT_ID], padded[HUMAN_ID])


def test_a_checkpoint_without_added_rows_never_reads_its_tokenizer_files(tmp_path: Path) -> None:
    """Mutation hf.load_pretrained: `own_rows.shape[0] > GPT2_VOCAB` -> `>=`. A plain GPT-2 (50257
    rows) has no row a tokenizer file could rename, so those files decide nothing: an added_tokens.json
    the reader refuses (an id that is no integer) refused the whole folder."""
    ref = _tiny(tmp_path)
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<human>": "x"}))
    with torch.no_grad():
        torch.testing.assert_close(_logits(tmp_path)[..., :GPT2_VOCAB], ref(_ids()).logits, atol=1e-5, rtol=0)


def test_the_new_rows_of_a_half_precision_checkpoint_are_the_float32_mean(tmp_path: Path) -> None:
    """Mutation hf.state_from_hf: `t = t.float()` dropped. A bfloat16 checkpoint's new rows (the chat
    markers) were averaged and stored in bfloat16, the mean rounded to 8 bits of mantissa; they must be
    the float32 mean of its (upcast) rows, as for a float32 checkpoint."""
    _tiny(tmp_path, dtype=torch.bfloat16)
    theirs = load_file(str(tmp_path / "model.safetensors"))["transformer.wte.weight"].float()
    wte = hf.load_pretrained(str(tmp_path)).transformer.wte.weight.detach()
    assert wte.dtype == torch.float32
    torch.testing.assert_close(wte[:GPT2_VOCAB], theirs, atol=0, rtol=0)
    want = theirs.mean(0).expand(PADDED_VOCAB - GPT2_VOCAB, -1)
    # relative 1e-6: float32 sums in another order; bfloat16 is off by up to 2**-9 relative
    torch.testing.assert_close(wte[GPT2_VOCAB:], want, atol=0, rtol=1e-6)


def test_an_old_checkpoints_float_masked_bias_buffer_is_no_weight(tmp_path: Path) -> None:
    """Mutation hf.IGNORED_SUFFIXES: `.attn.masked_bias` dropped. Checkpoints of older transformers carry
    each layer's `attn.masked_bias`, a float scalar (-1e4), beside the weights: a buffer, not a
    parameter, so it must be skipped (a float passes the float-only rule) and the folder load as
    before; it was refused as a tensor the model does not have."""
    _tiny(tmp_path)
    before = _logits(tmp_path)
    _store(tmp_path, **{"transformer.h.0.attn.masked_bias": torch.tensor(-1e4)})
    torch.testing.assert_close(_logits(tmp_path), before, atol=0, rtol=0)


def test_a_gpt2model_checkpoint_without_n_positions_says_what_to_add(tmp_path: Path) -> None:
    """Mutation hf.check_positions: the wpe name always `transformer.wpe.weight`. GPT2Model writes
    `wpe.weight` (no prefix): a config.json without n_positions over its 32-row wpe got the generic
    shape refusal instead of the line that names the fix (add "n_positions": 32)."""
    _tiny(tmp_path, model_cls=transformers.GPT2Model)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["n_positions"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r'no n_positions, .* but wpe\.weight in .* has 32 rows: add "n_positions": 32$'
    ):
        hf.load_pretrained(str(tmp_path))


def test_a_checkpoint_of_the_padded_vocabulary_loads_with_its_logits(tmp_path: Path) -> None:
    """Mutation hf.config_from_hf: `vocab_size <= PADDED_VOCAB` -> `<`. A GPT-2 already padded to 50304
    rows (nanoGPT's own export, say) is our model's shape exactly; it was refused as no GPT-2
    vocabulary."""
    ref = _tiny(tmp_path, vocab_size=PADDED_VOCAB)
    with torch.no_grad():
        torch.testing.assert_close(_logits(tmp_path), ref(_ids()).logits, atol=1e-5, rtol=0)


def test_a_stray_gpt2model_wte_beside_a_tied_head_is_named_as_the_twin(tmp_path: Path) -> None:
    """Mutation hf.wte_of: `wte.weight` read before `transformer.wte.weight`. With lm_head.weight equal to
    transformer.wte.weight (the tied pair transformers reads) and a stray, other `wte.weight`, the
    refusal must name the stray name to remove; the mutant blamed an untied head that is not there."""
    _tiny(tmp_path)
    wte = load_file(str(tmp_path / "model.safetensors"))["transformer.wte.weight"]
    _store(tmp_path, **{"lm_head.weight": wte.clone(), "wte.weight": wte * 2})
    with pytest.raises(ValueError, match=r"transformers reads transformer\.wte\.weight: remove wte\.weight$"):
        hf.load_pretrained(str(tmp_path))


# ---------------------------------------------------------------- model: crop_block_size


def _gpt(block_size: int = 8) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, vocab_size=16, n_layer=1, n_head=1, n_embd=8))


@pytest.mark.parametrize("size", [0, 9])
def test_crop_refuses_no_positions_and_more_than_the_model_has(size: int) -> None:
    """Mutations model.GPT.crop_block_size: `0 < block_size` -> `0 <=`, and the upper bound dropped. A
    crop to 0 made a model that reads no token; one past the model's 8 positions said block_size 9 over
    an 8-row wpe, a model whose 9th token fails inside the embedding. Both are refused, the model
    unchanged."""
    model = _gpt()
    before = model.transformer.wpe.weight.detach().clone()
    with pytest.raises(ValueError, match=f"cannot crop a 8-token model to {size}$"):
        model.crop_block_size(size)
    assert model.config.block_size == 8 and torch.equal(model.transformer.wpe.weight.detach(), before)


def test_crop_to_the_models_own_context_keeps_it() -> None:
    """Mutation model.GPT.crop_block_size: `block_size <= self.config.block_size` -> `<`. Cropping to the
    context the model already has is a no-op, not an error."""
    model = _gpt()
    before = model.transformer.wpe.weight.detach().clone()
    model.crop_block_size(8)
    assert model.config.block_size == 8 and torch.equal(model.transformer.wpe.weight.detach(), before)


def test_a_cropped_wpe_holds_only_its_rows() -> None:
    """Mutation model.GPT.crop_block_size: `.clone()` dropped. The cropped wpe was a view of the whole
    uncropped matrix: its memory stayed held, and torch.save (the run's state.pt) writes a view's whole
    storage, so the 1024 pretrained rows travelled on in every checkpoint of a cropped run."""
    model = _gpt()
    model.crop_block_size(3)
    wpe = model.transformer.wpe.weight
    assert wpe.is_leaf and wpe.requires_grad
    assert wpe.untyped_storage().nbytes() == 3 * 8 * wpe.element_size()


# ---------------------------------------------------------------- trainsetup: fresh_model from a folder


def _start(path: Path, **over) -> tuple[GPT, list[str]]:
    cfg = TrainConfig(
        **{"init_from": str(path), "n_layer": 1, "n_head": 2, "n_embd": 16, "device": "cpu", **over}
    )
    rt = LoggedRuntime()
    return fresh_model(cfg.validated(), rt), rt.lines


def test_a_run_at_the_checkpoints_full_context_starts_uncropped(tmp_path: Path) -> None:
    """Mutations trainsetup.fresh_model: `cfg.block_size > model.config.block_size` -> `>=` (the refusal),
    and `cfg.block_size < ...` -> `<=` (the crop). train.block_size equal to the checkpoint's context
    (gpt2 at 1024) is the common case: it was refused as exceeding it, or logged as a crop from 32 to
    32."""
    _tiny(tmp_path)
    model, lines = _start(tmp_path, block_size=32)
    assert model.config.block_size == 32 and model.transformer.wpe.weight.shape == (32, 16)
    assert not any("crop" in line for line in lines), lines


def test_a_checkpoint_of_other_heads_says_the_profiles_shape_is_not_used(tmp_path: Path) -> None:
    """Mutation trainsetup.fresh_model: n_head dropped from the shape comparison. A checkpoint of 2 heads
    under a profile of 4 (same layers and width) trains with 2: the log must say the profile's shape is
    not used, as it does for other layers or widths."""
    _tiny(tmp_path)
    model, lines = _start(tmp_path, block_size=32, n_head=4)
    assert model.config.n_head == 2
    assert any(
        line.startswith(f"model shape from {tmp_path}: n_layer 1, n_head 2, n_embd 16") for line in lines
    )


def test_a_sharded_folders_digest_reads_its_shards_in_name_order(tmp_path: Path) -> None:
    """Mutation hf.resolve_files: `sorted(set(weight_map.values()))` -> `set(...)`. A set of strings
    iterates in an order that changes with each process's hash seed, and source_digest hashes the
    shards in resolve_files' order: the run fingerprint of a sharded init_from folder changed between
    two runs of the same files, so an unfinished run never resumed. (8 shards: the mutant passes only
    when the set happens to iterate sorted, 1 in 40,320.)"""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    names = [f"model-{i:05d}-of-00008.safetensors" for i in range(1, 9)]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(bytes([i]))
    weight_map = {f"transformer.h.{i}.ln_1.weight": name for i, name in enumerate(reversed(names))}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _, shards = hf.resolve_files(str(tmp_path))
    assert shards == [tmp_path / name for name in names]
    want = hashlib.sha256()
    for path in (tmp_path / "config.json", *shards, *(tmp_path / n for n in hf.TOKENIZER_FILES)):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"
        want.update(f"{path.name}:{digest}\n".encode())
    assert hf.source_digest(str(tmp_path)) == want.hexdigest()
