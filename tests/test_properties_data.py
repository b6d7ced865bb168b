"""Property-based tests (hypothesis) of the data pipeline's invariants over small random corpora.

Each example is a random multi-source corpus, as adapters would emit it (pipeline.sources.rows.RawRows):
conversations of random turns drawn from a small alphabet of words, whitespace (CR, CRLF, NBSP,
ideographic space), punctuation, combining marks, zero-width and fullwidth characters, typographic
apostrophes, the literal markers ("<human>", "<bot>", "<endOfText>", "<|endoftext|>"), control
characters, a lone surrogate, empty/blank and over-long turns, unreadable and skipped rows,
speaker-derived roles, personas; dialogues shared between sources and within one, as exact copies
or trivial variants (case, spacing, final punctuation, NFD, zero-width characters); registry sources
and contributed files under commercial, non-commercial and unknown terms. The corpus goes through
the functions the stages call: normalize_rows + write_outputs (stages/normalize.py), build_variant
(stages/build.py) for both variants, tokenize_dataset (stages/tokenize.py).

The expected results come from small pure-Python oracles written from docs/contracts.md (the dedup
key's folding, first copy wins in (source order, conversation_id) order, the split's opening), not
from the code under test. Examples are derandomized and the database is off, so CI sees the same
examples on every run.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig
from pipeline.datasetformat import parse_text
from pipeline.encode import tokenize_dataset
from pipeline.schema import ROLES
from pipeline.shards import TokenShards
from pipeline.sources.adapters import contrib
from pipeline.sources.licences import commercial_eligible
from pipeline.sources.normalize import NormalizeResult, normalize_rows, output_paths, write_outputs
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows, concat
from pipeline.tokenizer import (
    BOT_ID,
    END_OF_TURN_ID,
    ENDOFTEXT_ID,
    HUMAN_ID,
    SPECIAL_TOKENS,
    decode,
    get_encoding,
    render,
)

# Small bounds keep every example fast and make over-long turns and merged turns common.
NORM_MAX = 100  # normalize.max_turn_chars
SPECIAL_IDS = frozenset(SPECIAL_TOKENS.values())
PROPERTY = settings(max_examples=30)  # the rest: tests/conftest.py's profile

# ----------------------------------------------------------------------------- text strategies

WORDS = [
    "hello", "Hello", "HELLO", "hi", "what", "is", "x", "42", "-5", "5", "tea", "cat", "ﬁne", "x²",
    "café", "cafe\u0301", "a\u0308", "\u0301", "ｈｅｌｌｏ", "I’m", "I'm", "“hi”", "Straße", "STRASSE", "ẞ", "😀",
]  # fmt: skip
MARKS = ["!", "?", ".", "...", "…", ",", "!=", "==", "\\", "\\n", "<", ">", "<\\bot>"]
MARKERS = ["<human>", "<bot>", "<endOfText>", "<|endoftext|>", "<BOT>"]
SPACES = [" ", " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000"]
INVISIBLE = ["\u200b", "\ufeff", "\u00ad", "\u2060"]
# Control characters, and a lone surrogate (a cut emoji: RawRows quarantines its row as utf8).
CONTROL = ["\x00", "\x07", "\ud83d"]

# Repetition weights the draw: mostly words, spaces and marks; now and then a marker or an invisible
# character. Control characters (which quarantine a row and cut its conversation) only in free rows.
PIECES = WORDS * 3 + SPACES * 2 + MARKS + MARKERS + INVISIBLE
short_text = st.lists(st.sampled_from(PIECES), max_size=7).map("".join)
dirty_text = st.lists(st.sampled_from(PIECES + CONTROL * 4), min_size=1, max_size=7).map("".join)
# A word repeated past NORM_MAX: quarantined as text_length (or, merged, it cuts the conversation).
long_text = st.builds(
    lambda w, n: (w + " ") * n, st.sampled_from(["hello", "tea", "<bot>"]), st.integers(20, 40)
)
turn_text = st.one_of(short_text, short_text, dirty_text, long_text, st.sampled_from(["", "  ", "\u200b"]))
# Mostly none; sometimes blank or invisible (normalize makes it none), a persona, or one with a control
# character or too long (quarantined).
context_text = st.sampled_from(
    [None] * 8 + ["", " \n ", "\u200b", "I love tea.", "<bot> pirate\r\nsays hi", "bell\x07", "tea " * 30]
)
# Openings to share (the split keys on a conversation's opening): under and over the 100-character floor.
PROMPTS = [
    "Explain tea",
    "Tell me a story about a lighthouse keeper",
    "Write a story about a lighthouse keeper who finds an old map in the attic, in three parts, "
    "with a happy end",
]


def variant_of(text: str, how: str) -> str:
    """A trivial variant of `text` that the dedup key folds (docs/contracts.md, Deduplication)."""
    return {
        "same": text,
        "upper": text.upper(),
        "spaces": text.replace(" ", "   "),
        "final_mark": text + "!",
        "nfd": unicodedata.normalize("NFD", text),
        "zero_width": "\u200b".join(text.split(" ")),
    }[how]


VARIANTS = ["same", "upper", "spaces", "final_mark", "nfd", "zero_width"]

# ----------------------------------------------------------------------------- corpus model


@dataclass(frozen=True)
class Row:
    kind: str  # "add" (readable), "bad" (unreadable: adapter check), "skip" (format says skip)
    text: str | None
    role: str | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class Conv:
    key: str | None
    context: str | None
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class File:
    source: str  # the rows' `source`: the registry name, or contrib/<stem>
    licence: str
    commercial: bool
    convs: tuple[Conv, ...]


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    licence: str
    commercial: bool
    files: tuple[File, ...]


@dataclass(frozen=True)
class Corpus:
    sources: tuple[Source, ...]  # in params.yaml `sources` order (the dedup "first wins" order)

    @property
    def registry(self) -> dict[str, dict[str, Any]]:
        return {
            s.name: {"kind": s.kind, "licence": s.licence, "commercial": s.commercial} for s in self.sources
        }

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]


def raw_frame(src: Source, order: list[list[int]] | None = None) -> pl.DataFrame:
    """The adapter output of `src`; `order[f]` permutes file f's conversations (origins stay)."""
    frames = []
    for f, file in enumerate(src.files):
        rows = RawRows(file.source, file.licence, file.commercial)
        indices = order[f] if order else range(len(file.convs))
        for c in indices:
            conv = file.convs[c]
            for r, row in enumerate(conv.rows):
                origin = f"{file.source}:{c}:{r}"
                if row.kind == "bad":
                    rows.bad(origin, "json_parse", "broken line", conv_key=conv.key, text=row.text)
                elif row.kind == "skip":
                    rows.skip(origin, "deleted", conv_key=conv.key, text=row.text)
                else:  # adapters give every row of a conversation its context
                    rows.add(
                        conv.key, row.text, origin, role=row.role, speaker=row.speaker, context=conv.context
                    )
        frames.append(rows.frame())
    return concat(frames)


