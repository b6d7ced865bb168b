"""KV-cache engine: equal to full recomputation, batches equal single prompts, sampling, stops, UTF-8."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_engine_support import ScriptedGPT, tiny_gpt

from pipeline.engine import STOP_TOKEN_IDS, Engine
from pipeline.model import GPT
from pipeline.sampling import SamplingParams, sample
from pipeline.stops import MAX_STOP_CHARS, StopStringDecoder, check_stop_strings
from pipeline.tokenizer import BOT_ID, END_OF_TURN_ID, ENDOFTEXT_ID, HUMAN_ID, N_VOCAB, get_encoding

GREEDY = SamplingParams(temperature=0.0)
PROMPTS = [[50256, 15496, 11, 703], list(range(1000, 1040)), [42]]


@pytest.fixture(autouse=True)
def exact_cuda_matmuls():
    """The CUDA comparisons with full recomputation need full-precision matmuls; a training test
    that ran earlier in the process may have left TF32 on (train.tf32). Restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def model() -> GPT:
    return tiny_gpt()


@pytest.fixture(scope="module")
def enc():
    return get_encoding()


def naive_greedy(model: GPT, prompt: list[int], n: int) -> list[int]:
    """Reference: recompute the whole sequence for every new token."""
    ids = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids]))  # full forward, no cache
        ids.append(int(logits[0, -1, :N_VOCAB].argmax()))
    return ids[len(prompt) :]


def test_greedy_equals_full_recomputation(model: GPT) -> None:
    engine = Engine(model)
    for prompt in PROMPTS:
        got = engine.generate_ids([prompt], 40, GREEDY, stop_token_ids=())[0]
        assert got == naive_greedy(model, prompt, 40)
        assert len(set(got)) > 5, "degenerate model: the comparison would prove little"


def test_batch_of_different_lengths_equals_single_prompts(model: GPT) -> None:
    engine = Engine(model)
    singles = [engine.generate_ids([p], 30, GREEDY, stop_token_ids=())[0] for p in PROMPTS]
    assert engine.generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=()) == singles
    # Order within the batch does not matter either.
    assert engine.generate_ids(PROMPTS[::-1], 30, GREEDY, stop_token_ids=()) == singles[::-1]


