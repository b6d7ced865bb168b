"""tokenize@<variant>: data/dataset/<variant>/{train,val}.parquet -> data/tokens/<variant>/.

Writes the token shards (train/, val/), meta.json and metrics.json (DVC metrics: tokens per
source and split). Reads params.yaml `tokenize` (shard_tokens, workers, batch_conversations).
Usage: `python -m stages.tokenize <variant>`.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.params import project_root, section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.tokenize", description=__doc__)
    parser.add_argument("variant", help="dataset variant under data/dataset/ (e.g. full, commercial)")
    args = parser.parse_args(argv)
    if not args.variant.isidentifier():
        parser.error(f"variant must be a plain name like 'full', got {args.variant!r}")
    # Imported here, not at the top: the encoding workers are spawned and re-import this module,
    # and they need only numpy + tiktoken, not polars/pyarrow (faster start-up, less memory).
    from pipeline.encode import tokenize_dataset

    params = section("tokenize")
    root = project_root()
    meta = tokenize_dataset(
        root / "data" / "dataset" / args.variant,
        root / "data" / "tokens" / args.variant,
        shard_tokens=int(params["shard_tokens"]),
        workers=int(params["workers"]),
        batch_conversations=int(params["batch_conversations"]),
        progress=True,
    )
    for split, info in meta["splits"].items():
        print(
            f"tokenize {args.variant}/{split}: {info['n_conversations']} conversations, "
            f"{info['n_tokens']} tokens ({info['n_loss_tokens']} in the loss), {len(info['shards'])} shards"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
