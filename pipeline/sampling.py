"""Next-token sampling: greedy, temperature, top-k, top-p (nucleus), reproducible with a seed.

Works on a whole batch of logits at once and never syncs with the host, so the decode loop can
launch the next step before it reads the sampled tokens back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit integer


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each token. temperature 0, top_k 1 or top_p 0 mean greedy (the other settings
    and the seed then do not matter). One generator serves a whole batch, so a seeded row's text
    depends on the batch it is in: the same seed gives the same text for the same batch."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0.0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, or unset for no limit, got {self.top_k}")
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:  # OpenAI's range; 0 = the best token
            raise ValueError(f"top_p must be in [0, 1] (1 = no limit), got {self.top_p}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..{MAX_SEED} (a torch generator seed), got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1 or self.top_p == 0.0

    def generator(self, device: torch.device) -> torch.Generator | None:
        """A generator seeded with `seed` on `device` (None: torch's global RNG)."""
        if self.seed is None or self.greedy:
            return None
        g = torch.Generator(device=device)
        g.manual_seed(self.seed)
        return g


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token id per row of `logits` (B, V); returns a (B,) long tensor on the same device."""
    if params.greedy:
        return logits.argmax(dim=-1)
    # Shift the best logit to 0 before dividing: a tiny temperature then sends the others to -inf
    # instead of overflowing every logit to +inf (softmax of inf is NaN, and NaN picked token 0).
    # A temperature below float32's range makes the best one 0 / 0: NaN, which goes back to 0.
    logits = logits.float()
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / params.temperature
    logits = logits.nan_to_num_(nan=0.0, neginf=float("-inf"))
    if params.top_k is not None and params.top_k < logits.size(-1):
        # Sample among the k best only: sort k values instead of the whole vocabulary. Tokens tied
        # with the k-th keep their chance, as in transformers and vLLM (ties are common in bf16):
        # take twice k, then drop what is below the k-th value (a tie of over k tokens at the
        # boundary, never seen in practice, would lose its tail).
        values, indices = torch.topk(logits, min(2 * params.top_k, logits.size(-1)), dim=-1)
        kth = values[..., params.top_k - 1 : params.top_k]
        values = values.masked_fill(values < kth, float("-inf"))
    elif params.top_p is not None and params.top_p < 1.0:
        values, indices = torch.sort(logits, dim=-1, descending=True)
    else:  # plain temperature sampling: no ordering needed
        values, indices = logits, None
    probs = torch.softmax(values, dim=-1)
    if params.top_p is not None and params.top_p < 1.0:
        probs = _nucleus(probs, params.top_p)
    # Draw with the exponential race (argmax of p / E, E ~ Exp(1)): what torch.multinomial does for
    # one sample, minus its input check, which reads a value back to the host and so would stall
    # the decode loop on every token.
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    race.clamp_(min=torch.finfo(race.dtype).tiny)  # E = 0 would make a 0-probability token win (0/0)
    choice = (probs / race).argmax(dim=-1, keepdim=True)
    return (choice if indices is None else indices.gather(-1, choice)).squeeze(-1)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """`probs` (sorted descending along the last dim) with what falls outside the nucleus set to 0.

    The nucleus is the smallest prefix whose mass reaches top_p (the best token always in), widened
    to every token as likely as its last one: tied tokens at the boundary are all in. Cut inside a
    tie, the prefix kept whichever tied tokens the sort put first, so the same distribution at other
    token ids kept other tokens (transformers' TopPLogitsWarper 5.x cuts inside a tie the same way).
    """
    before = torch.cumsum(probs, dim=-1) - probs
    kept = (before < top_p).sum(dim=-1, keepdim=True)  # >= 1: the best token's `before` is 0
    boundary = probs.gather(-1, kept - 1)  # the least likely token of the prefix
    # Equal logits give bit-equal probabilities (softmax is elementwise past its sum), so == is exact.
    return probs.masked_fill(probs < boundary, 0.0)
