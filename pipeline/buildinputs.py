"""What a build reads, and the names its parts share: params.yaml `build` (BuildConfig), the
enabled sources with their registry terms (SourceInput, resolve_sources), the variants and
splits, and the fates a row can meet (kept, quarantined, duplicate, filtered).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import atomic, paramcheck
from pipeline.errortext import first_line
from pipeline.params import settings, shown_path
from pipeline.schema import MAX_TURN_CHARS, max_turn_chars_setting
from pipeline.sources import licences
from pipeline.sources.registry import listed_twice

VARIANTS = ("full", "commercial")
SPLITS = ("train", "val")
KEPT, QUARANTINED, DUPLICATE = "kept", "quarantined", "duplicate"
NOT_COMMERCIAL, CAPPED = "not_commercial", "cap"  # the filter reasons


class BuildError(Exception):
    """A problem with the build's inputs or params; the stage prints it as one line."""


class CommercialLeakError(BuildError):
    """The commercial variant would hold data that may not train a commercial model."""


@dataclass(frozen=True)
class SourceInput:
    """One enabled source: its turn table, normalize report and registry terms."""

    name: str
    rank: int  # position in params.yaml `sources`: the dedup "first wins" order
    path: Path
    display: str  # path as shown in messages and quarantine origins
    kind: str
    licence: str
    commercial: bool
    commercial_reason: str | None = None
    report: dict[str, Any] | None = None
    location: str = ""
    description: str = ""

    @property
    def contrib(self) -> bool:
        """Contributed files carry their own licence per row (`contrib/<stem>`)."""
        return self.kind == "contrib"

    @property
    def commercial_eligible(self) -> bool:
        """Registry terms allow commercial use: flagged so AND under a known licence.

        Strict on purpose (issue #4: zero rows from an unknown-licence source). sources.yaml
        lets `commercial: true` stand on an `unknown` licence with a `commercial_reason`; the
        build still keeps such a source out of the commercial variant (and says so): to ship
        it, name its licence.
        """
        return licences.commercial_eligible(self.commercial, self.licence)


BUILD_KEYS = ("val_fraction", "seed", "split_opening_chars", "caps", "export_text")  # params.yaml `build`


@dataclass(frozen=True)
class BuildConfig:
    """params.yaml `build` (plus normalize.max_turn_chars, the bound the build re-checks)."""

    variant: str
    val_fraction: float = 0.05
    seed: int = 1337
    # Conversations with the same first turn, or first exchange, of at least this many folded
    # characters share a split, as do one-exchange conversations under it with the same prompt
    # (pipeline.split); 0 keeps only whole-conversation duplicates together.
    split_opening_chars: int = 100
    caps: Mapping[str, int] = field(default_factory=dict)
    export_text: bool = True
    max_turn_chars: int = MAX_TURN_CHARS
    # Characters of text per assembly part: bounds the memory of the write pass.
    part_chars: int = 16_000_000

    @classmethod
    def from_params(cls, variant: str, params: Mapping[str, Any]) -> BuildConfig:
        """Read and check params.yaml `build`: a mistake is a BuildError naming the key.

        Checked here, not left to int()/float(): a negative or 2**64 seed was a polars
        OverflowError traceback, `caps: [x]` an AttributeError, a negative cap silently dropped
        the whole source and `export_text: "false"` meant true.
        """
        try:
            build, normalize = settings(params, "build"), settings(params, "normalize")
            paramcheck.known_keys("build", build, BUILD_KEYS)
            raw_caps = build.get("caps") or {}
            if not isinstance(raw_caps, Mapping):
                raise ValueError(
                    f"params.yaml build.caps: expected a mapping of source name -> characters, got {raw_caps!r}"
                )
            caps = {
                str(k): paramcheck.integer(f"build.caps.{k}", v, what="a number of characters")
                for k, v in raw_caps.items()
                if v is not None  # null = no cap
            }
            return cls(
                variant=variant,
                val_fraction=paramcheck.fraction("build.val_fraction", build.get("val_fraction", 0.05)),
                seed=paramcheck.integer("build.seed", build.get("seed", 1337), maximum=1 << 64),
                split_opening_chars=paramcheck.integer(
                    "build.split_opening_chars",
                    build.get("split_opening_chars", 100),
                    what="a number of characters",
                ),
                caps=caps,
                export_text=paramcheck.boolean("build.export_text", build.get("export_text", True)),
                max_turn_chars=max_turn_chars_setting(normalize),
            )
        except ValueError as e:
            raise BuildError(str(e)) from None