def test_padded_prefill_logits_match_unpadded(model: GPT) -> None:
    from pipeline.model import KVCache

    short, long = PROMPTS[2], PROMPTS[1]
    cache = KVCache(model.config, 2, 64, "cpu", torch.float32)
    cache.reset([len(long) - len(short), 0])
    idx = torch.tensor([[0] * (len(long) - len(short)) + short, long])
    with torch.no_grad():
        logits, _ = model(idx, cache=cache)
        step = model.decode_step(torch.tensor([[7], [7]]), cache)
    ref_short = model.logits_all(torch.tensor([short + [7]]))[0]
    ref_long = model.logits_all(torch.tensor([long + [7]]))[0]
    torch.testing.assert_close(logits[0, -1], ref_short[-2], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[1, -1], ref_long[-2], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(step[0], ref_short[-1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(step[1], ref_long[-1], atol=1e-4, rtol=1e-4)


def test_same_seed_same_text_other_seed_other_text(model: GPT) -> None:
    engine = Engine(model)

    def run(seed: int) -> list[list[int]]:
        params = SamplingParams(temperature=1.0, top_k=200, top_p=0.95, seed=seed)
        return engine.generate_ids(PROMPTS, 20, params, stop_token_ids=())

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_top_k_one_and_tiny_top_p_are_greedy(model: GPT) -> None:
    engine = Engine(model)
    greedy = engine.generate_ids(PROMPTS, 15, GREEDY, stop_token_ids=())
    for params in (
        SamplingParams(temperature=1.5, top_k=1, seed=3),
        SamplingParams(temperature=1.5, top_p=1e-6, seed=3),
    ):
        assert engine.generate_ids(PROMPTS, 15, params, stop_token_ids=()) == greedy


def test_sample_respects_top_k_and_top_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    k2 = sample(logits, SamplingParams(temperature=1.0, top_k=2), g)
    assert set(k2.tolist()) == {0, 1}
    p = sample(logits, SamplingParams(temperature=1.0, top_p=0.7), g)  # 0.5 + 0.3 reach 0.7
    assert set(p.tolist()) == {0, 1}
    full = sample(logits, SamplingParams(temperature=1.0), g)
    assert set(full.tolist()) == {0, 1, 2, 3}
    assert abs((full == 0).float().mean().item() - 0.5) < 0.05


def test_tokens_tied_with_the_kth_keep_their_chance_under_top_k() -> None:
    """torch.topk keeps exactly k: of three tokens tied at the k-th value, one (the kernel's
    pick) took all their mass. In bf16 the trained model had such ties at the top-50 cut-off in
    5 of 23 decode steps. transformers and vLLM keep every tied token."""
    logits = torch.tensor([[3.0, 2.0, 1.0, 1.0, 1.0, 0.0]]).repeat(30_000, 1)
    g = torch.Generator().manual_seed(0)
    drawn = torch.bincount(sample(logits, SamplingParams(temperature=1.0, top_k=3), g), minlength=6)
    expected = torch.softmax(torch.tensor([3.0, 2.0, 1.0, 1.0, 1.0]), dim=0) * 30_000
    assert drawn[5] == 0  # below the k-th value: never
    assert torch.allclose(drawn[:5].float(), expected, rtol=0.1)  # each tied token about 7.6%


def test_tokens_tied_at_the_top_p_boundary_are_all_kept_wherever_they_sit() -> None:
    """top_p 0.5 over (0.4, 0.3, 0.3): the prefix reaches 0.5 at the first 0.3, and the cut kept
    whichever tied token the sort put first, so the same distribution at other token ids kept other
    tokens. Every token as likely as the boundary one is now kept, in any order, with or without top_k."""
    for order in ([0.4, 0.3, 0.3], [0.3, 0.3, 0.4], [0.3, 0.4, 0.3]):
        logits = torch.log(torch.tensor([order])).repeat(3000, 1)
        for top_k in (None, 3):
            g = torch.Generator().manual_seed(0)
            drawn = sample(logits, SamplingParams(temperature=1.0, top_k=top_k, top_p=0.5), g)
            assert set(drawn.tolist()) == {0, 1, 2}, (order, top_k)
    # Ties below the boundary stay out: 0.5 + 0.3 reach 0.7 before the tied 0.1s.
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.1]])).repeat(3000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample(logits, SamplingParams(temperature=1.0, top_p=0.7), g).tolist()) == {0, 1}


def test_bad_sampling_params_and_overflow_are_refused(model: GPT) -> None:
    for bad in (
        dict(temperature=-1.0),
        dict(temperature=float("nan")),
        dict(temperature=float("inf")),
        dict(top_k=0),
        dict(top_p=-0.1),
        dict(top_p=1.5),
        dict(seed=-1),
        dict(seed=2**63),  # past what torch.Generator.manual_seed takes
    ):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    with pytest.raises(ValueError, match="block_size"):
        Engine(model).generate_ids([[1] * 100], 30)


# ---- stops and streaming text (scripted model: exact tokens) -------------------------------------


def scripted(enc, *pieces: str | int) -> list[int]:
    """Token script: strings encoded as ordinary text, ints taken as ids."""
    ids: list[int] = []
    for p in pieces:
        ids.extend(enc.encode_ordinary(p) if isinstance(p, str) else [p])
    return ids


@pytest.mark.parametrize("special", sorted(STOP_TOKEN_IDS))
def test_every_special_token_stops_and_is_never_shown(enc, special: int) -> None:
    engine = Engine(ScriptedGPT([scripted(enc, "Hello there", special, " after")]), enc=enc)
    (g,) = engine.generate([[1, 2]], 20)
    assert g.text == "Hello there"
    assert g.finish_reason == "stop"
    assert special not in g.token_ids
    assert {HUMAN_ID, BOT_ID, END_OF_TURN_ID, ENDOFTEXT_ID} == STOP_TOKEN_IDS