@st.composite
def free_rows(draw: st.DrawFn) -> tuple[Row, ...]:
    """Rows of any shape: roles explicit, by speaker, missing or unknown; bad and skipped rows."""
    n = draw(st.integers(1, 5))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["add"] * 8 + ["bad", "skip"]))
        how = draw(st.sampled_from(["alternate"] * 4 + ["speaker", "speaker", "same", "system", "none"]))
        role = speaker = None
        if how == "alternate":
            role = ROLES[i % 2]
        elif how == "same":
            role = draw(st.sampled_from(ROLES))
        elif how == "system":
            role = "system"
        elif how == "speaker":
            speaker = draw(st.sampled_from(["A", "B"]))
        out.append(Row(kind, draw(turn_text), role, speaker))
    return tuple(out)


@st.composite
def corpora(draw: st.DrawFn) -> Corpus:
    """2-3 registry sources and maybe a contrib source of two files, sharing dialogues from one pool."""
    pool = draw(st.lists(st.lists(short_text, min_size=2, max_size=4), min_size=1, max_size=4))
    # Dialogues on one prompt with different answers: they share an opening, not a dedup key.
    prompt = draw(st.sampled_from(PROMPTS))

    def conversations(prefix: str) -> tuple[Conv, ...]:
        convs = []
        for i in range(draw(st.integers(2, 7))):
            key = draw(st.sampled_from([f"{prefix}{i}"] * 9 + [""]))
            context = draw(context_text)
            shape = draw(st.sampled_from(["pool", "pool", "pool", "extend", "free", "prompt", "prompt"]))
            if shape == "free":
                rows = draw(free_rows())
            else:
                if shape == "prompt":
                    texts = [prompt, draw(st.sampled_from(["yes", "no", "Once upon a time", "hi"]))]
                else:  # a pooled dialogue, or a longer thread that starts with it
                    texts = list(draw(st.sampled_from(pool)))
                    texts += draw(st.lists(short_text, min_size=1, max_size=2)) if shape == "extend" else []
                how = draw(st.sampled_from(VARIANTS))
                by_speaker = draw(st.booleans())
                rows = tuple(
                    Row("add", variant_of(t, how), None if by_speaker else ROLES[j % 2], "AB"[j % 2])
                    for j, t in enumerate(texts)
                )
            convs.append(Conv(key, context, rows))
        return tuple(convs)

    registry_terms = st.sampled_from(
        [("MIT", True), ("MIT", True), ("MIT", False), ("CC-BY-NC-4.0", False), ("unknown", True)]
    )
    sources = []
    for name in draw(st.permutations(["alpha", "beta", "gamma"]))[: draw(st.integers(2, 3))]:
        licence, commercial = draw(registry_terms)
        sources.append(
            Source(
                name, "package", licence, commercial, (File(name, licence, commercial, conversations("k")),)
            )
        )
    if draw(st.booleans()):
        file_terms = st.sampled_from(
            [("CC-BY-4.0", True), ("CC-BY-4.0", True), ("CC-BY-NC-4.0", False), ("unknown", True)]
        )
        files = []
        for stem in ("one", "two"):
            licence, commercial = draw(file_terms)
            files.append(File(f"contrib/{stem}", licence, commercial, conversations("k")))
        contrib = Source("contrib", "contrib", "per-file", False, tuple(files))
        sources.insert(draw(st.integers(0, len(sources))), contrib)
    return Corpus(tuple(sources))


