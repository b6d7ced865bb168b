"""What each download depends on: one small JSON per enabled source, data/registry/<source>.json.

DVC re-runs a stage when a dependency's bytes change. Were every download@<source> to depend on
the whole sources.yaml and data/contrib/, flipping one source's commercial flag or dropping a file
into data/contrib/ would re-run every download (and a changed manifest, every normalize). The
registry stage writes, per source, only what decides its raw bytes and its turn table: kind,
location, pin, files, adapter and options, licence, and for contributed files the sha256 of each
file in data/contrib/. download@<source> depends on its own JSON alone, so a commercial flag is a
re-mix (build onwards: the build reads flags from sources.yaml), never a re-download or a
re-normalize (DESIGN.md), and a contributed file re-runs only download@contrib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.sources.registry import SourceSpec, contrib_entries

# SourceSpec fields that decide the download or the normalized table; what is left out
# (commercial, commercial_reason, description) only matters from the build on.
FETCH_FIELDS = (
    "kind",
    "location",
    "revision",
    "sha256",
    "files",
    "local_path",
    "gated",
    "token_env",
    "adapter",
    "options",
    "licence",
)


def fetch_spec(spec: SourceSpec, root: Path) -> dict[str, Any]:
    """The JSON-able part of `spec` its download and normalize depend on."""
    out: dict[str, Any] = {"source": spec.name}
    for name in FETCH_FIELDS:
        value = getattr(spec, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    if spec.kind == "contrib":
        folder = root / spec.location
        out["contents"] = [
            {"path": p.relative_to(folder).as_posix(), "sha256": atomic.sha256_file(p)}
            for p in contrib_entries(folder)
        ]
    return out


def write_fetch_specs(specs: list[SourceSpec], root: Path, out_dir: Path) -> list[Path]:
    """Write one <name>.json per spec into `out_dir` (replaced as a whole, atomically)."""
    with atomic.atomic_dir(out_dir) as tmp:
        for spec in specs:
            atomic.write_json(tmp / f"{spec.name}.json", fetch_spec(spec, root))
    return [out_dir / f"{spec.name}.json" for spec in specs]
