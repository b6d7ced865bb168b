"""Evaluation: validation loss on bot tokens, and chat transcripts from fixed prompts.

The loss is the masked cross-entropy the trainer optimises, averaged over every bot token of the
evaluated windows (weighted by token, not by batch), so it is comparable across runs and variants.
Its windows are the trainer's val-loss windows (TokenShards.iter_eval_batches: fixed offsets
0, T, 2T, ... of each shard), so with the same windows it is train's val loss; training's own
windows start at a turn (train.window_align), where no window begins mid-reply with little
context, and score lower: the same model on the cpu-tiny val split, 5.377 at fixed offsets and
5.354 over turn-aligned windows (docs/contracts.md). Transcripts run the real chat path
(KV-cache engine + session).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline import paramcheck
from pipeline.chatsession import max_reply_budget, reply_budget_range
from pipeline.model import GPT, masked_token_losses
from pipeline.transcripts import Transcript, said_nothing

# The largest x with a finite math.exp(x) (about 709.78).
MAX_EXP_ARG = math.log(sys.float_info.max)

if TYPE_CHECKING:
    from pipeline.chatsession import ChatSession
    from pipeline.engine import Engine


class EvalSetupError(ValueError):
    """params.yaml `evaluate` cannot run against this model; one line naming the setting."""


EVAL_BATCH = 8  # windows per validation batch; eval_iters batches (if set) are the per-source budget too


EVAL_KEYS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "eval_iters", "prompts")
PROMPT_KEYS = ("context", "turns")
INTEGER_KEYS = {"max_new_tokens", "eval_iters", "seed", "top_k"}
NUMBER_KEYS = INTEGER_KEYS | {"temperature", "top_p"}


def check_eval_params(cfg: Any, block_size: int) -> dict[str, Any]:
    """The `evaluate` settings, numbers as numbers; refuses what the stage cannot honour, naming the
    key and the rule.

    Numbers follow paramcheck's rule (PyYAML reads `1e-3` as a string; an integral float is an
    integer). `prompts` may be empty (no transcripts); each prompt needs a non-empty list of `turns`
    (strings) and may have a `context` (a string or null). The reply budget must leave room in the
    model's window (`block_size`) for the prompt.
    """

    def fail(key: str, rule: str, value: Any) -> EvalSetupError:
        return EvalSetupError(f"params.yaml evaluate.{key}: {rule}, got {value!r}")

    if not isinstance(cfg, dict):
        raise EvalSetupError(f"params.yaml evaluate: expected a mapping of settings, got {cfg!r}")
    paramcheck.known_keys("evaluate", cfg, EVAL_KEYS, EvalSetupError)
    for key in sorted(set(EVAL_KEYS) - set(cfg)):
        raise EvalSetupError(f"params.yaml evaluate.{key}: missing")

    cfg = dict(cfg)
    for key in NUMBER_KEYS:
        n = paramcheck.number(cfg[key])  # None for null (no limit) and for what no number spells
        if isinstance(n, float) and key in INTEGER_KEYS and n.is_integer():
            n = int(n)
        if n is not None:
            cfg[key] = n

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    n = cfg["max_new_tokens"]
    if not integer(n) or not 1 <= n <= max_reply_budget(block_size):
        raise fail(
            "max_new_tokens",
            f"must be an integer in {reply_budget_range(block_size)}",
            n,
        )
    if cfg["eval_iters"] is not None and (not integer(cfg["eval_iters"]) or cfg["eval_iters"] < 1):
        raise fail(
            "eval_iters", "must be an integer >= 1, or null for the whole val split", cfg["eval_iters"]
        )
    if not integer(cfg["seed"]) or cfg["seed"] < 0:
        raise fail("seed", "must be an integer >= 0", cfg["seed"])
    if not number(cfg["temperature"]) or cfg["temperature"] < 0:
        raise fail("temperature", "must be a number >= 0 (0 = greedy)", cfg["temperature"])
    if cfg["top_k"] is not None and (not integer(cfg["top_k"]) or cfg["top_k"] < 1):
        raise fail("top_k", "must be an integer >= 1, or null for no limit", cfg["top_k"])
    if cfg["top_p"] is not None and (not number(cfg["top_p"]) or not 0 <= cfg["top_p"] <= 1):
        raise fail("top_p", "must be a number in [0, 1], or null for no limit", cfg["top_p"])
    from pipeline.chatsession import clean_text

    prompts = cfg["prompts"]
    if not isinstance(prompts, list):
        raise fail("prompts", "must be a list of {context, turns} (may be empty)", prompts)
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, dict):
            raise fail(f"prompts[{i}]", "must be a mapping with turns (and optionally context)", prompt)
        paramcheck.known_keys(f"evaluate.prompts[{i}]", prompt, PROMPT_KEYS, EvalSetupError)
        turns = prompt.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise fail(
                f"prompts[{i}].turns", "must be a non-empty list of strings (the human messages)", turns
            )
        # An empty message renders as a turn no training text has (normalize drops empty turns;
        # serve and the chat template refuse one), so its reply would measure nothing the model knows.
        # A message chat refuses (a run of combining marks or whitespace) is said here, by its key.
        for j, text in enumerate(turns):
            try:
                if not clean_text(text):
                    raise ValueError("must hold text (a blank message is not a turn)")
            except ValueError as e:
                raise fail(
                    f"prompts[{i}].turns[{j}]", str(e), text[:40] + ("..." if len(text) > 40 else "")
                ) from None
        if prompt.get("context") is not None and not isinstance(prompt["context"], str):
            raise fail(f"prompts[{i}].context", "must be a string or null", prompt["context"])
    return cfg


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: a figure that could not be measured (no replies, empty val split) is null."""
    return x if math.isfinite(x) else None


