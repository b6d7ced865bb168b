"""docs/contracts.md and docs/shards.md say what every stage and user may rely on: these tests hold
the documented values (read from the docs where they are written as tables, JSON or code) against
the real functions, on artifacts built here in a temporary directory, or against the small files
git keeps (stats, metrics, reports). What DVC caches (shards, weights) is built here, or the test
skips when it is absent, so the file runs in a fresh clone before `dvc repro`."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from safetensors import safe_open

from pipeline import chatapi, chatsession, httpconn, serve, stops
from pipeline.checkpoint import CONFIG_FILE, WEIGHTS_FILE, save_model
from pipeline.datasetformat import CONVERSATION_SCHEMA, SplitWriter, assemble_conversations, parse_text
from pipeline.encode import tokenize_dataset
from pipeline.hfexport import export_hf
from pipeline.model import GPT, GPTConfig
from pipeline.schema import (
    MAX_TURN_CHARS,
    QUARANTINE_SCHEMA,
    ROLES,
    TURN_COLUMNS,
    TURN_SCHEMA,
    TurnSchema,
    licence_known,
    validate,
)
from pipeline.shards import TokenShards
from pipeline.tokenizer import (
    BOT_ID,
    END_OF_TURN_ID,
    ENDOFTEXT_ID,
    HUMAN_ID,
    N_VOCAB,
    PADDED_VOCAB,
    SPECIAL_TOKENS,
    render,
)

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
SHARDS = (ROOT / "docs" / "shards.md").read_text(encoding="utf-8")
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def _section(doc: str, heading: str) -> str:
    """The text of a `## heading...` section, up to the next `## `."""
    start = doc.index(f"\n## {heading}")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else None]


def _table(text: str) -> list[list[str]]:
    """The rows of the first markdown table in `text` (header and rule left out), cells stripped."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    rows = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in lines[2:]]
    return [[cell.strip().replace("\\|", "|") for cell in row] for row in rows]


# ------------------------------------------------------------------------------- the turn table

# How the docs write a column's type -> (polars dtype, nullable)
_DOC_TYPES = {
    "str": (pl.String(), False),
    "int32": (pl.Int32(), False),
    "`human` | `bot`": (pl.String(), False),
    "bool": (pl.Boolean(), False),
    "str, nullable": (pl.String(), True),
}


def test_turn_table_columns_types_and_nulls_are_the_documented_ones() -> None:
    """contracts.md's turn table, column by column and in order: TURN_SCHEMA's dtypes and the
    pandera gate's nullability (only `context` may be null)."""
    rows = _table(_section(CONTRACTS, "Turn table"))
    documented = [(r[0], *_DOC_TYPES[r[1]]) for r in rows]
    nullable = {name: col.nullable for name, col in TurnSchema.columns.items()}
    assert documented == [(name, dtype, nullable[name]) for name, dtype in TURN_SCHEMA.items()]
    role_rule = next(r[1] for r in rows if r[0] == "role")
    assert re.findall(r"`(\w+)`", role_rule) == list(ROLES)


def test_turn_table_text_bound_is_the_documented_default() -> None:
    """`at most normalize.max_turn_chars (16,000)`: params.yaml's value and the schema's cap."""
    assert "`normalize.max_turn_chars` (16,000, " in CONTRACTS
    assert MAX_TURN_CHARS == PARAMS["normalize"]["max_turn_chars"] == 16_000
    bounds = TurnSchema.columns["text"].checks[0].statistics
    assert (bounds["min_value"], bounds["max_value"]) == (1, 16_000)


def test_design_turn_table_has_the_same_columns_in_the_same_order() -> None:
    """The founders' design (shared DESIGN.md, when this machine has it) and the project's docs
    describe one table."""
    design = Path("/work/shared/DESIGN.md")
    if not design.is_file():
        pytest.skip("the shared DESIGN.md is not on this machine")
    rows = _table(_section(design.read_text(encoding="utf-8"), "Turn table"))
    assert [r[0] for r in rows] == TURN_COLUMNS
    assert [r[1] for r in rows] == [r[1] for r in _table(_section(CONTRACTS, "Turn table"))]


