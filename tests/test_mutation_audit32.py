"""Mutation audit 32 (session 35), a third pass over the inference engine: pipeline.engine,
pipeline.sampling, pipeline.stops and pipeline.chatsession. Each test kills a hand-made mutant that
the suite (audits 1, 2, 3 and 18 included) let pass; the docstring names it. Tiny in-process models.
No mutant of pipeline.stops outlived the suite, so none is tested here.
"""

from __future__ import annotations

import torch
from test_engine_support import ScriptedGPT, tiny_gpt

from pipeline.chatsession import ChatSession
from pipeline.engine import Engine
from pipeline.sampling import SamplingParams, sample
from pipeline.tokenizer import END_OF_TURN_ID, HUMAN_ID, N_VOCAB, get_encoding, render

# ---------------------------------------------------------------- engine


def _counting(engine: Engine) -> list[int]:
    """Counts the decode steps `engine` yields (one list item per step)."""
    steps: list[int] = []
    decode = engine.decode_tokens

    def counted(*args, **kwargs):
        for tokens in decode(*args, **kwargs):
            steps.append(1)
            yield tokens

    engine.decode_tokens = counted  # type: ignore[method-assign]
    return steps


def test_a_stop_string_that_ends_every_row_ends_the_decoding() -> None:
    """Kills engine.stream_batch's `if all(r is not None ...): break` made a no-op: after a stop string
    ended the only row, the engine decoded the rest of its 20-token budget, forward passes for
    tokens nobody reads. audit 3 checks generate_ids's break only, and a stop string ends a reply in
    stream_batch, never in generate_ids."""
    enc = get_encoding()
    script = enc.encode_ordinary("a b STOP c d")
    engine = Engine(ScriptedGPT([script]), enc=enc)
    steps = _counting(engine)
    (result,) = engine.generate([[1]], 20, stop="STOP")
    assert result.text == "a b " and len(steps) == len(enc.encode_ordinary("a b STOP"))


def test_generate_ids_cuts_each_row_of_a_batch_at_its_own_stop_token() -> None:
    """Kills engine.generate_ids's `if done[i]: continue` dropped: a row that stopped while its batch
    mate ran on took the tokens after its stop token (audit 3's one-row test ends at the early break
    before any such token comes)."""
    engine = Engine(ScriptedGPT([[5, END_OF_TURN_ID, 7, 8], [9, 10, 11, 12]]))
    assert engine.generate_ids([[1], [2]], 4) == [[5], [9, 10, 11, 12]]


def test_a_block_size_that_is_no_multiple_of_the_bucket_still_serves_its_whole_window() -> None:
    """Kills engine._slot's `min(self.block_size, ...)` dropped: the cache length rounded up to the
    bucket (64) passed a 100-token block_size, and KVCache refused it, so any prompt past 64 tokens
    failed on a model whose block_size is not a multiple of the bucket (CUDA's 256 bucket and a
    block_size of 200, say). Greedy output still equals full recomputation."""
    model = tiny_gpt(block_size=100)
    prompt = [(7 * i) % 1000 + 1 for i in range(90)]
    greedy = SamplingParams(temperature=0.0)
    got = Engine(model, bucket=64).generate_ids([prompt], 8, greedy, stop_token_ids=())
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(8):
            ids.append(int(model(torch.tensor([ids]))[0][0, -1, :N_VOCAB].argmax()))
    assert got == [ids[len(prompt) :]]


# ---------------------------------------------------------------- sampling


def test_temperature_zero_is_greedy_among_tied_best_tokens_whatever_the_seed() -> None:
    """Kills SamplingParams.greedy without `temperature == 0.0`: temperature 0 then went through the
    sampler, where the shifted best logits are 0 / 0 (NaN, set to 0) and the rest -inf, so it drew
    among tokens tied at the best logit with the seed's noise. Greedy takes the first of them, and
    the seed does not matter (no generator is made)."""
    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0]]).repeat(500, 1)
    for seed in (0, 1, 2):
        params = SamplingParams(temperature=0.0, seed=seed)
        assert params.generator(logits.device) is None
        assert set(sample(logits, params, None).tolist()) == {1}


# ---------------------------------------------------------------- chatsession


def test_a_reset_chat_measures_its_new_turns_not_the_forgotten_ones() -> None:
    """Kills ChatSession.reset's `self._lengths.clear()` dropped: the per-turn lengths that choose the
    cut were then the forgotten conversation's, so after long turns and a reset the short new turns,
    which fit, were dropped from the model's input (the latest turns must always be in it)."""
    enc = get_encoding()
    session = ChatSession(Engine(ScriptedGPT([[END_OF_TURN_ID]]), enc=enc), max_new_tokens=16)
    for i in range(6):
        session.add_turn(("human", "bot")[i % 2], "word " * 40)
    session.reset()
    for i in range(6):
        session.add_turn(("human", "bot")[i % 2], f"short {i}")
    new = {"role": "human", "content": "and now?"}
    ids = session.prompt_ids("and now?")
    assert ids == render(session.history + [new], enc=enc, add_generation_prompt=True)[0]
    assert ids.count(HUMAN_ID) == 4