def test_budget_end_is_length(enc) -> None:
    engine = Engine(ScriptedGPT([scripted(enc, "one two three four five six")]), enc=enc)
    (g,) = engine.generate([[1]], 3)
    assert g.finish_reason == "length" and len(g.token_ids) == 3
    assert g.text == enc.decode(g.token_ids)


def test_stop_string_spanning_tokens_is_cut_and_never_partly_shown(enc) -> None:
    # "<human>" typed by the model as plain text, split over several tokens.
    script = scripted(enc, "Sure thing", " <", "hum", "an", "> what next", END_OF_TURN_ID)
    engine = Engine(ScriptedGPT([script]), enc=enc)
    results: list = []
    pieces = list(engine.stream([1], 30, stop=["<human>"], results=results))
    assert "".join(pieces) == "Sure thing "
    shown = ""
    for piece in pieces:
        shown += piece
        assert "<" not in shown, f"partial stop string shown: {shown!r}"
    assert results[0].text == "Sure thing " and results[0].finish_reason == "stop"


def test_held_back_prefix_is_released_when_it_is_not_a_stop(enc) -> None:
    script = scripted(enc, "a <", "hug", " b", END_OF_TURN_ID)
    engine = Engine(ScriptedGPT([script]), enc=enc)
    pieces = list(engine.stream([1], 30, stop=["<human>"]))
    assert "".join(pieces) == "a <hug b"
    # "<" was held back until "hug" showed it could not start "<human>"; then it came out whole.
    assert [p for p in pieces if "<" in p] == ["<hug"]


def test_held_back_tail_is_released_when_the_reply_ends(enc) -> None:
    """A reply that ends (at a special token, or at the budget) while its tail could still begin a
    stop string shows that tail: it is text, not a stop."""
    script = scripted(enc, "ok", " <", END_OF_TURN_ID)
    for budget, reason in ((30, "stop"), (len(script) - 1, "length")):
        engine = Engine(ScriptedGPT([script]), enc=enc)
        results: list = []
        pieces = list(engine.stream([1], budget, stop=["<human>"], results=results))
        assert "".join(pieces) == "ok <"
        assert pieces[-1] == "<"  # held back until the end (it might begin "<human>"), then shown
        assert results[0].text == "ok <" and results[0].finish_reason == reason


def test_earliest_of_several_stop_strings_wins(enc) -> None:
    script = scripted(enc, "one, two; three. four")
    engine = Engine(ScriptedGPT([script]), enc=enc)
    (g,) = engine.generate([[1]], 20, stop=[".", ";", "zzz", "four"])
    assert g.text == "one, two" and g.finish_reason == "stop"
    with pytest.raises(ValueError, match="at most 4"):
        engine.generate([[1]], 5, stop=["a", "b", "c", "d", "e"])


@pytest.mark.parametrize("pieces", [["ab", "cd"], ["a", "bc", "d"], ["abcd"], ["a", "b", "c", "d"]])
def test_a_stop_inside_another_cuts_the_same_however_the_text_is_tokenized(pieces: list[str]) -> None:
    """With stops "abcd" and "bc", "ab"+"cd" gave "" (both hit in one token: cut at the earlier
    start) while "a"+"bc"+"d" gave "a". The stop that completes first ("bc") now ends it."""
    enc = get_encoding()
    decoder = StopStringDecoder(enc, ["abcd", "bc"])
    shown = "".join(decoder.feed(t) for piece in pieces for t in enc.encode_ordinary(piece)) + decoder.flush()
    assert shown == "a" and decoder.stopped


def test_a_stop_string_longer_than_the_cap_is_refused(enc) -> None:
    """Streaming holds back up to a stop string's length, and a token that breaks a near-match
    rechecks every held suffix: four 10,000-character stops cost 29 ms at that token, a 1 MiB
    request's far more. A stop of MAX_STOP_CHARS is taken, one more character is refused."""
    longest = "x" * MAX_STOP_CHARS
    assert check_stop_strings([longest]) == (longest,)
    with pytest.raises(
        ValueError, match=f"at most {MAX_STOP_CHARS} characters, got one of 1001 starting 'xxx"
    ):
        check_stop_strings(["ok", longest + "y"])
    with pytest.raises(ValueError, match="at most"):
        StopStringDecoder(enc, longest + "y")