@dataclass
class LossReport:
    loss: float
    perplexity: float
    tokens: int
    windows: int
    split_tokens: int = 0  # bot tokens in the whole split: `tokens` of them were scored

    @property
    def share(self) -> float:
        """The share of the split's bot tokens scored (1.0: the whole split)."""
        return self.tokens / self.split_tokens if self.split_tokens else float("nan")


@torch.no_grad()
def bot_token_loss(
    model: GPT, split_dir: str | Path, batch_size: int, max_batches: int | None = None
) -> LossReport:
    """Mean cross-entropy over bot tokens (loss mask 1) of the validation split: every window, or
    `max_batches` batches of windows spread evenly over it (TokenShards.iter_eval_batches).

    Only the bot positions are projected to the vocabulary (masked_token_losses), so no full
    (batch, block, vocab) logits tensor is ever built.
    """
    from pipeline.shards import TokenShards

    shards = TokenShards(split_dir)
    device = next(model.parameters()).device
    block = model.config.block_size
    total, count, windows = 0.0, 0, 0
    batches = shards.iter_eval_batches(batch_size, block, max_batches)
    total_batches = shards.n_eval_batches(batch_size, block, max_batches)
    for x, y, m in tqdm(batches, total=total_batches, desc="val loss", leave=False):
        x_t, y_t, m_t = (torch.from_numpy(a).to(device) for a in (x, y, m))
        losses = masked_token_losses(model, model.hidden(x_t), y_t, m_t)
        total += float(losses.sum())
        count += losses.numel()
        windows += x.shape[0]
    loss = total / count if count else float("nan")
    return LossReport(
        loss=loss,
        # exp overflows a float past a loss of ~709.8 (a diverged run, when the figure matters most):
        # infinite, which metrics.json writes as null. A NaN loss (NaN weights) keeps a NaN perplexity:
        # `nan < x` is False, and the summary line said "ppl inf" of a loss it printed as nan.
        perplexity=(math.inf if loss >= MAX_EXP_ARG else math.exp(loss)) if count else float("nan"),
        tokens=count,
        windows=windows,
        split_tokens=shards.loss_tokens(),
    )


@dataclass
class SourceLoss:
    source: str
    loss: float  # mean cross-entropy per bot token
    tokens: int  # bot tokens scored
    conversations: int


def conversation_windows(ids: np.ndarray, mask: np.ndarray, block: int) -> Iterator[tuple[np.ndarray, ...]]:
    """One conversation as consecutive, non-overlapping windows of `block` predictions each (a
    window past the first sees only itself as context, as in training on block-sized windows):
    (x, y, m) rows padded with <|endoftext|> / mask 0, so every bot token is scored exactly once."""
    from pipeline.tokenizer import ENDOFTEXT_ID

    n = len(ids) - 1  # predictions: ids[t] -> ids[t + 1]
    for start in range(0, max(n, 0), block):
        width = min(block, n - start)
        x = np.full(block, ENDOFTEXT_ID, dtype=np.int64)
        y = np.full(block, ENDOFTEXT_ID, dtype=np.int64)
        m = np.zeros(block, dtype=np.uint8)
        x[:width] = ids[start : start + width]
        y[:width] = ids[start + 1 : start + 1 + width]
        m[:width] = mask[start + 1 : start + 1 + width]
        yield x, y, m