# ----------------------------------------------------------------------------- oracles


def clean(text: str) -> str:
    """normalize's text cleaning (docs/contracts.md: NFC, LF line ends, stripped)."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


_TYPED = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'"}
_TYPED |= {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00df": "ss", "\u1e9e": "ss"}


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def fold(text: str) -> str:
    """The dedup key's folding, as docs/contracts.md and pipeline/dedup.py's docstring state it."""
    s = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    s = unicodedata.normalize("NFKC", s).replace("\u2032\u2032", '"')
    s = "".join(_TYPED.get(ch, ch) for ch in s).lower()
    s = " ".join(s.split())  # whitespace runs -> one space, stripped
    out: list[str] = []
    i = 0
    while i < len(s):  # a run of marks (and the spaces around it) -> its first mark
        if _is_mark(s[i]):
            if out and out[-1] == " ":
                out.pop()
            out.append(s[i])
            i += 1
            while i < len(s) and (s[i] == " " or _is_mark(s[i])):
                i += 1
        else:
            out.append(s[i])
            i += 1
    s = "".join(out).strip()
    return s[:-1] if s and unicodedata.category(s[-1])[0] == "P" else s


@dataclass(frozen=True)
class Turns:
    """One normalized conversation, as read back from its turn table."""

    cid: str
    name: str  # registry source
    rank: int
    source: str  # row source
    eligible: bool  # may enter the commercial variant
    context: str | None
    messages: tuple[tuple[str, str], ...]  # (role, text)

    @property
    def key(self) -> tuple:
        return tuple((role, fold(text)) for role, text in self.messages)

    def opening(self, min_chars: int) -> tuple:
        """What the split keys on (pipeline/split.py): first turn, else first exchange, else all."""
        key = self.key
        if min_chars > 0:
            if len(key[0][1]) >= min_chars:
                return key[:1]
            if sum(len(t) for _, t in key[:2]) >= min_chars:
                return key[:2]
        return key

    @property
    def chars(self) -> int:
        return sum(len(text) for _, text in self.messages)


def read_turn_tables(root: Path, corpus: Corpus) -> dict[str, Turns]:
    """Every conversation the normalize step wrote, by conversation_id."""
    out = {}
    for rank, src in enumerate(corpus.sources):
        table = pl.read_parquet(root / "data" / "normalized" / f"{src.name}.parquet")
        for (cid,), part in table.sort("turn").group_by("conversation_id", maintain_order=True):
            first = part.row(0, named=True)
            eligible = (
                commercial_eligible(first["commercial"], first["licence"])
                if src.kind == "contrib"
                else commercial_eligible(src.commercial, src.licence)
            )
            messages = tuple(zip(part["role"], part["text"], strict=True))
            out[cid] = Turns(cid, src.name, rank, first["source"], eligible, first["context"], messages)
    return out


def expected_fates(convs: list[Turns], kept: set[str], caps: dict[str, int]) -> dict[str, str]:
    """Each valid conversation's fate as docs/contracts.md and build.dedup_and_cap state it, given the
    conversations the build kept: "kept", "cross" / "within" (a duplicate of a copy kept by an earlier
    source / earlier in its own source by conversation_id), or "cap". Asserts that `kept` is what
    dedup allows: one copy of each dialogue, the first one, and without a cap every one of them.

    Which dialogues a cap keeps depends on a seeded hash: this oracle checks only that the kept
    ones fit the cap and that the cap dropped something only when the next one would not fit.
    """
    fates: dict[str, str] = {}
    earlier: set[tuple] = set()  # keys kept by earlier sources
    for rank in sorted({c.rank for c in convs}):
        mine = sorted((c for c in convs if c.rank == rank), key=lambda c: c.cid)
        first: dict[tuple, Turns] = {}  # the dialogues this source adds, by their first copy
        for conv in mine:
            if conv.key in earlier:
                fates[conv.cid] = "cross"
            else:
                first.setdefault(conv.key, conv)
        assert {c.cid for c in mine} & kept <= {c.cid for c in first.values()}, "a later copy was kept"
        for conv in mine:
            if conv.cid not in fates:
                head = first[conv.key]
                fates[conv.cid] = ("kept" if conv is head else "within") if head.cid in kept else "cap"
        name = mine[0].name
        capped = [c for c in first.values() if c.cid not in kept]
        kept_chars = sum(c.chars for c in first.values() if c.cid in kept)
        if name not in caps:
            assert not capped, "a dialogue was dropped although it is the first copy and no cap applies"
        else:
            assert kept_chars <= caps[name], "a source holds more characters than its cap"
            assert not capped or kept_chars + max(c.chars for c in capped) > caps[name]
        earlier |= {c.key for c in first.values() if c.cid in kept}
    return fates


def quarantined_by_build(conv: Turns, max_chars: int) -> bool:
    """The build re-checks the turn-table rules with its own bound (build's max_turn_chars)."""
    return any(len(t) > max_chars for _, t in conv.messages) or len(conv.context or "") > max_chars


# ----------------------------------------------------------------------------- pipeline drivers


def normalize_all(root: Path, corpus: Corpus, order: dict[str, list[list[int]]] | None = None) -> dict:
    """normalize@<source> for every source, as stages/normalize.py does; returns the reports."""
    reports = {}
    for src in corpus.sources:
        result = normalize_rows(raw_frame(src, (order or {}).get(src.name)), max_turn_chars=NORM_MAX)
        write_outputs(result, src.name, root)
        reports[src.name] = result.report
    return reports


def build(root: Path, corpus: Corpus, variant: str, **cfg: Any) -> dict:
    return build_variant(root, corpus.names, corpus.registry, BuildConfig(variant=variant, **cfg)).stats


def read_split(root: Path, variant: str, split: str) -> pl.DataFrame:
    return pl.read_parquet(root / "data" / "dataset" / variant / f"{split}.parquet")


def split_of(root: Path, variant: str) -> dict[str, str]:
    return {
        cid: split
        for split in ("train", "val")
        for cid in read_split(root, variant, split)["conversation_id"]
    }


def dataset_files(root: Path, variant: str) -> dict[str, bytes]:
    d = root / "data" / "dataset" / variant
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: a function-scoped fixture is shared by every hypothesis example.
    with tempfile.TemporaryDirectory(prefix="nanochat-prop-") as d:
        yield Path(d)


# ----------------------------------------------------------------------------- 1. normalize


@PROPERTY
@given(corpora(), st.sampled_from([2, 3]))
def test_normalize_puts_every_row_in_exactly_one_place_and_loses_no_text(
    corpus: Corpus, min_turns: int
) -> None:
    """rows_read = kept + quarantined + filtered (per source and per contributed file); each input row
    is in the quarantine at most once, a skipped row never; the kept rows of each conversation are
    its turns (merging joins runs of one role with "\\n", so joining the turns gives the kept rows),
    within the bounds normalize was given."""
    for src in corpus.sources:
        raw = raw_frame(src)
        result = normalize_rows(raw, max_turn_chars=NORM_MAX, min_turns=min_turns)
        report, q = result.report, result.quarantine
        filtered = Counter(raw["filter"].drop_nulls().to_list())
        q_origins = q["origin"].to_list()
        skipped = set(raw.filter(pl.col("filter").is_not_null())["origin"])
        assert len(q_origins) == len(set(q_origins)), "a row was quarantined twice"
        assert set(q_origins) <= set(raw["origin"]) - skipped
        kept_rows = raw.filter(pl.col("filter").is_null() & ~pl.col("origin").is_in(q_origins))
        assert report["rows_read"] == raw.height
        assert report["rows_filtered"] == dict(filtered)
        assert report["rows_quarantined"] == q.height
        assert report["rows_kept"] == kept_rows.height
        assert report["rows_read"] == report["rows_kept"] + q.height + sum(filtered.values())
        assert report["turns_kept"] == result.turns.height
        for file in src.files if len(src.files) > 1 else []:
            mine = report["by_source"][file.source]
            assert mine["rows_read"] == raw.filter(pl.col("source") == file.source).height
            assert mine["rows_kept"] == kept_rows.filter(pl.col("source") == file.source).height
            assert mine["rows_read"] == mine["rows_kept"] + mine["rows_quarantined"] + sum(
                mine["rows_filtered"].values()
            )
        check_cuts(kept_rows["origin"].to_list(), q)
        # Text conservation: per conversation, kept rows (cleaned, upstream order) == its turns.
        kept_text: dict[str, list[str]] = defaultdict(list)
        for row in kept_rows.iter_rows(named=True):
            kept_text[f"{row['source']}:{row['conv_key']}"].append(clean(row["text"]))
        turns = result.turns.sort("conversation_id", "turn")
        got = {
            cid: "\n".join(part["text"])
            for (cid,), part in turns.group_by("conversation_id", maintain_order=True)
        }
        assert got == {cid: "\n".join(texts) for cid, texts in kept_text.items()}
        assert (result.turns["text"].str.len_chars() <= NORM_MAX).all()
        assert (result.turns["context"].str.len_chars().fill_null(0) <= NORM_MAX).all()
        assert (result.turns.group_by("conversation_id").len()["len"] >= min_turns).all()


# Quarantine checks that do not cut a conversation: an empty row (it carries nothing later turns could
# depend on), bot rows before the first human one, and the whole-conversation verdicts.
NON_BREAKING = {"text_present", "first_turn_human", "has_bot_turn", "min_turns", "conversation_broken"}


def check_cuts(kept: list[str], q: pl.DataFrame) -> None:
    """A bad row cuts its conversation (docs/contracts.md): no row after it is kept, and a row is
    quarantined as conversation_broken only in a conversation that has such a row."""
    position = lambda origin: tuple(origin.rsplit(":", 2))  # noqa: E731  (file source, conversation, row)
    first_break: dict[tuple[str, str], int] = {}
    for origin, check in q.select("origin", "check").iter_rows():
        source, conv, row = position(origin)
        if check not in NON_BREAKING:
            first_break[source, conv] = min(int(row), first_break.get((source, conv), 1 << 30))
    for origin in kept:
        source, conv, row = position(origin)
        assert int(row) < first_break.get((source, conv), 1 << 30), (
            f"{origin} kept after its conversation broke"
        )
    for origin in q.filter(pl.col("check") == "conversation_broken")["origin"]:
        assert position(origin)[:2] in first_break, f"{origin}: conversation_broken, but nothing broke it"


def test_unknown_roles_after_a_contributed_file_that_keeps_no_row_are_quarantined(tmp_path: Path) -> None:
    """Found by the property above: with a contributed file whose every row drops early (blank
    messages here; broken lines do the same) sorted before one with two messages of roles the format
    does not map, normalize crashed with a polars PanicException (`pl.format` over a column whose
    first chunk, that file's, a filter had emptied) instead of quarantining them as role_valid."""
    blank = [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}]
    tools = [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]
    tools += [{"role": "function", "content": "43"}, {"role": "assistant", "content": "ok"}]
    for stem, messages in (("a", blank), ("b", tools)):
        (tmp_path / f"{stem}.jsonl").write_text(json.dumps({"messages": messages}) + "\n")
        (tmp_path / f"{stem}.yaml").write_text("licence: MIT\ncommercial: true\ndescription: test\n")
    spec = SourceSpec("contrib", "contrib", "data/contrib", "contrib", "per-file", False)
    result = normalize_rows(contrib.read(tmp_path, spec, {}))
    assert result.report["quarantined_by_check"] == {
        "conversation_broken": 2,
        "role_valid": 2,
        "text_present": 2,
    }
    reasons = result.quarantine.filter(pl.col("check") == "role_valid")["reason"].to_list()
    assert reasons == [
        f"role '{r}' is not one this format maps to human or bot" for r in ("tool", "function")
    ]


