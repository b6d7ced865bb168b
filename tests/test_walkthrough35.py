"""Session 35's walkthrough of the exports as someone who takes them elsewhere (transformers,
datasets): what the model card and the dataset card left out that such a reader trips on."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
import torch
from test_cards import facts_of, stats_of
from test_engine_support import tiny_gpt

from pipeline import datasetcard, datasetformat, hfexport, modelcard
from pipeline.tokenizer import render

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """tiny_gpt (block_size 128, as cpu-tiny) exported with a card of its own context length."""
    model = tiny_gpt()
    out = tmp_path_factory.mktemp("hf") / "model"
    card = modelcard.model_card(facts_of(block_size=model.config.block_size), [])
    hfexport.export_hf(model, out, card=card)
    return out


def _stated_context(card: str) -> int:
    """The limit the card tells a transformers user to keep prompt plus reply within."""
    found = re.search(r"the prompt plus `max_new_tokens` must fit in ([\d,]+) tokens", card)
    assert found, "the model card does not say how long a prompt plus its reply may be"
    return int(found.group(1).replace(",", ""))


def _generate(model, prompt: int, new: int) -> torch.Tensor:
    ids = torch.full((1, prompt), 262)  # " the": any ordinary token
    # min_new_tokens: the whole budget is decoded, as a reply that does not stop early would be
    return model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False
    )


def test_the_model_card_states_the_context_a_generate_call_must_fit(export: Path) -> None:
    """A transformers user extending the card's example to a longer chat got `IndexError: index out
    of range in self` from generate() (GPT-2's position table ends at n_positions), and the card only
    said "context 128 tokens". It now says prompt plus max_new_tokens must fit, and that is true:
    the stated length generates, and the first token fed past the positions fails (generate never
    feeds its last token back, so that is two past the limit)."""
    limit = _stated_context((export / "README.md").read_text(encoding="utf-8"))
    assert limit == 128
    model = transformers.AutoModelForCausalLM.from_pretrained(export).eval()
    prompt = limit - 2  # a long chat's prompt; a short reply keeps the test to a few decode steps
    assert _generate(model, prompt, 2).shape[1] == limit
    with pytest.raises(IndexError, match="index out of range in self"):
        _generate(model, prompt, 2 + 2)


def test_the_dataset_card_says_how_the_text_export_is_escaped() -> None:
    """The card travels alone (`hf upload`), so a reader of text/ has no docs/contracts.md: it must
    name each escape the writer puts in a line, as the writer spells it."""
    card = datasetcard.dataset_card("full", stats_of(chitchat=("MIT", 12, 2, None)), [])
    raw = "two\nlines, a \\ and a typed <bot>"
    line = pl.select(datasetformat.escape(pl.lit(raw))).item()
    assert line == "two\\nlines, a \\\\ and a typed <\\bot>"
    for escaped in ("\\n", "\\\\", "<\\bot>"):
        assert f"`{escaped}`" in card, escaped
    assert "parse_text" in card  # where an exact reader is


def test_the_dataset_card_maps_its_roles_to_the_models_chat_template(export: Path) -> None:
    """A dataset row's roles are human/bot; the exported model's chat template takes user/assistant
    (and refuses `human`). The card says how to map them, and the mapping gives the training ids."""
    card = datasetcard.dataset_card("full", stats_of(chitchat=("MIT", 12, 2, None)), [])
    assert "`human` as `user`, `bot` as `assistant` and `context` as a `system` message" in card
    tok = transformers.AutoTokenizer.from_pretrained(export)
    row = {
        "context": "Be kind.",
        "messages": [{"role": "human", "content": "hi"}, {"role": "bot", "content": "yo"}],
    }
    with pytest.raises(Exception, match="not human"):
        tok.apply_chat_template(row["messages"])
    roles = {"human": "user", "bot": "assistant"}
    mapped = [{"role": "system", "content": row["context"]}] + [
        {"role": roles[m["role"]], "content": m["content"]} for m in row["messages"]
    ]
    ids = tok.apply_chat_template(mapped, return_dict=True)["input_ids"]
    assert list(ids) == render(row["messages"], row["context"])[0]
