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
from typing import Any

import torch
from tqdm import tqdm

from pipeline.model import GPT, masked_token_losses


class EvalSetupError(ValueError):
    """params.yaml `evaluate` cannot run against this model; one line naming the setting."""


EVAL_KEYS = {"max_new_tokens", "temperature", "top_k", "top_p", "seed", "eval_iters", "prompts"}
PROMPT_KEYS = {"context", "turns"}


def check_eval_params(cfg: Any, block_size: int) -> None:
    """Refuse `evaluate` settings the stage cannot honour, naming the key and the rule.

    `prompts` may be empty (no transcripts); each prompt needs a non-empty list of `turns` (strings)
    and may have a `context` (a string or null). The reply budget must leave room in the model's
    window (`block_size`) for the prompt.
    """

    def fail(key: str, rule: str, value: Any) -> EvalSetupError:
        return EvalSetupError(f"params.yaml evaluate.{key}: {rule}, got {value!r}")

    if not isinstance(cfg, dict):
        raise EvalSetupError(f"params.yaml evaluate: expected a mapping of settings, got {cfg!r}")
    for key in sorted(set(cfg) - EVAL_KEYS):
        raise fail(key, f"unknown setting (known: {', '.join(sorted(EVAL_KEYS))})", cfg[key])
    for key in sorted(EVAL_KEYS - set(cfg)):
        raise EvalSetupError(f"params.yaml evaluate.{key}: missing")

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    n = cfg["max_new_tokens"]
    if not integer(n) or not 1 <= n < block_size:
        raise fail(
            "max_new_tokens",
            f"must be an integer in 1..{block_size - 1} (the model's block_size is {block_size})",
            n,
        )
    if not integer(cfg["eval_iters"]) or cfg["eval_iters"] < 1:
        raise fail("eval_iters", "must be an integer >= 1", cfg["eval_iters"])
    if not integer(cfg["seed"]) or cfg["seed"] < 0:
        raise fail("seed", "must be an integer >= 0", cfg["seed"])
    if not number(cfg["temperature"]) or cfg["temperature"] < 0:
        raise fail("temperature", "must be a number >= 0 (0 = greedy)", cfg["temperature"])
    if cfg["top_k"] is not None and (not integer(cfg["top_k"]) or cfg["top_k"] < 1):
        raise fail("top_k", "must be an integer >= 1, or null for no limit", cfg["top_k"])
    if cfg["top_p"] is not None and (not number(cfg["top_p"]) or not 0 <= cfg["top_p"] <= 1):
        raise fail("top_p", "must be a number in [0, 1], or null for no limit", cfg["top_p"])
    prompts = cfg["prompts"]
    if not isinstance(prompts, list):
        raise fail("prompts", "must be a list of {context, turns} (may be empty)", prompts)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, dict):
            raise fail(f"prompts[{i}]", "must be a mapping with turns (and optionally context)", prompt)
        for key in sorted(set(prompt) - PROMPT_KEYS):
            raise fail(f"prompts[{i}].{key}", "unknown key (known: context, turns)", prompt[key])
        turns = prompt.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise fail(
                f"prompts[{i}].turns", "must be a non-empty list of strings (the human messages)", turns
            )
        if prompt.get("context") is not None and not isinstance(prompt["context"], str):
            raise fail(f"prompts[{i}].context", "must be a string or null", prompt["context"])


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: a figure that could not be measured (no replies, empty val split) is null."""
    return x if math.isfinite(x) else None


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
        try:
            session = ChatSession(
                engine,
                context=prompt.get("context"),
                max_new_tokens=cfg["max_new_tokens"],
                temperature=cfg["temperature"],
                top_k=cfg["top_k"],
                top_p=cfg["top_p"],
                seed=cfg["seed"] + i,
            )
        except ValueError as e:  # persona too long for the window, a sampling setting out of range
            raise EvalSetupError(f"params.yaml evaluate.prompts[{i}]: {e}") from None
        t = Transcript(context=prompt.get("context"), exchanges=[], stopped=[])
        for j, user_text in enumerate(prompt["turns"]):
            t0 = time.perf_counter()
            try:
                session.prompt_ids(user_text)  # fits the window? (the reply then cannot fail on it)
            except ValueError as e:
                raise EvalSetupError(
                    f"params.yaml evaluate.prompts[{i}].turns[{j}]: {e} (or lower evaluate.max_new_tokens "
                    f"{cfg['max_new_tokens']}, or train a longer block_size than {model.config.block_size})"
                ) from None
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
