"""evaluate: bot-token validation loss (overall and per source) + chat transcripts -> model/eval/
{metrics.json, sources.csv, transcripts.md}."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import atomic
from pipeline.checkpoint import load_model
from pipeline.device import resolve_device
from pipeline.evaluate import (
    EvalSetupError,
    bot_token_loss,
    check_eval_params,
    finite_or_none,
    loss_by_source,
    run_transcripts,
    source_loss_csv,
    transcripts_markdown,
    val_sources,
)
from pipeline.params import load_params

OUT = Path("model/eval")
EVAL_BATCH = 8  # windows per validation batch; eval_iters batches (if set) are the per-source budget too


def main() -> int:
    params = load_params()
    cfg = params.get("evaluate")
    train = params.get("train") or {}
    try:
        try:
            model = load_model("model/ckpt", resolve_device(train.get("device", "auto")))
        except (ValueError, RuntimeError) as e:  # unreadable checkpoint, CUDA asked for but absent
            raise EvalSetupError(str(e)) from None
        cfg = check_eval_params(cfg, model.config.block_size)
        val_dir = Path("data/tokens") / str(train.get("variant")) / "val"
        try:  # data that disagree (shards vs val.parquet, broken shards or parquet) raise ValueError
            loss = bot_token_loss(model, val_dir, batch_size=EVAL_BATCH, max_batches=cfg["eval_iters"])
            # Per source, the same bot-token budget the overall loss gets (eval_iters batches of 8
            # windows), or every conversation when the whole split is scored.
            sources = val_sources(Path("data/dataset") / str(train.get("variant")) / "val.parquet")
            budget = (
                None
                if cfg["eval_iters"] is None
                else cfg["eval_iters"] * EVAL_BATCH * model.config.block_size
            )
            by_source = loss_by_source(model, val_dir, sources, token_budget=budget)
        except ValueError as e:
            raise EvalSetupError(str(e)) from None
        for unscored in sorted(set(sources) - {r.source for r in by_source}):
            print(
                f"evaluate: warning: {unscored} has no bot token in the val split; no loss row",
                file=sys.stderr,
            )
        transcripts, figures = run_transcripts(model, cfg["prompts"], cfg)
    except (EvalSetupError, FileNotFoundError) as e:  # settings or missing inputs: one line
        print(f"evaluate: {e}", file=sys.stderr)
        return 1
    atomic.write_text(OUT / "transcripts.md", transcripts_markdown(transcripts))
    atomic.write_text(OUT / "sources.csv", source_loss_csv(by_source))
    measured = {
        "val_loss_bot": round(loss.loss, 4),
        "val_ppl_bot": round(loss.perplexity, 2),
        "val_bot_tokens": loss.tokens,
        "val_bot_tokens_share": round(loss.share, 4),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
    }
    metrics = {k: finite_or_none(v) if isinstance(v, float) else v for k, v in measured.items()}
    atomic.write_json(OUT / "metrics.json", metrics)
    print(
        f"evaluate: val loss (bot tokens) {loss.loss:.3f}, ppl {loss.perplexity:.1f}; "
        f"{figures['replies']} replies, stop rate {figures['stop_rate']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
