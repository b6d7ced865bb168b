"""Token shards: the on-disk format between the tokenize stage and training, its writer and reader.

Format (one directory per variant and split, e.g. data/tokens/full/train/; numpy alone reads it):

    tokens-00000.bin   uint16 little-endian token ids: rendered conversations back to back
                       (nanoGPT-compatible: np.memmap(path, dtype="<u2", mode="r"))
    mask-00000.bin     uint8, one byte per token: 1 where the loss counts (bot text and the
                       <endOfText> closing a bot turn), else 0
    starts-00000.npy   int64 (np.load), offset within this shard of every conversation's first
                       token, increasing, starts[0] == 0; each conversation begins with <|endoftext|>
    tokens-00001.bin ...

Shards are numbered from 00000 without gaps. A conversation never spans two shards, and no shard
holds more than `shard_tokens` tokens (params tokenize.shard_tokens). An empty split has no shards.
The split directory is written in a temporary sibling, every file fsynced, and renamed into place:
it appears whole or not at all. data/tokens/<variant>/meta.json records the encoding, special ids
and, per split, every shard's n_tokens / n_conversations and every file's sha256 (see
`verify_variant`). docs/shards.md says the same with a numpy-only reading recipe.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import fsync_dir, sha256_file
from pipeline.tokenizer import ENDOFTEXT_ID, HUMAN_ID, N_VOCAB, SPECIAL_TOKENS, TOKEN_DTYPE

MASK_DTYPE = np.dtype(np.uint8)
STARTS_DTYPE = np.dtype("<i8")
FORMAT_NAME = "nanochatgpt-token-shards"
FORMAT_VERSION = 1
_SHARD_RE = re.compile(r"tokens-(\d{5})\.bin")


def shard_files(index: int) -> tuple[str, str, str]:
    """(tokens, mask, starts) file names of shard `index`."""
    return f"tokens-{index:05d}.bin", f"mask-{index:05d}.bin", f"starts-{index:05d}.npy"


class ConversationTooLong(ValueError):
    """A single conversation renders to more tokens than a shard may hold."""

    def __init__(self, index: int, n_tokens: int, shard_tokens: int) -> None:
        super().__init__(
            f"conversation {index} of the batch has {n_tokens} tokens > shard_tokens={shard_tokens}"
        )
        self.index, self.n_tokens, self.shard_tokens = index, n_tokens, shard_tokens


@dataclass(frozen=True)
class ShardInfo:
    """What meta.json records of one written shard."""

    index: int
    n_tokens: int
    n_conversations: int
    n_loss_tokens: int
    sha256: dict[str, str]  # file name -> hex digest

    @property
    def files(self) -> tuple[str, str, str]:
        return shard_files(self.index)

    def to_json(self) -> dict:
        tokens, mask, starts = self.files
        return {
            "tokens": tokens,
            "mask": mask,
            "starts": starts,
            "n_tokens": self.n_tokens,
            "n_conversations": self.n_conversations,
            "n_loss_tokens": self.n_loss_tokens,
        }


class _OpenShard:
    """One shard being written: two append-only files hashed as they grow, starts kept in memory."""

    def __init__(self, directory: Path, index: int) -> None:
        self.directory, self.index = directory, index
        tokens, mask, _ = shard_files(index)
        # the files live as long as the shard, closed by close() / abort()
        self.files = {
            "tokens": open(directory / tokens, "wb"),  # noqa: SIM115
            "mask": open(directory / mask, "wb"),  # noqa: SIM115
        }
        self.hashes = {"tokens": hashlib.sha256(), "mask": hashlib.sha256()}
        self.starts: list[np.ndarray] = []
        self.n_tokens = 0
        self.n_loss_tokens = 0

    def append(self, ids: np.ndarray, mask: np.ndarray, starts: np.ndarray) -> None:
        for key, arr in (("tokens", ids), ("mask", mask)):
            view = memoryview(np.ascontiguousarray(arr)).cast("B")
            self.files[key].write(view)
            self.hashes[key].update(view)
        self.starts.append(starts + self.n_tokens)
        self.n_tokens += len(ids)
        self.n_loss_tokens += int(np.count_nonzero(mask))

    def close(self) -> ShardInfo:
        tokens_name, mask_name, starts_name = shard_files(self.index)
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        starts = np.concatenate(self.starts).astype(STARTS_DTYPE)
        buf = io.BytesIO()
        np.save(buf, starts, allow_pickle=False)
        data = buf.getvalue()
        with open(self.directory / starts_name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        sha = {
            tokens_name: self.hashes["tokens"].hexdigest(),
            mask_name: self.hashes["mask"].hexdigest(),
            starts_name: hashlib.sha256(data).hexdigest(),
        }
        return ShardInfo(self.index, self.n_tokens, len(starts), self.n_loss_tokens, sha)

    def abort(self) -> None:
        for f in self.files.values():
            f.close()


class ShardWriter:
    """Append batches of rendered conversations to shards of at most `shard_tokens` tokens.

    Memory is bounded by one batch plus the current shard's start offsets; token bytes go
    straight to disk. Write into a temporary directory (see `pipeline.encode`), call `close`,
    then rename the directory into place.
    """

    def __init__(self, directory: str | os.PathLike[str], shard_tokens: int) -> None:
        if shard_tokens < 2:
            raise ValueError(f"shard_tokens must be >= 2, got {shard_tokens}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_tokens = int(shard_tokens)
        self.shards: list[ShardInfo] = []
        self._open: _OpenShard | None = None

    def add(self, ids: np.ndarray, mask: np.ndarray, lengths: np.ndarray) -> None:
        """Append conversations given back to back (`lengths[i]` tokens each), never splitting one."""
        if len(ids) != len(mask) or int(np.sum(lengths)) != len(ids):
            raise ValueError("ShardWriter.add: ids, mask and lengths disagree in length")
        ids, mask = np.asarray(ids), np.asarray(mask)
        if len(ids) and (ids.min() < 0 or ids.max() >= N_VOCAB):
            raise ValueError(
                f"ShardWriter.add: token ids must lie in [0, {N_VOCAB}), got {ids.min()}..{ids.max()}"
            )
        if len(mask) and mask.max() > 1:
            raise ValueError("ShardWriter.add: mask values must be 0 or 1")
        ids, mask = ids.astype(TOKEN_DTYPE, copy=False), mask.astype(MASK_DTYPE, copy=False)
        ends = np.cumsum(lengths, dtype=np.int64)
        i, n = 0, len(lengths)
        while i < n:
            base = int(ends[i - 1]) if i else 0
            used = self._open.n_tokens if self._open else 0
            # conversations i..k-1 fit into what is left of the current shard
            k = int(np.searchsorted(ends, base + self.shard_tokens - used, side="right"))
            if k == i:
                if used == 0:
                    raise ConversationTooLong(i, int(lengths[i]), self.shard_tokens)
                self._roll()
                continue
            if self._open is None:
                self._open = _OpenShard(self.directory, len(self.shards))
            end = int(ends[k - 1])
            starts = np.concatenate(([base], ends[i : k - 1])) - base
            self._open.append(ids[base:end], mask[base:end], starts)
            i = k

    def _roll(self) -> None:
        if self._open is not None:
            self.shards.append(self._open.close())
            self._open = None

    def close(self) -> list[ShardInfo]:
        """Finish the last shard, fsync the directory; returns every shard's info."""
        self._roll()
        fsync_dir(self.directory)
        return self.shards

    def abort(self) -> None:
        if self._open is not None:
            self._open.abort()
            self._open = None