@torch.no_grad()
def loss_by_source(
    model: GPT, split_dir: str | Path, sources: list[str], token_budget: int | None, batch_size: int = 8
) -> list[SourceLoss]:
    """Bot-token loss of each source's validation conversations: which part of the mix the model
    handles worst (a data decision the single val loss hides).

    `sources[i]` is conversation i's source (the dataset's val.parquet, in the shards' order).
    Whole conversations are scored, in order (the split is a seeded shuffle), until a source has
    `token_budget` bot tokens (None: every conversation), so a small source is measured as well as the
    large ones and the cost stays bounded. Returns one row per source with scored tokens, worst loss first.
    """
    from pipeline.shards import TokenShards

    shards = TokenShards(split_dir)
    if shards.n_conversations != len(sources):
        raise ValueError(
            f"{split_dir}: {shards.n_conversations} conversations but {len(sources)} sources given "
            "(the token shards and the dataset split differ: re-run `dvc repro`)"
        )
    device = next(model.parameters()).device
    block = model.config.block_size
    totals: dict[str, list[float]] = {}  # source -> [loss sum, bot tokens, conversations]
    pending: list[tuple[str, tuple[np.ndarray, ...]]] = []

    def flush() -> None:
        if not pending:
            return
        x, y, m = (
            torch.from_numpy(np.stack(col)).to(device) for col in zip(*(w for _, w in pending), strict=True)
        )
        losses = masked_token_losses(model, model.hidden(x), y, m).cpu()
        per_row = torch.split(losses, m.sum(dim=1).tolist())  # gathered in row-major order
        for (source, _), row in zip(pending, per_row, strict=True):
            totals[source][0] += float(row.sum())
        pending.clear()

    for source, (ids, mask) in zip(sources, shards.iter_conversations(), strict=True):
        entry = totals.setdefault(source, [0.0, 0, 0])
        if (token_budget is not None and entry[1] >= token_budget) or not mask.any():
            continue
        entry[1] += int(mask[1:].sum())
        entry[2] += 1
        for window in conversation_windows(np.asarray(ids, dtype=np.int64), mask, block):
            pending.append((source, window))
            if len(pending) == batch_size:
                flush()
    flush()
    rows = [
        SourceLoss(source, total / tokens, int(tokens), int(n))
        for source, (total, tokens, n) in totals.items()
        if tokens > 0
    ]
    return sorted(rows, key=lambda r: (-r.loss, r.source))


def val_sources(parquet: Path) -> list[str]:
    """Each validation conversation's source, in file order (= the shards' order, see encode)."""
    import pyarrow.parquet as pq

    if not parquet.is_file():
        raise FileNotFoundError(f"{parquet}: missing; run `dvc repro build`")
    return [str(s) for s in pq.read_table(parquet, columns=["source"]).column("source").to_pylist()]


