"""KV-cache inference engine: prefill the prompts once, then decode one token per step.

- A batch of prompts of different lengths is left-padded into one static cache (see
  pipeline.model.KVCache); each row computes exactly what it would alone.
- On CUDA the decode step is captured once per (batch size, cache length) in a CUDA graph and
  replayed, which removes the per-kernel launch cost that dominates small-batch decoding. Cache
  lengths are rounded up to a bucket so that a chat of varying lengths reuses a few graphs. If
  capture fails the same static step runs eagerly. `compile_decode` also runs the static step
  through torch.compile first (fused layer norms, bias and activation kernels: fewer kernels per
  token), at the cost of a compilation per shape. On CPU the step attends only over the filled
  slots and multiplies by the fp32 weights through oneDNN (see GPT.decode_step), since a
  one-token step there is bound by reading the weights.
- The next step is launched before the host reads the sampled tokens back, so stop checks and
  detokenisation on the CPU overlap the GPU's work.
- A row stops at any special token (<|endoftext|>, <human>, <bot>, <endOfText>: none is ever
  shown) or at one of up to four stop strings (pipeline.stops; the stop string is not returned).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.model import GPT, KVCache
from pipeline.sampling import SamplingParams, sample
from pipeline.stops import StopStringDecoder, check_stop_strings
from pipeline.threadtuner import ThreadTuner
from pipeline.tokenizer import BOT_ID, END_OF_TURN_ID, ENDOFTEXT_ID, HUMAN_ID, N_VOCAB

log = logging.getLogger(__name__)

# Generation ends at any special token: the model must never show a marker.
STOP_TOKEN_IDS: frozenset[int] = frozenset({END_OF_TURN_ID, ENDOFTEXT_ID, HUMAN_ID, BOT_ID})
PAD_ID = ENDOFTEXT_ID  # fills left padding; masked out, so any id would do

# (tokens (B, 1), cache) -> logits (B, vocab): GPT.decode_step, maybe compiled.
DecodeStep = Callable[[torch.Tensor, KVCache], torch.Tensor]

# Compilations of the decode step a process may make: one per cache shape (batch size x bucketed
# length) it meets. torch's recompile_limit (8 per function) would otherwise fail the 9th shape of
# a fullgraph compilation, e.g. a long chat on the CPU (64-token buckets up to block 1024).
MAX_COMPILED_SHAPES = 256


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Makes `device` the current CUDA device (a no-op elsewhere). Streams, events and CUDA graph
    capture and replay act on the current device: for a model on cuda:1 while cuda:0 is current, an
    event would fence nothing and a graph would capture nothing."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


@dataclass
class Generation:
    """One finished row. `token_ids` excludes the special token that ended it (if any).

    finish_reason: "stop" (a special token or a stop string ended it) or "length" (budget spent).
    stop_token: the special token that ended it (a turn should end at <endOfText>; another one means
    the model did not close its turn), None for a stop string or the budget.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    stop_token: int | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def _thread_invariant(decode: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """`decode(tokens)` with the same logits at any CPU thread count, for the thread tuner, which
    changes the count between steps. torch's CPU flash-attention kernel does not give them: for one
    query row its result moves with the count (2.13: ~1e-7 in attention, ~1e-6 in the logits of a
    GPT-2 layer shape at 1 vs 2 threads), which can flip a greedy near-tie or a seeded draw, so a
    `--seed` reply would depend on the counts the timings picked. The math backend's one-row
    products do not move. (A prefill's do, in its linear layers at a few rows: decode_tokens runs
    it at the tuner's largest count.)"""
    with sdpa_kernel([SDPBackend.MATH]):
        return decode(tokens)


class _DecodeGraph:
    """A decode step on static input/output buffers, captured once and replayed."""

    def __init__(self, step: DecodeStep, cache: KVCache) -> None:
        self.idx = torch.full((cache.batch_size, 1), PAD_ID, dtype=torch.long, device=cache.device)
        # Warm up on a side stream (lazy cuBLAS/attention initialisation must not be captured).
        # The writes land in slot cache.pos_t, which the prefill overwrites before any real use.
        # Attention kernels that are known to capture well (memory-efficient, math fallback); the
        # choice is made while capturing and frozen into the graph.
        backends = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), sdpa_kernel(backends):
            for _ in range(2):  # (a compiled step compiles here)
                step(self.idx, cache)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with sdpa_kernel(backends), torch.cuda.graph(self.graph):
            self.logits = step(self.idx, cache)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        self.idx.copy_(idx)
        self.graph.replay()
        return self.logits


