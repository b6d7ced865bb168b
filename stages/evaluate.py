"""evaluate: bot-token validation loss + chat transcripts -> model/eval/{metrics.json,transcripts.md}."""

from __future__ import annotations

from pathlib import Path

from pipeline import atomic
from pipeline.checkpoint import load_model
from pipeline.device import resolve_device
from pipeline.evaluate import bot_token_loss, run_transcripts, transcripts_markdown
from pipeline.params import load_params

OUT = Path("model/eval")


def main() -> None:
    params = load_params()
    cfg = params["evaluate"]
    device = resolve_device(params["train"].get("device", "auto"))
    model = load_model("model/ckpt", device)
    val_dir = Path("data/tokens") / params["train"]["variant"] / "val"
    loss = bot_token_loss(model, val_dir, batch_size=8, max_batches=cfg["eval_iters"])
    transcripts, figures = run_transcripts(model, cfg["prompts"], cfg)
    atomic.write_text(OUT / "transcripts.md", transcripts_markdown(transcripts))
    metrics = {
        "val_loss_bot": round(loss.loss, 4),
        "val_ppl_bot": round(loss.perplexity, 2),
        "val_bot_tokens": loss.tokens,
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
    }
    atomic.write_json(OUT / "metrics.json", metrics)
    print(
        f"evaluate: val loss (bot tokens) {loss.loss:.3f}, ppl {loss.perplexity:.1f}; "
        f"{figures['replies']} replies, stop rate {figures['stop_rate']:.2f}"
    )


if __name__ == "__main__":
    main()
