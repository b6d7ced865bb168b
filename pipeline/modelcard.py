"""The model card: the README.md (and, for a mix of licences the Hub has no single id for, the
LICENSE.md) of model/hf/, from the run's facts, the training split's tokens per source and each
source's terms (pipeline.datasetcard.stats_terms of the variant's stats.json).

The card travels alone (`hf upload` of model/hf), so it states the training data's licences and
whether the weights may be used commercially itself, rather than point at the dataset. The pieces
it shares with the dataset card (licence ids, source rows, Markdown) are in pipeline/cards.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.cards import (
    LICENCE_FILE,
    NOTICE_FILE,
    CardSource,
    cell,
    front_matter,
    hub_licence,
    inline_name,
    licence_name,
    markdown_text,
)


@dataclass(frozen=True)
class ModelFacts:
    """What a model card states about one trained model (no timings: the card must not change
    when the same run is repeated on a busier machine)."""

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    params: int
    variant: str
    init_from: str
    iters: int
    tokens_per_iter: int
    initial_val_loss: float | None
    val_loss: float | None
    base_model: str | None = None  # the Hub repository init_from named (openai-community/gpt2, ...)
    # The run was extended (init_from: resume) after its data changed (model/metrics.json
    # `data_changed`): the weights also learned an earlier build of the data, which no record describes.
    earlier_data: bool = False


def _loss(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _trained_terms(
    source_tokens: Sequence[Mapping[str, Any]], terms: Mapping[str, CardSource]
) -> list[CardSource]:
    """The terms of each source the model was trained on; a source with no recorded terms is
    `unknown` and not commercial (a card never claims more than the build's figures back)."""
    return [
        terms.get(str(row["source"])) or CardSource(str(row["source"]), "unknown", False)
        for row in source_tokens
    ]


def model_licence(trained: Sequence[CardSource]) -> dict[str, Any]:
    """The card's licence fields: the Hub id all training sources share, else `other` with a name
    for the mix and a link to LICENSE.md (model_licence_file), which lists each source's terms."""
    ids = {hub_licence(s.licence) for s in trained}
    if not trained:
        return {"license": "unknown"}
    if len(ids) == 1 and "other" not in ids:
        return {"license": ids.pop()}
    return {
        "license": "other",
        "license_name": licence_name(sorted({s.licence for s in trained})),
        "license_link": LICENCE_FILE,
    }


def unrecorded_base(facts: ModelFacts) -> str | None:
    """The local checkpoint the weights started from (not scratch, not a Hub GPT-2), whose terms
    nothing recorded; None otherwise."""
    return facts.init_from if facts.init_from != "scratch" and not facts.base_model else None


def commercial_statement(
    trained: Sequence[CardSource], unknown_base: str | None = None, earlier_data: bool = False
) -> str:
    """One plain sentence: may the weights be used commercially (only if every source allows it,
    the weights did not start from `unknown_base`, a local checkpoint of unrecorded terms, and did
    not also learn `earlier_data`, a build of the data the card has no record of)."""
    if not trained:
        return (
            "**Commercial use: unknown.** No record of the training data's sources came with this "
            "model: do not use it commercially until you know them."
        )
    barred = [s for s in trained if not s.commercial]
    if not barred and earlier_data:
        # the sources listed are the current build's: a file taken out of the commercial variant
        # (its flag corrected) is in the weights but in no table here
        return (
            "**Commercial use: not established.** Every source listed here allows training a commercial "
            "model, but the run was extended (`init_from: resume`) after its training data changed: the "
            "weights also learned an earlier build of the data, of which this card has no record. Do not "
            "use them commercially unless every source of that build allowed it too (a model trained from "
            "scratch on the current data says so here)."
        )
    if not barred and unknown_base:
        return (
            "**Commercial use: depends on the base model.** Every source of the training data allows "
            f"training a commercial model, but the weights start from `{unknown_base}`, a local "
            "checkpoint whose terms nanoChatGPT has no record of: its licence decides."
        )
    if not barred:
        return (
            "**Commercial use: allowed.** Every source of the training data allows training a commercial "
            "model, so these weights may be used commercially, under the terms of each source's licence "
            "(keep the copyright notices of MIT / BSD / Apache sources and credit CC-BY sources)."
        )
    names = ", ".join(f"{inline_name(s.name)} ({inline_name(s.licence)})" for s in barred)
    return (
        "**Commercial use: not allowed.** Part of the training data is under terms that do not allow "
        f"commercial use, or under unknown terms: {names}. Do not use these weights commercially."
    )


# How to encode untrusted message text for this model with a transformers tokenizer, shown in the
# model card and run by the tests (tests/test_hf.py, tests/test_hf_edge.py), which check its ids
# against the server's. It takes what apply_chat_template takes and follows the template's rules (a
# persona from system messages, empty messages and a greeting before the first user message left
# out, one role's consecutive messages joined into one turn): a recipe that rendered each message as
# a turn of its own gave the model formats it never saw, such as two <human> turns in a row.
SAFE_ENCODING = """\
import unicodedata

def clean(text):  # as nanoChatGPT cleans a message: LF line ends, NFC, stripped
    return unicodedata.normalize("NFC", text.replace("\\r\\n", "\\n").replace("\\r", "\\n")).strip()

def encode(text):  # ordinary text: a typed marker stays characters
    return tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

def chat_ids(messages):  # [{"role": ..., "content": "text"}]: what apply_chat_template takes
    persona, turns = [], []  # turns: [role, text], as the chat template gathers them
    for m in messages:
        if m["role"] not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"chat roles are system, developer, user and assistant, not {m['role']}")
        text = clean(m["content"])
        if m["role"] in ("system", "developer"):
            persona += [text] if text else []
        elif not text or (not turns and m["role"] == "assistant"):
            continue  # empty, or a greeting before the first user message: left out
        elif turns and turns[-1][0] == m["role"]:
            turns[-1][1] += "\\n" + text  # one role's consecutive messages are one turn
        else:
            turns.append([m["role"], text])
    if not turns or turns[-1][0] != "user":
        raise ValueError("the last message must be a user message with text")
    ids = [50256] + encode("\\n".join(persona))  # <|endoftext|>, then the persona as plain text
    for role, text in turns:  # <human> or <bot>, the text, <endOfText>
        ids += [50257 if role == "user" else 50258] + encode(text) + [50259]
    return ids + [50258]  # <bot>: the model's reply comes next
"""


def model_card(
    facts: ModelFacts,
    source_tokens: Sequence[Mapping[str, Any]],
    terms: Mapping[str, CardSource] | None = None,
    notice: bool = False,
) -> str:
    """The README.md of model/hf/: architecture, training run, data make-up and licences, chat
    format, usage. `notice`: NOTICE.md (the training data's licence texts) sits beside it.

    `source_tokens` are the rows of data/tokens/<variant>/sources.csv (source, tokens,
    loss_tokens, conversations), the training split's make-up; `terms` each source's licence and
    commercial flag (stats_terms of data/dataset/<variant>/stats.json). The card travels alone
    (`hf upload` of model/hf), so it states the licences itself rather than point at the dataset.
    """
    trained = _trained_terms(source_tokens, terms or {})
    unknown_base = unrecorded_base(facts)
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "language": ["en"],
        **(model_licence(trained) if not (unknown_base or facts.earlier_data) else {"license": "unknown"}),
        **({"base_model": facts.base_model} if facts.base_model else {}),
        "tags": ["gpt2", "conversational", "nanochatgpt"],
    }
    if facts.init_from == "scratch":
        start = "random weights"
    elif facts.base_model:
        start = f"`{facts.init_from}` ([{facts.base_model}](https://huggingface.co/{facts.base_model}))"
    else:
        start = f"`{facts.init_from}`"
    lines = [
        front_matter(meta),
        "# nanoChatGPT chat model",
        "",
        f"A GPT-2 architecture chat model ({facts.params / 1e6:.1f}M parameters: {facts.n_layer} layers, "
        f"{facts.n_head} heads, width {facts.n_embd}, context {facts.block_size} tokens), trained from "
        f"{start} on the `{facts.variant}` dataset variant by nanoChatGPT's `train` stage. The loss counts "
        "only what the bot says (and the marker that ends its turn), not the human turns.",
        "",
        "| steps | tokens seen | val loss at start | val loss at end |",
        "|---:|---:|---:|---:|",
        f"| {facts.iters:,} | {facts.iters * facts.tokens_per_iter:,} | {_loss(facts.initial_val_loss)} | "
        f"{_loss(facts.val_loss)} |",
        "",
        # Which val loss: the trainer's sample, which the evaluate stage's whole-split figure (read
        # beside it by someone comparing runs) differs from by its sampling noise (about 0.05 nats).
        "The val loss is the training run's: bot tokens of the `eval_iters` batches of windows it "
        "samples evenly from the val split. The evaluate stage scores the whole split unless "
        # the export reads no evaluate setting: the card cannot know whether it was limited
        "`evaluate.eval_iters` limits it (`model/eval/metrics.json`: `val_bot_tokens_share` is the "
        "share scored).",
        "",
        "## Training data and licences (train split)",
        "",
        commercial_statement(trained, unknown_base, facts.earlier_data),
        "",
        *(
            [
                f"`{NOTICE_FILE}`, beside this card, holds the licence and copyright text each source of "
                "the training variant shipped (or this repository's copy of it where the source shipped "
                "none, or says that there is none): keep it with the weights.",
                "",
            ]
            if notice
            else []
        ),
        *(
            [f"The weights start from `{facts.init_from}`: its own licence applies to them too.", ""]
            if facts.init_from != "scratch"
            else []
        ),
        "Each row's `licence` names the terms of that source's data, and `commercial` says whether "
        "those terms allow training a commercial model.",
        "",
        "| source | licence | commercial | tokens | bot tokens (in the loss) | conversations |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row, t in zip(source_tokens, trained, strict=True):
        lines.append(
            f"| {cell(inline_name(row['source']))} | {cell(inline_name(t.licence))} | "
            f"{'yes' if t.commercial else 'no'} | "
            f"{int(row['tokens']):,} | {int(row['loss_tokens']):,} | {int(row['conversations']):,} |"
        )
    lines += [
        "",
        "## Chat format",
        "",
        "`<|endoftext|>[persona]<human>text<endOfText><bot>text<endOfText>...`: the markers are "
        "special tokens (ids 50257-50259), the persona is plain text before the first turn, and a "
        "reply ends with `<endOfText>` (generation_config.json lists it as an end token). The "
        "tokenizer's chat template renders exactly this: `system` messages are the "
        "persona, `user` turns are `<human>`, `assistant` turns are `<bot>`. The tokenizer reads "
        "text as Unicode NFC (tokenizer.json's normalizer), as `nanochatgpt serve` and the training "
        "text do, so decomposed text gets the ids serve uses too.",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'tok = AutoTokenizer.from_pretrained("model/hf")',
        'model = AutoModelForCausalLM.from_pretrained("model/hf")',
        "messages = [",
        '    {"role": "system", "content": "You are a cheerful librarian."},',
        '    {"role": "user", "content": "Hi! What do you do?"},',
        "]",
        'ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", '
        "return_dict=True)",
        "out = model.generate(**ids, max_new_tokens=48, do_sample=True, top_k=50)",
        'print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
        'For a batch of conversations, pad on the left (`tok.padding_side = "left"`, then '
        "`padding=True`): each prompt must end where its reply begins. The tokenizer pads on the right "
        "by default, which a plain forward pass (training, scoring) needs.",
        "",
        # generate() does not trim a long prompt: past the position table it fails with a bare
        # IndexError, which a reader extending the example to a longer chat met with no hint why
        f"The model has {facts.block_size:,} positions: the prompt plus `max_new_tokens` must fit in "
        f"{facts.block_size:,} tokens (`generate()` fails with `IndexError: index out of range in self` "
        "once a token past them is fed in). For a longer chat, leave out the oldest exchanges (a user "
        "message and the reply to it) until it fits, keeping the `system` persona, as `nanochatgpt "
        "chat` and `serve` do.",
        "",
        "### Untrusted text",
        "",
        "A Hugging Face tokenizer turns marker text inside a message into the marker itself (a typed "
        "`<bot>` becomes id 50258), in `apply_chat_template` as in `tok(text)`, so untrusted text "
        "could forge a turn there. nanoChatGPT's own engine (`nanochatgpt chat`, `nanochatgpt serve`) "
        "encodes message text as ordinary text and never does. To do the same with transformers, "
        "encode each message on its own with `split_special_tokens=True` and put the markers in as "
        "ids. `chat_ids(messages)` below takes the messages `apply_chat_template` takes (with text "
        "contents), gathers them as the template does, and gives the ids nanoChatGPT's engine renders "
        "(but for a message of invisible characters alone, such as a zero-width space, which the "
        "engine and the template leave out and this recipe keeps):",
        "",
        "```python",
        "import torch",
        SAFE_ENCODING.rstrip("\n"),
        "",
        'messages = [{"role": "system", "content": "You are a cheerful librarian."}, '
        '{"role": "user", "content": "What does <bot> do?"}]',
        "ids = torch.tensor([chat_ids(messages)])",
        "out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=48, do_sample=True)",
        "print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))",
        "```",
        "",
    ]
    return "\n".join(lines)


def model_licence_file(
    source_tokens: Sequence[Mapping[str, Any]],
    terms: Mapping[str, CardSource],
    unknown_base: str | None = None,
    earlier_data: bool = False,
) -> str | None:
    """LICENSE.md for a model whose training sources share no single licence the Hub knows (the
    card's `license_link` points here), else None: each source's terms and the commercial verdict."""
    trained = _trained_terms(source_tokens, terms)
    if not trained or model_licence(trained)["license"] != "other":
        return None
    lines = [
        "# Licences of this model's training data",
        "",
        "The model was trained on conversations from several sources, each under its own terms:",
        "",
        "| source | licence | commercial |",
        "|---|---|---|",
        *(
            f"| {cell(markdown_text(s.name))} | {cell(markdown_text(s.licence))} | {'yes' if s.commercial else 'no'} |"
            for s in trained
        ),
        "",
        commercial_statement(trained, unknown_base, earlier_data),
        "",
    ]
    return "\n".join(lines)
