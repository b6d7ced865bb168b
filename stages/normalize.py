"""normalize@<source>: data/raw/<source>/ -> turn table + quarantine + report (pipeline/sources/normalize.py)."""

from __future__ import annotations

import sys

from pipeline.errortext import run_stage
from pipeline.params import load_params, settings
from pipeline.sources.download import raw_dir
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import normalize_source, nothing_kept_warning, write_outputs
from pipeline.sources.registry import get_source
from pipeline.terminal import printable


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m stages.normalize <source>", file=sys.stderr)
        return 2
    name = argv[0]
    try:  # params.yaml that is no YAML, or a `normalize:` that is no mapping: one line, before any work
        params = settings(load_params(), "normalize")
    except (ValueError, OSError) as e:
        print(f"normalize: {e}", file=sys.stderr)
        return 1
    try:
        result = normalize_source(get_source(name), raw_dir(name), params)
    except SourceError as e:
        print(f"normalize: {printable(str(e))}", file=sys.stderr)  # contrib names: one line, inert
        return 1
    write_outputs(result, name)
    r = result.report
    print(
        f"normalize {name}: {r['rows_read']} rows read, {r['rows_kept']} kept as {r['turns_kept']} turns in "
        f"{r['conversations_kept']} conversations, {r['rows_quarantined']} quarantined, "
        f"{sum(r['rows_filtered'].values())} filtered"
    )
    # Exit 0 all the same: every row filtered out (a language option) is a legitimate outcome.
    if (warning := nothing_kept_warning(r)) is not None:
        print(warning, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("normalize", main))
