"""Hugging Face GPT-2 checkpoints in, without `transformers` at run time.

Import (`load_pretrained`): `gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl` come from the Hub
(openai-community/...) through huggingface_hub's cache (offline works once cached); any other
string is a local directory holding config.json + model.safetensors (or a sharded
model.safetensors.index.json). Hugging Face's GPT-2 stores its projections as Conv1D, i.e.
(in, out), the transpose of nn.Linear's (out, in). The 50257-row embedding is padded to our
50304 rows; the chat tokens (50257-50259) and the padding start at the mean of GPT-2's
embeddings, so they begin as an "average token" rather than random noise that would dominate
the softmax.
Rows 50257+ that a local checkpoint already has are kept only where its tokenizer files name our
marker at that id (our own export); rows they name as another token (a `[PAD]` added with
resize_token_embeddings, say) start at the mean too, and rows nothing names are kept as markers
with a word in the log (`check_added_rows`).

Export, the other way, is pipeline/hfexport.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file

from pipeline import atomic
from pipeline.checkpoint import load_json, model_from_state, refuse_special
from pipeline.model import GPT, GPTConfig
from pipeline.tokenizer import (
    PADDED_VOCAB,
    SPECIAL_TOKENS,
)

HUB_REPOS: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
GPT2_VOCAB = 50257  # GPT-2's own tokens (ids 0..50256)
# transformers' GPT2Config default for a config.json without n_positions (it never reads n_ctx as it)
GPT2_POSITIONS = 1024
# Hugging Face's GPT-2 Conv1D layers: weight is (in_features, out_features).
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# config.json flags of transformers' GPT2Config that change what the model computes:
# key -> (the only value our model implements, which is also transformers' default; why).
# (tie_word_embeddings false is read against the weights: check_head.)
MATHS_FLAGS = {
    "scale_attn_weights": (True, "the model scales attention scores by 1/sqrt(head_dim)"),
    "scale_attn_by_inverse_layer_idx": (False, "the model does not scale attention by layer"),
    "add_cross_attention": (False, "the model is a decoder only, without cross-attention weights"),
}
# GPT2Config's attribute_map: alias -> GPT-2 name. transformers reads the alias over the GPT-2 name
# when a config.json holds both, so an unequal pair would run with other heads (or layers) there.
CONFIG_ALIASES = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}
# Buffers some GPT-2 checkpoints carry (the causal mask): not weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# Where a Hugging Face directory says which token each id past GPT-2's vocabulary is (the files
# transformers writes for added tokens, old and new).
TOKENIZER_FILES = ("added_tokens.json", "tokenizer_config.json", "tokenizer.json")
# A shard named in model.safetensors.index.json: a plain file name in the model's folder.
_SHARD_NAME = re.compile(r"^[^/\\\x00]+\.safetensors$")


# ---------------------------------------------------------------- import


def resolve_files(source: str, cache_dir: str | Path | None = None) -> tuple[Path, list[Path]]:
    """(config.json, [safetensors files]) for a Hub model name or a local Hugging Face directory."""
    if source in HUB_REPOS:
        repo = HUB_REPOS[source]
        try:
            config = hf_hub_download(repo, "config.json", cache_dir=cache_dir)
            weights = hf_hub_download(repo, "model.safetensors", cache_dir=cache_dir)
        except Exception as e:  # offline and not cached, or no network: one clear line
            raise RuntimeError(
                f"cannot get {repo} from the Hugging Face Hub or its cache ({type(e).__name__}: {e}); "
                f"download it once with network, or set train.init_from to a local directory"
            ) from e
        return Path(config), [Path(weights)]
    path = Path(source)
    if not path.is_dir():
        raise ValueError(
            f"{source!r} is not one of {sorted(HUB_REPOS)} and not a local Hugging Face directory"
        )
    config = path / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"{config}: missing (a Hugging Face GPT-2 directory needs config.json)")
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.exists():
        refuse_special(single)
        return config, [single]
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no weight_map (file name of every tensor)")
        for name in weight_map.values():
            # a shard is a file beside the index: a name like `../../other/x.safetensors` or
            # `/home/u/x.safetensors` would read (and hash into the run fingerprint) a file elsewhere
            if not isinstance(name, str) or not _SHARD_NAME.match(name):
                raise ValueError(
                    f"{index}: weight_map names the shard {json.dumps(name)[:100]}; shards are "
                    ".safetensors files in the same folder (no '/', no '..')"
                )
        shards = [path / s for s in sorted(set(weight_map.values()))]
        for shard in shards:
            refuse_special(shard)
            if not shard.is_file():
                raise FileNotFoundError(f"{shard}: missing (named in {index.name})")
        return config, shards
    raise FileNotFoundError(f"{path}: no model.safetensors (only safetensors weights are read, never pickle)")


def config_from_hf(hf: dict, *, dropout: float = 0.0, where: str = "config.json") -> GPTConfig:
    """Our GPTConfig from a Hugging Face GPT-2 config.json; refuses what our model cannot represent."""
    if hf.get("model_type") != "gpt2":
        ours = "model_type" not in hf and "block_size" in hf  # this project's model/ckpt layout
        hint = (
            ": a nanoChatGPT checkpoint (model/ckpt); use its Hugging Face export (model/hf)" if ours else ""
        )
        raise ValueError(f"{where}: model_type {hf.get('model_type')!r} is not gpt2{hint}")
    quantized = hf.get("quantization_config")
    if quantized is not None:
        # transformers hands such weights to a quantization library (and refuses without it); read
        # as plain tensors they are integer codes without their scales: garbage logits
        method = quantized.get("quant_method") if isinstance(quantized, dict) else quantized
        raise ValueError(
            f"{where}: quantization_config ({json.dumps(method)[:60]}) unsupported: a quantized "
            "checkpoint's weights are not the float tensors the model reads; use the unquantized model"
        )
    hf, written = resolve_aliases(hf, where)
    # transformers' default where n_positions (and its alias) is absent; wpe's rows must then agree
    # (load_pretrained's check_positions), so it is no guess
    hf.setdefault("n_positions", GPT2_POSITIONS)
    for key in ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size"):
        value = hf.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            # named as the file has it: an alias alone is the one to correct
            raise ValueError(f"{where}: {written.get(key, key)} must be a positive integer, got {value!r}")
    if hf["n_embd"] % hf["n_head"]:
        raise ValueError(f"{where}: n_embd {hf['n_embd']} is not a multiple of n_head {hf['n_head']}")
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"{where}: activation_function {act!r} unsupported (the model uses tanh GELU)")
    n_embd = hf["n_embd"]
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise ValueError(f"{where}: n_inner {hf['n_inner']} unsupported (must be 4 * n_embd)")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, int | float):  # "1e-5" or null: no number to compare
        raise ValueError(f"{where}: layer_norm_epsilon must be a number, got {json.dumps(eps)}")
    if not abs(eps - 1e-5) <= 1e-12:  # written so that NaN is refused too
        raise ValueError(f"{where}: layer_norm_epsilon {eps} unsupported (1e-5 only)")
    # Flags that change the maths of transformers' GPT-2 away from ours: loading such a model would
    # give other logits without a word. (reorder_and_upcast_attn only computes attention in float32,
    # which ours does anyway in a float32 load: accepted.)
    for key, (ours, why) in MATHS_FLAGS.items():
        if hf.get(key, ours) != ours:
            raise ValueError(f"{where}: {key} {json.dumps(hf[key])} unsupported ({why})")
    if not isinstance(hf.get("tie_word_embeddings", True), bool):
        raise ValueError(
            f"{where}: tie_word_embeddings must be true or false, got {json.dumps(hf['tie_word_embeddings'])}"
        )
    if not GPT2_VOCAB <= hf["vocab_size"] <= PADDED_VOCAB:
        # Fewer rows than GPT-2's BPE: not a GPT-2-tokenizer model; its ids would mean other words.
        raise ValueError(
            f"{where}: vocab_size {hf['vocab_size']} is not a GPT-2 vocabulary "
            f"({GPT2_VOCAB} tokens, up to {PADDED_VOCAB} with padding)"
        )
    return GPTConfig(
        block_size=hf["n_positions"],
        vocab_size=PADDED_VOCAB,
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=n_embd,
        dropout=dropout,
        bias=True,
    )


def resolve_aliases(hf: dict, where: str) -> tuple[dict, dict[str, str]]:
    """`hf` with each GPT-2 size under its GPT-2 name, taken from its alias (CONFIG_ALIASES) where
    only that is given, as transformers does, and {GPT-2 name: alias} for those; both given and
    unequal is refused (which one the folder's author meant is unknowable, and transformers would
    take the alias)."""
    out = dict(hf)
    written: dict[str, str] = {}
    for alias, name in CONFIG_ALIASES.items():
        if alias not in hf:
            continue
        if name in hf and hf[name] != hf[alias]:
            raise ValueError(
                f"{where}: {name} {json.dumps(hf[name])} and its alias {alias} {json.dumps(hf[alias])} "
                f"disagree (transformers reads {alias}); keep one of them"
            )
        if name not in hf:
            written[name] = alias
        out[name] = hf[alias]
    return out, written


def state_from_hf(
    tensors: dict[str, torch.Tensor], vocab_size: int = PADDED_VOCAB, where: str = "model.safetensors"
) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 tensors -> our state dict (names, Conv1D transposed, vocab padded).

    An lm_head.weight is accepted only as a copy of wte (our lm_head is wte): an untied head would
    be dropped and the model would compute other logits. A name given with and without the
    `transformer.` prefix must hold one value."""
    out: dict[str, torch.Tensor] = {}
    tensors = tied_wte(tensors)
    head = tensors.get("lm_head.weight")
    wte_in = wte_of(tensors)
    if head is not None and (wte_in is None or not torch.equal(head, wte_in)):
        raise ValueError(
            f"{where}: lm_head.weight differs from wte.weight (an untied output head); "
            "the model ties them and would drop it"
        )
    for name, t in tensors.items():
        if name.endswith(IGNORED_SUFFIXES) or name == "lm_head.weight":
            continue  # causal-mask buffers; lm_head is tied to wte (checked above)
        key = name.removeprefix("transformer.")
        twin = f"transformer.{key}"
        if name == key and twin in tensors and not torch.equal(t, tensors[twin]):
            # GPT2Model's name beside GPT2LMHeadModel's, other values: one would win by file order
            raise ValueError(
                f"{where}: {name} and {twin} are both in the checkpoint, with other values; "
                f"transformers reads {twin}: remove {name}"
            )
        t = t.float()
        if key.endswith(CONV1D_SUFFIXES):
            t = t.t()
        out[f"transformer.{key}"] = t.contiguous()
    wte = out.get("transformer.wte.weight")
    if wte is None:
        raise ValueError("no wte.weight in the checkpoint: not a GPT-2 model")
    out["transformer.wte.weight"] = pad_vocab(wte, vocab_size)
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def wte_of(tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The token embedding under GPT2LMHeadModel's name, else GPT2Model's (transformers reads the
    first where both are given: state_from_hf refuses the pair with other values)."""
    return tensors.get("transformer.wte.weight", tensors.get("wte.weight"))


def tied_wte(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` with the tied embedding under wte's name where only lm_head.weight holds it: a
    shared tensor is saved under one name, and safetensors' save_model keeps lm_head's."""
    if "lm_head.weight" in tensors and not {"transformer.wte.weight", "wte.weight"} & tensors.keys():
        return {**tensors, "transformer.wte.weight": tensors["lm_head.weight"]}
    return tensors


def pad_vocab(wte: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Grow the embedding to `vocab_size` rows; new rows = mean of GPT-2's own token embeddings."""
    n = wte.shape[0]
    if n >= vocab_size:
        return wte[:vocab_size].clone()
    mean = wte[: min(n, GPT2_VOCAB)].mean(dim=0, keepdim=True)
    return torch.cat([wte, mean.expand(vocab_size - n, -1)], dim=0).contiguous()


def load_pretrained(
    source: str,
    *,
    dropout: float = 0.0,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> GPT:
    """A GPT initialised from Hugging Face GPT-2 weights (Hub name or local directory), on CPU.

    `log` receives what the caller should hear about the import (embedding rows past GPT-2's
    vocabulary reset or taken as the chat markers); without it, that goes to stderr."""
    config_path, weight_paths = resolve_files(source, cache_dir)
    hf_config = read_json(config_path)
    cfg = config_from_hf(hf_config, dropout=dropout, where=str(config_path))
    tensors, origin = read_weights(weight_paths)
    check_head(tensors, origin, config_path, tied=hf_config.get("tie_word_embeddings", True))
    check_positions(tensors, origin, config_path, hf_config)
    # here too: the row checks below read wte. lm_head.weight, compared with wte by check_head, is
    # dropped: state_from_hf (whose check serves direct callers) need not compare it again
    tensors = {name: t for name, t in tied_wte(tensors).items() if name != "lm_head.weight"}
    own_rows = wte_of(tensors)
    if own_rows is not None and own_rows.shape[0] != hf_config["vocab_size"]:
        # Padding would hide it: an embedding of 1,000 rows under a config of 50,257 trained on,
        # every id past 999 a copy of the mean row. Weights and config are from different models.
        raise ValueError(
            f"{weight_paths[0].parent}: wte.weight has {own_rows.shape[0]} rows but {config_path.name}'s "
            f"vocab_size is {hf_config['vocab_size']}: the weights and the config are of different models"
        )
    state = state_from_hf(tensors, cfg.vocab_size, where=str(weight_paths[0].parent))
    if own_rows is not None and own_rows.shape[0] > GPT2_VOCAB:
        for line in check_added_rows(state["transformer.wte.weight"], own_rows.shape[0], config_path.parent):
            (log or _stderr)(line)
    return model_from_state(cfg, state, where=f"{weight_paths[0].parent} (against {config_path.name})")


def read_weights(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """(name -> tensor, name -> the file holding it) over the weight files; a tensor that is not a
    float (int8 codes of a quantized checkpoint, say) is refused: .float() would make garbage of it."""
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for p in paths:
        try:
            part = load_file(str(p), device="cpu")
        except Exception as e:  # safetensors' own error type: truncated, not safetensors at all
            raise ValueError(f"{p}: not a readable safetensors file ({e})") from None
        for name, t in part.items():
            # the causal-mask buffers of old checkpoints are bool/uint8 and are not read
            if not t.is_floating_point() and not name.endswith(IGNORED_SUFFIXES):
                raise ValueError(
                    f"{p}: {name} is {str(t.dtype).removeprefix('torch.')}, not a float tensor "
                    "(a quantized checkpoint?); only float weights are read"
                )
            origin[name] = p
        tensors.update(part)
    return tensors, origin


def check_head(tensors: dict[str, torch.Tensor], origin: dict[str, Path], config: Path, tied: bool) -> None:
    """Refuse an lm_head.weight the model cannot compute with (its lm_head is wte).

    Untied (tie_word_embeddings false): transformers reads lm_head.weight as its own matrix, and one
    equal to wte gives the tied logits, so that loads; without it (or without wte) transformers
    starts the missing one at random. Tied with an lm_head.weight unlike wte: transformers (5.23)
    warns that it will not tie them and runs it untied: not a model whose head is wte either."""
    head = tensors.get("lm_head.weight")
    wte = wte_of(tensors)
    if not tied and (head is None or wte is None):
        missing = "lm_head.weight" if head is None else "wte.weight"
        raise ValueError(
            f"{config}: tie_word_embeddings false unsupported without {missing} in {config.parent} "
            "(transformers would start it at random)"
        )
    if head is not None and wte is not None and not torch.equal(head, wte):
        if tied:
            why = (
                f"while {config.name} ties them (tie_word_embeddings true): transformers (5.23) warns and "
                "runs such a folder untied; the model ties them and would drop it"
            )
            raise ValueError(f"{origin['lm_head.weight']}: lm_head.weight differs from wte.weight {why}")
        raise ValueError(
            f"{config}: tie_word_embeddings false unsupported: lm_head.weight in {origin['lm_head.weight']} "
            "differs from wte.weight (an untied output head; the model's head is its wte)"
        )


def check_positions(
    tensors: dict[str, torch.Tensor], origin: dict[str, Path], config: Path, hf_config: dict
) -> None:
    """A config.json without n_positions (an old one with n_ctx only, say) runs in transformers with
    GPT2_POSITIONS positions, never n_ctx; a wpe.weight of other rows is refused there too: here in
    one line saying what to add."""
    if {"n_positions", "max_position_embeddings"} & hf_config.keys():
        return
    name = "transformer.wpe.weight" if "transformer.wpe.weight" in tensors else "wpe.weight"
    wpe = tensors.get(name)
    if wpe is None or wpe.shape[0] == GPT2_POSITIONS:
        return
    n_ctx = f", not n_ctx {json.dumps(hf_config['n_ctx'])}" if "n_ctx" in hf_config else ""
    raise ValueError(
        f"{config}: no n_positions, so transformers takes {GPT2_POSITIONS} positions{n_ctx}, but {name} "
        f'in {origin[name]} has {wpe.shape[0]} rows: add "n_positions": {wpe.shape[0]}'
    )


def declared_tokens(folder: Path) -> dict[int, list[tuple[str, str]]]:
    """id -> [(file, token)] for every id past GPT-2's vocabulary that `folder`'s tokenizer files
    (TOKENIZER_FILES) name: added_tokens.json {token: id}, tokenizer_config.json
    "added_tokens_decoder" {"id": {"content": token}}, tokenizer.json "added_tokens" [{"id", "content"}].
    All three are read: a row counts as named by each file that names it."""
    out: dict[int, list[tuple[str, str]]] = {}

    def add(name: str, i: object, token: object) -> None:
        # isdecimal, not isdigit: int() refuses "²", which isdigit takes; and an id of thousands of
        # digits is no row (int() refuses those too), so both reach the one-line error below
        if isinstance(i, str) and i.isdecimal() and len(i) <= 18:
            i = int(i)
        if isinstance(i, bool) or not isinstance(i, int) or not isinstance(token, str):
            raise ValueError(
                f"{folder / name}: added token {token!r} at id {i!r}: expected a string at an integer id"
            )
        if i >= GPT2_VOCAB:
            out.setdefault(i, []).append((name, token))

    for name in TOKENIZER_FILES:
        path = folder / name
        if not path.is_file():
            continue
        data = read_json(path)
        if name == "added_tokens.json":
            for token, i in data.items():
                add(name, i, token)
        elif name == "tokenizer_config.json":
            decoder = data.get("added_tokens_decoder") or {}
            if not isinstance(decoder, dict):
                raise ValueError(f"{path}: added_tokens_decoder must map an id to a token")
            for i, entry in decoder.items():
                add(name, i, entry.get("content") if isinstance(entry, dict) else entry)
        else:
            entries = data.get("added_tokens") or []
            if not isinstance(entries, list):
                raise ValueError(f"{path}: added_tokens must be a list of {{id, content}}")
            for entry in entries:
                entry = entry if isinstance(entry, dict) else {}
                add(name, entry.get("id"), entry.get("content"))
    return out


def check_added_rows(wte: torch.Tensor, n_rows: int, folder: Path) -> list[str]:
    """Make the checkpoint's own rows past GPT-2's vocabulary (ids GPT2_VOCAB..n_rows-1 of `wte`,
    already padded by pad_vocab; changed in place) safe to read as our chat markers; the lines to log.

    A row its tokenizer files name as our marker at that id is kept (our own export). A row they name
    as anything else is another tokenizer's token (a `[PAD]`, say) and would pass for a marker: it
    starts at the mean embedding, as pad_vocab starts new rows. A marker row nothing names is kept
    (it may well be one) but said."""
    markers = {i: t for t, i in SPECIAL_TOKENS.items() if i >= GPT2_VOCAB}
    declared = declared_tokens(folder)
    mean = wte[:GPT2_VOCAB].mean(dim=0)
    reset: list[str] = []
    unnamed: list[str] = []
    for i in range(GPT2_VOCAB, min(n_rows, wte.shape[0])):
        others = [(name, token) for name, token in declared.get(i, []) if token != markers.get(i)]
        if others:
            wte[i] = mean
            named = ", ".join(f"{token!r} in {name}" for name, token in others)
            reset.append(f"{i} is {named}, not {markers.get(i, 'a chat marker')}")
        elif i in markers and i not in declared:
            unnamed.append(i)
    lines = []
    if reset:
        lines.append(
            f"{folder}: embedding rows named as other tokens start at the mean embedding, as new rows "
            f"do: row {'; row '.join(reset)}"
        )
    if unnamed:
        lines.append(
            f"{folder}: nothing in {', '.join(TOKENIZER_FILES)} names the checkpoint's embedding "
            f"row(s) {', '.join(map(str, unnamed))}: they are taken as the chat markers "
            f"({', '.join(f'{markers[i]} {i}' for i in unnamed)}) as they are"
        )
    return lines


def source_digest(source: str) -> str:
    """sha256 over the files of a local Hugging Face directory that decide the weights it starts a
    run with: config.json, the weight files resolve_files picks, and the tokenizer files that name
    rows past GPT-2's vocabulary (check_added_rows). A directory that cannot be read gets a marker
    (loading it reports the real error). Not for a Hub name: that would download it."""
    if source in HUB_REPOS:
        raise ValueError(f"{source!r} is a Hub model name, not a local directory")
    h = hashlib.sha256()
    try:
        config, weights = resolve_files(source)
        folder = config.parent
        for path in (config, *weights, *(folder / n for n in TOKENIZER_FILES)):
            digest = atomic.sha256_file(path) if path.is_file() else "absent"
            h.update(f"{path.name}:{digest}\n".encode())
    except (OSError, ValueError, RuntimeError) as e:
        return f"unreadable ({type(e).__name__}: {e})"
    return h.hexdigest()


def _stderr(line: str) -> None:
    print(f"hf: {line}", file=sys.stderr)


def read_json(path: Path) -> dict:
    """A JSON object from `path`, or one line naming the file and what is wrong."""
    data = load_json(path, "not valid JSON")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data
