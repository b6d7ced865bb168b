"""What a source leaves behind once it is taken out of params.yaml `sources:`, and its removal.

dvc.yaml makes download@<name> and normalize@<name> for each enabled source. Take a name out of the
list (to disable or to rename it) and DVC drops those stages but leaves their outputs where they
are: data/raw/<name>/, data/normalized/<name>.* and data/quarantine/<name>.parquet. No build reads
them (it reads the enabled names only), but both builds depend on the whole of data/raw/ and
data/normalized/, so the leftovers enter the hashes dvc.lock records for the build. A fresh clone
(a teammate's, CI's) has no leftovers: its `dvc status` then reports both builds changed, and its
`dvc repro` re-runs them, for good. The registry stage, which runs first on every `dvc repro`,
removes them (stages/registry.py).

Only what this pipeline wrote is removed: a data/raw/ folder whose manifest.json records that very
source name (a folder of your own there has none), and normalize's own files of that name. Nothing
that a `local_path:` of sources.yaml names, or lies under, is touched (pointing a renamed source at
its old download folder is a way to keep it). Re-enabling the source gets its download back from
DVC's cache without fetching it again ("cached - skipping run, checking out outputs"), unless
`dvc gc` has dropped it since, as it does for any output no stage of dvc.yaml names; normalize
re-runs where DVC's run-cache does not hold it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path

from pipeline.sources.download import MANIFEST, raw_dir
from pipeline.sources.registry import SourceSpec, local_target

# normalize@<name>'s files (pipeline.sources.normalize.output_paths, which tests/test_source_lifecycle.py
# holds to this list; not imported: it would make the registry stage run the schema's code)
NORMALIZE_OUTPUTS = (
    ("normalized", "{}.parquet"),
    ("normalized", "{}.report.json"),
    ("normalized", "{}.metrics.json"),
    ("quarantine", "{}.parquet"),
)


def normalize_outputs(name: str, root: Path) -> list[Path]:
    return [root / "data" / folder / pattern.format(name) for folder, pattern in NORMALIZE_OUTPUTS]


def _recorded_source(folder: Path) -> str | None:
    """The `source` a download's manifest.json records, or None (no manifest, or not one of ours)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("source") if isinstance(data, dict) else None


def _names_present(root: Path) -> set[str]:
    """Every source name with a folder in data/raw/ or a file in data/normalized/ or data/quarantine/."""
    names: set[str] = set()
    for folder in (root / "data" / "raw", root / "data" / "normalized", root / "data" / "quarantine"):
        if folder.is_dir():
            # a source name holds no '.': `oasst1.report.json` is oasst1's, `.gitignore` nobody's
            names.update(p.name.split(".", 1)[0] for p in folder.iterdir())
    names.discard("")
    return names


def _protected(path: Path, keep: Iterable[Path]) -> bool:
    """`path` is a `local_path:` target, lies under one, or holds one."""
    path = path.resolve()
    for target in keep:
        if path == target or target.is_relative_to(path) or path.is_relative_to(target):
            return True
    return False


def find_leftovers(
    root: Path, enabled: Collection[str], registry: Iterable[SourceSpec]
) -> dict[str, list[Path]]:
    """Per name not in `enabled`, the outputs of its download@ and normalize@ stages on disk."""
    keep = [target.resolve() for spec in registry if (target := local_target(spec, root)) is not None]
    found: dict[str, list[Path]] = {}
    for name in sorted(_names_present(root) - set(enabled)):
        raw = raw_dir(name, root)
        candidates = []
        if raw.is_dir() and not raw.is_symlink() and _recorded_source(raw) == name:
            candidates.append(raw)
        # a file may be a link into DVC's cache (cache.type symlink): unlinking it leaves the cache
        candidates += [p for p in normalize_outputs(name, root) if p.is_file() or p.is_symlink()]
        if paths := [p for p in candidates if not _protected(p, keep)]:
            found[name] = paths
    return found


def remove_leftovers(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
