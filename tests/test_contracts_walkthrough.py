"""A consumer's walkthrough of docs/contracts.md and docs/shards.md: what someone reading the
artifacts from their own code, with the docs alone, relies on. Each test holds a statement of the
docs (read from them where it is code or a list of names) against the real functions or the files
git keeps; what DVC caches is built here, or the test skips when it is absent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tiktoken
from safetensors import safe_open
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from pipeline.buildinputs import BUILD_KEYS
from pipeline.checkpoint import WEIGHTS_FILE, save_model
from pipeline.datasetformat import CONVERSATION_SCHEMA
from pipeline.encode import tokenize_dataset
from pipeline.hfexport import export_hf
from pipeline.model import GPT, GPTConfig
from pipeline.schema import QUARANTINE_SCHEMA
from pipeline.tokenizer import (
    ENCODING_NAME,
    GPT2_PAT_STR,
    PADDED_VOCAB,
    SPECIAL_TOKENS,
    get_encoding,
    gpt2_bpe_files,
    render,
)

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
SHARDS = (ROOT / "docs" / "shards.md").read_text(encoding="utf-8")


def _section(doc: str, heading: str) -> str:
    """The text of a `## heading...` section, up to the next `## `."""
    start = doc.index(f"\n## {heading}")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else None]


def _bullet(section: str, opening: str) -> str:
    """The text of the `- opening...` bullet of `section`, up to the next bullet or the section's end."""
    start = section.index(f"\n- {opening}")
    end = section.find("\n- ", start + 1)
    return section[start : end if end != -1 else None]


def _named(text: str) -> set[str]:
    """The names a doc writes in backticks."""
    return set(re.findall(r"`([^`\s]+)`", text))


# --------------------------------------------------------------------------------- token shards

CONVS = [
    (
        "You are a librarian.",
        [("human", "Hi there, who are you?"), ("bot", "I keep the books. <bot> is text")],
    ),
    (None, [("human", "a\nb"), ("bot", "c"), ("human", "d"), ("bot", "e")]),
]


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A variant tokenized by the real stage function, one of its conversations with a context."""
    root = tmp_path_factory.mktemp("walkthrough")
    (root / "ds").mkdir()
    schema = {k: CONVERSATION_SCHEMA[k] for k in ("conversation_id", "messages", "context", "source")}
    rows = [
        {
            "conversation_id": f"c:{k}",
            "messages": [{"role": r, "content": t} for r, t in msgs],
            "context": ctx,
            "source": "alpha",
        }
        for k, (ctx, msgs) in enumerate(CONVS)
    ]
    pl.DataFrame(rows, schema=schema).write_parquet(root / "ds" / "train.parquet")
    pl.DataFrame([], schema=schema).write_parquet(root / "ds" / "val.parquet")
    tokenize_dataset(
        root / "ds", root / "tokens" / "full", shard_tokens=1 << 16, workers=0, batch_conversations=4
    )
    return root / "tokens" / "full"


def _offline_gpt2() -> tiktoken.Encoding:
    """tiktoken's `gpt2` as `tiktoken.get_encoding("gpt2")` builds it, from the files this project
    ships (the test has no network)."""
    vocab_bpe, encoder_json = gpt2_bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json))
    return tiktoken.Encoding("gpt2", pat_str=GPT2_PAT_STR, mergeable_ranks=ranks, special_tokens={})


def test_the_decoding_recipe_decodes_the_shards_as_rendered(
    variant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shards.md `Decoding it with tiktoken`, run as written on a real variant: the encoding it builds
    is the stage's, and a conversation decodes to its pieces with nothing between them."""
    code = re.search(r"## Decoding it with tiktoken.*?```python\n(.*?)```", SHARDS, re.S)
    assert code, "docs/shards.md has no tiktoken decoding recipe"
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: _offline_gpt2() if name == "gpt2" else None)
    tokens = np.fromfile(variant / "train" / "tokens-00000.bin", dtype="<u2")
    starts = np.load(variant / "train" / "starts-00000.npy")
    bounds = [*starts.tolist(), len(tokens)]
    stage = get_encoding()
    for (context, messages), a, b in zip(CONVS, bounds[:-1], bounds[1:], strict=True):
        scope: dict = {"ids": tokens[a:b]}
        exec(code.group(1).replace("data/tokens/full", str(variant)), scope)  # noqa: S102 (the docs' own code)
        enc = scope["enc"]
        assert enc.name == ENCODING_NAME and enc.n_vocab == stage.n_vocab == 50260
        assert enc._special_tokens == SPECIAL_TOKENS and enc._mergeable_ranks == stage._mergeable_ranks
        turns = "".join(f"<{role}>{text}<endOfText>" for role, text in messages)
        assert scope["text"] == f"<|endoftext|>{context or ''}{turns}"
        assert tokens[a:b].tolist() == render([{"role": r, "content": t} for r, t in messages], context)[0]


