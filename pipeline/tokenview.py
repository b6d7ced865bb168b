"""`nanochatgpt tokens`: tokenized conversations as the model trains on them, the loss marked.

The shards are numbers (docs/shards.md): uint16 ids beside a mask that is 1 where the loss counts.
Whether the loss really falls on the bot's words and the `<endOfText>` closing them, and nowhere in
the human's turns, the persona or the markers, is the project's central promise, and it deserves
a look with one's own eyes: this decodes conversations from data/tokens/<variant>/<split>/ and
prints them with every token the loss counts shown in green (at a terminal) or between ⟦ and ⟧.
Each conversation is named by its row of data/dataset/<variant>/<split>.parquet (one row per
conversation, in shard order), so `--source` can pick one source's conversations. Nothing is
written.
"""

from __future__ import annotations

import argparse
import codecs
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.params import load_params, project_root
from pipeline.shards import TokenShards

OPEN, CLOSE = "⟦", "⟧"  # around the loss's text, where there is no colour
GREEN, RESET = "\x1b[32m", "\x1b[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", help="dataset variant (default: params.yaml train.variant)")
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument(
        "--index", type=int, default=0, metavar="N", help="first conversation shown (0-based, in shard order)"
    )
    parser.add_argument("--count", type=int, default=1, metavar="K", help="conversations shown (default 1)")
    parser.add_argument(
        "--source", help="only conversations from this source (chitchat, contrib/<file stem>, ...)"
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="green for the loss's tokens (auto: at a terminal); otherwise ⟦ ⟧ around them",
    )
    parser.add_argument(
        "--json", action="store_true", help="print spans of text with their loss flag as JSON"
    )


@dataclass(frozen=True)
class Span:
    text: str
    loss: bool


@dataclass(frozen=True)
class ShownConversation:
    index: int  # position in the split, shard order = the dataset parquet's row
    conversation_id: str | None
    source: str | None
    tokens: int
    loss_tokens: int
    spans: list[Span]


def loss_spans(ids: np.ndarray, mask: np.ndarray, turn_breaks: bool = False) -> list[Span]:
    """The conversation's text cut where the mask changes. Token bytes go through one incremental
    UTF-8 decoder, so a character split across tokens (and across a mask change) prints whole, in
    the span where its last byte lies. `turn_breaks` starts each turn's marker token (the special
    id, never a user's typed `<bot>`) on a new line, for reading; the spans then differ from the
    training text by those line breaks."""
    from pipeline.tokenizer import BOT_ID, HUMAN_ID, get_encoding

    enc = get_encoding()
    breaks = {HUMAN_ID, BOT_ID} if turn_breaks else set()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    spans: list[Span] = []
    flags = np.asarray(mask, dtype=bool)
    cuts = [0, *(np.flatnonzero(flags[1:] != flags[:-1]) + 1).tolist(), len(ids)]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if a == b:
            continue
        raw = b"".join(
            (b"\n" if int(t) in breaks and a + k > 1 else b"") + enc.decode_single_token_bytes(int(t))
            for k, t in enumerate(ids[a:b])
        )
        text = decoder.decode(raw, final=b == len(ids))
        if spans and spans[-1].loss == bool(flags[a]):  # an empty span between them: join
            spans[-1] = Span(spans[-1].text + text, spans[-1].loss)
        elif text:
            spans.append(Span(text, bool(flags[a])))
    return spans


def _dataset_rows(root: Path, variant: str, split: str, n: int) -> tuple[list[str] | None, list[str] | None]:
    """(conversation ids, sources) of the dataset rows the split was tokenized from, or (None, None)
    when that parquet is missing or no longer has one row per tokenized conversation (rebuilt since)."""
    import polars as pl

    path = root / "data" / "dataset" / variant / f"{'val' if split == 'val' else 'train'}.parquet"
    if not path.is_file():
        return None, None
    rows = pl.read_parquet(path, columns=["conversation_id", "source"])
    if rows.height != n:
        return None, None
    return rows["conversation_id"].to_list(), rows["source"].to_list()


def conversations(
    root: Path,
    variant: str,
    split: str,
    index: int,
    count: int,
    source: str | None = None,
    turn_breaks: bool = False,
) -> tuple[TokenShards, list[ShownConversation], str | None]:
    """(the split, up to `count` conversations from `index` on (of `source` only, when given), a
    note when they cannot be named). `turn_breaks`: as loss_spans."""
    shards = TokenShards(root / "data" / "tokens" / variant / split)
    ids_of, sources = _dataset_rows(root, variant, split, shards.n_conversations)
    note = None
    if ids_of is None:
        note = (
            f"data/dataset/{variant}/{split}.parquet does not hold the {shards.n_conversations:,} "
            f"conversations these shards were made from (missing or rebuilt since): they are shown unnamed"
        )
        if source:
            raise ValueError(f"--source needs the dataset rows: {note}")
    shown: list[ShownConversation] = []
    for i, (ids, mask) in _from(shards, index):
        if len(shown) == count:
            break
        if source and sources is not None and sources[i] != source:
            continue
        shown.append(
            ShownConversation(
                index=i,
                conversation_id=ids_of[i] if ids_of else None,
                source=sources[i] if sources else None,
                tokens=len(ids),
                loss_tokens=int(np.count_nonzero(mask)),
                spans=loss_spans(ids, mask, turn_breaks),
            )
        )
    return shards, shown, note


def _from(shards: TokenShards, index: int) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
    for i, conversation in enumerate(shards.iter_conversations()):
        if i >= index:
            yield i, conversation


def format_conversation(c: ShownConversation, shards: TokenShards, root: Path, color: bool) -> str:
    name = f" ({c.conversation_id})" if c.conversation_id else ""  # the id starts with its source
    share = 100 * c.loss_tokens / c.tokens if c.tokens else 0.0
    head = (
        f"== {shards.split_dir.relative_to(root)} conversation {c.index} of {shards.n_conversations:,}{name}: "
        f"{c.tokens:,} tokens, {c.loss_tokens:,} in the loss ({share:.0f}%)"
    )
    body = "".join(
        (f"{GREEN}{s.text}{RESET}" if color else f"{OPEN}{s.text}{CLOSE}") if s.loss else s.text
        for s in c.spans
    )
    return f"{head}\n{body}"


def run(args: argparse.Namespace) -> int:
    root = project_root()
    if args.index < 0 or args.count < 1:
        print("tokens: --index takes 0 or more, --count 1 or more", file=sys.stderr)
        return 2
    try:
        variant = args.variant or (load_params(root / "params.yaml").get("train") or {}).get(
            "variant", "full"
        )
        shards, shown, note = conversations(
            root, variant, args.split, args.index, args.count, args.source, turn_breaks=not args.json
        )
    except (OSError, ValueError) as e:  # no shards (FileNotFoundError says to run tokenize), bad ones
        print(f"tokens: {e}", file=sys.stderr)
        return 1
    if note:
        print(f"tokens: {note}", file=sys.stderr)
    if not shown:
        which = f" from {args.source}" if args.source else ""
        print(
            f"tokens: no conversation{which} at or after {args.index} in {shards.split_dir} "
            f"({shards.n_conversations:,} conversations)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps([asdict(c) for c in shown], indent=2, ensure_ascii=False))
        return 0
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    if not color:
        print(f"(the loss counts the tokens between {OPEN} and {CLOSE})")
    print("\n\n".join(format_conversation(c, shards, root, color) for c in shown))
    return 0
