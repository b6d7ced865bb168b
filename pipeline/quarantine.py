"""`nanochatgpt quarantine`: what normalize threw out of each source, and why, without a polars session.

Every rejected upstream row is kept in data/quarantine/<source>.parquet with the rule that caught
it (`check`), a `reason` and its `origin` (file:line or record id). Reading that file took a polars
session; this prints, per source, the rows quarantined by rule with the first row each rule caught,
and (`--check`, `--rows`) the first rows of each rule themselves, with their text. The counts are the report's
(data/normalized/<source>.report.json), and a quarantine that is not the file the report was
written with (a normalize killed between its renames, a file copied in by hand) is named, not read
as the report's. Nothing is written. (It lives outside pipeline/sources, which the download and
normalize stages depend on: editing this command must not re-run them.)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import atomic, jsonout
from pipeline.argtypes import INT_MAX
from pipeline.buildinputs import BuildError, read_json_object
from pipeline.errortext import first_line
from pipeline.params import project_root, shown_path
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import OUTPUTS_KEY, output_paths
from pipeline.sources.registry import REGISTRY_FILE, brief, enabled_sources, load_registry
from pipeline.terminal import printable

TEXT_LIMIT = 160  # characters of a quarantined row's text shown with --rows
FIELD_LIMIT = 500  # characters of a rule, origin or reason shown (normalize's are far shorter)
# The rules that quarantine a row besides pipeline.schema's row rules: the readers' and adapters'
# (a row or file they could not read) and normalize's own (a conversation cut or too short).
# `--check nope` said "no row was quarantined by `nope`", as if it were a rule that caught nothing.
# (tests/test_polish37.py checks this list against the code of pipeline/sources.)
READ_AND_CONVERSATION_RULES = frozenset(
    {
        *("conversation_broken", "first_turn_human", "has_bot_turn", "min_turns"),
        *("csv_fields", "csv_header", "csv_parse", "csv_quoted", "duplicate_id", "duplicate_key"),
        *("format", "gzip", "json_parse", "line_length", "missing_field", "parent_cycle"),
        *("parent_missing", "parquet_read", "turn_unclosed", "utf8", "yaml_parse"),
    }
)


def known_rules() -> list[str]:
    """Every rule that can quarantine a row, sorted."""
    from pipeline.schema import row_violations

    return sorted(READ_AND_CONVERSATION_RULES | {name for name, _, _ in row_violations()})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources",
        nargs="*",
        help="registry names, or one contributed file's source (contrib/<file stem>) "
        "(default: every source params.yaml enables)",
    )
    parser.add_argument("--check", help="only the rows this rule caught (e.g. text_length)")
    parser.add_argument(
        "--rows",
        type=int,
        metavar="N",
        help="list the first N quarantined rows of each rule with their text, under the rule "
        "(default with --check: 10; 0: none)",
    )
    parser.add_argument("--json", action="store_true", help="print the account as JSON")


@dataclass
class SourceQuarantine:
    """One source's quarantine: the report's counts, and per rule its rows and first example."""

    source: str
    path: str
    rows_read: int | None
    rows_quarantined: int
    by_check: dict[str, int]
    first: dict[str, dict[str, str]]  # rule -> the first row it caught: origin, reason
    rows: list[dict[str, Any]] = field(default_factory=list)  # --rows: origin, check, reason, text


def _remake(name: str, enabled: bool) -> str:
    """How to remake `name`'s normalize outputs. DVC makes normalize@<name> only for the names
    params.yaml `sources:` lists: for any other, `dvc repro normalize@<name>` (or a pull of it) fails
    with "Stage 'normalize@<name>' not found"."""
    if enabled:
        return f"run `dvc repro normalize@{name}`"
    return (
        "it is not enabled: add it to params.yaml `sources:`, then `dvc repro` "
        f"(that creates normalize@{name} and runs it)"
    )


def read_source(
    name: str,
    root: Path,
    check: str | None = None,
    rows: int = 0,
    only: str | None = None,
    enabled: bool = True,
) -> SourceQuarantine:
    """`name`'s quarantine as its report counts it, with the first `rows` rows of each rule (of rule
    `check` only, when given); `only`: the rows of that one source of it (a contributed file,
    contrib/<file stem>), counted as the report's `by_source` counts it. `enabled`: whether
    params.yaml `sources:` lists `name` (so its normalize stage exists), for the advice."""
    paths = output_paths(name, root)
    shown = {k: shown_path(p, root) for k, p in paths.items()}
    remake = _remake(name, enabled)
    if not paths["report"].is_file():
        if not enabled:
            raise SourceError(f"{name}: not normalized (no {shown['report']}): {remake}")
        raise SourceError(f"{name}: not normalized yet (no {shown['report']}): {remake}, or `dvc pull`")
    report = read_json_object(paths["report"], "normalize report")
    outputs = report.get(OUTPUTS_KEY)
    recorded = outputs.get("quarantine") if isinstance(outputs, dict) else None
    problem = atomic.fingerprint_mismatch(paths["quarantine"], recorded)
    if problem == "missing" or (problem == "unrecorded" and not paths["quarantine"].is_file()):
        if not enabled:  # a report left in git from when it was enabled: no stage to pull it with
            raise SourceError(f"{name}: {shown['quarantine']} is missing: {remake}")
        raise SourceError(
            f"{name}: {shown['quarantine']} is missing (the reports live in git, the tables in DVC's "
            f"cache): run `dvc pull normalize@{name}` or `dvc repro normalize@{name}`"
        )
    if problem == "different":
        raise SourceError(
            f"{name}: {shown['quarantine']} is not the quarantine {shown['report']} was written with (a "
            f"normalize killed between its renames?): {remake}"
        )
    columns = ["check", "reason", "origin", *(["source"] if only else [])]
    try:  # no text here: a large source's quarantine is mostly text, and --rows lists only a few
        table = pl.read_parquet(paths["quarantine"], columns=columns)
    except (pl.exceptions.PolarsError, OSError) as e:  # a report without the record: nothing vouched
        raise _unreadable(name, shown["quarantine"], e, remake) from None
    table = _checked_columns(table, name, shown["quarantine"], remake)
    counted = report.get("rows_quarantined")
    if isinstance(counted, int) and counted != table.height:  # a report without the record, by hand
        raise SourceError(
            f"{name}: {shown['quarantine']} holds {table.height:,} rows, but {shown['report']} counts "
            f"{counted:,}: {remake}"
        )
    rows_read = report.get("rows_read")
    if only:
        by_source = report.get("by_source") or {}
        if only not in by_source:
            held = ", ".join(sorted(by_source)) or "none"
            # a file added since normalize ran is a source the report has not met yet: say how
            since = (
                f"; a file added since that report was written is counted once you {remake}"
                if enabled
                else ""
            )
            raise SourceError(
                f"{printable(only)}: not a source of {shown['report']} (its sources: {printable(held)}){since}"
            )
        table = table.filter(pl.col("source") == only)
        rows_read = (by_source[only] or {}).get("rows_read")
        table = table.drop("source")
    first = table.with_row_index("_at").group_by("check").first().sort("_at")
    by_check = dict(
        table.group_by("check").len().sort(["len", "check"], descending=[True, False]).iter_rows()
    )
    try:  # up to `rows` of each rule (or of `check`), in the order the rules' lines are printed: the
        # file's first N were often all one rule (chitchat's first 5: has_bot_turn)
        listed = [
            row
            for rule in by_check
            if rows and check in (None, rule)
            for row in _listed_rows(paths["quarantine"], rows, rule, only)
        ]
    except (pl.exceptions.PolarsError, OSError) as e:  # no text column: nothing vouched for this file
        raise _unreadable(name, shown["quarantine"], e, remake) from None
    return SourceQuarantine(
        source=only or name,
        path=shown["quarantine"],
        rows_read=rows_read,
        rows_quarantined=table.height,
        by_check=by_check,
        first={
            c: {"origin": o, "reason": r} for c, r, o in first.select("check", "reason", "origin").iter_rows()
        },
        rows=listed,
    )


def _checked_columns(table: pl.DataFrame, name: str, shown: str, remake: str) -> pl.DataFrame:
    """`table` with its columns checked as normalize writes them (pipeline.schema.QUARANTINE_SCHEMA):
    text, and a rule on every row. A quarantine that passed no report's record (copied in by hand)
    may hold anything: an integer or null `check` was a TypeError traceback. A missing origin or
    reason is shown empty."""
    for column in table.columns:
        if table.schema[column] not in (pl.String(), pl.Null()):
            raise SourceError(
                f"{name}: {shown}: column '{column}' must be text, found {table.schema[column]}: {remake}"
            )
    if table["check"].null_count():
        row = int(table["check"].is_null().arg_true()[0])
        raise SourceError(f"{name}: {shown}: row {row} names no rule in column 'check': {remake}")
    return table.with_columns(pl.col("reason", "origin").cast(pl.String).fill_null(""))


def _unreadable(name: str, shown: str, error: Exception, remake: str) -> SourceError:
    """polars' (or the OS's) refusal of a quarantine, in one line."""
    return SourceError(f"{name}: {shown} is unreadable ({first_line(error)}): {remake}")


def _listed_rows(path: Path, rows: int, check: str | None, only: str | None) -> list[dict[str, Any]]:
    """The first `rows` quarantined rows (of rule `check`, of source `only`) with their text. A lazy
    scan with the filter before the head: polars reads the text of the rows it keeps, not the whole
    column (`python -m benchmarks.quarantine`: 3.8x faster and 2.6x less peak memory than reading
    the column, on a 211 MB quarantine of 400,000 rows)."""
    scan = pl.scan_parquet(path)
    if only:
        scan = scan.filter(pl.col("source") == only)
    if check:
        scan = scan.filter(pl.col("check") == check)
    # a missing origin or reason is shown empty, as in _checked_columns
    fields = ("check", pl.col("reason", "origin").fill_null(""), "text")
    return scan.head(rows).select(*fields).collect().to_dicts()


def _excerpt(text: str | None) -> str:
    """A row's text on one line: its repr (line breaks and control characters escaped), cut."""
    if text is None:
        return "(no text)"
    return brief(text, TEXT_LIMIT // 2) if len(text) > TEXT_LIMIT or not text.isprintable() else repr(text)


def _field(text: str) -> str:
    """A rule, origin or reason on one line, inert at a terminal, cut at FIELD_LIMIT characters.
    Normalize writes short ones, but a quarantine copied in by hand may hold anything: a 1 MB rule
    name padded every rule's line to a megabyte, a 1 MB reason printed whole on each of its lines."""
    if len(text) <= FIELD_LIMIT:
        return printable(text)
    return f"{printable(text[:FIELD_LIMIT])}... ({len(text):,} characters)"


def format_source(q: SourceQuarantine, check: str | None) -> str:
    read = f" of {q.rows_read:,} rows read" if isinstance(q.rows_read, int) else ""
    lines = [f"{q.source}: {q.rows_quarantined:,}{read} quarantined ({q.path})"]
    # rule names are normalize's, but a quarantine copied in by hand may name anything: inert too
    width = max((len(_field(c)) for c in q.by_check), default=0)
    for rule, n in q.by_check.items():
        if check and rule != check:
            continue
        ex = q.first[rule]
        # origins and reasons quote the upstream file (a record id, a file name): ESC there stays inert
        first = f"{_field(ex['origin'])}: {_field(ex['reason'])}"
        lines.append(f"  {_field(rule).ljust(width)}  {n:>9,}  first: {first}")
        for row in q.rows:  # the rule's own rows, under its line
            if row["check"] == rule:
                lines.append(f"    {_field(row['origin'])}  {_field(rule)}: {_field(row['reason'])}")
                lines.append(f"      text: {_excerpt(row['text'])}")
    return "\n".join(lines)


def _registry_name(name: str) -> str:
    """The registry source a name belongs to: `contrib` for `contrib/<file stem>`."""
    return name.split("/", 1)[0]


def _enabled_or_none(root: Path) -> list[str] | None:
    """params.yaml `sources:`, or None when it cannot be read: naming sources does not need it."""
    try:
        return enabled_sources(root / "params.yaml")
    except (SourceError, ValueError, OSError):
        return None


def _nothing_caught(check: str, found: list[SourceQuarantine]) -> str:
    """Why `--check` shows no row: `check` is no rule (the known ones named), or a rule that caught
    nothing in these sources (the rules that did named: a misspelt rule, the right name)."""
    rules = known_rules()
    sources = ", ".join(q.source for q in found)
    caught = ", ".join(map(printable, sorted({rule for q in found for rule in q.by_check}))) or "none"
    if check not in rules:
        return (
            f"`{printable(check)}` is not a rule (rules that caught rows in {sources}: {caught}; "
            f"all rules: {', '.join(rules)})"
        )
    return f"no row was quarantined by `{check}` in {sources} (rules that caught rows there: {caught})"


def run(args: argparse.Namespace) -> int:
    root = project_root()
    rows = args.rows if args.rows is not None else (10 if args.check else 0)
    if rows < 0:
        print("quarantine: --rows takes a count, 0 or more", file=sys.stderr)
        return 2
    # past every row is all of them: polars' head took no more than a C long (an OverflowError traceback)
    rows = min(rows, INT_MAX)
    try:
        registry = load_registry(root / REGISTRY_FILE)
        names = args.sources or enabled_sources(root / "params.yaml")
        enabled = names if not args.sources else _enabled_or_none(root)
        # contrib/<file stem> (as `nanochatgpt sources` and the dataset's rows name a contributed
        # file) is that file's part of its registry source's quarantine
        unknown = [n for n in names if _registry_name(n) not in registry]
        if unknown:
            # typed (or pasted) names: an escape code among them is shown, not run
            typed = ", ".join(map(printable, unknown))
            raise SourceError(f"{typed}: not in {REGISTRY_FILE} (known: {', '.join(registry)})")
    except (SourceError, ValueError) as e:  # ValueError: params.yaml that is not YAML, in one line
        print(f"quarantine: {e}", file=sys.stderr)
        return 1
    found: list[SourceQuarantine] = []
    problems: list[str] = []
    for name in names:
        try:
            base = _registry_name(name)
            only = name if name != base else None
            on = enabled is None or base in enabled  # params.yaml unreadable: the enabled source's advice
            found.append(read_source(base, root, args.check, rows, only=only, enabled=on))
        except (SourceError, BuildError) as e:
            problems.append(str(e))
    if args.check and found and not any(args.check in q.by_check for q in found):
        problems.append(_nothing_caught(args.check, found))
    # with --check, the sources whose quarantine holds that rule only, in both forms
    found = [q for q in found if not args.check or args.check in q.by_check]
    if args.json:
        print(jsonout.dumps([asdict(q) for q in found]))
    else:
        shown = [format_source(q, args.check) for q in found]
        if shown:
            print("\n".join(shown))
    for problem in problems:
        print(f"quarantine: {problem}", file=sys.stderr)
    return 1 if problems else 0
