"""A GPT-2 model with GPT-2's parameter names (so Hugging Face weights map 1:1).

Follows nanoGPT's model.py: one readable file. Differences that matter here:
- the loss is masked (only bot tokens and their closing <endOfText> count);
- attention can read and extend a static KV cache, so inference prefills once (rows of
  different lengths left-padded) and then decodes one token per step with static shapes,
  which a CUDA graph can capture (see pipeline/engine.py);
- attention is always torch's scaled_dot_product_attention (flash/memory-efficient
  kernels on CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
from torch.nn import functional as F

from pipeline.tokenizer import PADDED_VOCAB


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = PADDED_VOCAB
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # GPT-2 has biases in Linear and LayerNorm

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


# The GPT-2 family, as published by OpenAI (vocab padded for the chat tokens).
GPT2_PRESETS: dict[str, dict[str, int]] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
}


class KVCache:
    """Keys and values of every layer for a batch of sequences, preallocated to `max_len` slots.

    Rows of different lengths are left-padded: row b's first `pad[b]` slots hold padding that no
    query attends to, and its positions count from its first real token, so each row computes
    exactly what it would alone. All rows share the slot index, so one write per step serves the
    whole batch. `pos` (host int) is how many slots are filled; `pos_t` is the same number on the
    device, which is what a captured CUDA graph reads (a graph cannot see Python ints). Shapes
    never change after construction, which is what CUDA graphs and torch.compile need.

    `kv[layer]` is one (2, B, n_head, max_len, head_dim) tensor per layer (keys, then values), each
    its own allocation, never replaced (a captured graph holds their addresses). One tensor per layer, not views of one (n_layer, ...) tensor,
    because a compiled decode step sees them as graph inputs: it then writes the new slot into each
    in place. Views of a shared base are aliased inputs, which torch.compile handles by rebuilding
    the whole cache and copying it back on every step (measured on CPU for a 24-layer model: memory
    traffic of about 40 times the cache's size per token). Keys and values share a tensor so that a
    step writes both with one kernel (a batch-1 decode step is bound by its number of kernels).
    """

    def __init__(
        self, cfg: GPTConfig, batch_size: int, max_len: int, device: torch.device | str, dtype: torch.dtype
    ) -> None:
        if max_len > cfg.block_size:
            raise ValueError(f"KV cache of {max_len} slots exceeds block_size {cfg.block_size}")
        shape = (2, batch_size, cfg.n_head, max_len, cfg.head_dim)
        self.kv = tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer))
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_len = max_len
        self.pos = 0
        self.pos_t = torch.zeros(1, dtype=torch.long, device=device)
        self.pad = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.padded = False  # host-side: any row padded? (unpadded prefill takes the causal fast path)

    def reset(self, pad: list[int] | None = None) -> None:
        """Empty the cache (in place: captured graphs keep pointing at these tensors)."""
        self.pos = 0
        self.pos_t.zero_()
        if pad is None:
            self.pad.zero_()
            self.padded = False
        else:
            if len(pad) != self.batch_size:
                raise ValueError(f"pad has {len(pad)} rows, cache has {self.batch_size}")
            self.pad.copy_(torch.tensor(pad, dtype=torch.long))
            self.padded = any(p > 0 for p in pad)

    def advance(self, n: int = 1) -> None:
        """Mark n more slots filled (after a decode_step, which does not advance by itself)."""
        self.pos += n
        self.pos_t.add_(n)


def _module_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return layer(x)


def _onednn_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The same product through oneDNN, which reads the plain fp32 weight about twice as fast as the
    default CPU path does for a single row (on AMD CPUs MKL's sgemv reaches half the memory
    bandwidth). Inference only: the op has no backward."""
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")


def _decode_linear(x: torch.Tensor) -> Callable[[nn.Linear, torch.Tensor], torch.Tensor]:
    """How decode_step multiplies by the weights: oneDNN for fp32 on CPU without autograd (a decode
    step is a matrix-vector product per layer, bound by reading the weights), else the module.
    Under torch.compile always the module: the compiler picks its own kernels."""
    if torch.compiler.is_compiling():
        return _module_linear
    fast = (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
    )
    return _onednn_linear if fast else _module_linear


@dataclass
class _CacheStep:
    """What every layer needs to read and extend the cache in one forward pass."""

    cache: KVCache
    # (B, 1, T, keys): bool (True = may attend) or additive float; None = plain causal (prefill)
    # or every attended slot visible (decode)
    mask: torch.Tensor | None
    start: int | None  # first slot written (prefill); None = one token at cache.pos_t (decode)
    # Decode: slots attended, from slot 0 (max_len on the static-shape path).
    keys: int = 0
    linear: Callable[[nn.Linear, torch.Tensor], torch.Tensor] = _module_linear


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head = cfg.n_head
        self.n_embd = cfg.n_embd
        self.dropout = cfg.dropout
        self.layer_idx = layer_idx

    def forward(self, x: torch.Tensor, step: _CacheStep | None = None) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        linear = _module_linear if step is None else step.linear
        qkv = linear(self.c_attn, x)
        q = qkv[..., :C].view(B, T, H, D).transpose(1, 2)
        if step is None:
            k = qkv[..., C : 2 * C].view(B, T, H, D).transpose(1, 2)
            v = qkv[..., 2 * C :].view(B, T, H, D).transpose(1, 2)
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
            )
        else:
            kv = step.cache.kv[self.layer_idx]  # (2, B, H, max_len, D): this layer's own tensor
            new = qkv[..., C:].view(B, T, 2, H, D).permute(2, 0, 3, 1, 4)  # (2, B, H, T, D), no copy
            kc, vc = kv[0], kv[1]
            if step.start is None:
                # Decode: write the one new slot (keys and values, one kernel), attend over the first
                # step.keys slots (the mask, if any, hides the unfilled and padded ones). On the
                # static-shape path that is every slot, so a CUDA graph can capture it. index_copy_
                # on the whole tensor (not on a view of it) is what torch.compile keeps as an
                # in-place one-slot write.
                kv.index_copy_(3, step.cache.pos_t, new)
                y = F.scaled_dot_product_attention(
                    q, kc[:, :, : step.keys], vc[:, :, : step.keys], attn_mask=step.mask
                )
            else:
                end = step.start + T
                kv[:, :, :, step.start : end] = new
                k_all, v_all = kc[:, :, :end], vc[:, :, :end]
                if step.mask is None:
                    y = F.scaled_dot_product_attention(q, k_all, v_all, is_causal=True)
                else:
                    y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=step.mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(linear(self.c_proj, y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's gelu_new
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, linear: Callable[[nn.Linear, torch.Tensor], torch.Tensor] = _module_linear
    ) -> torch.Tensor:
        return self.dropout(linear(self.c_proj, self.gelu(linear(self.c_fc, x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, step: _CacheStep | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), step)
        return x + self.mlp(self.ln_2(x), _module_linear if step is None else step.linear)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)]),
                ln_f=nn.LayerNorm(cfg.n_embd, bias=cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as GPT-2
        self.apply(self._init_weights)
        # GPT-2 paper: scale residual projections by 1/sqrt(2 * n_layer).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def crop_block_size(self, block_size: int) -> None:
        """Keep the first `block_size` position embeddings (nanoGPT's model surgery). A GPT-2 start
        fine-tuned on shorter windows then carries that window in its config, so chat, evaluate and
        the export use the context it was tuned on rather than the pretrained 1024."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"cannot crop a {self.config.block_size}-token model to {block_size}")
        wpe = self.transformer.wpe
        wpe.weight = nn.Parameter(wpe.weight.detach()[:block_size].clone())
        wpe.num_embeddings = block_size
        self.config = replace(self.config, block_size=block_size)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, n_embd), after ln_f, for a whole sequence without a cache.

        The one copy of the plain forward loop: forward, logits_all and the training loss
        (which projects only the masked positions, see masked_token_losses) all start here.
        Dropout follows the module's training mode.
        """
        n = idx.size(1)
        if n > self.config.block_size:
            raise ValueError(f"sequence of {n} tokens exceeds block_size {self.config.block_size}")
        pos = torch.arange(0, n, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, with `targets`, the mean cross-entropy where `loss_mask` is 1.

        With a `cache` (prefill), the T tokens fill slots cache.pos.. and the cache advances by T;
        each row's positions count from its first unpadded slot (see KVCache).
        Without targets, only the last position's logits are computed (inference).
        """
        B, T = idx.shape
        if cache is None:
            x = self.hidden(idx)
        else:
            start = cache.pos
            if start + T > cache.max_len:
                raise ValueError(f"KV cache overflow: {start + T} slots > {cache.max_len}")
            slots = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
            pos = (slots.unsqueeze(0) - cache.pad.unsqueeze(1)).clamp(min=0)  # (B, T)
            mask = None
            if cache.padded or start > 0:
                keys = torch.arange(start + T, device=idx.device)
                q_slot = slots.view(1, T, 1)
                visible = (keys.view(1, 1, -1) <= q_slot) & (keys.view(1, 1, -1) >= cache.pad.view(B, 1, 1))
                # A padding query sees no real key; let it see itself so softmax stays finite.
                mask = (visible | (keys.view(1, 1, -1) == q_slot)).unsqueeze(1)
            step = _CacheStep(cache=cache, mask=mask, start=start)
            x = self.transformer.wte(idx) + self.transformer.wpe(pos)
            for block in self.transformer.h:
                x = block(x, step)
            cache.advance(T)
            x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = masked_cross_entropy(logits, targets, loss_mask)
        return logits, loss

    def decode_step(self, idx: torch.Tensor, cache: KVCache, static: bool | None = None) -> torch.Tensor:
        """Logits (B, vocab) for one new token per row, written at slot cache.pos_t.

        static (default: on CUDA) keeps every shape fixed: attention runs over all max_len slots
        under a mask and positions are read only from device tensors, with no host sync, so the
        step can be captured in a CUDA graph and replayed. Otherwise (CPU) attention reads only the
        cache.pos + 1 filled slots, with no mask unless a row is padded. It does not advance the
        cache: call cache.advance() after it (outside any graph).
        """
        B = idx.shape[0]
        if static is None:
            static = idx.device.type == "cuda"
        n_keys = cache.max_len if static else cache.pos + 1
        mask = None
        if static or cache.padded:
            keys = torch.arange(n_keys, device=idx.device)
            visible = (keys.view(1, -1) <= cache.pos_t) & (keys.view(1, -1) >= cache.pad.view(B, 1))
            # Additive mask in the cache's dtype, built once per step: a boolean one would be
            # converted again in every layer (one more kernel each, which is what limits decoding).
            mask = torch.zeros(B, 1, 1, n_keys, dtype=cache.dtype, device=idx.device)
            mask.masked_fill_(~visible.view(B, 1, 1, -1), float("-inf"))
        x = self.transformer.wte(idx)
        linear = _decode_linear(x)
        step = _CacheStep(cache=cache, mask=mask, start=None, keys=n_keys, linear=linear)
        pos = (cache.pos_t - cache.pad).clamp(min=0).view(B, 1)
        x = x + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x, step)
        return linear(self.lm_head, self.transformer.ln_f(x)).view(B, -1)

    @torch.no_grad()
    def logits_all(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits at every position (for evaluation and equivalence tests)."""
        return self.lm_head(self.hidden(idx))


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None
) -> torch.Tensor:
    """Mean token cross-entropy over positions where loss_mask == 1 (all positions if None)."""
    losses = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1), reduction="none")
    if loss_mask is None:
        return losses.mean()
    m = loss_mask.view(-1).to(losses.dtype)
    return (losses * m).sum() / m.sum().clamp(min=1.0)


def masked_token_losses(
    model: GPT, hidden: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy (float32, one per position) at the positions where loss_mask is nonzero, in order.

    Only those positions go through the vocabulary projection (about half of a chat window are bot
    tokens, and the projection dominates a small model's cost). The number of positions depends on
    the data, so this is for eager runs; compiled ones use masked_cross_entropy on static shapes.
    `hidden` is GPT.hidden's output; an all-zero mask gives an empty tensor.
    """
    where = loss_mask.reshape(-1).nonzero().squeeze(1)
    logits = model.lm_head(hidden.reshape(-1, hidden.size(-1)).index_select(0, where))
    return F.cross_entropy(logits.float(), targets.reshape(-1).index_select(0, where), reduction="none")
