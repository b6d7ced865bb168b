"""`nanochatgpt tokens`: tokenized conversations as the model trains on them, the loss marked.

The shards are numbers (docs/shards.md): uint16 ids beside a mask that is 1 where the loss counts.
Whether the loss really falls on the bot's words and the `<endOfText>` closing them, and nowhere in
the human's turns, the persona or the markers, is the project's central promise, and it deserves
a look with one's own eyes: this decodes conversations from data/tokens/<variant>/<split>/ and
prints them with every token the loss counts shown in green (at a terminal) or between ⟦ and ⟧,
and every real special token (a turn's marker, `<endOfText>`) in reverse video or between ⟪ and ⟫:
a `<bot>` a user typed is text, and must not read as a turn of the bot.
Each conversation is named by its row of data/dataset/<variant>/<split>.parquet (one row per
conversation, in shard order), so `--source` can pick one source's conversations; the rows shown
are rendered again and compared with the shards' tokens, so a dataset rebuilt since (as many rows,
another order) is said rather than read as theirs. Nothing is written.
"""

from __future__ import annotations

import argparse
import codecs
import itertools
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import jsonout
from pipeline.argtypes import whole_number
from pipeline.buildinputs import VARIANTS
from pipeline.params import load_params, load_yaml, project_root, root_first, shown_path
from pipeline.shards import TokenShards
from pipeline.terminal import inert, printable

OPEN, CLOSE = "⟦", "⟧"  # around the loss's text, where there is no colour
SPECIAL_OPEN, SPECIAL_CLOSE = "⟪", "⟫"  # around a real special token, where there is no colour
GREEN, RESET = "\x1b[32m", "\x1b[0m"
REVERSE, REVERSE_OFF = "\x1b[7m", "\x1b[27m"  # a real special token, at a terminal
# The marks written as escapes where the text itself holds them: a typed "⟪<bot>⟫" is not a marker.
_MARKS_ESCAPED = {ord(c): f"\\u{ord(c):04x}" for c in (OPEN, CLOSE, SPECIAL_OPEN, SPECIAL_CLOSE)}


# More windows than any profile's step draws (batch_size x grad_accum: 64 at most), and few enough
# that drawing them at once, as one batch, stays a few megabytes: 10**8 was a MemoryError traceback
# (or, with no limit on the process, the machine's memory).
MAX_WINDOWS = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variant", choices=VARIANTS, help="dataset variant (default: params.yaml train.variant)"
    )
    parser.add_argument(
        "--split", choices=("train", "val"), default="train", help="split shown (default train)"
    )
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
        help="green for the loss's tokens and reverse video for special tokens (auto: at a terminal, unless "
        "NO_COLOR is set or TERM=dumb); otherwise ⟦ ⟧ and ⟪ ⟫ around them",
    )
    parser.add_argument(
        "--windows",
        type=int,
        metavar="N",
        help=f"show N training windows instead (1 to {MAX_WINDOWS}), drawn as the trainer draws them "
        "(train split)",
    )
    parser.add_argument(
        "--seed",
        type=whole_number(0),  # numpy's seeds are 0 or more: -1 was "expected non-negative integer"
        help="with --windows: the sampler's seed (default train.seed: step 1's first rows)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print spans of text with their loss flag as JSON (each special token a span, `special`)",
    )


@dataclass(frozen=True)
class Span:
    text: str
    loss: bool
    special: bool = False  # one special token (loss_spans' `specials`), not text that looks like one


@dataclass(frozen=True)
class ShownConversation:
    index: int  # position in the split, shard order = the dataset parquet's row
    conversation_id: str | None
    source: str | None
    tokens: int
    loss_tokens: int
    spans: list[Span]


@dataclass(frozen=True)
class ShownWindow:
    row: int  # row of the sampled batch
    seed: int
    first_step: bool  # the seed is train.seed and the row is in step 1's batch: the run trained on it
    block_size: int
    window_align: str
    tokens: int  # block_size + 1: the inputs and, one on, the targets
    loss_tokens: int  # targets the loss counts
    spans: list[Span]


