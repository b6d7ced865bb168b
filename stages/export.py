"""export: model/ckpt -> model/hf, the transformers GPT-2 layout with a model card and chat template.

A stage of its own (pipeline/hfexport.py `export_run`): a new card or chat template re-exports in seconds
and never re-runs training.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.errortext import run_stage
from pipeline.hfexport import export_run
from pipeline.params import load_params, project_root, train_variant


def main() -> int:
    root = project_root()
    try:  # params.yaml that is no YAML, a `train:` that is no mapping, no variant name: one line
        variant = train_variant(load_params())
    except (ValueError, OSError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 1
    try:
        export_run(
            root / "model" / "ckpt",
            root / "model" / "hf",
            root / "model" / "metrics.json",
            root / "data" / "tokens" / variant,
            root / "data" / "dataset" / variant / "stats.json",
            root / "data" / "dataset" / variant / "NOTICE.md",
        )
    except (OSError, ValueError, KeyError) as e:  # no trained model yet, or unreadable files
        print(f"export: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1
    print(f"export: model/hf ({Path('model/hf/README.md')} is its model card)")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("export", main))
