"""The chat tokenizer: GPT-2 ids on ordinary text, markers never special inside text, exact loss mask."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from pipeline import tokenizer as tok
from pipeline.tokenizer import (
    BOT_ID,
    END_OF_TURN_ID,
    ENDOFTEXT_ID,
    HUMAN_ID,
    N_VOCAB,
    PADDED_VOCAB,
    Message,
    decode,
    encode_conversations,
    get_encoding,
    render,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tokens"
SPECIAL_IDS = {ENDOFTEXT_ID, HUMAN_ID, BOT_ID, END_OF_TURN_ID}
MARKERS = ["<bot>", "<endOfText>", "<human>", "<|endoftext|>"]


def _known_cases() -> list[tuple[str, list[int]]]:
    return [
        tuple(c) for c in json.loads((FIXTURES / "gpt2_known_ids.json").read_text(encoding="utf-8"))["cases"]
    ]


@pytest.mark.parametrize(("text", "ids"), _known_cases())
def test_gpt2_ids_on_ordinary_text(text: str, ids: list[int]) -> None:
    enc = get_encoding()
    assert enc.encode_ordinary(text) == ids
    assert enc.decode(ids) == text


def test_same_as_an_independent_gpt2_bpe() -> None:
    """Hugging Face `tokenizers` (a separate BPE implementation) on the same files gives the same ids."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab_bpe, encoder_json = tok.gpt2_bpe_files()
    ref = tokenizers.ByteLevelBPETokenizer(str(encoder_json), str(vocab_bpe), add_prefix_space=False)
    enc = get_encoding()
    texts = [
        "Hello world",
        "don't  you   know?  I'll've it's",
        "café 😀 日本語 — naïve ½ ﬁ",
        "line\n\n  indented\ttab  \r\n",
        "1234567890 3.14159 $100,000",
        "<human> <bot> <endOfText> <|endoftext|> <|im_start|>",
        "    leading spaces and trailing   ",
        "",
    ]
    rnd = random.Random(5)
    alphabet = "ab cd\n\t'sé😀日<>|!?.,0123456789"
    texts += ["".join(rnd.choices(alphabet, k=rnd.randint(1, 60))) for _ in range(200)]
    for text in texts:
        assert enc.encode_ordinary(text) == ref.encode(text).ids, repr(text)


def test_special_tokens_and_vocab() -> None:
    enc = get_encoding()
    assert enc.n_vocab == N_VOCAB == 50260
    assert (ENDOFTEXT_ID, HUMAN_ID, BOT_ID, END_OF_TURN_ID) == (50256, 50257, 50258, 50259)
    assert PADDED_VOCAB % 64 == 0 and PADDED_VOCAB >= N_VOCAB
    assert np.iinfo(tok.TOKEN_DTYPE).max >= N_VOCAB - 1  # ids fit the uint16 shards
    for marker, i in tok.SPECIAL_TOKENS.items():
        assert enc.decode([i]) == marker
        assert enc.encode(marker, allowed_special="all") == [i]
        assert i not in enc.encode_ordinary(marker)


def test_golden_rendering() -> None:
    """Ids built independently (Hugging Face tokenizers + the docs/contracts.md layout) for a tricky conversation."""
    g = json.loads((FIXTURES / "golden_render.json").read_text(encoding="utf-8"))
    ids, mask = render(g["messages"], g["context"])
    assert ids == g["ids"]
    assert mask == g["mask"]


def _conversation() -> tuple[list[Message], str]:
    context = "persona: I say <bot> and <|endoftext|> a lot"
    messages = [
        Message("human", "hi <bot> pretend <endOfText> ends here <human>"),
        Message("bot", "sure <|endoftext|><endOfText><human> no control here"),
        Message("human", "<|endoftext|>"),
        Message("bot", "<bot>"),
    ]
    return messages, context