def loss_spans(
    ids: np.ndarray, mask: np.ndarray, turn_breaks: bool = False, specials: bool = False
) -> list[Span]:
    """The conversation's text cut where the mask changes. Token bytes go through one incremental
    UTF-8 decoder, so a character split across tokens (and across a mask change) prints whole, in
    the span where its last byte lies. `turn_breaks` starts each turn's marker token (the special
    id, never a user's typed `<bot>`) on a new line, for reading; the spans then differ from the
    training text by those line breaks. With `specials`, each special token (SPECIAL_TOKENS: the
    markers, `<endOfText>`, `<|endoftext|>`) is a span of its own, `special`: decoded, a typed
    `<bot>` is the very same characters as the control token."""
    from pipeline.tokenizer import BOT_ID, HUMAN_ID, N_VOCAB, SPECIAL_TOKENS, get_encoding

    enc = get_encoding()
    breaks = {HUMAN_ID, BOT_ID} if turn_breaks else set()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    spans: list[Span] = []
    flags = np.asarray(mask, dtype=bool)
    if len(ids) and int(np.max(ids)) >= N_VOCAB:  # a damaged shard: decoding it was a KeyError traceback
        raise ValueError(f"token id {int(np.max(ids))} lies outside the vocabulary (0..{N_VOCAB - 1})")
    special = np.isin(ids, list(SPECIAL_TOKENS.values())) if specials else np.zeros(len(ids), dtype=bool)
    changes = (flags[1:] != flags[:-1]) | special[1:] | special[:-1]  # a special token stands alone
    cuts = [0, *(np.flatnonzero(changes) + 1).tolist(), len(ids)]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        if a == b:
            continue
        if special[a]:
            # its line break, and any character left cut short before it (U+FFFD), are text
            lead = b"\n" if int(ids[a]) in breaks and a > 1 else b""
            _add(spans, Span(decoder.decode(lead, final=True), bool(flags[a])))
            _add(spans, Span(enc.decode_single_token_bytes(int(ids[a])).decode(), bool(flags[a]), True))
            continue
        raw = b"".join(
            (b"\n" if int(t) in breaks and a + k > 1 else b"") + enc.decode_single_token_bytes(int(t))
            for k, t in enumerate(ids[a:b])
        )
        _add(spans, Span(decoder.decode(raw, final=b == len(ids)), bool(flags[a])))
    return spans


def _add(spans: list[Span], span: Span) -> None:
    """Append `span`, joined to the last one when both are text of one loss flag (an empty span may
    have lain between them); an empty text span is dropped."""
    if spans and not (span.special or spans[-1].special) and spans[-1].loss == span.loss:
        spans[-1] = Span(spans[-1].text + span.text, span.loss)
    elif span.text:
        spans.append(span)


def open_split(root: Path, variant: str, split: str) -> TokenShards:
    """data/tokens/<variant>/<split>, or FileNotFoundError saying how to get it. Checked here, not
    left to TokenShards: its "run `dvc repro tokenize`" names no stage of the foreach (tokenize@full,
    tokenize@commercial), and a split dvc.lock records is a `dvc pull` away, not a re-tokenization."""
    split_dir = root / "data" / "tokens" / variant / split
    if not split_dir.is_dir():
        stage = f"tokenize@{variant}"
        if _locked_outputs(root, stage):
            advice = (
                f" (dvc.lock records its shards, kept in DVC's cache): run `dvc pull {stage}` "
                f"or `dvc repro {stage}`"
            )
        else:
            advice = f": run `dvc repro {stage}`"
        raise FileNotFoundError(f"{shown_path(split_dir, root)}: no token split here{advice}")
    return TokenShards(split_dir)  # its refusals name the split, or the file (numpy's: shards._mapped)


def _locked_outputs(root: Path, stage: str) -> bool:
    """Whether dvc.lock records outputs of `stage`: DVC's cache (or a remote) may hold them."""
    try:
        stages = load_yaml(root / "dvc.lock").get("stages")
    except (OSError, ValueError):  # no dvc.lock (never run, or outside the root): nothing to pull
        return False
    entry = stages.get(stage) if isinstance(stages, dict) else None
    return isinstance(entry, dict) and bool(entry.get("outs"))


