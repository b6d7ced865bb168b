"""Property-based tests (hypothesis) of the token-level contracts: render -> tokenize stage -> shards ->
training windows (docs/shards.md, docs/contracts.md "Token shards").

Each example is a small random dataset of conversations whose text is drawn from an alphabet of
words, multi-byte characters (accents, CJK, emoji, a ZWJ family), lone combining marks, whitespace
runs, the literal chat markers and fragments of them ("<bo", "t>", "<|", ...). It goes through the
real path: a parquet split -> `pipeline.encode.tokenize_dataset` (the tokenize stage's function,
with small random shards and batches) -> `pipeline.shards.TokenShards`. The expected ids, masks and
windows come from small oracles written from docs/shards.md, not from the code under test.
Examples are derandomized and the database is off, so CI sees the same examples on every run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.encode import tokenize_dataset
from pipeline.invisible import blank_text
from pipeline.shards import TokenShards
from pipeline.tokenizer import (
    BOT,
    BOT_ID,
    END_OF_TURN,
    END_OF_TURN_ID,
    ENDOFTEXT,
    ENDOFTEXT_ID,
    HUMAN,
    HUMAN_ID,
    SPECIAL_TOKENS,
    decode,
    get_encoding,
    render,
)

PROPERTY = settings(max_examples=30)  # the rest: tests/conftest.py's profile
SPECIAL_IDS = frozenset(SPECIAL_TOKENS.values())

# ----------------------------------------------------------------------------- strategies

WORDS = ["hello", " there", "cat", "42", "I'm", "café", "cafe\u0301", "Straße", "日本語", "😀", "👨‍👩‍👧", "ﬁ"]
COMBINING = ["\u0301", "\u0308\u0323", "\u200d"]
SPACES = [" ", "   ", "\n", "\n\n", "\t", " \t\n ", "\u00a0", "\u3000"]
MARKERS = [HUMAN, BOT, END_OF_TURN, ENDOFTEXT]
FRAGMENTS = ["<", ">", "<bo", "t>", "<human", "<end", "OfText>", "<|", "|>", "endoftext", "<\\bot>"]
PIECES = WORDS * 3 + COMBINING + SPACES * 2 + MARKERS * 2 + FRAGMENTS
# A turn of nothing visible is no turn (the schema's text_present, which tokenize also refuses)
text = (
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join).filter(lambda t: not blank_text(t))
)
context = st.none() | text


@dataclass(frozen=True)
class Conversation:
    messages: tuple[dict[str, str], ...]  # roles alternate from "human", at least one bot turn
    context: str | None


@st.composite
def conversations(draw: st.DrawFn) -> Conversation:
    n = draw(st.integers(2, 6))
    texts = draw(st.lists(text, min_size=n, max_size=n))
    messages = tuple({"role": ("human", "bot")[i % 2], "content": t} for i, t in enumerate(texts))
    return Conversation(messages, draw(context))


# ----------------------------------------------------------------------------- oracles


def rendered_text(c: Conversation) -> str:
    """The conversation as text (docs/shards.md): <|endoftext|> [context] <role> text <endOfText> ..."""
    turns = "".join(f"<{m['role']}>{m['content']}{END_OF_TURN}" for m in c.messages)
    return ENDOFTEXT + (c.context or "") + turns


@dataclass(frozen=True)
class Expected:
    """One conversation's ids and mask, built piece by piece, and its window boundaries."""

    ids: list[int]
    mask: list[int]
    header: int  # tokens of <|endoftext|> + context
    humans: list[int]  # positions of the <human> markers


def expected(c: Conversation) -> Expected:
    enc = get_encoding()
    ctx = enc.encode_ordinary(c.context) if c.context else []
    ids, mask = [ENDOFTEXT_ID, *ctx], [0] * (1 + len(ctx))
    humans = []
    for m in c.messages:
        bot = m["role"] == "bot"
        body = enc.encode_ordinary(m["content"])
        if not bot:
            humans.append(len(ids))
        # the loss counts on bot text and the <endOfText> closing a bot turn, never on the role marker
        ids += [BOT_ID if bot else HUMAN_ID, *body, END_OF_TURN_ID]
        mask += [0, *[int(bot)] * len(body), int(bot)]
    return Expected(ids, mask, 1 + len(ctx), humans)


class EveryPick:
    """A stand-in for numpy's Generator: its one `integers` call per batch draws every value once,
    so one sample_batch call returns every row the sampler can ever produce."""

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        assert size == high - low, "sample_batch asked for another batch size than the test set"
        return np.arange(low, high)


# ----------------------------------------------------------------------------- the tokenize stage