def test_the_offline_ranks_from_the_export_are_the_encodings(tmp_path: Path) -> None:
    """shards.md: offline, `data_gym_to_mergeable_bpe_ranks("model/hf/merges.txt", "model/hf/vocab.json")`
    gives the ranks: the exported tokenizer files are OpenAI's GPT-2 ones."""
    call = 'data_gym_to_mergeable_bpe_ranks("model/hf/merges.txt", "model/hf/vocab.json")'
    assert call in _section(SHARDS, "Decoding it with tiktoken")
    export_hf(GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=8)), tmp_path / "model" / "hf")
    ranks = eval(call.replace("model/hf", str(tmp_path / "model" / "hf")))  # noqa: S307 (the docs' own call)
    assert ranks == get_encoding()._mergeable_ranks


# ---------------------------------------------------------------------------------- checkpoints


def test_checkpoint_weights_are_linear_not_conv1d_and_padded(tmp_path: Path) -> None:
    """contracts.md model/ckpt: GPT-2's names, but nn.Linear's `(out, in)` (the transpose of
    model/hf's Conv1D), float32, and `wte` of the padded 50304 rows; a consumer loading the names
    into transformers' GPT-2 would otherwise meet shape errors it was not told of."""
    bullet = _bullet(_section(CONTRACTS, "Model"), "`model/ckpt/`")
    assert "`(out, in)`" in bullet and "Conv1D `(in, out)`" in bullet and "50304 rows" in bullet
    assert {"block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "bias"} <= _named(bullet)
    C = 8
    model = GPT(GPTConfig(block_size=16, vocab_size=PADDED_VOCAB, n_layer=1, n_head=2, n_embd=C))
    save_model(model, tmp_path / "ckpt")
    export_hf(model, tmp_path / "hf")
    with (
        safe_open(str(tmp_path / "ckpt" / WEIGHTS_FILE), "np") as ours,
        safe_open(str(tmp_path / "hf" / WEIGHTS_FILE), "np") as theirs,
    ):
        names = ours.keys()  # a safetensors handle is not iterable
        assert {str(ours.get_tensor(k).dtype) for k in names} == {"float32"}
        assert ours.get_tensor("transformer.wte.weight").shape == (PADDED_VOCAB, C)
        for name, out_in in (
            ("attn.c_attn", (3 * C, C)),
            ("mlp.c_fc", (4 * C, C)),
            ("mlp.c_proj", (C, 4 * C)),
        ):
            key = f"transformer.h.0.{name}.weight"
            assert ours.get_tensor(key).shape == out_in, key
            assert theirs.get_tensor(key).shape == out_in[::-1], key
            assert np.array_equal(ours.get_tensor(key).T, theirs.get_tensor(key)), key


# -------------------------------------------------------------------------------------- dataset


def test_the_documented_build_settings_are_the_ones_read() -> None:
    """contracts.md `params.yaml build`: every setting the build reads is named (an unnamed one,
    `split_opening_chars`, read as an unknown key to anyone who trusted the list)."""
    bullet = _bullet(_section(CONTRACTS, "Dataset"), "`params.yaml build`")
    listed = bullet[: bullet.index("Anything else")]
    assert _named(listed) - {"params.yaml build"} == set(BUILD_KEYS)


def _checked_out(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not checked out (dvc checkout / dvc repro)")
    return path


@pytest.mark.parametrize("variant_name", ["full", "commercial"])
def test_the_build_quarantine_is_turn_rows_in_the_quarantine_columns(variant_name: str) -> None:
    """contracts.md: the build's `quarantine.parquet` holds one row per turn, in the normalize
    quarantine's columns (`check`, `reason`, `origin` after the turn columns)."""
    bullet = _bullet(_section(CONTRACTS, "Dataset"), "`quarantine.parquet`")
    assert "one row per turn" in bullet and {"check", "reason", "origin"} <= _named(bullet)
    path = _checked_out(ROOT / "data" / "dataset" / variant_name / "quarantine.parquet")
    assert pl.read_parquet_schema(path) == QUARANTINE_SCHEMA


@pytest.mark.parametrize("variant_name", ["full", "commercial"])
def test_stats_rows_reconcile_as_documented(variant_name: str) -> None:
    """contracts.md stats.json: `rows_read = rows_kept + rows_quarantined + Σ rows_filtered +
    duplicate_rows_removed` per source, rows being turns, and `rows_read` is the normalize report's
    `turns_kept`; `characters` counts turn text only (checked against the parquet when checked out)."""
    bullet = _bullet(_section(CONTRACTS, "Dataset"), "`stats.json`")
    assert "rows_read = rows_kept + rows_quarantined + Σ rows_filtered + duplicate_rows_removed" in bullet
    stats = json.loads((ROOT / "data" / "dataset" / variant_name / "stats.json").read_text(encoding="utf-8"))
    for name, entry in stats["sources"].items():
        assert set(entry["rows_filtered"]) == {"not_commercial", "cap"}, name
        accounted = (
            entry["rows_kept"]
            + entry["rows_quarantined"]
            + sum(entry["rows_filtered"].values())
            + entry["duplicate_rows_removed"]
        )
        assert entry["reconciles"] and entry["rows_read"] == accounted, name
        assert entry["rows_kept"] == sum(entry["turns"].values()), name
        assert entry["matches_normalize_report"] and entry["rows_read"] == entry["normalize"]["turns_kept"], (
            name
        )
    for split in ("train", "val"):
        path = ROOT / "data" / "dataset" / variant_name / f"{split}.parquet"
        if not path.exists():
            continue
        rows = pl.read_parquet(path)
        chars = rows.select(
            pl.col("messages").list.eval(pl.element().struct.field("content").str.len_chars()).list.sum()
        )
        assert int(chars.to_series().sum()) == stats["totals"]["characters"][split]
        assert int(rows["messages"].list.len().sum()) == stats["totals"]["turns"][split]


# ----------------------------------------------------------------------------- registry and raw


@pytest.mark.parametrize("path", sorted((ROOT / "data" / "registry").glob("*.json")), ids=lambda p: p.stem)
def test_every_registry_field_is_documented(path: Path) -> None:
    """contracts.md `data/registry/<source>.json`: each key the stage writes is named there."""
    documented = _named(_section(CONTRACTS, "What a download depends on"))
    record = json.loads(path.read_text(encoding="utf-8"))
    assert set(record) <= documented, sorted(set(record) - documented)
    for item in record.get("contents", []) + record.get("recorded", []):
        assert set(item) == {"path", "sha256"}


@pytest.mark.parametrize("source", ["chitchat", "chatterbot", "contrib"])
def test_every_manifest_field_is_documented(source: str) -> None:
    """contracts.md `data/raw/<source>/`: each key of manifest.json is named there, and `revision`
    is what it says for the kind."""
    manifest = json.loads(
        _checked_out(ROOT / "data" / "raw" / source / "manifest.json").read_text(encoding="utf-8")
    )
    documented = _named(_section(CONTRACTS, "Raw downloads"))
    assert set(manifest) <= documented, sorted(set(manifest) - documented)
    for item in manifest["files"]:
        assert set(item) == {"path", "sha256", "size"}
    if manifest["kind"] == "package":
        upstream = manifest["upstream"]
        assert manifest["revision"] == f"{upstream['distribution']}=={upstream['version']}"
    elif manifest["kind"] == "contrib":
        assert manifest["revision"] is None