def test_quarantine_columns_are_the_turn_columns_then_check_reason_origin() -> None:
    """`the turn columns (as read, nullable) + check, reason, origin`: exactly those, in that order."""
    assert list(QUARANTINE_SCHEMA.items()) == [
        *TURN_SCHEMA.items(),
        ("check", pl.String()),
        ("reason", pl.String()),
        ("origin", pl.String()),
    ]


@pytest.mark.parametrize("report", sorted((ROOT / "data" / "normalized").glob("*.report.json")), ids=str)
def test_committed_normalize_reports_reconcile(report: Path) -> None:
    """`rows_read = rows_kept + rows_quarantined + Σ rows_filtered` in every report git keeps, per
    contributed file too, and the quarantine counts by check add up to rows_quarantined."""
    r = json.loads(report.read_text(encoding="utf-8"))
    parts = [r, *r.get("by_source", {}).values()]
    for p in parts:
        assert p["rows_read"] == p["rows_kept"] + p["rows_quarantined"] + sum(p["rows_filtered"].values())
    assert sum(r["quarantined_by_check"].values()) == r["rows_quarantined"]
    assert r["source"] == report.name.removesuffix(".report.json")
    for name, p in r.get("by_source", {}).items():
        assert name.startswith(f"{r['source']}/") and {"licence", "commercial"} <= set(p)


# ------------------------------------------------------------------------------------ the dataset

_CONVERSATION_DOC = {
    "conversation_id": pl.String(),
    "messages": pl.List(pl.Struct({"role": pl.String(), "content": pl.String()})),
    "context": pl.String(),
    "source": pl.String(),
    "licence": pl.String(),
    "commercial": pl.Boolean(),
}


def test_dataset_rows_are_the_documented_columns() -> None:
    """train/val.parquet: `conversation_id, messages (list of {role, content}), context, source,
    licence, commercial`, in that order."""
    assert CONVERSATION_SCHEMA == _CONVERSATION_DOC
    assert list(CONVERSATION_SCHEMA) == list(_CONVERSATION_DOC)
    assert (
        '`conversation_id`, `messages`\n  (list of `{role: "human"|"bot", content}`), `context`' in CONTRACTS
    )


def test_text_export_is_the_documented_layout(tmp_path: Path) -> None:
    """text/<split>.txt: a persona as a plain first line, `<role> text <endOfText>` one turn per
    line, a blank line after each conversation; `\\` -> `\\\\`, newline -> `\\n`, marker text
    -> `<\\bot>`; parse_text reads it back exactly."""
    rows = pl.DataFrame(
        {
            "conversation_id": ["a", "a", "b", "b"],
            "turn": [0, 1, 0, 1],
            "role": ["human", "bot", "human", "bot"],
            "text": ["hi\\ there\nfriend", "say <bot> and <endOfText>", "q", "r"],
            "context": ["I am <human> a cat", "I am <human> a cat", None, None],
            "source": ["s"] * 4,
            "licence": ["MIT"] * 4,
            "commercial": [True] * 4,
            "order_h": [1, 1, 2, 2],
            "split": ["train"] * 4,
            "rank": [0] * 4,
        },
        schema_overrides={"turn": pl.Int32, "order_h": pl.UInt64},
    )
    writer = SplitWriter(tmp_path, "train", export_text=True)
    writer.append(assemble_conversations(rows))
    writer.close()
    text = (tmp_path / "text" / "train.txt").read_text(encoding="utf-8")
    assert text == (
        "I am <\\human> a cat\n"
        "<human> hi\\\\ there\\nfriend <endOfText>\n"
        "<bot> say <\\bot> and <\\endOfText> <endOfText>\n"
        "\n"
        "<human> q <endOfText>\n"
        "<bot> r <endOfText>\n"
        "\n"
    )
    assert parse_text(text) == [
        {
            "context": "I am <human> a cat",
            "messages": [
                {"role": "human", "content": "hi\\ there\nfriend"},
                {"role": "bot", "content": "say <bot> and <endOfText>"},
            ],
        },
        {"context": None, "messages": [{"role": "human", "content": "q"}, {"role": "bot", "content": "r"}]},
    ]


_LEAK_AUDIT_KEYS = {
    "min_chars",
    "val_turns_checked",
    "val_characters_checked",
    "val_turns_in_train",
    "val_characters_in_train",
    "val_turns_in_train_share",
    "val_characters_in_train_share",
}
# metrics.json, as contracts.md lists it: a summary of stats.json's totals
_DATASET_METRICS_KEYS = {
    "conversations",
    "turns",
    "characters",
    "rows_read",
    "rows_kept",
    "rows_quarantined",
    "rows_filtered",
    "duplicate_rows_removed",
    "sources",
    "leak_audit",
}


