"""tokenize@<variant>: data/dataset/<variant>/{train,val}.parquet -> data/tokens/<variant>/.

Writes the token shards (train/, val/), meta.json and metrics.json (DVC metrics: tokens per
source and split). Reads params.yaml `tokenize` (shard_tokens, workers, batch_conversations).
Usage: `python -m stages.tokenize <variant>`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.errortext import first_line, run_stage
from pipeline.params import load_params, project_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.tokenize", description=__doc__)
    parser.add_argument("variant", help="dataset variant under data/dataset/ (e.g. full, commercial)")
    args = parser.parse_args(argv)
    if not args.variant.isidentifier():
        parser.error(f"variant must be a plain name like 'full', got {args.variant!r}")
    # Imported here, not at the top: the encoding workers are spawned and re-import this module,
    # and they need only numpy + tiktoken, not polars/pyarrow (faster start-up, less memory).
    import polars as pl

    from pipeline.encode import tokenize_dataset, tokenize_settings

    root = project_root()
    try:
        settings = tokenize_settings(load_params(root / "params.yaml").get("tokenize"))
        meta = tokenize_dataset(
            root / "data" / "dataset" / args.variant,
            root / "data" / "tokens" / args.variant,
            **settings,
            progress=True,
        )
    except (ValueError, OSError, pl.exceptions.PolarsError) as e:
        # A user's mistake (params, a bad or missing dataset row, a too-long conversation) is one
        # line naming the file, row or key; the message already says where.
        print(f"tokenize@{args.variant}: {first_line(e)}", file=sys.stderr)
        return 1
    for split, info in meta["splits"].items():
        print(
            f"tokenize {args.variant}/{split}: {info['n_conversations']} conversations, "
            f"{info['n_tokens']} tokens ({info['n_loss_tokens']} in the loss), {len(info['shards'])} shards"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("tokenize", main))