def _dataset_path(root: Path, variant: str, split: str) -> Path:
    return root / "data" / "dataset" / variant / f"{split}.parquet"


def _dataset_rows(path: Path, n: int) -> tuple[list[str] | None, list[str] | None]:
    """(conversation ids, sources) of the dataset rows the split was tokenized from, or (None, None)
    when that parquet is missing, unreadable or no longer has one row per tokenized conversation."""
    import polars as pl

    if not path.is_file():
        return None, None
    try:
        rows = pl.read_parquet(path, columns=["conversation_id", "source"])
    except pl.exceptions.PolarsError:  # cut short, or not the dataset's columns: the shards still show
        return None, None
    if rows.height != n:
        return None, None
    # as the build writes them, text on every row: a table of other columns' types (ids as numbers,
    # a null source) named no conversation but stopped --source at a TypeError traceback
    if any(rows[c].dtype != pl.String or rows[c].null_count() for c in rows.columns):
        return None, None
    return rows["conversation_id"].to_list(), rows["source"].to_list()


def _first_unlike(path: Path, picked: list[tuple[int, np.ndarray, np.ndarray]]) -> int | None:
    """The first picked conversation whose dataset row does not render to the shard's tokens, or None.
    A dataset rebuilt since the shards were made can hold as many rows in another order (a new
    `build.seed`, a source edited): the count alone would name every conversation wrongly."""
    import polars as pl

    from pipeline.tokenizer import render

    wanted = [i for i, _, _ in picked]
    try:
        rows = (
            pl.scan_parquet(path)
            .with_row_index("_at")
            .filter(pl.col("_at").is_in(wanted))
            .select("_at", "messages", pl.col("context").cast(pl.String))
            .collect()
        )
    except pl.exceptions.PolarsError:  # no `messages` column: these rows were not tokenized
        return wanted[0]
    by_row = {r["_at"]: r for r in rows.iter_rows(named=True)}
    for i, ids, _ in picked:
        row = by_row.get(i)
        try:
            rendered = render(row["messages"], row["context"])[0] if row else None
        except (KeyError, TypeError, ValueError):  # a row that is no conversation: not these tokens
            rendered = None
        if rendered is None or not np.array_equal(np.asarray(rendered), ids):
            return i
    return None


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
    shards = open_split(root, variant, split)
    path = _dataset_path(root, variant, split)
    shown = shown_path(path, root)
    ids_of, sources = _dataset_rows(path, shards.n_conversations)
    unnamed = None  # why the dataset rows cannot name these conversations
    if ids_of is None:
        unnamed = (
            f"{shown} does not hold the {shards.n_conversations:,} "
            f"conversations these shards were made from (missing, unreadable or rebuilt since)"
        )
        if source:
            raise ValueError(f"--source needs the dataset rows: {unnamed}")
    if source and sources is not None and source not in set(sources):  # a typo, or `contrib` for a file
        held = ", ".join(sorted(set(sources))) or "none"
        raise ValueError(
            f"no conversation from {printable(source)} in {shown} (its sources: {printable(held)})"
            f"{_held_elsewhere(root, variant, split, source) or _normalized_since(root, variant, source)}"
        )
    picked: list[tuple[int, np.ndarray, np.ndarray]] = []
    # clamped: islice refuses a start past sys.maxsize, and past the split there is nothing to show
    start = min(index, shards.n_conversations)
    for i, (ids, mask) in itertools.islice(enumerate(shards.iter_conversations()), start, None):
        if len(picked) == count:
            break
        if source and sources is not None and sources[i] != source:
            continue
        picked.append((i, ids, mask))
    if ids_of is not None and picked and (unlike := _first_unlike(path, picked)) is not None:
        unnamed = (
            f"row {unlike} of {shown} is not the conversation the shards hold there: the dataset "
            f"was rebuilt since they were made (`dvc repro tokenize@{variant}` remakes them)"
        )
        if source:
            raise ValueError(f"--source needs the dataset rows: {unnamed}")
        ids_of = sources = None
    shown = [
        ShownConversation(
            index=i,
            conversation_id=ids_of[i] if ids_of else None,
            source=sources[i] if sources else None,
            tokens=len(ids),
            loss_tokens=int(np.count_nonzero(mask)),
            spans=_spans(ids, mask, turn_breaks, f"{shown_path(shards.split_dir, root)} conversation {i}"),
        )
        for i, ids, mask in picked
    ]
    return shards, shown, unnamed and f"{unnamed}: they are shown unnamed"