@pytest.mark.parametrize("variant", ["full", "commercial"])
def test_committed_stats_and_metrics_hold_the_documented_keys(variant: str) -> None:
    """stats.json (git keeps it): per source and total counts, `reconciles`, contrib's `parts`,
    totals.leak_audit with its seven documented keys and min_chars = max(split_opening_chars, 1);
    metrics.json: the documented summary of the totals."""
    directory = ROOT / "data" / "dataset" / variant
    stats = json.loads((directory / "stats.json").read_text(encoding="utf-8"))
    metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    assert stats["variant"] == variant
    for name, entry in stats["sources"].items():
        assert {"conversations", "turns", "characters", "licence", "commercial", "reconciles"} <= set(entry)
        assert set(entry["conversations"]) == {"train", "val"}
        assert {"within_source", "cross_source"} <= set(entry["duplicates_removed"])
        assert entry["reconciles"] is True, name
        if entry.get("kind") == "contrib":
            assert entry["parts"], f"{name}: a contrib source lists its files under `parts`"
    audit = stats["totals"]["leak_audit"]
    assert set(audit) == _LEAK_AUDIT_KEYS
    assert audit["min_chars"] == max(PARAMS["build"]["split_opening_chars"], 1)
    for share in ("val_turns_in_train_share", "val_characters_in_train_share"):
        assert 0 <= audit[share] <= 1 and round(audit[share], 6) == audit[share]
    assert set(metrics) == _DATASET_METRICS_KEYS
    totals = stats["totals"]
    assert {k: metrics[k] for k in ("conversations", "turns", "characters", "leak_audit")} == {
        k: totals[k] for k in ("conversations", "turns", "characters", "leak_audit")
    }
    assert metrics["rows_filtered"] == sum(totals["rows_filtered"].values())
    assert "`metrics.json` (the DVC metric) holds a summary of the totals" in CONTRACTS


# ----------------------------------------------------------------------------- the special tokens


def test_every_documented_special_token_id_is_the_tokenizers() -> None:
    """shards.md's table, contracts.md's line and the shared design's line name the same ids."""
    table = {r[0].strip("`"): int(r[1]) for r in _table(_section(SHARDS, "What a conversation looks like"))}
    assert table == SPECIAL_TOKENS
    line = re.findall(r"`(<[^`]+>)`=(\d+)", _section(CONTRACTS, "Token shards"))
    assert {t: int(i) for t, i in line} == SPECIAL_TOKENS
    assert "model vocab padded to 50304" in CONTRACTS and PADDED_VOCAB == 50304
    assert "`n_vocab` is 50260; the model pads its vocabulary to 50304" in SHARDS and N_VOCAB == 50260
    design = Path("/work/shared/DESIGN.md")
    if design.is_file():
        named = re.findall(r"`(<[^`]+>)`=(\d+)", design.read_text(encoding="utf-8"))
        assert {t: int(i) for t, i in named} == SPECIAL_TOKENS


def test_typed_markers_encode_as_text() -> None:
    """`a <bot> typed by a user is the characters <, bot, >, never id 50258`: in every slot."""
    ids, _ = render(
        [{"role": "human", "content": "<bot><human>"}, {"role": "bot", "content": "<endOfText>"}],
        "<|endoftext|>",
    )
    assert [i for i in ids if i in SPECIAL_TOKENS.values()] == [
        ENDOFTEXT_ID,
        HUMAN_ID,
        END_OF_TURN_ID,
        BOT_ID,
        END_OF_TURN_ID,
    ]


# ---------------------------------------------------------------------------------- token shards