def resolve_sources(root: Path, names: Sequence[str], registry: Mapping[str, Any]) -> list[SourceInput]:
    """Each enabled source's turn table + report, with licence terms from the registry.

    `registry` maps a name to an object with kind, licence, commercial, commercial_reason
    (pipeline.sources.registry.SourceSpec, or a dict with those keys in tests).
    """
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise BuildError(f"params.yaml: `sources` must be a list of source names, got {names!r}")
    if not names:
        raise BuildError("params.yaml: `sources` is empty; enable at least one source")
    if twice := listed_twice(list(names)):
        raise BuildError(f"params.yaml: `sources` lists {', '.join(twice)} more than once")
    sources = []
    for rank, name in enumerate(names):
        if name not in registry:
            raise BuildError(f"{name}: enabled in params.yaml but not in sources.yaml")
        spec = registry[name]

        def get(key: str, spec: Any = spec) -> Any:
            return spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)

        path = root / "data" / "normalized" / f"{name}.parquet"
        if not path.is_file():
            raise BuildError(f"{shown_path(path, root)}: missing; run `dvc repro normalize@{name}` first")
        _check_readable(path, shown_path(path, root))
        report = _normalize_report(root, name, path)
        sources.append(
            SourceInput(
                name=name,
                rank=rank,
                path=path,
                display=shown_path(path, root),
                kind=str(get("kind") or ""),
                licence=str(get("licence") or "unknown"),
                commercial=get("commercial") is True,
                commercial_reason=get("commercial_reason"),
                report=report,
                location=str(get("location") or ""),
                description=str(get("description") or ""),
            )
        )
    return sources


# What normalize's report records of the tables it was written with (pipeline.sources.normalize
# OUTPUTS_KEY; not imported, which would make the whole of pipeline.sources build code).
_OUTPUTS = "outputs"


def _normalize_report(root: Path, name: str, table: Path) -> dict[str, Any] | None:
    """The source's normalize report, once it is known to describe `table` and the quarantine on
    disk: a normalize killed between its renames (report last) leaves a new table beside the
    previous run's report, whose counts stats.json and the card would print as this table's. A
    report without the record (written before it was kept, or by hand) is read as it stands. The
    record itself is left out of what the build carries on."""
    report_path = table.with_name(f"{name}.report.json")
    if not report_path.is_file():
        return None
    report = read_json_object(report_path, "normalize report")
    recorded = report.get(_OUTPUTS)
    if recorded is None:
        return report
    quarantine = root / "data" / "quarantine" / f"{name}.parquet"
    shown = shown_path(report_path, root)
    for key, path in (("turns", table), ("quarantine", quarantine)):
        entry = recorded.get(key) if isinstance(recorded, dict) else None
        problem = atomic.fingerprint_mismatch(path, entry)
        if problem is None:
            continue
        if problem == "unrecorded":
            why = f"{shown}: `{_OUTPUTS}.{key}` records no size and sha256 of {shown_path(path, root)}"
        elif problem == "missing":
            why = f"{shown_path(path, root)}: missing, but {shown} was written with it"
        else:
            why = (
                f"{shown_path(path, root)} is not the file {shown} was written with (a normalize killed between "
                "its renames, or a file replaced by hand): they come from different runs"
            )
        raise BuildError(f"{why}; run `dvc repro normalize@{name}`")
    return {k: v for k, v in report.items() if k != _OUTPUTS}


def _check_readable(path: Path, display: str) -> None:
    """A truncated or foreign file is one error naming it (polars' own message names no file)."""
    try:
        pl.scan_parquet(path, glob=False).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as e:
        raise BuildError(f"{display}: not a readable parquet file ({first_line(e)})") from None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object an earlier stage wrote (`what`: "normalize report", "download manifest"), or a
    BuildError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: unreadable {what} ({e})") from None
    if not isinstance(data, dict):
        raise BuildError(f"{path}: a {what} is a JSON object")
    return data
