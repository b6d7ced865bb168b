"""build@<variant>: the validated turn tables of every enabled source -> one leak-free dataset.

The seed project's dataset leaked: val files were byte copies of train files, and the
"commercial" subset held non-commercial conversations. Here each of those is made impossible
by construction and then checked again before anything is written:

1. plan (one streaming pass, no text kept): every row is re-validated against the turn-table
   rules (pipeline.schema) and reduced to one row per conversation: its size, the first rule it
   breaks, whether it may enter the commercial variant, a 128-bit dedup key (pipeline.dedup)
   and the key of its opening (pipeline.split). The eager conversation table then decides each conversation's fate:
   filtered (not commercial), quarantined (whole conversation, with the check), then source by
   source in order: duplicate (of a copy kept earlier in a fixed order) or filtered (over the
   source's cap; caps count only what a source adds, see `dedup_and_cap`), else kept in
   train/val by a seeded hash of its opening (pipeline.split): duplicates, and conversations
   that open alike, share it, so they can never straddle.
2. write (a second streaming pass): every row the variant may hold is sunk into one of N
   scratch parts by a hash of its conversation (no join: a streaming join held far more memory);
   each part (~16M characters) is joined to its conversations' fate in memory, grouped into one
   conversation per row, checked (commercial purity, counts) and appended to train/val
   (pipeline.datasetformat). Peak memory is set by the part size, not the corpus size.
   Each part's kept turns also feed the leak audit (pipeline.split.LeakAudit): 64-bit hashes of
   their folded text, no text, so that stats.json can say how much val text is also a train turn.

Everything goes into a temporary directory that replaces data/dataset/<variant>/ only when
every check passed, so a refused build leaves nothing behind. Rows read = rows kept + rows
quarantined + rows filtered + duplicate rows, per source, checked against the files' own row
counts (stats.json).

What a build reads (params, the enabled sources) and the names its parts share are in
pipeline/buildinputs.py; what it reports (stats.json, metrics.json, the dataset card) is
pipeline/buildstats.py, and the licence notices beside the card (NOTICE.md) pipeline/notices.py.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import atomic, dedup, split
from pipeline.buildinputs import (
    CAPPED,
    DUPLICATE,
    KEPT,
    NOT_COMMERCIAL,
    QUARANTINED,
    SPLITS,
    VARIANTS,
    BuildConfig,
    BuildError,
    CommercialLeakError,
    SourceInput,
    resolve_sources,
)
from pipeline.buildstats import card_sources, compute_stats, summary_metrics, write_cards
from pipeline.datasetformat import SplitWriter, assemble_conversations
from pipeline.notices import write_notice
from pipeline.schema import (
    CONTROL_CHECKS,
    QUARANTINE_SCHEMA,
    TURN_SCHEMA,
    commercial_ok,
    first_control_char,
    frame_rules,
    row_violations,
)
from pipeline.sources import licences

# A failing row is encoded as (turn + 1) * _CODE_BASE + check index, so that the conversation's
# first failing turn and its check survive a streaming `min` aggregation.
_CODE_BASE = 64
_PART_SEED = 0x7061_7274
# Small row groups in the scratch parts: the partitioned sink buffers one per open part.
_SCRATCH_ROW_GROUP = 20_000
# What the write pass reports back: per source file (rank), row source, terms and split.
_WRITTEN_SCHEMA: dict[str, pl.DataType] = {
    "rank": pl.Int32(),
    "source": pl.String(),
    "licence": pl.String(),
    "commercial": pl.Boolean(),
    "split": pl.String(),
    "conversations": pl.UInt32(),
    "turns": pl.UInt32(),
    "characters": pl.UInt64(),
}


@dataclass
class BuildResult:
    out_dir: Path
    stats: dict[str, Any]
    timings: dict[str, float]


# ----------------------------------------------------------------------------- inputs


def _input_columns(src: SourceInput) -> list[pl.Expr]:
    """The turn columns of `src`, cast where lossless; a wrong file is one clear error."""
    schema = pl.scan_parquet(src.path, glob=False).collect_schema()
    exprs = []
    for name, dtype in TURN_SCHEMA.items():
        if name not in schema:
            raise BuildError(f"{src.display}: column '{name}' is missing (turn table, pipeline/schema.py)")
        have = schema[name]
        castable = have == dtype or have == pl.Null or (name == "turn" and have.is_integer())
        if not castable:
            raise BuildError(f"{src.display}: column '{name}' is {have}, expected {dtype}")
        exprs.append(pl.col(name).cast(dtype, strict=False) if have != dtype else pl.col(name))
    return exprs


def belongs_expr(src: SourceInput) -> pl.Expr:
    """True where a row's `source` is this registry entry's (`<name>`, or `<name>/<file>` for a
    contributed table); false where it names another source or none."""
    source = pl.col("source")
    belongs = source.str.starts_with(f"{src.name}/") if src.contrib else source == src.name
    return belongs.fill_null(False)


def row_checks(src: SourceInput, max_chars: int) -> list[tuple[str, pl.Expr, str]]:
    """The turn table's row rules plus: the row's source belongs to this registry entry."""
    expected = f"'{src.name}/<file>'" if src.contrib else f"'{src.name}'"
    return [
        *row_violations(max_chars),
        ("source_registered", ~belongs_expr(src), f"source must be {expected} in {src.display}"),
    ]


def warn_licences_kept_out(sources: list[SourceInput]) -> list[str]:
    """Say which sources (or contributed files) claim commercial use under a licence that keeps them
    out of the commercial variant (unknown, or one that forbids it); returns the messages (printed
    to stderr)."""
    messages = []
    for src in sources:
        if src.contrib:
            # each file's terms are its rows' own: the ones commercial_ok leaves out despite the flag
            files = (
                pl.scan_parquet(src.path, glob=False)
                .filter(pl.col("commercial").fill_null(False) & ~commercial_ok())
                .select("source", "licence")
                .unique()
                .sort("source", "licence")
                .collect()
                .iter_rows()
            )
            messages += [_kept_out(name, licence or "", contributed=True) for name, licence in files]
        elif src.commercial and not src.commercial_eligible:
            messages.append(_kept_out(src.name, src.licence, contributed=False))
    for message in messages:
        print(message, file=sys.stderr)
    return messages


def _kept_out(name: str, licence: str, *, contributed: bool) -> str:
    """The warning for flagged data its licence keeps out (licences.licence_bar's two cases), told
    where its terms are stated: a contributed file's sidecar, or a registry entry's sources.yaml."""
    where = "the sidecar" if contributed else "sources.yaml"
    bar = licences.licence_bar(licence)
    if (
        bar is not None and not bar.unknown
    ):  # the licence forbids it (a part of an AND, every alternative of an OR)
        return (
            f"build: {name}: licence {licence!r} forbids commercial use, so it stays out of the "
            f"commercial variant despite `commercial: true` (set `commercial: false` in {where})"
        )
    if contributed:
        return (
            f"build: {name}: licence unknown, so it stays out of the commercial variant despite "
            "`commercial: true` (name its licence in the sidecar)"
        )
    return (
        f"build: {name}: licence {licence!r} is not known, so it stays out of the "
        f"commercial variant despite `commercial: true` (name its licence in {where})"
    )


def scan_source(src: SourceInput, cfg: BuildConfig) -> pl.LazyFrame:
    """The source's rows with registry terms applied, row index, rank and `_code` (first failing check).

    The registry is authoritative for licence/commercial (flipping a flag re-runs only build);
    contributed files keep each row's own terms. `commercial` becomes the row's eligibility for the
    commercial variant (flagged, under a known licence that allows it, and the row's source this
    entry's own).
    """
    lf = pl.scan_parquet(src.path, glob=False).select(_input_columns(src)).with_row_index("row")
    if not src.contrib:
        lf = lf.with_columns(licence=pl.lit(src.licence), commercial=pl.lit(src.commercial))
    # A row naming another source (or none) has no established terms: the registry's (or its
    # sidecar's) are this entry's, and the row says it is not this entry's. Quarantined in the full
    # variant (source_registered), it stays out of the commercial one, whose quarantine.parquet
    # ships in the folder too: it held such rows, labelled as the non-commercial source they named.
    terms_ok = pl.lit(src.commercial_eligible) if not src.contrib else commercial_ok()
    eligible = terms_ok & belongs_expr(src)
    # In the datasets `commercial` says what the commercial variant does with the row: a flag
    # under an unknown licence stays out of it, so such rows say false in the full variant too.
    # (A missing flag stays missing: the row checks quarantine it as `commercial_present`.)
    lf = lf.with_columns(commercial=pl.when(pl.col("commercial").is_null()).then(None).otherwise(eligible))
    turn_code = (pl.col("turn").cast(pl.Int64).clip(lower_bound=-1).fill_null(-1) + 1) * _CODE_BASE
    failing = [
        pl.when(bad.fill_null(False)).then(turn_code + i)
        for i, (_, bad, _) in enumerate(row_checks(src, cfg.max_turn_chars))
    ]
    return lf.with_columns(
        rank=pl.lit(src.rank, dtype=pl.Int32),
        _code=pl.coalesce(failing),
        _eligible=eligible,
    )


# ----------------------------------------------------------------------------- plan


def eligible_expr(variant: str, column: str = "eligible") -> pl.Expr:
    """Which conversations (or rows) a variant may hold, before validation, dedup and caps."""
    return pl.col(column) if variant == "commercial" else pl.lit(True)


def plan_conversations(sources: Sequence[SourceInput], cfg: BuildConfig) -> pl.DataFrame:
    """One row per (source, conversation_id): size, checks, dedup and opening keys, status, split, part."""
    frames = [
        scan_source(src, cfg)
        .with_columns(dedup.folded_text(), chars=pl.col("text").str.len_chars().fill_null(0))
        .with_columns(*dedup.row_key_hashes(), _fchars=pl.col("_folded").str.len_chars())
        .drop("text", "_folded")
        for src in sources
    ]
    rules = frame_rules()
    per_conversation = (
        pl.concat(frames, how="vertical")
        .group_by("rank", "conversation_id")
        .agg(
            pl.len().alias("n_rows"),
            pl.col("chars").sum(),
            pl.col("_code").min().alias("code"),
            pl.col("_eligible").all().alias("eligible"),
            # Conversation-wide values (consistent in every kept conversation: a frame rule).
            pl.col("source").min(),
            pl.col("licence").min(),
            pl.col("commercial").min(),
            *[ok.fill_null(False).alias(f"ok_{name}") for name, ok, _ in rules],
            *dedup.conversation_key_aggs(),
            split.opening_key_agg(cfg.split_opening_chars),
        )
        .collect(engine="streaming")
    )
    return decide(per_conversation, sources, cfg)


def _quarantine_columns(sources: Sequence[SourceInput], cfg: BuildConfig) -> list[pl.Expr]:
    """`check` and `reason` for each conversation: its first failing row, else frame rule."""
    generic = row_violations(cfg.max_turn_chars)
    names = [name for name, _, _ in generic] + ["source_registered"]
    idx = (pl.col("code") % _CODE_BASE).cast(pl.Int32)
    turn = pl.col("code") // _CODE_BASE - 1
    # Only source_registered (the last row check) words its reason per source.
    registered = {src.rank: row_checks(src, cfg.max_turn_chars)[-1][2] for src in sources}
    row_reason = (
        pl.when(idx == len(generic))
        .then(pl.col("rank").replace_strict(registered, default=None, return_dtype=pl.String))
        .otherwise(
            idx.replace_strict(
                dict(enumerate(r for _, _, r in generic)), default=None, return_dtype=pl.String
            )
        )
    )
    check = pl.when(pl.col("code").is_not_null()).then(
        idx.replace_strict(dict(enumerate(names)), default=None, return_dtype=pl.String)
    )
    where = pl.when(turn >= 0).then(pl.concat_str(pl.lit("turn "), turn.cast(pl.String), pl.lit(": ")))
    reason = pl.when(pl.col("code").is_not_null()).then(
        pl.concat_str(where.otherwise(pl.lit("")), row_reason)
    )
    for name, _, why in frame_rules():
        failed = ~pl.col(f"ok_{name}")
        check = check.when(failed).then(pl.lit(name))
        reason = reason.when(failed).then(pl.lit(why))
    cross_file = pl.col("rank").n_unique().over("conversation_id") > 1
    check = check.when(cross_file).then(pl.lit("conversation_id_unique"))
    reason = reason.when(cross_file).then(pl.lit("conversation_id is used by more than one source"))
    return [check.alias("check"), reason.alias("reason")]


def decide(conv: pl.DataFrame, sources: Sequence[SourceInput], cfg: BuildConfig) -> pl.DataFrame:
    """Give every conversation its status (and split/part/order when kept).

    In this order: not in the variant (not_commercial), quarantined, then per source the cap and
    dedup together (`dedup_and_cap`), then the split of what is kept. Filtered and quarantined
    conversations never count against a cap nor make another copy a duplicate.
    """
    conv = conv.with_columns(_quarantine_columns(sources, cfg))
    status = (
        pl.when(~eligible_expr(cfg.variant))
        .then(pl.lit(NOT_COMMERCIAL))
        .when(pl.col("check").is_not_null())
        .then(pl.lit(QUARANTINED))
    )
    conv = conv.with_columns(status=status)
    ranks = {src.name: src.rank for src in sources}
    unknown = sorted(set(cfg.caps) - set(ranks))
    if unknown:
        raise BuildError(f"params.yaml build.caps: {', '.join(unknown)} not among the enabled sources")
    settled = conv.filter(pl.col("status").is_not_null())
    candidates = conv.filter(pl.col("status").is_null()).with_columns(
        split_u=split.split_hash(cfg.seed), order_h=split.order_hash(cfg.seed)
    )
    caps = {ranks[n]: c for n, c in cfg.caps.items()}
    fated = dedup_and_cap(candidates, caps)
    others = _other_variants_kept(conv, cfg, caps, candidates.height)
    kept = split.assign_split(fated.filter(pl.col("status") == KEPT), cfg.val_fraction, others)
    return pl.concat(
        [settled, fated.filter(pl.col("status") != KEPT), kept], how="diagonal_relaxed"
    ).with_columns(
        cross_source_duplicate=(pl.col("status") == DUPLICATE) & (pl.col("first_rank") != pl.col("rank")),
        part=part_expr(count_parts(conv, cfg)),
    )


def _other_variants_kept(
    conv: pl.DataFrame, cfg: BuildConfig, caps: Mapping[int, int], own: int
) -> list[pl.Series]:
    """The split hashes (`split_u`) of what each other variant keeps, for split.assign_split: a
    tiny variant's split moves are made in both, so no conversation is train in one variant and
    val in the other. A variant of the same conversations (every one commercial) keeps the same:
    `own` is how many candidates this variant has (decide's, valid and in the variant), compared
    with each other variant's.

    Without caps, the hashes a variant keeps are those of its candidates: a duplicate has the
    opening of the copy kept, so dedup drops no hash. A cap can, so then dedup and caps are run."""
    valid = conv.filter(pl.col("check").is_null())
    out = []
    for variant in VARIANTS:
        candidates = valid.filter(eligible_expr(variant))
        if variant == cfg.variant or candidates.height == own:
            continue
        candidates = candidates.select(
            "rank", "conversation_id", *dedup.KEY_COLUMNS, "chars", split_u=split.split_hash(cfg.seed)
        )
        if caps:
            candidates = dedup_and_cap(
                candidates.with_columns(order_h=split.order_hash(cfg.seed)), caps
            ).filter(pl.col("status") == KEPT)
        out.append(candidates["split_u"])
    return out


def dedup_and_cap(candidates: pl.DataFrame, caps: Mapping[int, int]) -> pl.DataFrame:
    """Status KEPT, DUPLICATE or CAPPED (and `first_rank`, the rank of the kept copy) for each candidate.

    Sources are walked in rank order (the dedup "first wins" order); each one, in turn:

    1. its copies of a dialogue an earlier source kept are duplicates (cross-source);
    2. of the dialogues left, the first copy by conversation_id stands for the dialogue and
       every later copy in the source is a duplicate of it (within-source);
    3. the cap, if any, walks those first copies in `order_h` order (split.apply_caps) and
       filters the ones past it, together with their within-source copies: the dialogue is
       what the cap dropped, so its copies are counted as capped, not as duplicates.

    So a cap bounds the characters a source adds to the dataset: only its distinct dialogues
    that no earlier source kept count against it, and none of its duplicates do. A source is
    capped before a later source is deduplicated against it: a dialogue an earlier source
    dropped by its cap is still kept from a later source that holds it (within that source's
    own cap). The invariant: every duplicate has its kept copy in the dataset, so no dialogue
    is lost by being both capped in one source and a duplicate in another. Without caps this is
    one dedup over all sources in (rank, conversation_id) order.
    """
    keys = list(dedup.KEY_COLUMNS)
    kept_keys = pl.DataFrame(
        schema={**candidates.select(keys).schema, "first_rank": candidates.schema["rank"]}
    )
    out = []
    for rank in sorted(candidates["rank"].unique().to_list()):
        # kept_keys holds each key once (new keys only below), so the join adds no rows.
        mine = candidates.filter(pl.col("rank") == rank).join(kept_keys, on=keys, how="left")
        earlier = mine.filter(pl.col("first_rank").is_not_null())
        new = dedup.mark_duplicates(
            mine.filter(pl.col("first_rank").is_null()).drop("first_rank"), ["rank", "conversation_id"]
        )
        firsts = split.apply_caps(
            new.filter(~pl.col("duplicate")), {rank: caps[rank]} if rank in caps else {}
        )
        new = new.join(firsts.select(*keys, "capped"), on=keys, how="left", maintain_order="left")
        status = (
            pl.when(pl.col("capped"))
            .then(pl.lit(CAPPED))
            .when(pl.col("duplicate"))
            .then(pl.lit(DUPLICATE))
            .otherwise(pl.lit(KEPT))
        )
        new = new.with_columns(status=status).drop("duplicate", "capped")
        out += [earlier.sort("conversation_id").with_columns(status=pl.lit(DUPLICATE)), new]
        kept_keys = pl.concat([kept_keys, new.filter(pl.col("status") == KEPT).select(*keys, "first_rank")])
    if not out:  # no candidate at all: an empty frame with the columns the plan expects
        return candidates.with_columns(first_rank=pl.col("rank"), status=pl.lit(KEPT))
    return pl.concat(out, how="vertical")


def count_parts(conv: pl.DataFrame, cfg: BuildConfig) -> int:
    """How many parts the write pass uses: enough that each holds ~cfg.part_chars of text."""
    chars = int(conv.filter(eligible_expr(cfg.variant))["chars"].sum() or 0)
    return max(1, math.ceil(chars / cfg.part_chars))


def part_expr(n_parts: int) -> pl.Expr:
    """The write part of a conversation's rows: a hash of (rank, conversation_id).

    Computable on a row alone, so the second pass routes rows without a join (a streaming join
    against the plan held several times the memory of the plan itself).
    """
    if n_parts == 1:
        return pl.lit(0, dtype=pl.Int32)
    key = pl.struct(pl.col("rank").cast(pl.Int32), pl.col("conversation_id").cast(pl.String))
    return (key.hash(_PART_SEED) % n_parts).cast(pl.Int32)


# ----------------------------------------------------------------------------- commercial guard


def assert_commercial_pure(frame: pl.DataFrame, sources: Sequence[SourceInput]) -> None:
    """Raise CommercialLeakError unless every row of `frame` may train a commercial model.

    Independent of the filter that selects the variant: it re-derives the answer from the
    registry (registry sources) and from each row's own licence and flag (contributed files).
    """
    allowed = [s.name for s in sources if not s.contrib and s.commercial_eligible]
    contrib = [f"{s.name}/" for s in sources if s.contrib]
    from_contrib = pl.lit(False)
    for prefix in contrib:
        from_contrib = from_contrib | pl.col("source").str.starts_with(prefix)
    ok = (pl.col("source").is_in(allowed) & pl.col("commercial").fill_null(False)) | (
        from_contrib & commercial_ok()
    )
    bad = frame.filter(~ok.fill_null(False))
    if bad.height:
        first = bad.row(0, named=True)
        raise CommercialLeakError(
            f"refusing to write the commercial variant: {bad.height} conversation(s) from "
            f"non-commercial or unknown-licence sources, e.g. {first.get('conversation_id')!r} "
            f"(source {first.get('source')!r}, licence {first.get('licence')!r}, "
            f"commercial {first.get('commercial')!r}); nothing was written"
        )


# ----------------------------------------------------------------------------- write


def _partition_rows(sources: Sequence[SourceInput], cfg: BuildConfig, n_parts: int, scratch: Path) -> None:
    """Second streaming pass: every row the variant may hold, sunk into its part."""
    rows = pl.concat([scan_source(src, cfg) for src in sources], how="vertical")
    (
        rows.filter(eligible_expr(cfg.variant, "_eligible"))
        .drop("_code", "_eligible")
        .with_columns(part=part_expr(n_parts))
        .sink_parquet(
            pl.PartitionBy(scratch / "rows", key="part", include_key=False),
            mkdir=True,
            engine="streaming",
            row_group_size=_SCRATCH_ROW_GROUP,
        )
    )


def _quarantine_rows(rows: pl.DataFrame, sources: Sequence[SourceInput]) -> pl.DataFrame:
    """Rows of quarantined conversations in QUARANTINE_SCHEMA; origin = normalized file:row."""
    display = {src.rank: src.display for src in sources}
    origin = pl.concat_str(
        pl.col("rank").replace_strict(display, return_dtype=pl.String),
        pl.lit(":row "),
        pl.col("row").cast(pl.String),
    )
    return (
        _name_control_chars(rows)
        .with_columns(origin=origin)
        .select("rank", "row", *[pl.col(c).cast(t) for c, t in QUARANTINE_SCHEMA.items()])
    )


def _name_control_chars(rows: pl.DataFrame) -> pl.DataFrame:
    """A control-character quarantine's reason with the first such character and where, as
    normalize's says (schema.first_control_char): "turn 1: text holds control characters (the first,
    U+0007, at character 5)"; the row says its conversation_id. The plan keeps no text (it reads the
    corpus in one streaming pass), so its reason names the turn only; the rows quarantined, text
    and all, are at hand here. `code` (the first failing row, as the plan encodes it) says which."""
    failing = (
        rows.filter(
            pl.col("check").is_in(list(CONTROL_CHECKS)) & (pl.col("turn") == pl.col("code") // _CODE_BASE - 1)
        )
        .sort("row")
        .unique(["rank", "conversation_id"], keep="first", maintain_order=True)
    )
    if not failing.height:
        return rows
    named = pl.DataFrame(
        {
            "rank": failing["rank"],
            "conversation_id": failing["conversation_id"],
            "_named": [
                first_control_char(row[CONTROL_CHECKS[row["check"]]], row["reason"])
                for row in failing.iter_rows(named=True)
            ],
        },
        schema_overrides={"_named": pl.String},
    )
    return (
        rows.join(named, on=["rank", "conversation_id"], how="left", nulls_equal=True, maintain_order="left")
        .with_columns(reason=pl.coalesce("_named", "reason"))
        .drop("_named")
    )


def _write_parts(
    plan: pl.DataFrame,
    sources: Sequence[SourceInput],
    cfg: BuildConfig,
    n_parts: int,
    scratch: Path,
    tmp: Path,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Assemble, check and append each part; return what was written and quarantined.

    Returns (_WRITTEN_SCHEMA counts, quarantined rows per rank, the leak audit: split.LeakAudit).
    """
    fate = plan.filter(pl.col("status").is_in([KEPT, QUARANTINED])).select(
        "rank", "conversation_id", "part", "status", "split", "order_h", "check", "reason", "code"
    )
    (tmp / "text").mkdir()  # DVC tracks text/ as an out: it exists (empty) even without export_text
    counts, quarantined = [], []
    audit = split.LeakAudit(cfg.split_opening_chars)
    with contextlib.ExitStack() as stack:
        writers = {}
        for name in SPLITS:
            writers[name] = SplitWriter(tmp, name, cfg.export_text)
            stack.callback(writers[name].close)
        for part in range(n_parts):
            files = sorted((scratch / "rows" / f"part={part}").glob("*.parquet"))
            if not files:
                continue
            rows = pl.read_parquet(files, glob=False).join(
                fate.filter(pl.col("part") == part).drop("part"),
                on=["rank", "conversation_id"],
                how="inner",
                nulls_equal=True,
            )
            bad = _quarantine_rows(rows.filter(pl.col("status") == QUARANTINED), sources)
            if bad.height:
                bad.write_parquet(scratch / "quarantine" / f"{part:05d}.parquet", mkdir=True)
                quarantined.append(bad.group_by("rank").agg(rows=pl.len()))
            kept = rows.filter(pl.col("status") == KEPT)
            del rows
            audit.add(kept)  # its text hashes only: the rows are already in memory for the part
            convs = assemble_conversations(kept)
            del kept
            if cfg.variant == "commercial":
                assert_commercial_pure(convs, sources)  # the rows actually about to be written
            for name, writer in writers.items():
                out = convs.filter(pl.col("split") == name)
                if out.height:
                    writer.append(out)
            counts.append(
                convs.group_by("rank", "source", "licence", "commercial", "split").agg(
                    conversations=pl.len(),
                    turns=pl.col("messages").list.len().sum(),
                    characters=pl.col("chars").sum(),
                )
            )
    _write_quarantine(scratch, tmp)
    written = (
        pl.concat([c.cast(_WRITTEN_SCHEMA) for c in counts])
        if counts
        else pl.DataFrame(schema=_WRITTEN_SCHEMA)
    )
    q_schema = {"rank": pl.Int32, "rows": pl.UInt32}
    q_counts = (
        pl.concat([q.cast(q_schema) for q in quarantined]) if quarantined else pl.DataFrame(schema=q_schema)
    )
    return written, q_counts, audit.result()


def _write_quarantine(scratch: Path, tmp: Path) -> None:
    """quarantine.parquet: every quarantined row, in input order (source rank, row)."""
    files = sorted((scratch / "quarantine").glob("*.parquet"))
    target = tmp / "quarantine.parquet"
    if not files:
        pl.DataFrame(schema=QUARANTINE_SCHEMA).write_parquet(target)
        return
    pl.scan_parquet(files, glob=False).sort("rank", "row").drop("rank", "row").sink_parquet(
        target, engine="streaming"
    )


# ----------------------------------------------------------------------------- entry point


def build_variant(
    root: Path, names: Sequence[str], registry: Mapping[str, Any], cfg: BuildConfig
) -> BuildResult:
    """Build data/dataset/<variant>/ under `root` (atomically, as a whole directory)."""
    if cfg.variant not in VARIANTS:
        raise BuildError(f"unknown variant {cfg.variant!r} (expected one of {', '.join(VARIANTS)})")
    split.val_threshold(cfg.val_fraction)  # validates the fraction before any work
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    sources = resolve_sources(root, names, registry)
    if cfg.variant == "commercial":
        warn_licences_kept_out(sources)
    file_rows = {
        src.rank: pl.scan_parquet(src.path, glob=False).select(pl.len()).collect().item() for src in sources
    }
    plan = plan_conversations(sources, cfg)
    lap("plan")
    kept = plan.filter(pl.col("status") == KEPT)
    if cfg.variant == "commercial":
        assert_commercial_pure(kept, sources)  # before a single byte is written
    out_dir = root / "data" / "dataset" / cfg.variant
    atomic.remove_stale(out_dir)  # a killed build's whole dataset copy
    with atomic.atomic_dir(out_dir) as tmp:
        scratch = tmp / "_scratch"
        n_parts = count_parts(plan, cfg)
        _partition_rows(sources, cfg, n_parts, scratch)
        lap("partition")
        written, quarantined, leak_audit = _write_parts(plan, sources, cfg, n_parts, scratch, tmp)
        lap("assemble")
        # No row at all may enter the variant (a commercial variant of NC sources only, an empty
        # table): then the partitioned sink wrote nothing, not even the scratch directory.
        shutil.rmtree(scratch, ignore_errors=True)
        stats = compute_stats(plan, written, quarantined, file_rows, sources, cfg, leak_audit)
        if not sum(stats["totals"]["conversations"].values()):
            print(
                f"build: warning: the {cfg.variant} variant holds no conversations "
                f"(see data/dataset/{cfg.variant}/stats.json for where every row went)",
                file=sys.stderr,
            )
        atomic.write_json(tmp / "stats.json", stats)
        atomic.write_json(tmp / "metrics.json", summary_metrics(stats))
        write_cards(tmp, cfg.variant, stats, sources)
        write_notice(tmp, root, cfg.variant, stats, card_sources(stats, sources))  # from data/raw's records
        lap("finalize")
    return BuildResult(out_dir=out_dir, stats=stats, timings=timings)