# ----------------------------------------------------------------------------- 1-3. build


def check_reconciliation(root: Path, variant: str, stats: dict, convs: dict[str, Turns]) -> None:
    """stats.json's numbers are the row counts of the files written, and every row is accounted for."""
    d = root / "data" / "dataset" / variant
    assert json.loads((d / "stats.json").read_text()) == stats
    q = pl.read_parquet(d / "quarantine.parquet")
    for name, entry in stats["sources"].items():
        assert entry["reconciles"] is True
        assert entry["rows_read"] == sum(len(c.messages) for c in convs.values() if c.name == name)
        for split in ("train", "val"):
            mine = read_split(root, variant, split).filter(
                pl.col("conversation_id").is_in([c.cid for c in convs.values() if c.name == name])
            )
            assert entry["conversations"][split] == mine.height
            assert entry["turns"][split] == int(mine["messages"].list.len().sum())
            chars = sum(len(m["content"]) for ms in mine["messages"].to_list() for m in ms)
            assert entry["characters"][split] == chars
        q_rows = q.filter(pl.col("conversation_id").is_in([c.cid for c in convs.values() if c.name == name]))
        assert entry["rows_quarantined"] == q_rows.height
        assert entry["rows_kept"] == sum(entry["turns"].values())
        assert entry["rows_read"] == (
            entry["rows_kept"]
            + entry["rows_quarantined"]
            + sum(entry["rows_filtered"].values())
            + entry["duplicate_rows_removed"]
        )
    for key in ("rows_read", "rows_kept", "rows_quarantined", "duplicate_rows_removed"):
        assert stats["totals"][key] == sum(e[key] for e in stats["sources"].values())