class _Slot:
    """A reusable cache (and, on CUDA, its captured decode graph) for one (batch, length) shape."""

    def __init__(self, model: GPT, step: DecodeStep, batch_size: int, max_len: int, use_graph: bool) -> None:
        param = next(model.parameters())
        self.cache = KVCache(model.config, batch_size, max_len, param.device, param.dtype)
        self.step = step
        self.graph: _DecodeGraph | None = None
        compiled = step != model.decode_step  # (==: each attribute access makes a new bound method)
        if not (use_graph or compiled):
            return
        try:
            # (only a compiled step touches torch._dynamo: importing it costs about a second)
            room = torch._dynamo.config.patch(recompile_limit=MAX_COMPILED_SHAPES) if compiled else None
            with room or contextlib.nullcontext():
                if use_graph:
                    self.graph = _DecodeGraph(step, self.cache)
                else:  # compile now, not at the reply's first token; the prefill overwrites the slot
                    step(
                        torch.full((batch_size, 1), PAD_ID, dtype=torch.long, device=param.device), self.cache
                    )
        # Capture and compilation are optimisations: fall back, never fail. Not only RuntimeError:
        # dynamo's own errors (e.g. FailOnRecompileLimitHit) derive from Exception.
        except Exception as e:
            log.warning(
                "%s failed (%s); decoding eagerly", "CUDA graph capture" if use_graph else "compiling", e
            )
            if param.device.type == "cuda":
                torch.cuda.synchronize(param.device)
            # A compiled function retries and fails again on every call: use the plain step.
            self.step = model.decode_step

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.graph is not None:
            return self.graph(tokens)
        return self.step(tokens, self.cache)