@dataclass(frozen=True)
class Shard:
    """One shard, memory-mapped read-only."""

    index: int
    tokens: np.ndarray  # uint16 memmap
    mask: np.ndarray  # uint8 memmap
    starts: np.ndarray  # int64 (memmapped .npy)

    @property
    def name(self) -> str:
        """Its tokens file's name (the mask's and starts' follow from it: shard_files)."""
        return shard_files(self.index)[0]

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_conversations(self) -> int:
        return len(self.starts)


def _mapped(path: Path, open_array: Callable[[Path], np.ndarray]) -> np.ndarray:
    """`open_array(path)`, numpy's refusal named by the file: "cannot mmap an empty file", "Size of
    available data is not a multiple of the data-type size" or a pickled .npy said nothing of which
    of a split's files was at fault. A .npy header damaged inside its dict fails numpy's parse of it
    with tokenize's TokenError (or a SyntaxError), no ValueError: that was a traceback."""
    try:
        return open_array(path)
    except (OSError, ValueError, SyntaxError, tokenize.TokenError) as e:
        why = "its .npy header is damaged" if isinstance(e, SyntaxError | tokenize.TokenError) else str(e)
        raise ValueError(f"{path}: not a readable shard file ({why})") from None


def _open_shard(split_dir: Path, index: int) -> Shard:
    tokens_name, mask_name, starts_name = shard_files(index)
    tokens_path = split_dir / tokens_name
    for name in (mask_name, starts_name):
        if not (split_dir / name).is_file():
            raise ValueError(f"{split_dir}: {tokens_name} has no {name}")
    tokens = _mapped(tokens_path, lambda p: np.memmap(p, dtype=TOKEN_DTYPE, mode="r"))
    mask = _mapped(split_dir / mask_name, lambda p: np.memmap(p, dtype=MASK_DTYPE, mode="r"))
    starts = _mapped(split_dir / starts_name, lambda p: np.load(p, mmap_mode="r", allow_pickle=False))
    where = f"{split_dir}/{tokens_name}"
    if len(mask) != len(tokens):
        raise ValueError(f"{where}: {len(tokens)} tokens but {mask_name} has {len(mask)} bytes")
    if starts.dtype != STARTS_DTYPE or starts.ndim != 1 or len(starts) == 0:
        raise ValueError(f"{where}: {starts_name} must be a non-empty 1-d int64 array")
    if starts[0] != 0 or starts[-1] >= len(tokens) or np.any(np.diff(starts) <= 0):
        raise ValueError(f"{where}: {starts_name} offsets must increase from 0 and stay inside the shard")
    if tokens[0] != ENDOFTEXT_ID:
        raise ValueError(f"{where}: a shard must begin with <|endoftext|> ({ENDOFTEXT_ID})")
    return Shard(index, tokens, mask, starts)