def check_variant(
    root: Path,
    variant: str,
    stats: dict,
    convs: dict[str, Turns],
    cfg: dict[str, Any],
) -> dict[str, str]:
    """Every normalized conversation of the variant is in exactly one of train / val / quarantine /
    dropped (a duplicate of a copy kept before it, or past its source's cap), and stats.json counts
    each; no dialogue in both splits, nor two that open alike; returns conversation_id -> split."""
    check_reconciliation(root, variant, stats, convs)
    pool = [c for c in convs.values() if variant == "full" or c.eligible]
    quarantined = {c.cid for c in pool if quarantined_by_build(c, cfg["max_turn_chars"])}
    splits = split_of(root, variant)
    q = pl.read_parquet(root / "data" / "dataset" / variant / "quarantine.parquet")
    assert set(q["conversation_id"]) == quarantined
    assert not set(splits) & quarantined
    fates = expected_fates([c for c in pool if c.cid not in quarantined], set(splits), cfg.get("caps", {}))
    assert {cid for cid, fate in fates.items() if fate == "kept"} == set(splits)
    # What was written is the normalized conversation itself.
    for split in ("train", "val"):
        for row in read_split(root, variant, split).iter_rows(named=True):
            conv = convs[row["conversation_id"]]
            assert tuple((m["role"], m["content"]) for m in row["messages"]) == conv.messages
            assert (row["context"], row["source"]) == (conv.context, conv.source)
            assert row["commercial"] is conv.eligible
    for name, entry in stats["sources"].items():
        mine = [c for c in convs.values() if c.name == name]
        count = Counter(fates.get(c.cid) for c in mine)
        rows = Counter()
        for c in mine:
            rows[fates.get(c.cid, "not_commercial" if c not in pool else None)] += len(c.messages)
        assert entry["duplicates_removed"] == {
            "conversations": count["cross"] + count["within"],
            "within_source": count["within"],
            "cross_source": count["cross"],
        }
        assert entry["duplicate_rows_removed"] == rows["cross"] + rows["within"]
        assert entry["rows_filtered"] == {"not_commercial": rows["not_commercial"], "cap": rows["cap"]}
        assert entry["matches_normalize_report"] is True
    # 2. No dialogue (nor a dedup-equal one, nor one that opens alike) on both sides.
    by_key: dict[tuple, set[str]] = defaultdict(set)
    by_opening: dict[tuple, set[str]] = defaultdict(set)
    for cid, split in splits.items():
        by_key[convs[cid].key].add(split)
        by_opening[convs[cid].opening(cfg["split_opening_chars"])].add(split)
    assert all(len(s) == 1 for s in by_key.values()), "a dialogue was kept twice"
    assert all(len(s) == 1 for s in by_opening.values()), "conversations that open alike straddle the split"
    return splits