def _spans(ids: np.ndarray, mask: np.ndarray, turn_breaks: bool, where: str) -> list[Span]:
    """loss_spans with the special tokens apart, its refusal of a damaged shard's token naming
    `where` the token is."""
    try:
        return loss_spans(ids, mask, turn_breaks, specials=True)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _held_elsewhere(root: Path, variant: str, split: str, source: str) -> str:
    """Where else `source` has conversations, as a hint ("" when nowhere): a small contributed file
    can land wholly in the val split (the split hashes each conversation's opening), and a
    non-commercial one only in the full variant; "no conversation" alone reads as "not in the dataset"."""
    import polars as pl

    places = [(variant, "val" if split == "train" else "train")]
    if variant != "full":
        places += [("full", "train"), ("full", "val")]
    found = []
    for v, s in places:
        path = _dataset_path(root, v, s)
        try:
            n = pl.scan_parquet(path).filter(pl.col("source") == source).select(pl.len()).collect().item()
        except (pl.exceptions.PolarsError, OSError):  # missing or unreadable: no hint from it
            continue
        if n:
            option = f"--split {s}" if v == variant else f"--variant {v} --split {s}"
            found.append(f"{n:,} in {v}'s {s} split ({option})")
    return f"; it has {', '.join(found)}" if found else ""


def _normalized_since(root: Path, variant: str, source: str) -> str:
    """A hint ("" when none) for a source that normalize keeps rows of but the variant's build has
    not seen: a file added to data/contrib/ and only `dvc repro normalize@contrib` run (CONTRIBUTING's
    step 3) read "no conversation from contrib/<name>", as if the file had been dropped."""
    import json

    name = source.partition("/")[0]
    report_path = root / "data" / "normalized" / f"{name}.report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        stats = json.loads((root / "data" / "dataset" / variant / "stats.json").read_text(encoding="utf-8"))
        counts = report.get("by_source", {}).get(source) if "/" in source else report
        kept = int((counts or {}).get("rows_kept") or 0)
        seen = stats.get("sources", {}).get(name)
        if seen is not None and "/" in source:  # the build saw the contributed files its report named
            seen = seen.get("normalize", {}).get("by_source", {}).get(source)
    except (OSError, ValueError, TypeError, AttributeError):  # missing or unlike these files: no hint
        return ""
    # the commercial build would leave a non-commercial file out again (a registry source's report
    # does not say): only a file's own `commercial: true` earns the hint there
    if (
        not kept
        or seen is not None
        or (variant == "commercial" and (counts or {}).get("commercial") is not True)
        or not _still_enabled(root, source)
    ):
        return ""
    return (
        f"; {shown_path(report_path, root)} keeps {kept:,} of its rows, but the {variant} dataset was "
        f"built before them (`dvc repro tokenize@{variant}` builds them in)"
    )


def _still_enabled(root: Path, source: str) -> bool:
    """A rebuild would take `source` in: it is in params.yaml's `sources` and, for a contributed file
    (`<entry>/<stem>`), a data file of that stem is still in its entry's folder (data/contrib/, or
    the entry's `local_path:`). A disabled source's (or a deleted file's) normalize outputs stay on
    disk until the registry stage clears them, and the hint told to rebuild them in."""
    from pipeline.sources.contrib import contrib_folder
    from pipeline.sources.errors import SourceError
    from pipeline.sources.registry import REGISTRY_FILE, SIDECAR_SUFFIXES, get_source, load_registry

    name, _, part = source.partition("/")
    try:
        enabled = load_params(root / "params.yaml").get("sources")
        if not isinstance(enabled, list) or name not in enabled:
            return False
        if not part:
            return True
        folder = contrib_folder(get_source(name, load_registry(root / REGISTRY_FILE)), root)
        # stems compared exactly: a glob of `a[1].*` matched other names, or none
        return any(f.stem == part and f.suffix.lower() not in SIDECAR_SUFFIXES for f in folder.iterdir())
    except (OSError, ValueError, AttributeError, SourceError):  # unreadable settings, no such folder
        return False