def source_loss_csv(rows: list[SourceLoss]) -> str:
    """model/eval/sources.csv: a DVC bar plot of bot-token loss per source."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["source", "val_loss_bot", "bot_tokens", "conversations"])
    for r in rows:
        writer.writerow([r.source, f"{r.loss:.4f}", r.tokens, r.conversations])
    return out.getvalue()


@dataclass(frozen=True)
class EvalResult:
    """What the evaluate stage writes: model/eval/metrics.json (`metrics`), sources.csv (`sources`),
    transcripts.md (`transcripts`), and what it says: `warnings` (one line each, for stderr) and the
    unrounded `loss` and decode `figures` its summary line prints."""

    loss: LossReport
    sources: list[SourceLoss]  # per-source bot-token loss, worst first
    transcripts: list[Transcript]
    figures: dict[str, Any]  # run_transcripts' decode figures, unrounded (NaN: not measured)
    warnings: list[str]

    @property
    def metrics(self) -> dict[str, Any]:
        """The DVC metrics: rounded for a readable diff, and a figure that could not be measured is
        null (JSON has no NaN)."""
        measured = {
            "val_loss_bot": round(self.loss.loss, 4),
            "val_ppl_bot": round(self.loss.perplexity, 2),
            "val_bot_tokens": self.loss.tokens,
            "val_bot_tokens_share": round(self.loss.share, 4),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in self.figures.items()},
        }
        return {k: finite_or_none(v) if isinstance(v, float) else v for k, v in measured.items()}


def evaluate_model(model: GPT, val_dir: Path, val_parquet: Path, cfg: Any) -> EvalResult:
    """The whole evaluation of a loaded model: bot-token loss over the val split (`val_dir`, token
    shards), the same per source (`val_parquet` names each val conversation's source), and the
    transcripts of params.yaml `evaluate` (`cfg`, as read: checked here against the model's window).

    Raises EvalSetupError (one line) for settings the model cannot honour and for data that disagree
    (shards vs val.parquet, a broken shard or parquet); FileNotFoundError for a missing input.
    """
    from pipeline.engine import Engine
    from pipeline.threadtuner import AUTO, auto_tuner, restoring

    cfg = check_eval_params(cfg, model.config.block_size)
    # The replies decode as `nanochatgpt chat` does by default (`--threads auto`), so that
    # decode_tokens_per_s is the speed chat gives on this machine as it is: on torch's default count,
    # a busy process beside the stage (a numpy job on one core, here) took the cpu-tiny figure from
    # 193 to 6 tokens/s. The count changes no token (tests/test_threadtuner.py).
    with restoring(auto_tuner(AUTO)) as tuner:
        return _evaluate(model, val_dir, val_parquet, cfg, Engine(model, thread_tuner=tuner))


def _evaluate(model: GPT, val_dir: Path, val_parquet: Path, cfg: dict, engine: Engine) -> EvalResult:
    sessions = check_prompts_fit(engine, cfg["prompts"], cfg)  # before minutes of scoring
    try:  # data that disagree (shards vs val.parquet, broken shards or parquet) raise ValueError
        sources = val_sources(val_parquet)  # read first: a bad file is said before minutes of scoring
        loss = bot_token_loss(model, val_dir, batch_size=EVAL_BATCH, max_batches=cfg["eval_iters"])
        # Per source, as many bot tokens as the overall loss's eval_iters batches of EVAL_BATCH
        # windows hold positions (about twice the bot tokens those windows score: half a window
        # is not the bot's), or every conversation when the whole split is scored.
        budget = (
            None if cfg["eval_iters"] is None else cfg["eval_iters"] * EVAL_BATCH * model.config.block_size
        )
        by_source = loss_by_source(model, val_dir, sources, token_budget=budget)
    except ValueError as e:
        raise EvalSetupError(str(e)) from None
    # A source whose val conversations hold no bot token has no loss: said, not silently dropped.
    warnings = [
        f"{unscored} has no bot token in the val split; no loss row"
        for unscored in sorted(set(sources) - {r.source for r in by_source})
    ]
    if not loss.tokens:  # an empty val split (build.val_fraction 0), or windows missing every bot token
        where = "the val split holds" if not loss.split_tokens else "the evaluate.eval_iters windows hold"
        warnings.insert(0, f"{val_dir}: {where} no bot token; val_loss_bot and val_ppl_bot are null")
    elif not math.isfinite(loss.loss):  # NaN logits: else a null loss that no line explains
        warnings.insert(
            0,
            f"{val_dir}: the loss is {loss.loss} (the model's outputs are not finite: a diverged or "
            "damaged checkpoint); val_loss_bot and val_ppl_bot are null",
        )
    transcripts, figures = run_transcripts(model, cfg["prompts"], cfg, sessions)
    return EvalResult(loss, by_source, transcripts, figures, warnings)


def check_prompts_fit(engine: Engine, prompts: list[dict], cfg: dict) -> list[Callable[[], ChatSession]]:
    """A ChatSession maker per prompt, once each prompt's persona and every message alone fit the
    window with the reply budget (history is cut oldest-first, so a later turn cannot fail where it
    fits alone), else EvalSetupError naming the prompt: checked before the loss pass, so a prompt
    too long for the model is said at once, not after minutes of scoring."""
    from pipeline.chatsession import ChatSession
    from pipeline.sampling import MAX_SEED

    sessions = []
    replies_before = 0  # replies of the earlier prompts
    for i, prompt in enumerate(prompts):
        session = partial(
            ChatSession,
            engine,
            context=prompt.get("context"),
            max_new_tokens=cfg["max_new_tokens"],
            temperature=cfg["temperature"],
            top_k=cfg["top_k"],
            top_p=cfg["top_p"],
            # A session seeds its reply j with seed + j, so every reply of the run gets a seed of its
            # own: seed + its index among all the replies. (With seed + i per prompt, a prompt's
            # second reply drew the same random numbers as the next prompt's first, and a weak
            # model, whose replies start alike whatever the prompt, often opened both alike.)
            seed=(cfg["seed"] + replies_before) % (MAX_SEED + 1),
        )
        replies_before += len(prompt["turns"])
        try:
            chat = session()
        except ValueError as e:  # persona too long for the window, a sampling setting out of range
            raise EvalSetupError(f"params.yaml evaluate.prompts[{i}]: {e}") from None
        for j, user_text in enumerate(prompt["turns"]):
            try:
                chat.prompt_ids(user_text)  # fits the window? (the reply then cannot fail on it)
            except ValueError as e:
                raise EvalSetupError(
                    f"params.yaml evaluate.prompts[{i}].turns[{j}]: {e} (or lower evaluate.max_new_tokens "
                    f"{cfg['max_new_tokens']}, or train a longer block_size than {engine.block_size})"
                ) from None
        sessions.append(session)
    return sessions


def run_transcripts(
    model: GPT,
    prompts: list[dict],
    cfg: dict,
    sessions: list[Callable[[], ChatSession]] | None = None,
) -> tuple[list[Transcript], dict]:
    """Play each scripted prompt through a chat session; returns transcripts and decode figures.
    `sessions`: check_prompts_fit's session makers, when the caller has checked the prompts already.

    stop_rate: the share of replies that ended as a bot turn should: some text, then <endOfText>
    (or a stop string); empty_reply_rate: the share that closed their turn having said nothing
    (whitespace at most), a bot turn no training text holds (normalize drops empty turns), so not
    a clean stop, or a model answering every message with nothing would have the best stop_rate;
    stray_stop_rate: the share ended by another special token (the engine stops on those too, but
    a model that writes <human> has not learnt to close its turn); the rest ran out of reply
    budget. A transcript's `stopped` says how a reply ended (at <endOfText>: True, empty or not),
    for transcripts.md's note on why it ended. decode_tokens_per_s:
    decode steps (reply tokens and the token that ended each) per second of reply_result, prefill
    included, after one untimed warm-up reply (on the sessions' engine: evaluate_model's decodes at
    chat's default thread count, `--threads auto`).
    """
    from pipeline.chatsession import clean_text
    from pipeline.engine import Engine
    from pipeline.tokenizer import END_OF_TURN_ID

    if sessions is None:
        sessions = check_prompts_fit(Engine(model), prompts, cfg)
    transcripts: list[Transcript] = []
    steps, new_tokens, seconds = 0, 0, 0.0
    warm = True  # the first reply of a process pays one-off costs: not a decode figure
    for prompt, session in zip(prompts, sessions, strict=True):
        chat = session()
        # The persona and messages as the model got them (clean_text: stripped, NFC, LF), so a
        # blank persona reads "(none)", as the model had none, not an empty persona.
        t = Transcript(context=chat.context, exchanges=[], stopped=[])
        for user_text in prompt["turns"]:
            if warm:  # on a session of its own: the transcript's replies are not changed by it
                session().reply_result(user_text)
                warm = False
            t0 = time.perf_counter()
            result = chat.reply_result(user_text)
            seconds += time.perf_counter() - t0
            new_tokens += result.n_tokens
            steps += result.n_tokens + (result.stop_token is not None)
            closed = result.stop_token in (None, END_OF_TURN_ID)  # no special token, or the turn's end
            t.exchanges.append((clean_text(user_text), result.text))
            t.stopped.append(result.finish_reason == "stop" and closed)
            t.stray.append(not closed)
        transcripts.append(t)
    # per reply: (closed its turn, said nothing, ended by a stray special token)
    ends = [
        (stopped, said_nothing(bot), stray)
        for t in transcripts
        for (_, bot), stopped, stray in zip(t.exchanges, t.stopped, t.stray, strict=True)
    ]
    n = len(ends)

    def share(flags: list[bool]) -> float:
        return sum(flags) / n if n else float("nan")

    figures = {
        "replies": n,
        "stop_rate": share([stopped and not empty for stopped, empty, _ in ends]),
        "empty_reply_rate": share([stopped and empty for stopped, empty, _ in ends]),
        "stray_stop_rate": share([stray for _, _, stray in ends]),
        "decode_tokens_per_s": steps / seconds if seconds else float("nan"),
        "mean_reply_tokens": new_tokens / n if n else float("nan"),
    }
    return transcripts, figures
