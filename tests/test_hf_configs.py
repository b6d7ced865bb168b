"""Hugging Face GPT-2 folders whose config.json or weight names can be read two ways: each loads with
transformers' own logits or is refused in one line naming the file and the setting. (The plain
variants, sharded, half precision, GPT2Model's names, refused flags, are in test_hf_edge.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipeline import hf
from pipeline.tokenizer import get_encoding

transformers = pytest.importorskip("transformers")


def _tiny(path: Path, **config) -> None:
    """A tiny GPT-2 by transformers' save_pretrained, its attention sharp enough (c_attn scaled up) that
    the number of heads changes the logits well past float32 noise, as in a trained model."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**{"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 64, **config})
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("attn.c_attn.weight"):
                p.mul_(20)
    model.save_pretrained(path)


def _edit_config(path: Path, drop: tuple[str, ...] = (), **values) -> None:
    config = json.loads((path / "config.json").read_text())
    for key in drop:
        del config[key]
    (path / "config.json").write_text(json.dumps({**config, **values}))


def _theirs(path: Path) -> torch.Tensor:
    model = transformers.GPT2LMHeadModel.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(_ids()).logits


def _ids() -> torch.Tensor:
    return torch.tensor([get_encoding().encode_ordinary("Hello there! How are you doing today, my friend?")])


def _assert_transformers_logits(path: Path) -> None:
    want = _theirs(path)
    with torch.no_grad():
        got = hf.load_pretrained(str(path), log=lambda _: None).eval().logits_all(_ids())
    torch.testing.assert_close(got[..., : want.shape[-1]], want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("alias", "value"),
    [
        ("num_attention_heads", 4),
        ("hidden_size", 64),
        ("num_hidden_layers", 3),
        ("max_position_embeddings", 32),
    ],
)
def test_an_alias_that_disagrees_with_the_gpt2_name_is_refused_naming_both(
    tmp_path: Path, alias: str, value: int
) -> None:
    """transformers reads `num_attention_heads` over `n_head` (and so for each alias of GPT2Config):
    a folder holding both, unequal, ran with n_head's heads here and the alias's there; the weights
    have the same shapes for any head count, so nothing else would catch it."""
    _tiny(tmp_path)
    _edit_config(tmp_path, **{alias: value})
    name = transformers.GPT2Config.attribute_map[alias]
    with pytest.raises(ValueError) as e:
        hf.load_pretrained(str(tmp_path))
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / "config.json") in message
    assert f"{name} " in message and f"{alias} {value}" in message


def test_the_head_count_alias_changes_transformers_logits(tmp_path: Path) -> None:
    """Why the refusal above matters: with the heads of `num_attention_heads`, transformers' logits
    are not those of n_head's count (the fixture's attention is sharp enough to tell)."""
    _tiny(tmp_path / "two")
    _tiny(tmp_path / "four")
    _edit_config(tmp_path / "four", num_attention_heads=4)
    assert (_theirs(tmp_path / "two") - _theirs(tmp_path / "four")).abs().max() > 1e-2


def test_an_alias_alone_is_read_as_transformers_reads_it(tmp_path: Path) -> None:
    """A config.json that names the head count only as num_attention_heads (a hand-written one):
    transformers runs it with those heads, and so do we."""
    _tiny(tmp_path)
    _edit_config(tmp_path, drop=("n_head",), num_attention_heads=4)
    assert hf.load_pretrained(str(tmp_path)).config.n_head == 4
    _assert_transformers_logits(tmp_path)


@pytest.mark.parametrize("name", ["transformer.wte.weight", "transformer.h.0.ln_1.weight"])
def test_a_tensor_stored_under_both_names_with_other_values_is_refused(tmp_path: Path, name: str) -> None:
    """`wte.weight` (GPT2Model's name) beside `transformer.wte.weight` (GPT2LMHeadModel's): one of them
    silently won by dictionary order, while transformers reads the prefixed one."""
    _tiny(tmp_path)
    weights = tmp_path / "model.safetensors"
    tensors = load_file(str(weights))
    bare = name.removeprefix("transformer.")
    save_file({**tensors, bare: tensors[name] * 2}, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError) as e:
        hf.load_pretrained(str(tmp_path))
    message = str(e.value)
    assert "\n" not in message and str(tmp_path) in message
    assert name in message and f"{bare} " in message