def test_stops_apply_per_row_in_a_batch(enc) -> None:
    rows = [scripted(enc, "first row", END_OF_TURN_ID), scripted(enc, "second row is longer STOP x")]
    engine = Engine(ScriptedGPT(rows), enc=enc)
    texts = [g.text for g in engine.generate([[1], [2, 3]], 30, stop="STOP")]
    assert texts == ["first row", "second row is longer "]


def test_streamed_text_is_whole_utf8_characters(enc) -> None:
    text = "Emoji 🙂 and 漢字 and é!"
    ids = enc.encode_ordinary(text)
    assert any(not _is_utf8(enc.decode_single_token_bytes(i)) for i in ids), "no character split: weak test"
    engine = Engine(ScriptedGPT([ids + [END_OF_TURN_ID]]), enc=enc)
    pieces = list(engine.stream([1], 40))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_stop_string_with_multibyte_characters(enc) -> None:
    engine = Engine(ScriptedGPT([scripted(enc, "café ☕ done 🙂 tail")]), enc=enc)
    (g,) = engine.generate([[1]], 40, stop="🙂")
    assert g.text == "café ☕ done "


# ---- CUDA --------------------------------------------------------------------------------------


def test_compiled_decode_step_equals_eager_and_writes_only_the_new_slot(model: GPT) -> None:
    """compile_decode runs the static-shape step (what a CUDA graph captures) through
    torch.compile: same tokens as the eager engine, for a padded batch and for one prompt.

    Its generated code allocates no buffer shaped like a layer's cache: the step writes the new slot
    into the cache tensors in place. With the cache kept as views of one tensor, torch.compile rebuilt
    every layer's slice and copied the whole cache back on every step."""
    import re

    import torch._dynamo
    from torch._inductor.utils import run_and_get_code

    eager = Engine(model)
    compiled = Engine(model, compile_decode=True)
    try:
        for prompts in (PROMPTS, PROMPTS[:1]):
            want = eager.generate_ids(prompts, 30, GREEDY, stop_token_ids=())
            got, codes = run_and_get_code(compiled.generate_ids, prompts, 30, GREEDY, stop_token_ids=())
            assert got == want
            assert codes, "nothing was compiled: the check below would pass vacuously"
            cache = next(reversed(compiled._slots.values())).cache
            slots_and_dim = tuple(cache.kv[0].shape[-2:])  # (max_len, head_dim)
            allocated = [
                tuple(int(d) for d in shape.split(",") if d.strip())
                for shape in re.findall(r"empty_strided_\w+\(\(([\d, ]*)\)", "\n".join(codes))
            ]
            assert allocated, "no allocation found: the generated code's format changed"
            assert not [s for s in allocated if s[-2:] == slots_and_dim], "the step copies the cache"
    finally:
        torch._dynamo.reset()