def write_split(path: Path, convs: list[Conversation]) -> None:
    schema = {
        "conversation_id": pl.String(),
        "messages": pl.List(pl.Struct({"role": pl.String(), "content": pl.String()})),
        "context": pl.String(),
        "source": pl.String(),
    }
    rows = [
        {"conversation_id": f"c:{i}", "messages": list(c.messages), "context": c.context, "source": "s"}
        for i, c in enumerate(convs)
    ]
    pl.DataFrame(rows, schema=schema).write_parquet(path, row_group_size=3)


@contextmanager
def tokenized(
    train: list[Conversation], val: list[Conversation], shard_tokens: int, batch: int
) -> Iterator[tuple[Path, dict]]:
    """The tokenize stage's output for the two splits, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="nanochatgpt-props-") as tmp:
        dataset, out = Path(tmp) / "dataset", Path(tmp) / "tokens"
        dataset.mkdir()
        write_split(dataset / "train.parquet", train)
        write_split(dataset / "val.parquet", val)
        meta = tokenize_dataset(dataset, out, shard_tokens=shard_tokens, workers=0, batch_conversations=batch)
        yield out, meta


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[Conversation], list[Conversation], int, int]:
    """(train, val, shard_tokens, batch_conversations): shards from just big enough for the longest
    conversation (one conversation per shard) to a few conversations each."""
    train = draw(st.lists(conversations(), min_size=1, max_size=10))
    val = draw(st.lists(conversations(), max_size=3))
    longest = max(len(expected(c).ids) for c in train + val)
    shard_tokens = longest + draw(st.integers(0, 3 * longest))
    return train, val, shard_tokens, draw(st.integers(1, 4))


@PROPERTY
@given(datasets())
def test_shards_hold_each_conversation_rendered_with_its_loss_mask(data) -> None:
    """Through the real stage: each conversation lands whole in one shard, in dataset order; its ids
    are render()'s and decode to the rendered text; marker text inside a turn or the persona never
    becomes a special id; the mask is 1 exactly on bot text and each bot turn's closing <endOfText>."""
    train, val, shard_tokens, batch = data
    with tokenized(train, val, shard_tokens, batch) as (out, meta):
        for split, convs in (("train", train), ("val", val)):
            shards = TokenShards(out / split)
            got = list(shards.iter_conversations())
            assert len(got) == len(convs) == meta["splits"][split]["n_conversations"]
            for (ids, mask), c in zip(got, convs, strict=True):
                want = expected(c)
                assert ids.tolist() == want.ids == render(c.messages, c.context)[0]
                assert mask.tolist() == want.mask
                assert decode(ids) == rendered_text(c)
                roles = [BOT_ID if m["role"] == "bot" else HUMAN_ID for m in c.messages]
                assert [i for i in ids.tolist() if i in SPECIAL_IDS] == [
                    ENDOFTEXT_ID,
                    *[t for r in roles for t in (r, END_OF_TURN_ID)],
                ]
            for shard in shards.shards:
                assert 0 < shard.n_tokens <= shard_tokens
                assert shard.starts[0] == 0 and (shard.tokens[shard.starts] == ENDOFTEXT_ID).all()
            assert shards.n_tokens == meta["splits"][split]["n_tokens"]
            assert shards.loss_tokens() == sum(sum(expected(c).mask) for c in convs)


# ----------------------------------------------------------------------------- training windows


def turn_row_oracle(convs: list[Expected], tokens: np.ndarray, q: int, T: int) -> tuple[list[int], int, int]:
    """(the T+1 token ids of the row for a draw at shard position q, its start b, header length H)
    per docs/shards.md: the row starts at the <human> turn or conversation start holding q; a turn
    row begins with its own conversation's header (<|endoftext|> + persona) unless that is longer than
    half the window; then the shard's tokens from b on (packing into the next conversations), then
    <|endoftext|> padding past the shard's end."""
    at = 0
    for c in convs:
        if q < at + len(c.ids):
            break
        at += len(c.ids)
    b = at + max([h for h in c.humans if at + h <= q] or [0])
    header = c.ids[: c.header] if b > at and c.header <= (T + 1) // 2 else []
    row = header + tokens[b : b + T + 1 - len(header)].tolist()
    return row + [ENDOFTEXT_ID] * (T + 1 - len(row)), b, len(header)


@st.composite
def datasets_and_windows(draw: st.DrawFn) -> tuple[tuple, int]:
    """A dataset and a window length T, often one that puts a header right at half the window."""
    data = draw(datasets())
    headers = sorted({expected(c).header for c in data[0]})
    edges = [T for h in headers for T in (2 * h - 1, 2 * h - 2) if T >= 2]
    T = draw(st.integers(2, 48) | st.sampled_from(edges)) if edges else draw(st.integers(2, 48))
    return data, T


