"""What a build reports: stats.json (every row of every source accounted for, checked to
reconcile), metrics.json (its totals, DVC's metric) and the dataset card (pipeline.datasetcard).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import cards, datasetcard
from pipeline.buildinputs import (
    CAPPED,
    DUPLICATE,
    KEPT,
    NOT_COMMERCIAL,
    QUARANTINED,
    SPLITS,
    BuildConfig,
    BuildError,
    SourceInput,
)


def _split_counts(frame: pl.DataFrame, rank: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {
        k: dict.fromkeys(SPLITS, 0) for k in ("conversations", "turns", "characters")
    }
    for row in frame.filter(pl.col("rank") == rank).iter_rows(named=True):
        for key, by_split in out.items():
            by_split[row["split"]] += int(row[key])
    return out


def compute_stats(
    plan: pl.DataFrame,
    written: pl.DataFrame,
    quarantined: pl.DataFrame,
    file_rows: Mapping[int, int],
    sources: Sequence[SourceInput],
    cfg: BuildConfig,
    leak_audit: Mapping[str, Any],
) -> dict[str, Any]:
    """stats.json: per source and in total; raises BuildError if any count fails to reconcile.

    `leak_audit` (pipeline.split.LeakAudit.result) is a figure of the whole variant, not a sum
    over sources: it goes into the totals as it is.
    """
    per_source: dict[str, Any] = {}
    for src in sources:
        mine = plan.filter(pl.col("rank") == src.rank)

        def rows_where(cond: pl.Expr, mine: pl.DataFrame = mine) -> int:
            return int(mine.filter(cond)["n_rows"].sum() or 0)

        by_check = mine.filter(pl.col("status") == QUARANTINED).group_by("check").agg(pl.col("n_rows").sum())
        dups = mine.filter(pl.col("status") == DUPLICATE)
        counts = _split_counts(written, src.rank)
        kept_rows = sum(counts["turns"].values())
        q_rows = int(quarantined.filter(pl.col("rank") == src.rank)["rows"].sum() or 0)
        filtered = {reason: rows_where(pl.col("status") == reason) for reason in (NOT_COMMERCIAL, CAPPED)}
        dup_rows = int(dups["n_rows"].sum() or 0)
        rows_read = file_rows[src.rank]
        entry: dict[str, Any] = {
            "kind": src.kind,
            "licence": src.licence,
            "commercial": src.commercial,
            "rows_read": rows_read,
            "rows_kept": kept_rows,
            "rows_quarantined": q_rows,
            "quarantined_by_check": dict(
                sorted(zip(by_check["check"], map(int, by_check["n_rows"]), strict=True))
            ),
            "rows_filtered": filtered,
            "duplicate_rows_removed": dup_rows,
            "duplicates_removed": {
                "conversations": dups.height,
                "within_source": int((~dups["cross_source_duplicate"]).sum()),
                "cross_source": int(dups["cross_source_duplicate"].sum()),
            },
            **counts,
            "normalize": src.report,
        }
        if src.commercial_reason:
            entry["commercial_reason"] = src.commercial_reason
        planned = (rows_where(pl.col("status") == KEPT), rows_where(pl.col("status") == QUARANTINED))
        accounted = kept_rows + q_rows + sum(filtered.values()) + dup_rows
        if rows_read != accounted or planned != (kept_rows, q_rows):
            raise BuildError(
                f"{src.display}: counts do not reconcile: read {rows_read} rows, accounted for "
                f"{accounted} (kept {kept_rows}, quarantined {q_rows}, filtered "
                f"{sum(filtered.values())}, duplicates {dup_rows})"
            )
        entry["reconciles"] = True
        # normalize counts upstream rows; its `turns_kept` is the number of rows it wrote.
        reported = (src.report or {}).get("turns_kept", (src.report or {}).get("rows_kept"))
        if reported is not None:
            entry["matches_normalize_report"] = reported == rows_read
            if reported != rows_read:
                print(
                    f"build: warning: {src.display} has {rows_read} rows but its report says "
                    f"{reported} (stale report?)",
                    file=sys.stderr,
                )
        if src.contrib:
            entry["parts"] = parts = _contrib_parts(written, mine, src)
            # The registry's flag for data/contrib is a placeholder (each file has its own terms):
            # recorded as it stood, the commercial variant listed a non-commercial source holding
            # rows. What its rows here are: commercial when every file that gave some is.
            giving = [part for part in parts.values() if sum(part["conversations"].values())]
            entry["commercial"] = bool(giving) and all(part["commercial"] for part in giving)
        per_source[src.name] = entry
    return {
        "variant": cfg.variant,
        "params": {
            "val_fraction": cfg.val_fraction,
            "seed": cfg.seed,
            "split_opening_chars": cfg.split_opening_chars,
            "caps": dict(cfg.caps),
        },
        "sources": per_source,
        "totals": {**_totals(per_source.values()), "leak_audit": dict(leak_audit)},
    }


def _contrib_parts(parts: pl.DataFrame, plan: pl.DataFrame, src: SourceInput) -> dict[str, Any]:
    """Per contributed file (row source): its own licence terms and what it contributed.

    Every file is listed, also one with nothing in this variant (non-commercial terms in the
    commercial variant, every conversation quarantined here or every row at normalize): the dataset
    card names it among what was left out. `plan` is this source's conversations; a file's terms
    come from what was written, else from its planned conversations, else from the normalize report.
    Its sidecar's `description` and `attribution` come from the report alone (rows do not carry
    them), and are left out when the report has none for it (a sidecar without the field, or a
    report written before it was recorded): the card then describes the file by its location only.
    """
    out: dict[str, Any] = {}
    mine = parts.filter(pl.col("rank") == src.rank)
    planned = (
        plan.filter(pl.col("source").str.starts_with(f"{src.name}/"))
        .group_by("source")
        .agg(
            pl.col("licence").drop_nulls().mode().sort().first(), pl.col("commercial").fill_null(False).all()
        )
    )
    # A file whose every row normalize quarantined or filtered is in no table, only in its report.
    reported = (src.report or {}).get("by_source", {})
    terms = {
        name: (part.get("licence"), part.get("commercial", False))
        for name, part in reported.items()
        if name.startswith(f"{src.name}/") and isinstance(part, dict)
    }
    terms |= {r[0]: (r[1], r[2]) for r in planned.iter_rows()}
    terms |= {r[0]: (r[1], r[2]) for r in mine.select("source", "licence", "commercial").unique().iter_rows()}
    for source in sorted(terms):
        licence, commercial = terms[source]
        counts = _split_counts(mine.filter(pl.col("source") == source), src.rank)
        out[source] = {"licence": licence or "unknown", "commercial": bool(commercial), **counts}
        part = reported.get(source)
        for key in ("description", "attribution"):
            said = part.get(key) if isinstance(part, dict) else None
            if isinstance(said, str) and said.strip():
                out[source][key] = said.strip()
    return out


def _totals(entries: Any) -> dict[str, Any]:
    """Sum every number (nested one level) across sources; strings and reports are skipped."""
    totals: dict[str, Any] = {}
    for entry in entries:
        for key, value in entry.items():
            if key in ("normalize", "parts", "commercial", "reconciles", "matches_normalize_report"):
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
            elif isinstance(value, dict):
                sub = totals.setdefault(key, {})
                for k, v in value.items():
                    sub[k] = sub.get(k, 0) + v
    return totals


def summary_metrics(stats: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json, the variant's DVC metric: its totals only, so that `dvc metrics show` and
    `dvc exp show` stay readable (stats.json, per source and nested, has over a hundred figures)."""
    t = stats["totals"]
    keep = ("conversations", "turns", "characters", "rows_read", "rows_kept", "rows_quarantined")
    return {
        **{k: t[k] for k in keep if k in t},
        "rows_filtered": sum(t.get("rows_filtered", {}).values()),
        "duplicate_rows_removed": t.get("duplicate_rows_removed", 0),
        "sources": sum(1 for e in stats["sources"].values() if sum(e["conversations"].values()) > 0),
        # How much val text is also a train turn (pipeline/split.py): `dvc metrics diff` shows it move.
        "leak_audit": dict(t["leak_audit"]),
    }


def card_sources(stats: Mapping[str, Any], sources: Sequence[SourceInput]) -> list[cards.CardSource]:
    """The rows of the variant's card (pipeline.datasetcard), from its stats and each source's registry terms."""
    terms = {
        s.name: cards.CardSource(
            name=s.name,
            licence=s.licence,
            commercial=s.commercial_eligible,
            kind=s.kind,
            location=s.location,
            description=s.description,
        )
        for s in sources
    }
    return datasetcard.dataset_sources(stats, terms)


def write_cards(out: Path, variant: str, stats: Mapping[str, Any], sources: Sequence[SourceInput]) -> None:
    """README.md (the dataset card) and, when a licence needs it, LICENSE.md into `out`."""
    rows = card_sources(stats, sources)
    (out / "README.md").write_text(datasetcard.dataset_card(variant, stats, rows), encoding="utf-8")
    licence_file = datasetcard.dataset_licence_file(stats, rows)
    if licence_file is not None:
        (out / cards.LICENCE_FILE).write_text(licence_file, encoding="utf-8")
