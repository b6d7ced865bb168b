"""Shared by the inference tests (no tests here): a tiny random GPT with varied greedy output, and a
scripted GPT that emits fixed tokens, for exact tests of stops and streaming text."""

from __future__ import annotations

import torch

from pipeline.model import GPT, GPTConfig, KVCache
from pipeline.tokenizer import PADDED_VOCAB

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=128)


def tiny_gpt(seed: int = 0, **shape: int) -> GPT:
    """A tiny random GPT whose greedy continuations vary (GPT-2's 0.02 init makes them repeat);
    `shape` overrides TINY's."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**TINY, **shape}))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model.eval()


class ScriptedGPT(GPT):
    """A GPT that 'generates' fixed token scripts (one per row): for exact tests of stops and text.

    After a row's script ends it repeats `filler`.
    """

    def __init__(self, scripts: list[list[int]], filler: int = 13) -> None:
        super().__init__(GPTConfig(**TINY))
        self.scripts = scripts
        self.filler = filler
        self._first = 0

    def _onehot(self, step: int, batch: int) -> torch.Tensor:
        logits = torch.zeros(batch, PADDED_VOCAB)
        for row in range(batch):
            script = self.scripts[row % len(self.scripts)]
            logits[row, script[step] if step < len(script) else self.filler] = 1.0
        return logits

    def forward(self, idx, targets=None, loss_mask=None, cache: KVCache | None = None):
        assert cache is not None
        cache.advance(idx.shape[1])
        self._first = cache.pos
        return self._onehot(0, idx.shape[0]).unsqueeze(1), None

    def decode_step(self, idx, cache: KVCache):
        return self._onehot(cache.pos - self._first + 1, idx.shape[0])