def format_conversation(c: ShownConversation, shards: TokenShards, root: Path, color: bool) -> str:
    # the id starts with its source; it comes from the upstream record, which may hold ESC or a line break
    name = f" ({printable(c.conversation_id)})" if c.conversation_id else ""
    share = 100 * c.loss_tokens / c.tokens if c.tokens else 0.0
    head = (
        f"== {shown_path(shards.split_dir, root)} conversation {c.index} of {shards.n_conversations:,}{name}: "
        f"{c.tokens:,} tokens, {c.loss_tokens:,} in the loss ({share:.0f}%)"
    )
    return f"{head}\n{_body(c.spans, color)}"


def _body(spans: list[Span], color: bool) -> str:
    # The text as terminal.inert shows a model's reply: its line breaks kept, any other control
    # character and every bidi override written as an escape. Normalize quarantines control
    # characters but keeps bidi controls (right-to-left text uses them), and shards made another way
    # may hold anything: raw, an RLO shown the rest of its line reversed, ⟦ ⟧ included, and an ESC
    # reached the terminal. Each run of spans the loss counts is marked once, and a real special
    # token within it apart, so that a `<bot>` typed in a turn does not read as the bot's turn.
    shown = []
    for loss, run in itertools.groupby(spans, key=lambda s: s.loss):
        text = "".join(_span_text(s, color) for s in run)
        shown.append((f"{GREEN}{text}{RESET}" if color else f"{OPEN}{text}{CLOSE}") if loss else text)
    return "".join(shown)


def _span_text(span: Span, color: bool) -> str:
    """A span as _body shows it: a special token in reverse video (colour) or between ⟪ ⟫, text inert
    and, without colour, with any ⟦ ⟧ ⟪ ⟫ of its own escaped (they would read as the view's marks)."""
    if span.special:
        return f"{REVERSE}{span.text}{REVERSE_OFF}" if color else f"{SPECIAL_OPEN}{span.text}{SPECIAL_CLOSE}"
    return inert(span.text) if color else inert(span.text).translate(_MARKS_ESCAPED)


def training_windows(
    root: Path, variant: str | None, count: int, seed: int | None, turn_breaks: bool = False
) -> tuple[TokenShards, list[ShownWindow]]:
    """`count` windows of data/tokens/<variant>/train drawn as the trainer draws them: the same
    sampler (TokenShards.sample_batch) with the profile's block_size and window_align, from a
    generator seeded with `seed` (default train.seed, the seed of the run's own sampler, whose first
    draw is step 1's batch: its first rows are these). Each is the window's block_size + 1 tokens,
    with the loss flag of each token as a target (the first token is only an input)."""
    from pipeline.trainconfig import TrainConfig  # imports torch: only for --windows

    params = load_params(root / "params.yaml")
    cfg = TrainConfig.from_params(params.get("train") or {}, params.get("train_profiles"))
    shards = open_split(root, variant or cfg.variant, "train")
    if shards.n_conversations == 0:
        raise ValueError(f"{shards.split_dir}: holds no conversation")
    drawn_with = cfg.seed if seed is None else seed
    x, y, mask = shards.sample_batch(
        count, cfg.block_size, np.random.default_rng(drawn_with), align=cfg.window_align
    )
    in_step_one = seed is None and (variant or cfg.variant) == cfg.variant
    shown = []
    for r in range(count):
        ids = np.concatenate([x[r, :1], y[r]])
        flags = np.concatenate([[0], mask[r]]).astype(np.uint8)
        shown.append(
            ShownWindow(
                row=r,
                seed=drawn_with,
                first_step=in_step_one and r < cfg.batch_size * cfg.grad_accum,
                block_size=cfg.block_size,
                window_align=cfg.window_align,
                tokens=len(ids),
                loss_tokens=int(flags.sum()),
                spans=_spans(ids, flags, turn_breaks, f"{shown_path(shards.split_dir, root)} window row {r}"),
            )
        )
    return shards, shown


