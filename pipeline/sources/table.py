"""`nanochatgpt sources`: the registry as a table (licence, commercial, enabled, rows kept).

Rows come from data/normalized/<name>.report.json when that source has been normalized, else
"-". Each contributed file is listed on its own line under `contrib`, with its sidecar's licence
(and, with --json, its `attribution:`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.params import project_root
from pipeline.sources.contrib import contrib_folder, scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import commercial_eligible, licence_bar
from pipeline.sources.normalize import OUTPUTS_KEY, output_paths
from pipeline.sources.registry import REGISTRY_FILE, enabled_sources, load_registry
from pipeline.terminal import printable

COLUMNS = ("name", "kind", "licence", "commercial", "enabled", "rows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument(
        "--reasons",
        action="store_true",
        help="add why each source is or is not commercial (its commercial_reason; a contributed file without one: its description)",
    )


def _report(root: Path, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the source's normalize report, None), or (None, why it cannot be read): the reports are kept
    in git, so a merge conflict can leave one that is not JSON, and its count was shown as "-" with
    exit 0, as if the source had not been normalized; None, None where there is no report."""
    path = output_paths(name, root)["report"]
    rel = f"data/normalized/{path.name}"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = f"line {e.lineno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
        return None, f"{rel} cannot be read as JSON ({printable(why)}): {_RERUN.format(name=name)}"
    if not isinstance(report, dict) or type(report.get("rows_kept")) is not int:
        return (
            None,
            f"{rel} is not a normalize report (no whole-number rows_kept): {_RERUN.format(name=name)}",
        )
    return report, None


# What a report that cannot be shown is told to do: `dvc checkout` restores the committed one.
_RERUN = (
    "its rows are not shown; restore it (`git checkout` / `dvc checkout`) or run `dvc repro normalize@{name}`"
)


def _per_file(report: dict[str, Any] | None) -> dict[str, Any]:
    """The contrib report's rows kept per contributed file: {source: count}, only well-formed entries."""
    by_source = (report or {}).get("by_source")
    if not isinstance(by_source, dict):
        return {}
    return {
        source: entry["rows_kept"]
        for source, entry in by_source.items()
        if isinstance(entry, dict) and type(entry.get("rows_kept")) is int
    }


def _describes_table(report: dict[str, Any], root: Path, name: str) -> bool:
    """Whether the turn table on disk has the size the report records of it (the build checks the
    sha256 too: pipeline.buildinputs). A report without the record (older, or by hand) is trusted,
    and so is one whose table is not there: the reports are kept in git and the tables in DVC's
    cache, so a fresh clone (or one that pulled only `export`) has the report of the committed run
    and no table yet, which is no mix."""
    outputs = report.get(OUTPUTS_KEY)
    turns = outputs.get("turns") if isinstance(outputs, dict) else None
    recorded = turns.get("bytes") if isinstance(turns, dict) else None
    table = output_paths(name, root)["turns"]
    if not isinstance(recorded, int) or not table.is_file():
        return True
    return table.stat().st_size == recorded


def source_rows(root: Path | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(table rows, problems): one row per registry entry plus one per contributed file."""
    root = root or project_root()
    registry = load_registry(root / REGISTRY_FILE)
    try:
        enabled_names = enabled_sources(root / "params.yaml")
    except ValueError as e:  # params.yaml that is not YAML (the message names file and line): one line
        raise SourceError(str(e)) from None
    enabled = set(enabled_names)
    rows: list[dict[str, Any]] = []
    # A name the registry lacks (a typo such as `oasst`) has no row to show it: without this line
    # the table said only that the entry meant was not enabled, and exited 0.
    problems = [
        f"params.yaml `sources:` lists {name}, which is not in {REGISTRY_FILE} "
        f"(known: {', '.join(registry)}); `dvc repro` stops at the registry stage"
        for name in enabled_names
        if name not in registry
    ]
    for name, spec in registry.items():
        report, unreadable = _report(root, name)
        if unreadable:
            problems.append(unreadable)
        if report is not None and not _describes_table(report, root, name):
            problems.append(
                f"data/normalized/{name}.parquet is not the table its report was written with (a "
                f"normalize killed between its renames?): its rows are not shown; run `dvc repro normalize@{name}`"
            )
            report = None
        is_contrib = spec.kind == "contrib"
        rows.append(
            {
                "name": name,
                "kind": spec.kind if not spec.local_path else f"{spec.kind} (local_path)",
                "licence": spec.licence,
                "commercial": "per-file"
                if is_contrib
                else commercial_eligible(spec.commercial, spec.licence),
                "enabled": name in enabled,
                "rows": report["rows_kept"] if report else "-",
                "reason": _reason(spec.commercial, spec.licence, spec.commercial_reason or ""),
            }
        )
        if not is_contrib:
            continue
        try:
            files = scan_contrib(contrib_folder(spec, root), name)
        except SourceError as e:
            problems.append(str(e))
            continue
        per_file = _per_file(report)
        for cf in files:
            # Every file that was read has an entry (rows_read per file); none means the file came
            # after the last normalize, so its count is not known yet.
            kept = per_file.get(cf.source, "-")
            rows.append(
                {
                    "name": cf.source,
                    "kind": f"contrib file ({cf.format})",
                    "licence": cf.licence,
                    "commercial": commercial_eligible(cf.commercial, cf.licence),
                    "enabled": name in enabled,
                    "rows": kept,
                    "reason": _reason(cf.commercial, cf.licence, cf.commercial_reason or cf.description),
                    # its sidecar's credit ("" for none), in --json only: the table has no room for it
                    "attribution": cf.attribution,
                }
            )
    return rows, problems


def _reason(flag: bool, licence: str, reason: str) -> str:
    """The stated reason, after why the build keeps a flagged source out (licences.licence_bar, the
    build's own rule). The registry refuses a flagged entry under a licence that forbids commercial
    use, so only "unknown" reaches here from sources.yaml; the wording serves both."""
    bar = licence_bar(licence) if flag else None
    if bar is not None:
        return f"flagged commercial, but {bar.words}: kept out of the commercial variant. {reason}"
    return reason


def _cell(value: Any) -> str:
    """A table cell on one line, inert at a terminal: a sidecar's description (or licence) is the
    contributor's text, and a line break in it split the row, an ESC in it reached the terminal."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return printable(" ".join(str(value).split()))


def render(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    cells = [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        rows, problems = source_rows()
    except SourceError as e:
        print(f"sources: {e}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    else:
        columns = (*COLUMNS, "reason") if getattr(args, "reasons", False) else COLUMNS
        print(render(rows, columns))
    for problem in problems:
        print(f"sources: {problem}", file=sys.stderr)
    return 1 if problems else 0