def test_the_same_tensor_under_both_names_loads(tmp_path: Path) -> None:
    _tiny(tmp_path)
    weights = tmp_path / "model.safetensors"
    tensors = load_file(str(weights))
    bare = {"wte.weight": tensors["transformer.wte.weight"].clone()}
    save_file({**tensors, **bare}, str(weights), metadata={"format": "pt"})
    _assert_transformers_logits(tmp_path)


def test_the_tied_matrix_stored_only_as_lm_head_loads(tmp_path: Path) -> None:
    """safetensors' save_model keeps one name of a shared tensor, here lm_head.weight, not wte:
    transformers ties wte to it. It was refused as "lm_head.weight differs from wte.weight"."""
    from safetensors.torch import save_model

    _tiny(tmp_path)
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, dtype=torch.float32)
    (tmp_path / "model.safetensors").unlink()
    save_model(model, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "lm_head.weight" in stored and "transformer.wte.weight" not in stored
    _assert_transformers_logits(tmp_path)


def test_a_bad_alias_alone_is_named_as_the_file_has_it() -> None:
    """A config.json with only `num_attention_heads: "4"` was told `n_head must be a positive
    integer`: a key the file does not have."""
    config = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_positions": 64, "vocab_size": 50257}
    with pytest.raises(
        ValueError, match=r"^config\.json: num_attention_heads must be a positive integer, got '4'$"
    ):
        hf.config_from_hf({**config, "num_attention_heads": "4"})
    with pytest.raises(ValueError, match=r"^config\.json: n_head must be a positive integer, got None$"):
        hf.config_from_hf(config)


def _one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


def _store(path: Path, **tensors: torch.Tensor) -> None:
    """model.safetensors with `tensors` set (a None value removes that name)."""
    weights = path / "model.safetensors"
    stored = load_file(str(weights))
    stored.update({k: v for k, v in tensors.items() if v is not None})
    stored = {k: v for k, v in stored.items() if tensors.get(k, v) is not None}
    save_file(stored, str(weights), metadata={"format": "pt"})


def test_an_untied_model_whose_head_is_its_wte_loads_with_transformers_logits(tmp_path: Path) -> None:
    """tie_word_embeddings false with lm_head.weight equal to wte: transformers reads the head as its
    own matrix, which is wte, so its logits are the tied model's. It was refused by the flag alone."""
    _tiny(tmp_path, tie_word_embeddings=False)
    wte = load_file(str(tmp_path / "model.safetensors"))["transformer.wte.weight"]
    _store(tmp_path, **{"lm_head.weight": wte.clone()})
    _assert_transformers_logits(tmp_path)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda p: None, "lm_head.weight in "),  # transformers' own untied head, random: unlike wte
        (lambda p: _store(p, **{"lm_head.weight": None}), "without lm_head.weight in "),
        (lambda p: _store(p, **{"transformer.wte.weight": None}), "without wte.weight in "),
    ],
    ids=["head-unlike-wte", "no-head", "no-wte"],
)
def test_an_untied_head_the_model_cannot_compute_is_refused(tmp_path: Path, edit, says: str) -> None:
    """An untied head unlike wte has other logits than the model whose head is wte; one missing is
    started at random by transformers (and a missing wte too: lm_head.weight alone is no tied copy)."""
    _tiny(tmp_path, tie_word_embeddings=False)
    edit(tmp_path)
    with pytest.raises(ValueError) as e:
        hf.load_pretrained(str(tmp_path))
    _one_line(e, f"{tmp_path / 'config.json'}: tie_word_embeddings false unsupported", says)


def test_a_tied_config_with_another_lm_head_is_refused_as_transformers_runs_it_untied(tmp_path: Path) -> None:
    """tie_word_embeddings true (the default) but a stored lm_head.weight unlike wte: transformers
    5.23 warns and does not tie them, so its logits come from that head, which the model (head = wte)
    cannot hold."""
    _tiny(tmp_path)
    wte = load_file(str(tmp_path / "model.safetensors"))["transformer.wte.weight"]
    _store(tmp_path, **{"lm_head.weight": wte * 2})
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, dtype=torch.float32)
    assert torch.equal(theirs.lm_head.weight, wte * 2) and torch.equal(theirs.transformer.wte.weight, wte)
    with pytest.raises(ValueError) as e:
        hf.load_pretrained(str(tmp_path))
    _one_line(e, f"{tmp_path / 'model.safetensors'}: lm_head.weight differs from", "tie_word_embeddings true")


