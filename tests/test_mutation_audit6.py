"""Fifth mutation-testing audit (session 31, s31-mut9): each test kills a deliberate mutation that the
rest of the suite let pass; the mutation is named in the docstring.

Covered here: the chat tokenizer (pipeline.tokenizer), the OpenAI request checks
(pipeline.chatrequest), the model's CPU paths (pipeline.model), evaluate's figures (pipeline.evaluate),
the Hugging Face chat template (pipeline.chattemplate) and what counts as no text
(pipeline.invisible). The audit's table (mutations tried, killed, equivalent) is in the session
notes; the survivors judged equivalent are not tested.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from test_params_validation import EVAL

from pipeline.chatrequest import ChatRequest, RequestError, range_code
from pipeline.chatsession import max_reply_budget
from pipeline.evaluate import EvalSetupError, check_eval_params
from pipeline.model import GPT, GPTConfig, KVCache, masked_cross_entropy
from pipeline.tokenizer import ENDOFTEXT_ID, HUMAN_ID, get_encoding, render


def test_a_context_is_rendered_as_given_even_when_it_is_only_whitespace() -> None:
    """Mutation `ctx-skip-empty` (tokenizer.encode_conversations: `encode(c) if c and c.strip()`).
    render encodes exactly the text it is given: cleaning (stripping) is the caller's job, so a
    blank context must not silently vanish between the training text and a prompt."""
    ids, mask = render([{"role": "human", "content": "hi"}], "  \n")
    context = get_encoding().encode_ordinary("  \n")
    assert ids[: 1 + len(context) + 1] == [ENDOFTEXT_ID, *context, HUMAN_ID]
    assert mask[: 1 + len(context)] == [0] * (1 + len(context))


# ---------------------------------------------------------------- pipeline.chatrequest

HELLO = [{"role": "user", "content": "hi"}]


def _refused(extra: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as err:
        ChatRequest.parse({"messages": HELLO, **extra})
    return err.value


@pytest.mark.parametrize(
    "extra",
    [
        {"temperature": 2.0},
        {"temperature": 0.0},
        {"seed": 2**63 - 1},
        {"seed": -(2**63)},
        {"presence_penalty": -2.0, "frequency_penalty": 2.0},
        {"logit_bias": {"50256": -100, "1": 100}},
        {"max_tokens": 1},
        {"top_k": 0},
        {"stop": ["a" * 1000] * 4},
    ],
)
def test_openais_bounds_are_taken_inclusively(extra: dict[str, Any]) -> None:
    """Mutations `temp-ge`, `seed-top-open`, `penalty-open`, `bias-open`, `max-tokens-0`
    (chatrequest: an inclusive bound of OpenAI's ranges made exclusive): a client at the very edge of
    OpenAI's range must be served, as OpenAI serves it."""
    ChatRequest.parse({"messages": HELLO, **extra})


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"n": 2}, "n", "unsupported_value"),
        ({"max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"top_k": -1}, "top_k", "integer_below_min_value"),
        ({"temperature": 2.5}, "temperature", "decimal_above_max_value"),
        ({"top_p": 0.0 - 1e-9}, "top_p", "decimal_below_min_value"),
        ({"presence_penalty": -2.5}, "presence_penalty", "decimal_below_min_value"),
        ({"stop": ["a"] * 5}, "stop", "array_above_max_length"),
        ({"stop": ["a", "b", "c", ""]}, "stop", "invalid_value"),
        ({"stop": ["a" * 1001]}, "stop", "string_above_max_length"),
        ({"stop": ["a" * 1000, ""]}, "stop", "invalid_value"),
        ({"temperature": True}, "temperature", "invalid_type"),
        ({"logit_bias": {"abc": 1}}, "logit_bias", "invalid_value"),
        ({"logit_bias": {"\u0661": 1}}, "logit_bias", "invalid_value"),
    ],
)
def test_each_refused_value_gets_openais_param_and_code(extra: dict[str, Any], param: str, code: str) -> None:
    """Mutations `n-zero-ok`, `n-code-off`, `range-code-le`, `topk-neg-1`, `stop-count-ge`,
    `stop-chars-ge`, `bool-is-number`, `bias-key-digits` (chatrequest): the field and OpenAI's code of
    a refused value, which SDK clients read rather than the message."""
    err = _refused(extra)
    assert (err.param, err.code) == (param, code)


def test_range_code_at_the_floor_is_not_below_it() -> None:
    """Mutation `range-code-le` (chatrequest.range_code: `value <= low`): a value equal to the floor is
    refused only for being over the top."""
    assert range_code(1, 1, int) == "integer_above_max_value"
    assert range_code(0.0, 0.0, float) == "decimal_above_max_value"