def _write_split(path: Path, convs: list[tuple[str | None, list[tuple[str, str]]]]) -> None:
    rows = [
        {
            "conversation_id": f"c:{k}",
            "messages": [{"role": r, "content": t} for r, t in msgs],
            "context": ctx,
            "source": "alpha" if k % 2 else "beta",
        }
        for k, (ctx, msgs) in enumerate(convs)
    ]
    schema = {k: CONVERSATION_SCHEMA[k] for k in ("conversation_id", "messages", "context", "source")}
    pl.DataFrame(rows, schema=schema).write_parquet(path)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A variant tokenized by the real stage function: several train shards, an empty val split."""
    root = tmp_path_factory.mktemp("contracts")
    (root / "ds").mkdir()
    convs = [
        (
            f"persona {k}" if k % 3 == 0 else None,
            [("human", f"hello number {k}"), ("bot", f"hi {k}, how are you")],
        )
        for k in range(12)
    ]
    _write_split(root / "ds" / "train.parquet", convs)
    _write_split(root / "ds" / "val.parquet", [])
    meta = tokenize_dataset(root / "ds", root / "tokens", shard_tokens=60, workers=0, batch_conversations=5)
    return root / "tokens", meta


def _shape(value: object) -> object:
    """The key structure of a JSON value (the values themselves left out; a list by its first item)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_meta_json_has_the_documented_shape(tokens: tuple[Path, dict]) -> None:
    """shards.md's meta.json example: the same keys at every level as the stage writes (sha256's
    keys are the shard file names; `val` stands for the train split's shape) and the same fixed values."""
    out, meta = tokens
    block = re.search(r"## meta\.json\s+```json\n(.*?)```", SHARDS, re.S)
    assert block, "docs/shards.md has no meta.json example"
    doc = json.loads(block.group(1).replace("…", "x"))
    assert json.loads((out / "meta.json").read_text(encoding="utf-8")) == meta
    for key in ("format", "format_version", "encoding", "n_vocab", "padded_vocab", "special_ids", "dtypes"):
        assert meta[key] == doc[key], key
    assert doc["shard_tokens"] == PARAMS["tokenize"]["shard_tokens"] == 16_777_216 == 32 * 2**20 // 2
    assert set(meta) == set(doc) and set(meta["splits"]) == set(doc["splits"]) == {"train", "val"}
    train, doc_train = meta["splits"]["train"], doc["splits"]["train"]
    assert _shape({**train, "sha256": {}}) == _shape({**doc_train, "sha256": {}})
    assert set(train["sha256"]) == {f for s in train["shards"] for f in (s["tokens"], s["mask"], s["starts"])}
    assert set(doc_train["sha256"]) == {"tokens-00000.bin", "mask-00000.bin", "starts-00000.npy"}
    assert train["input"] == {"file": "train.parquet", "rows": 12}