def test_failed_compilation_or_capture_falls_back_to_the_plain_step(
    model: GPT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA a slot warms up (compiling, with compile_decode) and captures its step; if that raises,
    the slot decodes with the plain step. It used to keep the compiled step, which a torch.compile
    failure makes fail again on every call: the first token crashed the generation."""
    import pipeline.engine as engine_module

    calls = []

    def broken_step(idx: torch.Tensor, cache) -> torch.Tensor:
        calls.append(idx.shape)
        raise RuntimeError("compilation failed (simulated)")

    class FailingCapture:
        def __init__(self, step, cache) -> None:
            step(torch.zeros(cache.batch_size, 1, dtype=torch.long), cache)  # the warm-up runs the step

    monkeypatch.setattr(engine_module, "_DecodeGraph", FailingCapture)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)  # no GPU here
    want = Engine(model).generate_ids(PROMPTS, 12, GREEDY, stop_token_ids=())
    engine = Engine(model)
    engine._step, engine.cuda_graphs = broken_step, True  # what compile_decode on CUDA sets up
    assert engine.generate_ids(PROMPTS, 12, GREEDY, stop_token_ids=()) == want
    assert len(calls) == 1  # tried once, at the capture; never again
    (slot,) = engine._slots.values()
    assert slot.graph is None and slot.step == model.decode_step


def test_compiled_decode_outlives_torchs_recompile_limit() -> None:
    """Each cache shape compiles the decode step once more. torch's recompile_limit (8) used to
    fail the 9th shape of a long `chat --compile` with FailOnRecompileLimitHit (not a RuntimeError,
    so not even the fallback caught it). Here the limit is 1, so the second shape would fail."""
    import torch._dynamo

    # One layer: the count of compilations does not depend on the depth, their cost does.
    model = tiny_gpt(n_layer=1)
    eager = Engine(model, bucket=8)
    compiled = Engine(model, compile_decode=True, bucket=8)
    before = torch._dynamo.config.recompile_limit
    try:
        # (config.patch, not monkeypatch: pytest's undo deletes the setting from torch's config module)
        with torch._dynamo.config.patch(recompile_limit=1):
            for n in (3, 12, 20):  # three cache lengths: 8, 16 and 24 slots
                prompt = [[(7 * i) % 500 + 1 for i in range(n)]]
                want = eager.generate_ids(prompt, 4, GREEDY, stop_token_ids=())
                assert compiled.generate_ids(prompt, 4, GREEDY, stop_token_ids=()) == want
            assert [key[1] for key in compiled._slots] == [8, 16, 24]
            assert all(slot.step is compiled._step for slot in compiled._slots.values()), "fell back"
        assert torch._dynamo.config.recompile_limit == before  # the engine's own raise is undone
    finally:
        torch._dynamo.reset()


def test_a_plain_engine_runs_no_warm_up_step(model: GPT, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a compiled step is warmed up when its slot is made. `step is not model.decode_step` was
    always true (each attribute access makes a new bound method), so every plain slot ran a wasted
    step, and the first reply of a process imported torch's compiler: 0.78 s instead of 0.05 s."""
    calls: list[bool] = []
    plain = GPT.decode_step

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("static", False))
        return plain(self, *args, **kwargs)

    monkeypatch.setattr(GPT, "decode_step", counted)
    engine = Engine(model)
    engine.generate_ids(PROMPTS, 1, GREEDY, stop_token_ids=())  # one new token: prefill only
    assert calls == []
    engine.generate_ids(PROMPTS, 3, GREEDY, stop_token_ids=())
    assert calls == [False, False]  # the two fed-back tokens, nothing else