class TokenShards:
    """Read one split directory: memory-maps every shard (numpy only) and yields batches."""

    def __init__(self, split_dir: str | os.PathLike[str]) -> None:
        self.split_dir = Path(split_dir)
        if not self.split_dir.is_dir():
            raise FileNotFoundError(f"{self.split_dir}: no token split here (run `dvc repro tokenize`)")
        indices = sorted(
            int(m.group(1)) for p in self.split_dir.iterdir() if (m := _SHARD_RE.fullmatch(p.name))
        )
        if indices != list(range(len(indices))):
            raise ValueError(f"{self.split_dir}: shard numbers {indices} are not 0..{len(indices) - 1}")
        self.shards: list[Shard] = [_open_shard(self.split_dir, i) for i in indices]
        counts = [s.n_conversations for s in self.shards]
        # conversation j lives in shard s where conv_offsets[s] <= j < conv_offsets[s + 1]
        self._conv_offsets = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
        self.n_conversations = int(self._conv_offsets[-1])
        self.n_tokens = sum(s.n_tokens for s in self.shards)
        self._token_offsets = np.concatenate(
            ([0], np.cumsum([s.n_tokens for s in self.shards], dtype=np.int64))
        )
        self._turn_starts: list[np.ndarray] | None = None  # built on the first turn-aligned draw

    def __repr__(self) -> str:
        return (
            f"TokenShards({str(self.split_dir)!r}: {len(self.shards)} shards, "
            f"{self.n_conversations} conversations, {self.n_tokens} tokens)"
        )

    def iter_conversations(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids uint16, mask uint8) of every conversation, in order (views into the memmaps)."""
        for shard in self.shards:
            bounds = [*(int(s) for s in shard.starts), shard.n_tokens]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                yield shard.tokens[a:b], shard.mask[a:b]

    def _window(self, shard: Shard, start: int, width: int, ids: np.ndarray, mask: np.ndarray) -> None:
        """Copy `width` tokens from `start` into the row buffers; past the shard end, keep the padding."""
        stop = min(start + width, shard.n_tokens)
        ids[: stop - start] = shard.tokens[start:stop]
        mask[: stop - start] = shard.mask[start:stop]

    def _batch(
        self, rows: list[tuple[Shard, int, slice | None]], block_size: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows are (shard, start, header): the row holds the shard's tokens from `start`, after
        `header` (a slice of the shard: a conversation's <|endoftext|> and persona) when not None."""
        ids = np.full((len(rows), block_size + 1), ENDOFTEXT_ID, dtype=np.int64)
        mask = np.zeros((len(rows), block_size + 1), dtype=np.uint8)
        for r, (shard, start, header) in enumerate(rows):
            n = 0
            if header is not None:
                n = header.stop - header.start
                self._window(shard, header.start, n, ids[r], mask[r])
            self._window(shard, start, block_size + 1 - n, ids[r, n:], mask[r, n:])
        return (
            np.ascontiguousarray(ids[:, :-1]),
            np.ascontiguousarray(ids[:, 1:]),
            np.ascontiguousarray(mask[:, 1:]),
        )

    def sample_batch(
        self, batch_size: int, block_size: int, rng: np.random.Generator, align: str = "conversation"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, mask), each (batch_size, block_size): int64, int64, uint8.

        align="conversation": every row starts at a conversation start drawn uniformly.
        align="turn": a token is drawn uniformly over the split and the row starts at the start of
        the human turn (or conversation) holding it, so windows still begin on a boundary but reach
        every turn of conversations longer than block_size, weighted by length (what short
        training windows need: aligned to conversations only, they would never see a long
        conversation's later turns). A reply running more than a window past its <human> is cut
        there, as chat must cut it (docs/shards.md). A row that starts at a later turn begins with its
        conversation's header first (<|endoftext|> and the persona, mask 0), as chat's prompt does
        once it has cut the oldest turns, so the model learns to answer in the persona deep into a
        conversation; a header longer than half the window is left out.
        Either way one `rng.integers` call per batch, so a saved generator state replays the
        stream; a row packs block_size+1 tokens, running on into the following conversations of the
        same shard; past the shard end it pads with <|endoftext|> and mask 0.
        x = w[:-1], y = w[1:], mask = m[1:] (the mask of each target).
        """
        if self.n_conversations == 0:
            raise ValueError(f"{self.split_dir}: no conversations to sample from")
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
        if align == "turn":
            return self._batch(self._turn_aligned_starts(batch_size, block_size, rng), block_size)
        if align != "conversation":
            raise ValueError(f"align must be 'conversation' or 'turn', got {align!r}")
        picks = rng.integers(0, self.n_conversations, size=batch_size)
        shard_of = np.searchsorted(self._conv_offsets, picks, side="right") - 1
        rows = []
        for j, s in zip(picks.tolist(), shard_of.tolist(), strict=True):
            shard = self.shards[s]
            rows.append((shard, int(shard.starts[j - self._conv_offsets[s]]), None))
        return self._batch(rows, block_size)

    def _turn_aligned_starts(
        self, batch_size: int, block_size: int, rng: np.random.Generator
    ) -> list[tuple[Shard, int, slice | None]]:
        if self._turn_starts is None:
            # Positions of every <|endoftext|> (conversation start) and <human> (turn start) token:
            # one pass over each shard, kept as int64 offsets (a few bytes per turn).
            self._turn_starts = [
                np.flatnonzero((s.tokens == ENDOFTEXT_ID) | (s.tokens == HUMAN_ID)) for s in self.shards
            ]
        picks = rng.integers(0, self.n_tokens, size=batch_size)
        shard_of = np.searchsorted(self._token_offsets, picks, side="right") - 1
        rows: list[tuple[Shard, int, slice | None]] = []
        for p, s in zip(picks.tolist(), shard_of.tolist(), strict=True):
            shard, starts = self.shards[s], self._turn_starts[s]
            i = max(int(np.searchsorted(starts, p - self._token_offsets[s], side="right")) - 1, 0)
            start = int(starts[i])
            header = None
            if shard.tokens[start] == HUMAN_ID:  # a turn, not a conversation start
                conv = int(shard.starts[np.searchsorted(shard.starts, start, side="right") - 1])
                first_turn = int(starts[np.searchsorted(starts, conv) + 1])  # the boundary after conv
                if first_turn - conv <= (block_size + 1) // 2:
                    header = slice(conv, first_turn)
            rows.append((shard, start, header))
        return rows

    def iter_eval_batches(
        self, batch_size: int, block_size: int, max_batches: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Deterministic (x, y, mask) batches over the split's windows, in order.

        Windows start at 0, block_size, 2*block_size, ... of each shard, so with every window every
        token but a shard's first (an unmasked <|endoftext|>) is a target exactly once; the last
        window of a shard is padded (mask 0). The final batch may have fewer than batch_size rows.
        With `max_batches`, at most that many batches of windows spread evenly over the whole split
        (not its first windows: those would score only the first few conversations, and one long
        one could make most of the figure).
        """
        windows = self._eval_windows(batch_size, block_size, max_batches)
        for i in range(0, len(windows), batch_size):
            yield self._batch(windows[i : i + batch_size], block_size)

    def n_eval_batches(self, batch_size: int, block_size: int, max_batches: int | None = None) -> int:
        """How many batches iter_eval_batches yields with the same arguments (for a progress bar)."""
        return math.ceil(len(self._eval_windows(batch_size, block_size, max_batches)) / batch_size)

    def _eval_windows(
        self, batch_size: int, block_size: int, max_batches: int | None
    ) -> list[tuple[Shard, int, slice | None]]:
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, {block_size}")
        windows: list[tuple[Shard, int, slice | None]] = [
            (shard, start, None)
            for shard in self.shards
            for start in range(0, shard.n_tokens - 1, block_size)
        ]
        if max_batches is not None and len(windows) > max_batches * batch_size:
            picks = (
                np.linspace(0, len(windows) - 1, max(max_batches, 0) * batch_size).round().astype(np.int64)
            )
            windows = [windows[i] for i in picks.tolist()]
        return windows

    def check_contents(self) -> None:
        """Read every shard whole for what ShardWriter guarantees of the bytes: ids in [0, N_VOCAB),
        mask bytes 0 or 1, and <|endoftext|> at each conversation start and nowhere else.

        A split with a meta.json needs none of it (its sha256 vouch for the writer's bytes); one
        made by hand does: an id past the model's vocabulary stopped training with an IndexError
        (a device assert on CUDA) only when a window drew it, hours in, and starts that miss the
        <|endoftext|> put windows and their persona headers mid-conversation. ValueError names the
        file, the offset and the rule.
        """
        for shard in self.shards:
            where = f"{self.split_dir / shard.name}"
            bad = np.flatnonzero(shard.tokens >= N_VOCAB)
            if len(bad):
                raise ValueError(
                    f"{where}: token {int(bad[0])} is id {int(shard.tokens[bad[0]])}, "
                    f"outside the vocabulary [0, {N_VOCAB})"
                )
            bad = np.flatnonzero(shard.mask > 1)
            if len(bad):
                mask_file = self.split_dir / shard_files(shard.index)[1]
                raise ValueError(
                    f"{mask_file}: byte {int(bad[0])} is {int(shard.mask[bad[0]])}, a loss mask holds 0 or 1"
                )
            starts = np.asarray(shard.starts)
            eot = np.flatnonzero(shard.tokens == ENDOFTEXT_ID)
            if not np.array_equal(eot, starts):
                # the first offset where the two lists part: a start without <|endoftext|> or a stray one
                k = int(np.argmax(np.append(eot[: len(starts)] != starts[: len(eot)], True)))
                if k < len(starts) and (k >= len(eot) or starts[k] < eot[k]):
                    rule = f"conversation {k} starts at token {int(starts[k])}, which is not <|endoftext|>"
                else:
                    rule = f"token {int(eot[k])} is <|endoftext|> inside a conversation (no start there)"
                raise ValueError(f"{where}: {rule} ({ENDOFTEXT_ID} opens each conversation, and only that)")

    def loss_tokens(self) -> int:
        """Tokens of the split in the loss (mask 1): what a full evaluation scores."""
        return sum(int(np.count_nonzero(s.mask)) for s in self.shards)


def verify_variant(variant_dir: str | os.PathLike[str]) -> dict:
    """Check every shard file named in meta.json against its sha256 and counts; returns meta."""
    variant_dir = Path(variant_dir)
    meta_path = variant_dir / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    if meta.get("special_ids") != SPECIAL_TOKENS:  # another tokenizer: the ids would mean other things
        raise ValueError(f"{meta_path}: special_ids {meta.get('special_ids')} differ from {SPECIAL_TOKENS}")
    for split, info in meta["splits"].items():
        split_dir = variant_dir / split
        on_disk = {p.name for p in split_dir.iterdir()} if split_dir.is_dir() else set()
        if on_disk != set(info["sha256"]):
            raise ValueError(
                f"{split_dir}: files {sorted(on_disk)} differ from meta.json {sorted(info['sha256'])}"
            )
        for name, digest in info["sha256"].items():
            if sha256_file(split_dir / name) != digest:
                raise ValueError(f"{split_dir / name}: sha256 differs from {meta_path}")
        shards = TokenShards(split_dir)
        if (shards.n_tokens, shards.n_conversations) != (info["n_tokens"], info["n_conversations"]):
            raise ValueError(f"{split_dir}: token/conversation counts differ from {meta_path}")
    return meta
