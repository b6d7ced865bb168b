"""build@<variant>: data/normalized/*.parquet -> data/dataset/<variant>/ (pipeline/build.py).

python -m stages.build full|commercial
"""

from __future__ import annotations

import sys

from pipeline.build import build_variant
from pipeline.buildinputs import VARIANTS, BuildConfig, BuildError
from pipeline.errortext import run_stage
from pipeline.params import load_params, project_root
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import load_registry


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in VARIANTS:
        print(f"usage: python -m stages.build {{{'|'.join(VARIANTS)}}}", file=sys.stderr)
        return 2
    root = project_root()
    try:  # params.yaml that is no YAML is a ValueError naming its file and line, as a bad setting is
        params = load_params(root / "params.yaml")
        cfg = BuildConfig.from_params(argv[0], params)
        result = build_variant(root, params.get("sources") or [], load_registry(root / "sources.yaml"), cfg)
    except (BuildError, SourceError, ValueError) as e:
        print(f"build@{argv[0]}: {e}", file=sys.stderr)
        return 1
    t = result.stats["totals"]
    print(
        f"build@{cfg.variant}: {t['conversations']['train']} train / {t['conversations']['val']} val "
        f"conversations ({t['rows_kept']} turns) from {t['rows_read']} rows; "
        f"{t['rows_quarantined']} quarantined, {sum(t['rows_filtered'].values())} filtered, "
        f"{t['duplicate_rows_removed']} in duplicates -> {result.out_dir}"
    )
    leak = t["leak_audit"]
    print(
        f"build@{cfg.variant}: leak audit: {leak['val_turns_in_train']} of {leak['val_turns_checked']} val "
        f"turns of >= {leak['min_chars']} folded characters also occur as a train turn (stats.json totals.leak_audit)"
    )
    print(f"build@{cfg.variant}: seconds " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("build", main))