def sole_opening_of_its_split(splits: dict[str, str], convs: dict[str, Turns], cid: str, chars: int) -> bool:
    """True when `cid`'s opening is the only one in its split: the tiny-corpus rule may have moved it."""
    mine = splits[cid]
    return len({convs[c].opening(chars) for c, s in splits.items() if s == mine}) == 1


@PROPERTY
@given(
    corpora(),
    st.sampled_from([NORM_MAX, 30]),
    st.sampled_from([12, 100, 0]),
    st.sampled_from([0.5, 0.3, 0.0, 0.9]),
    st.sampled_from([7, 0, (1 << 64) - 1]),  # build.seed: [0, 2^64)
    # params.yaml build.caps: mostly none; a cap of 0 drops the whole source.
    st.sampled_from([{}, {}, {"alpha": 40}, {"beta": 8, "contrib": 40}, {"gamma": 0, "alpha": 60}]),
    st.sampled_from([16_000_000, 60]),  # build.part_chars: one write part, or several
)
def test_build_accounts_for_every_conversation_and_never_leaks(
    corpus: Corpus,
    max_chars: int,
    opening_chars: int,
    val_fraction: float,
    seed: int,
    caps: dict[str, int],
    part_chars: int,
) -> None:
    """Both variants, built from the normalized corpus with random build params: counts reconcile
    (1), nothing straddles the split (2), the commercial variant holds eligible sources only and
    keeps each shared conversation's split (3); then the text export and the token shards."""
    cfg = dict(
        val_fraction=val_fraction,
        seed=seed,
        split_opening_chars=opening_chars,
        max_turn_chars=max_chars,
        caps={k: v for k, v in caps.items() if k in corpus.names},
        part_chars=part_chars,
    )
    with workdir() as root:
        reports = normalize_all(root, corpus)
        convs = read_turn_tables(root, corpus)
        stats = build(root, corpus, "full", **cfg)
        assert {name: entry["normalize"] for name, entry in stats["sources"].items()} == reports
        full = check_variant(root, "full", stats, convs, cfg)
        comm = check_variant(root, "commercial", build(root, corpus, "commercial", **cfg), convs, cfg)
        # 3. The commercial variant: eligible sources only; a conversation in both variants sits in the
        # same split (the split is keyed on content, with one seed), unless the tiny-corpus rule moved it.
        assert all(convs[cid].eligible for cid in comm)
        for cid in set(full) & set(comm):
            if full[cid] != comm[cid]:
                assert sole_opening_of_its_split(
                    full, convs, cid, opening_chars
                ) or sole_opening_of_its_split(comm, convs, cid, opening_chars)
        if not cfg["caps"]:
            # Every full-variant conversation of an eligible source is in the commercial variant: a
            # copy that wins among all sources wins among the eligible ones. (Not the converse: a
            # dialogue that a non-commercial source holds first is that source's copy in full.)
            assert {cid for cid in full if convs[cid].eligible} <= set(comm)
        if val_fraction == 0:
            assert set(full.values()) <= {"train"}
        check_text_export(root, "full")
        check_tokens(root, "full")


