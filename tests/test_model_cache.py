"""The model's KV-cache path computes what the full forward computes; the training path is unchanged."""

from __future__ import annotations

import pytest
import torch
from test_engine_support import TINY, tiny_gpt

from pipeline.model import GPT, GPTConfig, KVCache, masked_cross_entropy, masked_token_losses


def test_chunked_prefill_and_decode_match_full_forward() -> None:
    model = tiny_gpt(seed=1)
    ids = torch.randint(0, 50000, (2, 24), generator=torch.Generator().manual_seed(0))
    ref = model.logits_all(ids)
    cache = KVCache(model.config, 2, 32, "cpu", torch.float32)
    with torch.no_grad():
        a, _ = model(ids[:, :10], cache=cache)  # causal fast path
        b, _ = model(ids[:, 10:20], cache=cache)  # continues at slot 10 (masked path)
        steps = []
        for t in range(20, 24):
            steps.append(model.decode_step(ids[:, t : t + 1], cache))
            cache.advance()
    assert cache.pos == 24 and int(cache.pos_t) == 24
    torch.testing.assert_close(a[:, -1], ref[:, 9], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b[:, -1], ref[:, 19], atol=1e-4, rtol=1e-4)
    for i, s in enumerate(steps):
        torch.testing.assert_close(s, ref[:, 20 + i], atol=1e-4, rtol=1e-4)


def test_decode_paths_agree_static_dynamic_and_without_onednn() -> None:
    """The CPU path (filled slots only, oneDNN products) equals the static path a CUDA graph captures
    (every slot, masked) and the plain-module path (grad mode), for padded and unpadded batches."""
    model = tiny_gpt(seed=4)
    ids = torch.randint(0, 50000, (2, 12), generator=torch.Generator().manual_seed(3))
    for pad in ([0, 0], [5, 0]):
        outs = {}
        for name, static, grad in (
            ("dynamic", False, False),
            ("static", True, False),
            ("module", False, True),
        ):
            cache = KVCache(model.config, 2, 40, "cpu", torch.float32)
            cache.reset(pad)
            with torch.no_grad():
                model(ids[:, :8], cache=cache)
            steps = []
            for t in range(8, 12):
                with torch.set_grad_enabled(grad):
                    steps.append(model.decode_step(ids[:, t : t + 1], cache, static=static).detach())
                cache.advance()
            outs[name] = torch.stack(steps)
        torch.testing.assert_close(outs["dynamic"], outs["static"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(outs["dynamic"], outs["module"], atol=1e-4, rtol=1e-4)
        assert outs["dynamic"].abs().max() > 0.1  # the comparison is of real logits


def test_cache_limits_are_enforced() -> None:
    model = tiny_gpt()
    with pytest.raises(ValueError, match="block_size"):
        KVCache(model.config, 1, model.config.block_size + 1, "cpu", torch.float32)
    cache = KVCache(model.config, 1, 8, "cpu", torch.float32)
    with pytest.raises(ValueError, match="overflow"), torch.no_grad():
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="rows"):
        cache.reset([0, 0])


def test_training_forward_unchanged() -> None:
    model = tiny_gpt(seed=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 50000, (2, 16), generator=g)
    y = torch.randint(0, 50000, (2, 16), generator=g)
    m = (torch.rand(2, 16, generator=g) > 0.5).float()
    logits, loss = model(x, y, m)
    assert logits.shape == (2, 16, model.config.vocab_size)
    torch.testing.assert_close(logits, model.logits_all(x))
    torch.testing.assert_close(loss, masked_cross_entropy(logits, y, m))
    loss.backward()  # gradients flow through the uncached path
    assert model.transformer.wte.weight.grad is not None


def test_hidden_is_the_forward_loop_and_honours_dropout() -> None:
    model = tiny_gpt(seed=3)
    x = torch.randint(0, 50000, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h = model.hidden(x)
        assert h.shape == (2, 12, model.config.n_embd)
        torch.testing.assert_close(model.lm_head(h), model.logits_all(x))
        torch.testing.assert_close(model.lm_head(h[:, [-1]]), model(x)[0])  # inference: last position
    with pytest.raises(ValueError, match="block_size"):
        model.hidden(torch.zeros(1, model.config.block_size + 1, dtype=torch.long))
    torch.manual_seed(5)
    dropped = GPT(GPTConfig(**TINY, dropout=0.5)).train()
    with torch.no_grad():
        assert not torch.equal(dropped.hidden(x), dropped.hidden(x))  # training mode: dropout active
        dropped.eval()
        torch.testing.assert_close(dropped.hidden(x), dropped.hidden(x))  # eval mode: deterministic


def test_masked_token_losses_match_full_masked_cross_entropy() -> None:
    model = tiny_gpt(seed=4)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 50000, (3, 10), generator=g)
    y = torch.randint(0, 50000, (3, 10), generator=g)
    m = (torch.rand(3, 10, generator=g) < 0.4).to(torch.uint8)
    with torch.no_grad():
        h = model.hidden(x)
        losses = masked_token_losses(model, h, y, m)
        full = torch.nn.functional.cross_entropy(
            model.lm_head(h).flatten(0, 1), y.flatten(), reduction="none"
        )
    assert losses.dtype == torch.float32 and losses.numel() == int(m.sum())
    torch.testing.assert_close(losses, full[m.flatten().bool()], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        losses.mean(), masked_cross_entropy(model.lm_head(h), y, m), atol=1e-5, rtol=1e-5
    )
    assert masked_token_losses(model, h, y, torch.zeros_like(m)).numel() == 0