def test_a_seed_wraps_onto_the_samplers_range_one_to_one() -> None:
    """Mutation `seed-mod` (chatrequest._sampler_seed: `seed % MAX_SEED`): MAX_SEED itself is a seed
    of its own, not seed 0's, and -1 is its two's complement's low 63 bits."""
    assert ChatRequest.parse({"messages": HELLO, "seed": 2**63 - 1}).seed == 2**63 - 1
    assert ChatRequest.parse({"messages": HELLO, "seed": 0}).seed == 0
    assert ChatRequest.parse({"messages": HELLO, "seed": -(2**63)}).seed == 0


def test_message_parts_and_turns_map_as_training_read_them() -> None:
    """Mutations `parts-space` (content parts joined by a space), `greeting-kept` (an assistant
    message before the first user message opens a bot turn) in chatrequest."""
    req = ChatRequest.parse(
        {
            "messages": [
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ]
        }
    )
    assert req.history == [] and req.user_text == "a\nb"


def test_include_usage_must_be_a_boolean() -> None:
    """Mutation `include-usage-type` (chatrequest.ChatRequest.parse: the type check dropped): "no" is
    truthy, and a client meaning false got a usage chunk."""
    err = _refused({"stream": True, "stream_options": {"include_usage": "no"}})
    assert err.param == "stream_options"


def test_a_required_tool_choice_is_refused() -> None:
    """Mutation `tool-choice-required` (chatrequest.refuse_unsupported): "required" demands a tool
    call this model cannot make."""
    assert _refused({"tool_choice": "required"}).param == "tool_choice"


# ---------------------------------------------------------------- pipeline.evaluate


@pytest.mark.parametrize(
    "extra",
    [
        {"max_new_tokens": max_reply_budget(32)},
        {"seed": 0},
        {"temperature": 0},
        {"top_p": 0, "top_k": 1},
        {"top_p": 1, "top_k": None, "eval_iters": 1},
    ],
)
def test_evaluate_settings_at_their_bounds_are_taken(extra: dict[str, Any]) -> None:
    """Mutations `n-budget-lt` (check_eval_params: the largest reply budget refused), `seed-le0`
    (seed 0 refused), `temp-le0` (greedy refused), `topp-open` (top_p 0 refused), `topk-0`."""
    cfg = check_eval_params({**EVAL, **extra}, block_size=32)
    assert all(cfg[k] == v for k, v in extra.items())


@pytest.mark.parametrize(
    ("extra", "key"),
    [({"top_k": 0}, "top_k"), ({"seed": -1}, "seed"), ({"max_new_tokens": 0}, "max_new_tokens")],
)
def test_evaluate_settings_past_their_bounds_are_refused(extra: dict[str, Any], key: str) -> None:
    """Mutation `topk-0` (check_eval_params: `top_k < 0`, so 0 taken as a limit of no tokens)."""
    with pytest.raises(EvalSetupError, match=key):
        check_eval_params({**EVAL, **extra}, block_size=32)


# ---------------------------------------------------------------- pipeline.model

SMALL = GPTConfig(block_size=16, vocab_size=64, n_layer=8, n_head=2, n_embd=64)


def test_a_fresh_model_has_gpt2s_initialisation_and_tied_embeddings() -> None:
    """Mutations `no-tying` (wte and lm_head two matrices), `no-cproj-scale` (residual projections
    not scaled by 1/sqrt(2 * n_layer)), `no-bias-zero` (biases left at torch's uniform init) and
    `emb-init-std` (embeddings at std 1) in model.GPT.__init__: a run from scratch starts as GPT-2."""
    torch.manual_seed(0)
    model = GPT(SMALL)
    assert model.lm_head.weight is model.transformer.wte.weight
    params = {n: p.detach() for n, p in model.named_parameters()}
    proj = torch.cat([p.flatten() for n, p in params.items() if n.endswith("c_proj.weight")])
    assert abs(float(proj.std()) - 0.02 / math.sqrt(2 * SMALL.n_layer)) < 0.001
    fc = params["transformer.h.0.mlp.c_fc.weight"]
    assert abs(float(fc.std()) - 0.02) < 0.002
    for name in ("transformer.wte.weight", "transformer.wpe.weight"):
        assert abs(float(params[name].std()) - 0.02) < 0.003, name
    assert all(not p.any() for n, p in params.items() if n.endswith(".bias") and ".ln_" not in n)