@PROPERTY
@given(datasets_and_windows())
def test_turn_windows_keep_conversations_apart_and_reach_every_reply_chat_can(case) -> None:
    """Every row sample_batch(align="turn") can produce is the oracle's row; no row puts one
    conversation's header before another's turns, nor runs across shards. A bot token (mask 1) is a
    target of some row exactly when it lies at most T - H tokens past the start b of its exchange
    (H: the header the row at b carries), the documented exception: what lies past that is beyond
    what chat's prompt (header + human turn + reply budget within the window) can reach too."""
    (train, val, shard_tokens, batch), T = case
    with tokenized(train, val, shard_tokens, batch) as (out, _):
        shards = TokenShards(out / "train")
        x, y, m = shards.sample_batch(shards.n_tokens, T, EveryPick(), align="turn")
    assert x.shape == y.shape == m.shape == (shards.n_tokens, T)
    assert np.array_equal(x[:, 1:], y[:, :-1])
    reached: set[tuple[int, int]] = set()
    reachable: set[tuple[int, int]] = set()
    row = 0
    conv_iter = iter(train)
    for s, shard in enumerate(shards.shards):
        convs = [expected(next(conv_iter)) for _ in range(shard.n_conversations)]
        tokens = np.asarray(shard.tokens)
        mask = np.asarray(shard.mask)
        for q in range(shard.n_tokens):
            want, b, H = turn_row_oracle(convs, tokens, q, T)
            assert x[row].tolist() + [int(y[row, -1])] == want, f"row for shard {s} position {q}"
            assert not m[row, : max(H - 1, 0)].any(), "the header is context: never a target"
            # row index t+1 holds shard position b + t + 1 - H (after the header), within the shard
            for t in np.flatnonzero(m[row]).tolist():
                p = b + t + 1 - H
                assert t + 1 >= H and p < shard.n_tokens and mask[p] == 1 and tokens[p] == y[row, t]
                reached.add((s, p))
            row += 1
        at = 0
        for c in convs:
            exchanges = [0, *c.humans]
            for p in np.flatnonzero(c.mask).tolist():
                start = max(e for e in exchanges if e <= p)
                header = c.header if start > 0 and c.header <= (T + 1) // 2 else 0
                if p - start <= T - header:
                    reachable.add((s, at + p))
            at += len(c.ids)
    assert reached == reachable


@PROPERTY
@given(datasets(), st.integers(1, 40), st.integers(1, 5))
def test_conversation_and_eval_windows(data, T: int, B: int) -> None:
    """align="conversation": one row per conversation start, packed on into the same shard's next
    conversations and padded past its end. Eval batches: every token but each shard's first is a
    target exactly once, with its own mask."""
    train, val, shard_tokens, batch = data
    with tokenized(train, val, shard_tokens, batch) as (out, _):
        shards = TokenShards(out / "train")
        x, y, m = shards.sample_batch(shards.n_conversations, T, EveryPick())
        row = 0
        for shard in shards.shards:
            tokens, mask = np.asarray(shard.tokens, np.int64), np.asarray(shard.mask)
            for a in shard.starts.tolist():
                n = min(T + 1, shard.n_tokens - a)
                want = np.full(T + 1, ENDOFTEXT_ID)
                want[:n] = tokens[a : a + n]
                want_m = np.zeros(T + 1, np.uint8)
                want_m[:n] = mask[a : a + n]
                assert np.array_equal(x[row], want[:-1]) and np.array_equal(y[row], want[1:])
                assert np.array_equal(m[row], want_m[1:])
                row += 1
        assert row == len(x)

        batches = list(shards.iter_eval_batches(B, T))
        assert shards.n_eval_batches(B, T) == len(batches)
        assert all(len(b[0]) == B for b in batches[:-1])
        ys = np.concatenate([b[1] for b in batches]).reshape(-1, T)
        ms = np.concatenate([b[2] for b in batches]).reshape(-1, T)
        row = 0
        for shard in shards.shards:
            n_windows = -(-(shard.n_tokens - 1) // T)
            flat_y = ys[row : row + n_windows].reshape(-1)
            flat_m = ms[row : row + n_windows].reshape(-1)
            assert np.array_equal(flat_y[: shard.n_tokens - 1], shard.tokens[1:])
            assert np.array_equal(flat_m[: shard.n_tokens - 1], shard.mask[1:])
            assert not flat_m[shard.n_tokens - 1 :].any()
            row += n_windows
        assert row == len(ys)