@pytest.mark.parametrize("n_ctx", [512, 1024, None])
def test_a_config_without_n_positions_runs_transformers_default_positions(tmp_path: Path, n_ctx) -> None:
    """An old config.json with n_ctx (or nothing) in place of n_positions: transformers takes its
    default 1024 positions, never n_ctx; a 1024-row wpe loads with its logits. It was refused as
    `n_positions must be a positive integer, got None`."""
    _tiny(tmp_path, n_positions=1024)
    _edit_config(tmp_path, drop=("n_positions",), **({} if n_ctx is None else {"n_ctx": n_ctx}))
    assert hf.load_pretrained(str(tmp_path)).config.block_size == 1024
    _assert_transformers_logits(tmp_path)


def test_a_config_with_n_ctx_only_and_a_shorter_wpe_is_refused_saying_what_to_add(tmp_path: Path) -> None:
    """n_ctx 64 without n_positions over a 64-row wpe: transformers refuses it (1024 positions expected);
    so do we, in one line naming the file, both keys and the fix."""
    _tiny(tmp_path)
    _edit_config(tmp_path, drop=("n_positions",), n_ctx=64)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError) as e:
        hf.load_pretrained(str(tmp_path))
    _one_line(e, f"{tmp_path / 'config.json'}: no n_positions", "not n_ctx 64", 'add "n_positions": 64')


@pytest.mark.parametrize(
    ("quantization", "method"),
    [
        (transformers.BitsAndBytesConfig(load_in_8bit=True).to_dict(), "bitsandbytes"),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "gptq"),
    ],
    ids=["bitsandbytes", "gptq"],
)
def test_a_quantized_checkpoint_is_refused_by_its_config_key(tmp_path: Path, quantization, method) -> None:
    """transformers hands a quantization_config's weights to a quantization library (here, without
    one installed, it raises ImportError: accelerate for bitsandbytes, optimum for gptq); read as
    plain tensors they would be integer codes without scales. Refused even over float weights (the gptq case), which loaded
    silently before."""
    _tiny(tmp_path)
    _edit_config(tmp_path, quantization_config=quantization)
    with pytest.raises(ValueError) as e:
        hf.load_pretrained(str(tmp_path))
    _one_line(e, f'{tmp_path / "config.json"}: quantization_config ("{method}") unsupported')


def test_integer_weights_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    """int8 codes without quantization_config (a config stripped of it): transformers loads them as
    numbers, garbage logits; here the tensor is named and nothing loads."""
    _tiny(tmp_path)
    name = "transformer.h.0.mlp.c_fc.weight"
    codes = load_file(str(tmp_path / "model.safetensors"))[name].mul(127).round().to(torch.int8)
    _store(tmp_path, **{name: codes})
    with pytest.raises(ValueError) as e:
        hf.load_pretrained(str(tmp_path))
    _one_line(e, f"{tmp_path / 'model.safetensors'}: {name} is int8, not a float tensor")


def test_a_bool_causal_mask_buffer_is_no_weight_and_loads(tmp_path: Path) -> None:
    """Older transformers saved each layer's causal mask (`attn.bias`) as bool beside the weights: a
    buffer, not read, so the float-only rule must not refuse it."""
    _tiny(tmp_path)
    _store(tmp_path, **{"transformer.h.0.attn.bias": torch.ones(1, 1, 64, 64, dtype=torch.bool).tril()})
    _assert_transformers_logits(tmp_path)


def test_a_tie_word_embeddings_that_is_no_boolean_is_refused() -> None:
    """ "false" as a string is truthy to transformers (tied) but reads as untied: neither is safe to
    guess now that false is read against the weights."""
    config = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "vocab_size": 50257}
    with pytest.raises(
        ValueError, match=r'^config\.json: tie_word_embeddings must be true or false, got "false"$'
    ):
        hf.config_from_hf({**config, "tie_word_embeddings": "false"})
