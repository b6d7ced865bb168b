"""export: model/ckpt -> model/hf, the transformers GPT-2 layout with a model card and chat template.

A stage of its own (pipeline/hfexport.py `export_run`): a new card or chat template re-exports in seconds
and never re-runs training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.hfexport import export_run
from pipeline.params import load_params, project_root


def trained_variant_error(metrics_file: Path, variant: object) -> str | None:
    """Why the weights cannot be exported as `variant`'s, or None. The card, licence and NOTICE come
    from params.yaml's train.variant; `python -m stages.export` run by hand after that param changed,
    without re-training, would label weights trained on the full variant as commercial-only. Under
    `dvc repro` train re-runs first (it depends on train.variant), so this never fires there."""
    try:
        trained = json.loads(metrics_file.read_text(encoding="utf-8")).get("variant")
    except (OSError, ValueError, AttributeError):  # missing or unreadable: export_run names the file
        return None
    if trained is None or trained == variant:  # a metrics.json from before train recorded it
        return None
    return (
        f"{metrics_file}: the weights were trained on the {trained} variant, but params.yaml "
        f"train.variant is {variant}: run `dvc repro train` first (or set train.variant back)"
    )


def main() -> int:
    root = project_root()
    variant = (load_params().get("train") or {}).get("variant")
    mismatch = trained_variant_error(root / "model" / "metrics.json", variant)
    if mismatch:
        print(f"export: {mismatch}", file=sys.stderr)
        return 1
    try:
        export_run(
            root / "model" / "ckpt",
            root / "model" / "hf",
            root / "model" / "metrics.json",
            root / "data" / "tokens" / str(variant),
            root / "data" / "dataset" / str(variant) / "stats.json",
            root / "data" / "dataset" / str(variant) / "NOTICE.md",
        )
    except (OSError, ValueError, KeyError) as e:  # no trained model yet, or unreadable files
        print(f"export: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1
    print(f"export: model/hf ({Path('model/hf/README.md')} is its model card)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