def test_the_window_itself_fits_everywhere_and_one_more_does_not() -> None:
    """Mutations `hidden-ge` (GPT.hidden refusing a full block_size window), `kv-max-ge` (a cache of
    block_size slots refused), `cache-overflow-ge` (a prefill that fills the cache exactly refused)
    and `crop-lt` (crop_block_size to the current size refused) in pipeline.model."""
    model = GPT(SMALL).eval()
    full = torch.zeros(1, SMALL.block_size, dtype=torch.long)
    assert model.hidden(full).shape == (1, SMALL.block_size, SMALL.n_embd)
    with pytest.raises(ValueError, match="exceeds block_size"):
        model.hidden(torch.zeros(1, SMALL.block_size + 1, dtype=torch.long))
    cache = KVCache(SMALL, 1, SMALL.block_size, "cpu", torch.float32)
    model(full, cache=cache)
    assert cache.pos == SMALL.block_size
    model.crop_block_size(SMALL.block_size)
    with pytest.raises(ValueError, match="cannot crop"):
        model.crop_block_size(0)


def test_num_params_leaves_out_the_position_embeddings_only() -> None:
    """Mutation `num-params-wpe` (GPT.num_params: wpe counted): nanoGPT's count, which the logs show."""
    model = GPT(SMALL)
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params() == total - SMALL.block_size * SMALL.n_embd
    assert model.num_params(non_embedding=False) == total


def test_masked_cross_entropy_is_a_mean_and_an_empty_mask_gives_zero() -> None:
    """Mutations `ce-no-clamp` (an all-zero mask divides by zero: NaN loss) and `ce-mean-sum` (no
    mask: the sum, not the mean) in model.masked_cross_entropy."""
    logits = torch.zeros(1, 4, 8)
    targets = torch.zeros(1, 4, dtype=torch.long)
    assert float(masked_cross_entropy(logits, targets, None)) == pytest.approx(math.log(8))
    assert float(masked_cross_entropy(logits, targets, torch.zeros(1, 4))) == 0.0
    assert float(masked_cross_entropy(logits, targets, torch.tensor([[0, 1, 1, 0]]))) == pytest.approx(
        math.log(8)
    )


def test_a_row_padded_by_one_slot_is_padded() -> None:
    """Mutation `padded-gt1` (KVCache.reset: only a pad over 1 counts): a row left-padded by one slot
    took the unmasked fast path and attended to the padding."""
    cache = KVCache(SMALL, 2, 8, "cpu", torch.float32)
    cache.reset([1, 0])
    assert cache.padded
    cache.reset([0, 0])
    assert not cache.padded


def test_the_mlp_uses_gpt2s_tanh_gelu() -> None:
    """Mutation `gelu-exact` (MLP: the exact erf GELU): GPT-2's weights were trained with gelu_new."""
    mlp = GPT(SMALL).transformer.h[0].mlp
    x = torch.linspace(-3, 3, 7)
    want = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert torch.allclose(mlp.gelu(x).detach(), want, atol=1e-6)


def test_a_reply_ended_by_a_stray_marker_before_any_text_is_stray_not_empty() -> None:
    """Mutation `empty-rate-unstopped` (run_transcripts: empty_reply_rate counts every reply that
    said nothing, closed or not): a reply that opened a <human> turn at once did not close its turn,
    so it is a stray stop, not an empty reply; the three shares stay disjoint."""
    from test_engine_support import ScriptedGPT

    from pipeline.evaluate import run_transcripts

    prompts = [{"context": None, "turns": ["hi"]}]
    cfg = {"max_new_tokens": 8, "temperature": 0.0, "top_k": None, "top_p": None, "seed": 0}
    _, figures = run_transcripts(ScriptedGPT([[HUMAN_ID]]), prompts, cfg)
    assert figures["stray_stop_rate"] == 1.0
    assert figures["empty_reply_rate"] == 0.0 and figures["stop_rate"] == 0.0


def test_a_conversation_one_prediction_past_a_window_gets_a_window_for_it() -> None:
    """Mutation `window-start-max` (evaluate.conversation_windows: `range(0, max(n - 1, 0), block)`):
    with block + 1 predictions, the last one (here the bot turn's <endOfText>) has a window of its own,
    so every bot token is scored once."""
    import numpy as np

    from pipeline.evaluate import conversation_windows

    block = 4
    ids = np.arange(block + 2)
    mask = np.zeros(block + 2, dtype=np.uint8)
    mask[-1] = 1
    windows = list(conversation_windows(ids, mask, block))
    assert len(windows) == 2
    assert sum(int(m.sum()) for _, _, m in windows) == 1
    assert windows[1][1][0] == block + 1 and windows[1][2][0] == 1