class Engine:
    """Generates from a GPT with a KV cache. The model is put in eval mode; its dtype is kept.

    cuda_graphs: None = on when the model is on CUDA. compile_decode: run the static-shape decode
    step through torch.compile (one compilation per cache shape; worth it for long sessions on a
    GPU). bucket: cache lengths are rounded up to a multiple of this (capped at block_size), so few
    shapes (graphs, compilations) serve many prompt lengths. thread_tuner: on a CPU, runs each
    decode step at the thread count that has been fastest lately (pipeline/threadtuner.py).
    Caches are reused between calls, so an Engine runs one generation at a time (finish or close
    one stream before starting the next).
    """

    def __init__(
        self,
        model: GPT,
        *,
        enc=None,
        cuda_graphs: bool | None = None,
        compile_decode: bool = False,
        bucket: int | None = None,
        max_cached_shapes: int = 4,
        thread_tuner: ThreadTuner | None = None,
    ) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        # CPU threads are what the tuner picks: on a GPU the kernels run elsewhere.
        self.thread_tuner = thread_tuner if self.device.type == "cpu" else None
        self.block_size = model.config.block_size
        on_cuda = self.device.type == "cuda"
        self.cuda_graphs = on_cuda if cuda_graphs is None else (cuda_graphs and on_cuda)
        self.compile_decode = compile_decode
        self._step: DecodeStep = model.decode_step
        if compile_decode:
            static_step = functools.partial(model.decode_step, static=True)
            self._step = torch.compile(static_step, fullgraph=True, dynamic=False)
        self.bucket = bucket or (256 if on_cuda else 64)
        self.max_cached_shapes = max_cached_shapes
        self._slots: OrderedDict[tuple[int, int], _Slot] = OrderedDict()
        self._enc = enc

    @property
    def enc(self):
        if self._enc is None:
            from pipeline.tokenizer import get_encoding

            self._enc = get_encoding()
        return self._enc

    # ---- token level -------------------------------------------------------------------------

    @torch.inference_mode()
    def decode_tokens(
        self, prompts: Sequence[Sequence[int]], max_new_tokens: int, params: SamplingParams
    ) -> Iterator[list[int]]:
        """Yield the batch's next tokens (one per row) at each step, up to max_new_tokens steps.

        Knows nothing of stops: the consumer stops iterating when it is done (rows that finished
        early keep being computed, their tokens ignored).
        """
        if not prompts:
            return
        lengths = [len(p) for p in prompts]
        if min(lengths) == 0:
            raise ValueError("every prompt needs at least one token")
        if max_new_tokens < 1:
            return
        longest = max(lengths)
        # The last new token is sampled, never fed back: the cache holds the prompt and the others.
        needed = longest + max_new_tokens - 1
        if needed > self.block_size:
            raise ValueError(
                f"prompt of {longest} tokens + {max_new_tokens} new tokens exceeds block_size {self.block_size}"
                f" (at most {self.block_size + 1} together: the last new token is not fed back)"
            )
        # The model's device is made current around the CUDA work, never across a yield: the
        # consumer's code between tokens runs with its own current device.
        with on_device(self.device):
            slot = self._slot(len(prompts), needed)
            cache = slot.cache
            cache.reset([longest - n for n in lengths])
            rows = [[PAD_ID] * (longest - len(p)) + list(p) for p in prompts]
            idx = torch.tensor(rows, dtype=torch.long, device=self.device)
            generator = params.generator(self.device)
            if self.thread_tuner is not None:
                # The prefill at one count, whatever the last reply's steps left set: its linear
                # layers' few-row products move with the count (~1e-6 at 5 to 11 rows on torch 2.13).
                self.thread_tuner.before_untimed()
            logits, _ = self.model(idx, cache=cache)
            logits = logits[:, -1]
            host = torch.empty(len(prompts), dtype=torch.long, pin_memory=self.device.type == "cuda")
            ready = torch.cuda.Event() if self.device.type == "cuda" else None
        for step in range(max_new_tokens):
            with on_device(self.device):
                tokens = sample(logits[:, :N_VOCAB], params, generator)
                host.copy_(tokens, non_blocking=ready is not None)
                if ready is not None:
                    ready.record()
                if step + 1 < max_new_tokens:
                    # Launch the next step now; reading `host` below waits only for the copy.
                    logits = self._decode_step(slot, tokens.view(-1, 1))
                    cache.advance()
                if ready is not None:
                    ready.synchronize()
                new = host.tolist()
            yield new

    def _decode_step(self, slot: _Slot, tokens: torch.Tensor) -> torch.Tensor:
        if self.thread_tuner is None:
            return slot.decode(tokens)
        if slot.step != self.model.decode_step:  # compiled: its kernels were chosen when it compiled
            return self.thread_tuner.timed(lambda: slot.decode(tokens))
        return self.thread_tuner.timed(lambda: _thread_invariant(slot.decode, tokens))

    def generate_ids(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        params: SamplingParams | None = None,
        stop_token_ids: Sequence[int] | frozenset[int] = STOP_TOKEN_IDS,
    ) -> list[list[int]]:
        """New token ids per prompt, each cut before its first stop token (no text decoding)."""
        params = params or SamplingParams(temperature=0.0)
        stop_ids = frozenset(stop_token_ids)
        out: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        for tokens in self.decode_tokens(prompts, max_new_tokens, params):
            for i, t in enumerate(tokens):
                if done[i]:
                    continue
                if t in stop_ids:
                    done[i] = True
                else:
                    out[i].append(t)
            if all(done):
                break
        return out

    # ---- text level --------------------------------------------------------------------------

    def stream_batch(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        params: SamplingParams | None = None,
        stop: Sequence[str] | str | None = None,
        results: list[Generation] | None = None,
    ) -> Iterator[tuple[int, str]]:
        """Yield (row, text) pieces as they become safe to show: whole UTF-8 characters, nothing
        of a stop string or of any text after it, no special token.

        If `results` is given, it is filled with one Generation per row when the stream ends.
        """
        params = params or SamplingParams(temperature=0.0)
        stop = check_stop_strings(stop)
        decoders = [StopStringDecoder(self.enc, stop) for _ in prompts]
        texts: list[list[str]] = [[] for _ in prompts]
        ids: list[list[int]] = [[] for _ in prompts]
        reasons: list[str | None] = [None] * len(prompts)
        stop_tokens: list[int | None] = [None] * len(prompts)
        for tokens in self.decode_tokens(prompts, max_new_tokens, params):
            for i, t in enumerate(tokens):
                if reasons[i] is not None:
                    continue
                if t in STOP_TOKEN_IDS:
                    reasons[i], stop_tokens[i] = "stop", t
                    piece = decoders[i].flush()
                else:
                    ids[i].append(t)
                    piece = decoders[i].feed(t)
                    if decoders[i].stopped:
                        reasons[i] = "stop"
                if piece:
                    texts[i].append(piece)
                    yield i, piece
            if all(r is not None for r in reasons):
                break
        for i, d in enumerate(decoders):
            if reasons[i] is None:
                piece = d.flush()
                # the budget ran out, unless the end completed a stop string (see StopStringDecoder.flush)
                reasons[i] = "stop" if d.stopped else "length"
                if piece:
                    texts[i].append(piece)
                    yield i, piece
        if results is not None:
            results[:] = [
                Generation(text="".join(t), token_ids=n, finish_reason=r, stop_token=s)
                for t, n, r, s in zip(texts, ids, reasons, stop_tokens, strict=True)
            ]

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        params: SamplingParams | None = None,
        stop: Sequence[str] | str | None = None,
    ) -> list[Generation]:
        """Generate for a batch of token-id prompts; one Generation per prompt, in order."""
        results: list[Generation] = []
        for _ in self.stream_batch(prompts, max_new_tokens, params, stop, results):
            pass
        return results

    def stream(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        params: SamplingParams | None = None,
        stop: Sequence[str] | str | None = None,
        results: list[Generation] | None = None,
    ) -> Iterator[str]:
        """Text pieces for one prompt, as they become safe to show (see stream_batch)."""
        for _, piece in self.stream_batch([prompt], max_new_tokens, params, stop, results):
            yield piece

    # ---- caches ------------------------------------------------------------------------------

    def _slot(self, batch_size: int, needed: int) -> _Slot:
        max_len = min(self.block_size, -(-needed // self.bucket) * self.bucket)
        key = (batch_size, max_len)
        slot = self._slots.get(key)
        if slot is None:
            while len(self._slots) >= self.max_cached_shapes:
                self._slots.popitem(last=False)
            slot = _Slot(self.model, self._step, batch_size, max_len, self.cuda_graphs)
            self._slots[key] = slot
        self._slots.move_to_end(key)
        return slot