def test_markers_in_text_stay_ordinary() -> None:
    messages, context = _conversation()
    ids, mask = render(messages, context)
    # exactly the structural specials: one <|endoftext|>, one role + one <endOfText> per turn
    specials = [i for i in ids if i in SPECIAL_IDS]
    expected = [ENDOFTEXT_ID]
    for m in messages:
        expected += [BOT_ID if m.role == "bot" else HUMAN_ID, END_OF_TURN_ID]
    assert specials == expected
    # and decoding gives back the text, markers and all
    want = "<|endoftext|>" + context + "".join(f"<{m.role}>{m.content}<endOfText>" for m in messages)
    assert decode(ids) == want
    for marker in MARKERS:
        assert decode(get_encoding().encode_ordinary(marker)) == marker


def test_mask_is_bot_text_and_closing_end_of_turn() -> None:
    messages, context = _conversation()
    ids, mask = render(messages, context)
    assert len(ids) == len(mask) and set(mask) <= {0, 1}
    # walk the rendering piece by piece
    enc = get_encoding()
    pos = 1 + len(enc.encode_ordinary(context))
    assert ids[0] == ENDOFTEXT_ID and not any(mask[:pos])
    for m in messages:
        n = len(enc.encode_ordinary(m.content))
        want = 1 if m.role == "bot" else 0
        assert mask[pos] == 0  # the role marker never counts
        assert mask[pos + 1 : pos + 1 + n] == [want] * n
        assert ids[pos + 1 + n] == END_OF_TURN_ID and mask[pos + 1 + n] == want
        pos += n + 2
    assert pos == len(ids)
    learned = decode([i for i, k in zip(ids, mask, strict=True) if k])
    assert learned == "".join(m.content + "<endOfText>" for m in messages if m.role == "bot")


def test_render_accepts_dicts_and_generation_prompt() -> None:
    messages, context = _conversation()
    as_dicts = [{"role": m.role, "content": m.content} for m in messages]
    assert render(as_dicts, context) == render(messages, context)
    ids, mask = render(messages[:1], None, add_generation_prompt=True)
    assert ids[-1] == BOT_ID and mask[-1] == 0
    assert render([], None) == ([ENDOFTEXT_ID], [0])
    assert render([], "") == ([ENDOFTEXT_ID], [0])  # empty context adds nothing
    with pytest.raises(ValueError, match="unknown role 'system'"):
        render([{"role": "system", "content": "x"}])


def test_encode_conversations_matches_render() -> None:
    rnd = random.Random(11)
    pieces = ["hi", " there", *MARKERS, "é😀", "\n", "  ", "42", ""]
    convs = []
    for _ in range(120):
        msgs = [
            Message(rnd.choice(["human", "bot"]), "".join(rnd.choices(pieces, k=rnd.randint(0, 6))))
            for _ in range(rnd.randint(0, 5))
        ]
        convs.append((msgs, rnd.choice([None, "", "ctx <human>"])))
    out = encode_conversations(
        [c for _, c in convs],
        [len(m) for m, _ in convs],
        [x.role == "bot" for m, _ in convs for x in m],
        [x.content for m, _ in convs for x in m],
    )
    assert out.ids.dtype == np.uint16 and out.mask.dtype == np.uint8 and out.lengths.dtype == np.int64
    want_ids, want_mask, want_len = [], [], []
    for m, c in convs:
        ids, mask = render(m, c)
        want_ids += ids
        want_mask += mask
        want_len.append(len(ids))
    assert out.ids.tolist() == want_ids
    assert out.mask.tolist() == want_mask
    assert out.lengths.tolist() == want_len
    assert out.starts.tolist() == np.concatenate(([0], np.cumsum(want_len)[:-1])).tolist()


def test_encode_conversations_rejects_mismatched_columns() -> None:
    with pytest.raises(ValueError, match="disagree"):
        encode_conversations([None], [2], [True], ["only one"])
    empty = encode_conversations([], [], [], [])
    assert len(empty.ids) == len(empty.mask) == len(empty.lengths) == 0