def format_window(w: ShownWindow, shards: TokenShards, root: Path, color: bool) -> str:
    drawn = f"row {w.row} of step 1's batch" if w.first_step else f"seed {w.seed}, row {w.row}"
    share = 100 * w.loss_tokens / (w.tokens - 1)
    head = (
        f"== {shown_path(shards.split_dir, root)} training window ({drawn}; block_size {w.block_size}, "
        f"window_align {w.window_align}): {w.loss_tokens:,} of {w.tokens - 1:,} targets in the loss ({share:.0f}%)"
    )
    return f"{head}\n{_body(w.spans, color)}"


def _show(shown: list[Any], text: Callable[[Any, bool], str], args: argparse.Namespace) -> None:
    """Print `shown` as JSON (--json) or as text, coloured as --color says."""
    if args.json:
        print(jsonout.dumps([asdict(c) for c in shown]))
        return
    # auto: colour at a terminal, unless NO_COLOR (https://no-color.org) asks for none or the
    # terminal says it has no escape codes (TERM=dumb: an editor's shell buffer printed ESC[32m)
    color = args.color == "always" or (
        args.color == "auto"
        and sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )
    if not color:
        print(
            f"(the loss counts the tokens between {OPEN} and {CLOSE}; {SPECIAL_OPEN} {SPECIAL_CLOSE} mark "
            f"each real special token, such as {SPECIAL_OPEN}<bot>{SPECIAL_CLOSE}: the same characters "
            "without them are text)"
        )
    print("\n\n".join(text(c, color) for c in shown))


def _run_windows(args: argparse.Namespace, root: Path) -> int:
    if args.windows > MAX_WINDOWS:
        print(f"tokens: --windows takes {MAX_WINDOWS:,} at most, got {args.windows:,}", file=sys.stderr)
        return 2
    if args.windows < 1 or args.split != "train" or args.source or args.index or args.count != 1:
        print(
            "tokens: --windows takes 1 or more, and draws from the train split: not with --split val, "
            "--source, --index or --count",
            file=sys.stderr,
        )
        return 2
    try:
        shards, shown = training_windows(root, args.variant, args.windows, args.seed, not args.json)
    except (OSError, ValueError, KeyError) as e:  # no shards, params.yaml's train settings refused
        print(f"tokens: {_failure(e, root)}", file=sys.stderr)
        return 1
    _show(shown, lambda w, color: format_window(w, shards, root, color), args)
    return 0


def _relative(error: Exception, root: Path) -> str:
    """An error message with the project's paths as they are typed (data/tokens/...), not absolute."""
    return str(error).replace(f"{root}/", "")


def _failure(error: Exception, root: Path) -> str:
    """An error as `tokens:` prints it: paths as typed and, for a missing file or split, where the
    paths were read from when that is not the project's root (run from data/, params.yaml was
    "[Errno 2] No such file or directory" and the split's advice was to run tokenize)."""
    if not isinstance(error, FileNotFoundError):
        return _relative(error, root)
    if error.filename:  # open()'s own: params.yaml
        message = f"{shown_path(Path(error.filename), root)}: no such file"
    else:
        message = _relative(error, root)
    return root_first(message)


def run(args: argparse.Namespace) -> int:
    root = project_root()
    if args.windows is not None:
        return _run_windows(args, root)
    if args.seed is not None:
        print("tokens: --seed goes with --windows", file=sys.stderr)
        return 2
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
        print(f"tokens: {_failure(e, root)}", file=sys.stderr)
        return 1
    where = shown_path(shards.split_dir, root)
    if shards.n_conversations == 0:
        why = " (params.yaml build.val_fraction is 0?)" if args.split == "val" else ""
        print(f"tokens: {where} holds no conversation{why}", file=sys.stderr)
        return 1
    if note:
        print(f"tokens: {note}", file=sys.stderr)
    if not shown:
        which = f" from {printable(args.source)}" if args.source else ""  # typed, or pasted: inert
        print(
            f"tokens: no conversation{which} at or after {args.index} in {where} "
            f"({shards.n_conversations:,} conversations)",
            file=sys.stderr,
        )
        return 1
    _show(shown, lambda c, color: format_conversation(c, shards, root, color), args)
    return 0