def test_a_cuda_graph_slot_without_compile_does_not_import_torchs_compiler() -> None:
    """The recompile-limit room is for compiled steps only: touching torch._dynamo imports it, about
    a second on the first reply of every plain `chat`/`serve` on a GPU. (A capture stand-in on CPU.)"""
    code = """
import sys
import torch
import pipeline.engine as engine_module
from test_engine_support import tiny_gpt

class Capture:
    def __init__(self, step, cache):
        self.step, self.cache = step, cache
    def __call__(self, idx):
        return self.step(idx, self.cache)

engine_module._DecodeGraph = Capture
engine = engine_module.Engine(tiny_gpt())
engine.cuda_graphs = True
engine.generate_ids([[1, 2, 3]], 4)
assert all(slot.graph is not None for slot in engine._slots.values())
print("torch._dynamo" in sys.modules)
"""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_compiled_step_that_fails_falls_back_on_the_cpu_too(
    model: GPT, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without CUDA graphs a compiled step compiles when its slot is made; any failure there (dynamo's
    errors are not all RuntimeErrors) leaves the slot on the plain step instead of ending the reply."""

    class DynamoTrouble(Exception):
        pass

    def broken_step(idx: torch.Tensor, cache) -> torch.Tensor:
        raise DynamoTrouble("simulated")

    want = Engine(model).generate_ids(PROMPTS, 12, GREEDY, stop_token_ids=())
    engine = Engine(model)
    engine._step = broken_step  # what compile_decode sets up
    assert engine.generate_ids(PROMPTS, 12, GREEDY, stop_token_ids=()) == want
    (slot,) = engine._slots.values()
    assert slot.step == model.decode_step


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_engine_on_a_second_gpu_equals_the_first() -> None:
    """A model on cuda:1 while cuda:0 is current: events, streams and graphs must act on cuda:1 (they
    default to the current device, where they fenced nothing and captured an empty graph)."""
    want = Engine(tiny_gpt().to("cuda:0")).generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=())
    with torch.cuda.device(0):
        engine = Engine(tiny_gpt().to("cuda:1"), cuda_graphs=True)
        for _ in range(2):  # the second run replays the captured graph
            assert engine.generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=()) == want
        assert any(slot.graph is not None for slot in engine._slots.values())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_decode_equals_eager_and_cpu() -> None:
    cpu_model = tiny_gpt()
    expected = Engine(cpu_model).generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=())
    cuda_model = tiny_gpt().cuda()
    graphs = Engine(cuda_model, cuda_graphs=True)
    eager = Engine(cuda_model, cuda_graphs=False)
    for _ in range(2):  # the second run replays the captured graph
        assert graphs.generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=()) == expected
    assert any(slot.graph is not None for slot in graphs._slots.values())
    assert eager.generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=()) == expected
    p = SamplingParams(temperature=1.0, top_k=100, seed=5)
    assert graphs.generate_ids(PROMPTS, 20, p) == graphs.generate_ids(PROMPTS, 20, p)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_cuda_graph_decode_equals_eager() -> None:
    model = tiny_gpt().cuda()
    expected = Engine(model, cuda_graphs=False).generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=())
    engine = Engine(model, cuda_graphs=True, compile_decode=True)
    for _ in range(2):
        assert engine.generate_ids(PROMPTS, 30, GREEDY, stop_token_ids=()) == expected
    assert any(slot.graph is not None for slot in engine._slots.values())


# ---- edge values (found by an adversarial pass) --------------------------------------------------


def test_tiny_temperature_samples_the_best_token_not_garbage() -> None:
    """logits / 1e-39 overflowed to inf and softmax gave NaN: every token came out as id 0 ('!')."""
    logits = torch.tensor([[1.0, 5.0, 3.0, -2.0], [0.5, -1.0, 0.25, 4.0]])
    g = torch.Generator().manual_seed(0)
    for temperature in (1e-39, 1e-300, 5e-324):
        params = SamplingParams(temperature=temperature, seed=0)
        assert sample(logits, params, g).tolist() == [1, 3]
        assert sample(logits, SamplingParams(temperature=temperature, top_p=0.5), g).tolist() == [1, 3]
    # Masked (-inf) logits stay impossible at every temperature.
    masked = torch.tensor([[0.0, float("-inf"), -1.0]]).repeat(500, 1)
    assert 1 not in sample(masked, SamplingParams(temperature=3.0), g).tolist()


def test_top_p_zero_is_greedy_as_in_the_openai_range(model: GPT) -> None:
    """OpenAI takes top_p in [0, 1]; 0 keeps only the likeliest token."""
    engine = Engine(model)
    greedy = engine.generate_ids(PROMPTS, 10, GREEDY, stop_token_ids=())
    params = SamplingParams(temperature=1.0, top_p=0.0, seed=4)
    assert params.greedy
    assert engine.generate_ids(PROMPTS, 10, params, stop_token_ids=()) == greedy


def test_a_prompt_of_block_size_tokens_still_gets_one_token(model: GPT) -> None:
    """The last sampled token is never fed back, so block_size prompt tokens leave room for one more."""
    engine = Engine(model)
    prompt = [(7 * i) % 5000 for i in range(model.config.block_size)]
    got = engine.generate_ids([prompt], 1, GREEDY, stop_token_ids=())[0]
    assert got == naive_greedy(model, prompt, 1)
    short = prompt[:100]
    assert engine.generate_ids([short], 29, GREEDY, stop_token_ids=())[0] == naive_greedy(model, short, 29)
    with pytest.raises(ValueError, match="block_size"):
        engine.generate_ids([prompt], 2, GREEDY)
