"""Mutation audit 26: model loading and the tokenizer (pipeline/hf.py, pipeline/tokenizer.py) and the
text they print or write (pipeline/cards.py, pipeline/jsonout.py, pipeline/terminal.py). Each test
names the mutation it kills; all are in-process and fast (no model is built)."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from pipeline import cards, hf, jsonout
from pipeline.tokenizer import END_OF_TURN_ID, ENDOFTEXT_ID, HUMAN_ID, Message, get_encoding, render


def test_a_whitespace_context_is_rendered_as_its_text() -> None:
    """Kills pipeline/tokenizer.py encode_conversations: `encode(c) if c` -> `if c and c.strip()`
    (a context of spaces or a line break dropped). render is the one code path for training and chat:
    it encodes the text it is given (None and "" are no context), and deciding what is blank is
    normalize's and serve's job (docs/contracts.md), not a silent rule of the tokenizer."""
    enc = get_encoding()
    for context in (" ", "\n", " \t "):
        ids, mask = render([Message("human", "hi")], context)
        want = [
            ENDOFTEXT_ID,
            *enc.encode_ordinary(context),
            HUMAN_ID,
            *enc.encode_ordinary("hi"),
            END_OF_TURN_ID,
        ]
        assert ids == want and mask == [0] * len(want)


def test_a_licence_name_slug_neither_starts_nor_ends_with_a_dot() -> None:
    """Kills pipeline/cards.py licence_name: `.strip("-.")` -> `.strip("-")` (a name ending in a full
    stop, or a leading dot, kept it in the Hub's `license_name`, an id of letters, digits, dots and
    dashes that starts and ends with neither)."""
    assert cards.licence_name(["Custom Licence v1.0."]) == "custom-licence-v1.0"
    assert cards.licence_name([".hidden terms"]) == "hidden-terms"


def test_a_long_attribution_is_never_cut() -> None:
    """Kills pipeline/cards.py credit_text: `markdown_text(text, limit=max(len(text), 1))` ->
    `markdown_text(text)` (an attribution past DESCRIPTION_MAX characters cut with an ellipsis: an
    attribution licence asks for the credit as given)."""
    credit = "Collected by " + ", ".join(f"Contributor {i}" for i in range(40)) + "; see the project page"
    assert len(credit) > cards.DESCRIPTION_MAX
    assert cards.credit_text(credit) == credit


def test_state_from_hf_refuses_an_untied_head_given_directly() -> None:
    """Kills pipeline/hf.py state_from_hf: its lm_head check `if head is not None and (wte_in is None
    or not torch.equal(head, wte_in))` -> `if False` (an lm_head.weight unlike wte dropped without a
    word, the model computing other logits). load_pretrained's check_head covers its own path, so only
    a direct call (the docstring's contract) shows it."""
    wte = torch.randn(hf.GPT2_VOCAB, 4)
    with pytest.raises(ValueError, match=r"^w: lm_head\.weight differs from wte\.weight"):
        hf.state_from_hf({"wte.weight": wte, "lm_head.weight": wte + 1}, where="w")
    state = hf.state_from_hf({"wte.weight": wte, "lm_head.weight": wte.clone()})  # a tied copy loads
    assert state["lm_head.weight"] is state["transformer.wte.weight"]


def test_json_for_a_terminal_escapes_del() -> None:
    """Kills pipeline/jsonout.py _RAW_IN_JSON: `[\\x7f-\\x9f]` -> `[\\x80-\\x9f]` (DEL written raw by
    `--json`; json.dumps escapes only C0)."""
    text = jsonout.dumps({"t": "a\x7fb"})
    assert "\x7f" not in text and "\\u007f" in text
    assert json.loads(text) == {"t": "a\x7fb"}


def test_json_to_a_stdout_that_is_not_utf8_is_ascii(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills pipeline/jsonout.py dumps: `ensure_ascii=not writes_utf8(sys.stdout)` -> `ensure_ascii=False`
    (to an ASCII stdout, é and 🙂 left for the stream to write as its own escapes, which are no JSON)."""
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    text = jsonout.dumps({"t": "é🙂"})
    assert text == '{\n  "t": "\\u00e9\\ud83d\\ude42"\n}'
    assert json.loads(text) == {"t": "é🙂"}


@pytest.mark.parametrize("key", ["n_layer", "n_head", "vocab_size"])
def test_a_boolean_size_in_config_json_is_refused(key: str) -> None:
    """Kills pipeline/hf.py config_from_hf: `isinstance(value, bool) or not isinstance(value, int)` ->
    `not isinstance(value, int)` (`"n_layer": true` read as one layer: bool is an int in Python)."""
    config = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}
    config = {**config, "vocab_size": hf.GPT2_VOCAB, key: True}
    with pytest.raises(ValueError, match=rf"^c\.json: {key} must be a positive integer, got True$"):
        hf.config_from_hf(config, where="c.json")
    hf.config_from_hf({**config, key: 2 if key != "vocab_size" else hf.GPT2_VOCAB}, where="c.json")
