"""Evaluation: validation loss on bot tokens, and chat transcripts from fixed prompts.

The loss is the same masked cross-entropy the trainer optimises, averaged over every bot
token of the evaluated windows (weighted by token, not by batch), so it is comparable
across runs and variants. Transcripts run the real chat path (KV-cache engine + session).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.model import GPT, masked_token_losses


@dataclass
class LossReport:
    loss: float
    perplexity: float
    tokens: int
    windows: int


@torch.no_grad()
def bot_token_loss(model: GPT, split_dir: str | Path, batch_size: int, max_batches: int) -> LossReport:
    """Mean cross-entropy over bot tokens (loss mask 1) of up to `max_batches` validation batches.

    Only the bot positions are projected to the vocabulary (masked_token_losses), so no full
    (batch, block, vocab) logits tensor is ever built.
    """
    from pipeline.shards import TokenShards

    shards = TokenShards(split_dir)
    device = next(model.parameters()).device
    block = model.config.block_size
    total, count, windows = 0.0, 0, 0
    batches = shards.iter_eval_batches(batch_size, block)
    for i, (x, y, m) in enumerate(tqdm(batches, total=max_batches, desc="val loss", leave=False)):
        if i >= max_batches:
            break
        x_t, y_t, m_t = (torch.from_numpy(a).to(device) for a in (x, y, m))
        losses = masked_token_losses(model, model.hidden(x_t), y_t, m_t)
        total += float(losses.sum())
        count += losses.numel()
        windows += x.shape[0]
    loss = total / count if count else float("nan")
    return LossReport(
        loss=loss, perplexity=math.exp(loss) if count else float("nan"), tokens=count, windows=windows
    )


@dataclass
class Transcript:
    context: str | None
    exchanges: list[tuple[str, str]]
    stopped: list[bool]  # per reply: ended at <endOfText> / a stop string (True) or ran out of budget


def run_transcripts(model: GPT, prompts: list[dict], cfg: dict) -> tuple[list[Transcript], dict]:
    """Play each scripted prompt through a chat session; returns transcripts and decode figures."""
    from pipeline.chat import ChatSession
    from pipeline.engine import Engine

    engine = Engine(model)
    transcripts: list[Transcript] = []
    new_tokens, seconds = 0, 0.0
    for i, prompt in enumerate(prompts):
        session = ChatSession(
            engine,
            context=prompt.get("context"),
            max_new_tokens=cfg["max_new_tokens"],
            temperature=cfg["temperature"],
            top_k=cfg["top_k"],
            top_p=cfg["top_p"],
            seed=cfg["seed"] + i,
        )
        t = Transcript(context=prompt.get("context"), exchanges=[], stopped=[])
        for user_text in prompt["turns"]:
            t0 = time.perf_counter()
            result = session.reply_result(user_text)
            seconds += time.perf_counter() - t0
            new_tokens += result.n_tokens
            t.exchanges.append((user_text, result.text))
            t.stopped.append(result.finish_reason == "stop")
        transcripts.append(t)
    replies = [s for t in transcripts for s in t.stopped]
    figures = {
        "replies": len(replies),
        "stop_rate": sum(replies) / len(replies) if replies else float("nan"),
        "decode_tokens_per_s": new_tokens / seconds if seconds else float("nan"),
        "mean_reply_tokens": new_tokens / len(replies) if replies else float("nan"),
    }
    return transcripts, figures


def transcripts_markdown(transcripts: list[Transcript]) -> str:
    lines = ["# Evaluation transcripts", ""]
    for i, t in enumerate(transcripts, 1):
        lines.append(f"## Conversation {i}")
        lines.append(f"*persona:* {t.context}" if t.context else "*persona:* (none)")
        lines.append("")
        for (human, bot), stopped in zip(t.exchanges, t.stopped, strict=True):
            lines.append(f"**human:** {human}  ")
            lines.append(f"**bot:** {bot}" + ("" if stopped else " *(reply budget reached)*"))
            lines.append("")
    return "\n".join(lines)