def check_text_export(root: Path, variant: str) -> None:
    """text/<split>.txt reads back (parse_text) to exactly the parquet split, markers and all."""
    d = root / "data" / "dataset" / variant
    for split in ("train", "val"):
        rows = read_split(root, variant, split)
        want = [
            {"context": r["context"] or None, "messages": r["messages"]} for r in rows.iter_rows(named=True)
        ]
        assert parse_text((d / "text" / f"{split}.txt").read_text(encoding="utf-8")) == want


# ----------------------------------------------------------------------------- 5. tokenization


def check_tokens(root: Path, variant: str) -> None:
    """The shards (tokenize_dataset, the stage's path) hold each conversation as documented: one
    special id per marker the format places, none from marker text typed in a turn or persona; the
    text decodes back exactly; the loss mask covers bot text and the <endOfText> closing it."""
    out = root / "tokens"
    tokenize_dataset(
        root / "data" / "dataset" / variant, out, shard_tokens=4096, workers=0, batch_conversations=3
    )
    enc = get_encoding()
    for split in ("train", "val"):
        rows = read_split(root, variant, split).iter_rows(named=True)
        shards = TokenShards(out / split).iter_conversations()
        for row, (ids, mask) in zip(rows, shards, strict=True):
            ids = ids.tolist()
            messages = row["messages"]
            structure = [ENDOFTEXT_ID] + [
                t for m in messages for t in ((HUMAN_ID if m["role"] == "human" else BOT_ID), END_OF_TURN_ID)
            ]
            assert [i for i in ids if i in SPECIAL_IDS] == structure
            text = (
                "<|endoftext|>"
                + (row["context"] or "")
                + "".join(f"<{m['role']}>{m['content']}<endOfText>" for m in messages)
            )
            assert decode(ids) == text
            bot_tokens = sum(
                len(enc.encode_ordinary(m["content"])) + 1 for m in messages if m["role"] == "bot"
            )
            assert int(np.asarray(mask).sum()) == bot_tokens
            assert (ids, np.asarray(mask).tolist()) == render(messages, row["context"])