def test_metrics_json_and_sources_csv_are_the_documented_ones(tokens: tuple[Path, dict]) -> None:
    """metrics.json: per split `conversations`, `tokens`, `loss_tokens` and the same three per
    source; sources.csv: `source,tokens,loss_tokens,conversations`, largest first; lengths.csv."""
    out, _ = tokens
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for split in ("train", "val"):
        assert set(metrics[split]) == {"conversations", "tokens", "loss_tokens", "sources"}
        for entry in metrics[split]["sources"].values():
            assert set(entry) == {"conversations", "tokens", "loss_tokens"}
    with (out / "sources.csv").open(encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["source", "tokens", "loss_tokens", "conversations"]
    assert [int(r[1]) for r in table[1:]] == sorted((int(r[1]) for r in table[1:]), reverse=True)
    # lengths.csv: `length,conversations,tokens`, a row per bin from `1-32` to `8193+`, as documented
    assert (
        "(`length,conversations,tokens`: one row per bin `1-32`, `33-64`, ... `4097-8192`, `8193+`" in SHARDS
    )
    with (out / "lengths.csv").open(encoding="utf-8") as f:
        lengths = list(csv.reader(f))
    assert lengths[0] == ["length", "conversations", "tokens"]
    assert [r[0] for r in lengths[1:3]] == ["1-32", "33-64"] and [r[0] for r in lengths[-2:]] == [
        "4097-8192",
        "8193+",
    ]
    assert sum(int(r[1]) for r in lengths[1:]) == metrics["train"]["conversations"]


def test_the_numpy_recipe_reads_the_shards(tokens: tuple[Path, dict]) -> None:
    """The `Reading it with numpy alone` code block, run as written on a real split: its
    conversations are the reader's, each starts with <|endoftext|>, dtypes as documented."""
    out, meta = tokens
    code = re.search(r"## Reading it with numpy alone\s+```python\n(.*?)```", SHARDS, re.S)
    assert code, "docs/shards.md has no numpy recipe"
    source = code.group(1).replace("data/tokens/full", str(out))
    source = source.replace(
        "    ids, loss = tokens[a:b], mask[a:b]",
        "    ids, loss = tokens[a:b], mask[a:b]; seen.append((ids, loss))",
    )
    reader = TokenShards(out / "train")
    for k in range(len(meta["splits"]["train"]["shards"])):
        scope: dict = {"seen": []}
        exec(source.replace("k = 0", f"k = {k}"), scope)  # noqa: S102 (the docs' own code)
        assert scope["tokens"].dtype == np.dtype("<u2") and scope["mask"].dtype == np.uint8
        assert scope["starts"].dtype == np.dtype("<i8") and scope["starts"][0] == 0
        assert (np.asarray(scope["tokens"])[np.asarray(scope["starts"])] == ENDOFTEXT_ID).all()
        shard = reader.shards[k]
        want = [
            (shard.tokens[a:b], shard.mask[a:b])
            for a, b in zip(shard.starts, [*shard.starts[1:], shard.n_tokens], strict=True)
        ]
        assert len(scope["seen"]) == len(want) > 0
        for (ids, loss), (w_ids, w_loss) in zip(scope["seen"], want, strict=True):
            assert np.array_equal(ids, w_ids) and np.array_equal(loss, w_loss)


def test_shards_are_numbered_without_gaps_and_bounded(tokens: tuple[Path, dict]) -> None:
    out, meta = tokens
    shards = meta["splits"]["train"]["shards"]
    assert len(shards) > 1
    names = sorted(p.name for p in (out / "train").iterdir())
    assert names == sorted(
        f"{kind}-{k:05d}.{ext}"
        for k in range(len(shards))
        for kind, ext in (("tokens", "bin"), ("mask", "bin"), ("starts", "npy"))
    )
    assert all(s["n_tokens"] <= meta["shard_tokens"] for s in shards)


def test_an_empty_split_is_an_empty_directory(tokens: tuple[Path, dict]) -> None:
    """`An empty split is an empty directory`: there, with nothing in it, and meta.json lists nothing."""
    out, meta = tokens
    assert (out / "val").is_dir() and list((out / "val").iterdir()) == []
    val = meta["splits"]["val"]
    assert (val["shards"], val["sha256"], val["n_tokens"], val["n_conversations"]) == ([], {}, 0, 0)


def test_documented_share_of_replies_past_the_window_on_the_default_data() -> None:
    """shards.md: `in the default data 2.5% of the bot-closing tokens at T = 128, 0.3% at 256,
    0.01% at 1024` lie more than T - H tokens past their exchange's start. Needs the DVC output."""
    split = ROOT / "data" / "tokens" / "full" / "train"
    if not split.is_dir():
        pytest.skip("data/tokens/full is not checked out (dvc checkout / dvc repro)")
    assert "2.5% of the bot-closing tokens at `T` = 128, 0.3% at 256, 0.01% at 1024" in SHARDS
    shards = TokenShards(split)
    for T, share in ((128, 2.5), (256, 0.3), (1024, 0.01)):
        past = total = 0
        for sh in shards.shards:
            tok, mask, starts = np.asarray(sh.tokens), np.asarray(sh.mask), np.asarray(sh.starts)
            bounds = np.flatnonzero((tok == ENDOFTEXT_ID) | (tok == HUMAN_ID))
            markers = np.flatnonzero((tok == HUMAN_ID) | (tok == BOT_ID))
            header = markers[np.searchsorted(markers, starts)] - starts  # <|endoftext|> + persona
            closing = np.flatnonzero((tok == END_OF_TURN_ID) & (mask == 1))
            b = bounds[np.searchsorted(bounds, closing, side="right") - 1]
            conv = np.searchsorted(starts, closing, side="right") - 1
            H = np.where((b > starts[conv]) & (header[conv] <= (T + 1) // 2), header[conv], 0)
            past += int(np.sum(closing - b > T - H))
            total += len(closing)
        digits = len(str(share).split(".")[1])
        assert round(100 * past / total, digits) == share, (T, past, total)


# ----------------------------------------------------------------------------------- checkpoints


def test_checkpoint_is_config_and_safetensors_with_gpt2_names(tmp_path: Path) -> None:
    """model/ckpt: `config.json` (GPTConfig) + `model.safetensors` (GPT-2 parameter names, lm_head
    tied to wte and stored once): the names are transformers' GPT2LMHeadModel's, lm_head left out."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPTConfig(block_size=16, vocab_size=PADDED_VOCAB, n_layer=2, n_head=2, n_embd=8)
    save_model(GPT(cfg), tmp_path)
    assert (
        sorted(p.name for p in tmp_path.iterdir())
        == [CONFIG_FILE, WEIGHTS_FILE]
        == ["config.json", "model.safetensors"]
    )
    config = json.loads((tmp_path / CONFIG_FILE).read_text(encoding="utf-8"))
    assert config == dataclasses.asdict(cfg)
    assert set(config) == {"block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "bias"}
    with safe_open(str(tmp_path / WEIGHTS_FILE), "pt") as f:
        names = set(f.keys())
        assert f.metadata() == {"format": "pt"}
        assert f.get_slice("transformer.wte.weight").get_shape() == [PADDED_VOCAB, 8]
    hf = GPT2LMHeadModel(GPT2Config(n_positions=16, n_embd=8, n_layer=2, n_head=2, vocab_size=PADDED_VOCAB))
    theirs = {k for k in hf.state_dict() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    assert names == theirs - {"lm_head.weight"}


_HF_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
}


def test_hf_export_layout_is_the_documented_one(tmp_path: Path) -> None:
    """model/hf: the files contracts.md lists (README.md / LICENSE.md only when given), a vocabulary
    of 50260 with no padding rows, the chat tokens in the tokenizer files, the chat template."""
    export_hf(GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=8)), tmp_path / "hf")
    assert {p.name for p in (tmp_path / "hf").iterdir()} == _HF_FILES
    for name in _HF_FILES:
        assert f"`{name}`" in _section(CONTRACTS, "Model"), name
    export_hf(
        GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=8)), tmp_path / "hf2", card="c", licence="l"
    )
    assert {p.name for p in (tmp_path / "hf2").iterdir()} == _HF_FILES | {"README.md", "LICENSE.md"}
    hf = tmp_path / "hf"
    config = json.loads((hf / "config.json").read_text(encoding="utf-8"))
    assert config["vocab_size"] == N_VOCAB == 50260
    with safe_open(str(hf / "model.safetensors"), "pt") as f:
        assert f.get_slice("transformer.wte.weight").get_shape()[0] == 50260
    added = json.loads((hf / "added_tokens.json").read_text(encoding="utf-8"))
    assert added == {"<human>": 50257, "<bot>": 50258, "<endOfText>": 50259}
    generation = json.loads((hf / "generation_config.json").read_text(encoding="utf-8"))
    assert set(generation["eos_token_id"]) == set(SPECIAL_TOKENS.values())
    tok_config = json.loads((hf / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert {int(i): t["content"] for i, t in tok_config["added_tokens_decoder"].items()} == {
        i: t for t, i in SPECIAL_TOKENS.items()
    }
    assert tok_config["chat_template"]


# --------------------------------------------------------------------------- evaluation, serving


def test_committed_eval_outputs_hold_the_documented_fields() -> None:
    """model/eval/metrics.json (git keeps it) and sources.csv's documented header and fields."""
    metrics = json.loads((ROOT / "model" / "eval" / "metrics.json").read_text(encoding="utf-8"))
    documented = {
        "val_loss_bot",
        "val_ppl_bot",
        "val_bot_tokens",
        "val_bot_tokens_share",
        "stop_rate",
        "empty_reply_rate",
        "stray_stop_rate",
        "decode_tokens_per_s",
        "mean_reply_tokens",
    }
    assert documented <= set(metrics)
    assert 0 < metrics["val_bot_tokens_share"] <= 1
    if PARAMS["evaluate"].get("eval_iters") is None:  # the whole split is scored
        assert metrics["val_bot_tokens_share"] == 1
    header = (ROOT / "model" / "eval" / "sources.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "source,val_loss_bot,bot_tokens,conversations"
    assert "`model/eval/sources.csv` (`source, val_loss_bot, bot_tokens, conversations`" in CONTRACTS


def test_documented_sample_of_the_val_loss_is_the_committed_runs() -> None:
    """contracts.md quotes train's val loss (a sample of the windows) against evaluate's over the
    whole split; both files are in git, so the figures must be the committed run's (they were a
    run behind: 5.369 against 5.375). Deliberately strict: a retrain that moves the losses fails
    here until the sentence is updated with the run's dvc.lock."""
    found = re.search(
        r"cpu-tiny: (\d+) of\s+([\d,]+), (\d+)% of the bot tokens, (\d\.\d+) against (\d\.\d+) for the whole",
        CONTRACTS,
    )
    assert found, "contracts.md no longer quotes the sampled val loss"
    sampled, whole = float(found[4]), float(found[5])
    train = json.loads((ROOT / "model" / "metrics.json").read_text(encoding="utf-8"))
    evaluate = json.loads((ROOT / "model" / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert (sampled, whole) == (round(train["val_loss"], 3), round(evaluate["val_loss_bot"], 3))
    profile = PARAMS["train_profiles"]["cpu-tiny"]
    assert int(found[1]) == profile["eval_iters"] * profile["batch_size"]
    split = ROOT / "data" / "tokens" / "full" / "val"
    if not split.is_dir():
        pytest.skip("data/tokens/full is not checked out (dvc checkout / dvc repro)")
    shards = TokenShards(split)
    every = sum(-(-(sh.n_tokens - 1) // profile["block_size"]) for sh in shards.shards)
    assert int(found[2].replace(",", "")) == every
    scored = sum(
        int(m.sum())
        for _, _, m in shards.iter_eval_batches(
            profile["batch_size"], profile["block_size"], profile["eval_iters"]
        )
    )
    assert int(found[3]) == int(100 * scored / shards.loss_tokens())


def test_serving_limits_are_the_documented_ones() -> None:
    """The numbers contracts.md's Serving section promises, against the constants that enforce them."""
    serving = _section(CONTRACTS, "Serving")
    assert "127.0.0.1:8000" in serving and (serve.DEFAULT_HOST, serve.DEFAULT_PORT) == ("127.0.0.1", 8000)
    assert "`--max-waiting` requests (default 8)" in serving and chatapi.MAX_WAITING == 8
    assert "when 64\nconnections are open" in serving and httpconn.MAX_CONNECTIONS == 64
    assert "(at most 1 MiB)" in serving and httpconn.MAX_BODY_BYTES == 2**20
    assert "up to four" in serving and stops.MAX_STOP_STRINGS == 4
    assert "more than 10,000 whitespace characters" in serving and chatsession.MAX_WHITESPACE_RUN == 10_000
    assert "more than 30 combining marks" in serving and chatsession.MAX_COMBINING_RUN == 30


@pytest.mark.parametrize("source", ["chitchat", "chatterbot", "contrib"])
def test_checked_out_turn_tables_pass_the_gate_with_documented_ids(source: str) -> None:
    """data/normalized/<source>.parquet (DVC output: skipped when absent) passes TurnSchema, and each
    conversation_id is `<source>:<upstream id or file and line>` of its row's registry name."""
    path = ROOT / "data" / "normalized" / f"{source}.parquet"
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} is not checked out (dvc checkout / dvc repro)")
    turns = pl.read_parquet(path)
    assert dict(turns.schema) == TURN_SCHEMA
    validate(turns)
    assert turns.select((pl.col("conversation_id").str.starts_with(pl.col("source") + ":")).all()).item()
    assert turns.select(pl.col("source").str.starts_with(source).all()).item()


@pytest.mark.parametrize("split", ["train", "val"])
def test_checked_out_dataset_splits_have_the_documented_rows(split: str) -> None:
    """data/dataset/full/<split>.parquet (DVC output: skipped when absent): the documented columns,
    roles `human`/`bot` starting with human, and `commercial` true only under a known licence."""
    path = ROOT / "data" / "dataset" / "full" / f"{split}.parquet"
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} is not checked out (dvc checkout / dvc repro)")
    rows = pl.read_parquet(path)
    assert dict(rows.schema) == _CONVERSATION_DOC
    roles = rows.select(pl.col("messages").list.eval(pl.element().struct.field("role")).alias("r"))["r"]
    assert all(r[0] == "human" and set(r) <= set(ROLES) for r in roles.to_list())
    assert rows.filter(pl.col("commercial") & ~licence_known()).height == 0