# Text as training data holds it: any characters but a lone surrogate (RawRows quarantines those).
typed_text = st.lists(
    st.one_of(st.sampled_from(PIECES + ["\x00", "\x07"]), st.text(max_size=5)), max_size=12
).map("".join)


@settings(PROPERTY, max_examples=200)  # no I/O: cheap
@given(
    st.lists(st.tuples(st.sampled_from(ROLES), typed_text), min_size=1, max_size=4), st.none() | typed_text
)
def test_marker_text_never_becomes_a_control_token(
    messages: list[tuple[str, str]], context: str | None
) -> None:
    """Any text a user types or a corpus holds, "<bot>" included, encodes to ordinary tokens only and
    decodes back exactly (after normalize's cleaning, as training text is)."""
    msgs = [{"role": r, "content": clean(t)} for r, t in messages]
    enc = get_encoding()
    for m in msgs:
        ids = enc.encode_ordinary(m["content"])
        assert not SPECIAL_IDS & set(ids)
        assert enc.decode(ids) == m["content"]
    ids, _ = render(msgs, context and clean(context), add_generation_prompt=True)
    specials = [i for i in ids if i in SPECIAL_IDS]
    roles = [HUMAN_ID if m["role"] == "human" else BOT_ID for m in msgs]
    assert specials == [ENDOFTEXT_ID, *[t for r in roles for t in (r, END_OF_TURN_ID)], BOT_ID]


# ----------------------------------------------------------------------------- 4. determinism


@settings(PROPERTY, max_examples=20)
@given(corpora(), st.randoms(use_true_random=False))
def test_build_is_deterministic_and_blind_to_input_order(corpus: Corpus, rnd: random.Random) -> None:
    """Same input -> byte-identical dataset. The input in another order (the conversations of each
    upstream file; then the rows of each turn table, a table whose order carries no meaning) -> the
    same split assignment and the same files, the quarantine's origins aside (they name table rows)."""
    cfg = dict(val_fraction=0.4, seed=11, split_opening_chars=12, part_chars=60, max_turn_chars=30)
    results = []
    for shuffle in (False, True):
        with workdir() as root:
            order = None
            if shuffle:
                order = {
                    s.name: [rnd.sample(range(len(f.convs)), len(f.convs)) for f in s.files]
                    for s in corpus.sources
                }
            normalize_all(root, corpus, order)
            for name in corpus.names if shuffle else []:
                # Through write_outputs, as a normalize that wrote its rows in another order would:
                # the report records the tables it goes with, and the build refuses any other.
                paths = output_paths(name, root)
                table = pl.read_parquet(paths["turns"])
                shuffled = table[rnd.sample(range(table.height), table.height)]
                report = json.loads(paths["report"].read_text(encoding="utf-8"))
                quarantine = pl.read_parquet(paths["quarantine"])
                write_outputs(NormalizeResult(shuffled, quarantine, report), name, root)
            build(root, corpus, "full", **cfg)
            first = dataset_files(root, "full")
            build(root, corpus, "full", **cfg)
            assert dataset_files(root, "full") == first, "a rebuild of the same input differs"
            q = pl.read_parquet(root / "data" / "dataset" / "full" / "quarantine.parquet")
            results.append((split_of(root, "full"), first, q.drop("origin").sort(pl.all())))
    (split_a, files_a, q_a), (split_b, files_b, q_b) = results
    assert split_a == split_b
    assert q_a.equals(q_b)
    files_a.pop("quarantine.parquet"), files_b.pop("quarantine.parquet")
    assert files_a == files_b
