"""Tests written by a mutation-testing audit of the core invariants: each one kills a deliberate
mutation of the code that the rest of the suite let pass (the mutation is named in its docstring).

They assert behaviour through public functions: the sampler's nucleus and its exponential race, the
engine's vocabulary cut, the split's opening key and the leak audit's floor, the build's quarantine
(which check it names, the order of its rows) and its write-time commercial guard, the turn length
bound, the dropout seeds per step and the loss scaler across a resume.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import torch
from test_build_edge import rows, write_tables
from test_engine_support import ScriptedGPT
from test_train import paths_in, tiny_config, write_tokens

from pipeline import build as build_mod
from pipeline import checkpoint, dedup, device, split
from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig, CommercialLeakError
from pipeline.chatsession import ChatSession
from pipeline.engine import Engine
from pipeline.sampling import SamplingParams, sample
from pipeline.schema import row_violations
from pipeline.tokenizer import N_VOCAB
from pipeline.train import GlobalBatches, train
from pipeline.trainconfig import TrainPaths
from pipeline.trainsetup import Runtime

# ---------------------------------------------------------------- sampling and the engine


def test_top_p_keeps_the_smallest_prefix_that_reaches_the_mass() -> None:
    """Masses 0.25, 0.25, 0.25, 0.125, 0.125 (exact in float32): top_p 0.75 is reached by the first
    three, so the fourth (whose mass before it is exactly 0.75, and below the boundary's 0.25) is
    never drawn. Kills `before < top_p` -> `before <= top_p` in sampling._nucleus. Ties at the
    boundary are all in (session 28): four tokens of 0.25 at top_p 0.5 keep all four, where the
    prefix cut kept the two the sort put first."""
    logits = torch.tensor([0.0, 0.0, 0.0, -math.log(2), -math.log(2)]).repeat(4000, 1)
    drawn = sample(logits, SamplingParams(temperature=1.0, top_p=0.75), torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1, 2}
    drawn = sample(logits, SamplingParams(temperature=1.0, top_p=0.8), torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {0, 1, 2, 3, 4}  # past 0.75 the 0.125s tie at the boundary
    drawn = sample(
        torch.zeros(4000, 4), SamplingParams(temperature=1.0, top_p=0.5), torch.Generator().manual_seed(0)
    )
    assert len(set(drawn.tolist())) == 4


def test_a_zero_from_the_exponential_race_never_picks_a_filtered_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exp(1) can draw 0; then p / E is 0 / 0 (NaN, which argmax takes) for every token that top-k
    or top-p removed. The race is clamped so that such a token still loses. Kills dropping the clamp."""
    monkeypatch.setattr(torch.Tensor, "exponential_", lambda self, *a, **k: self.zero_())
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    for params in (
        SamplingParams(temperature=1.0, top_k=2),
        SamplingParams(temperature=1.0, top_p=0.6),  # 0.64 of the mass is token 0
    ):
        token = int(sample(logits, params, None)[0])
        assert token in ({0, 1} if params.top_k else {0}), (params, token)


def test_the_engine_never_emits_an_id_of_the_padded_vocabulary() -> None:
    """The model's head is PADDED_VOCAB wide; ids from N_VOCAB up are no token at all (decoding one
    raises KeyError). A model whose padded rows score highest must still give tokenizer ids. Kills
    sampling from `logits` instead of `logits[:, :N_VOCAB]`."""
    engine = Engine(ScriptedGPT([[N_VOCAB, N_VOCAB + 7, N_VOCAB + 40]]))
    for params in (SamplingParams(temperature=0.0), SamplingParams(temperature=1.0, seed=1)):
        ids = engine.generate_ids([[1, 2, 3]], 3, params, stop_token_ids=())[0]
        assert len(ids) == 3 and all(0 <= t < N_VOCAB for t in ids), ids
    assert engine.generate([[1, 2, 3]], 3)[0].finish_reason == "length"  # decodes without error


def test_each_reply_of_a_seeded_chat_draws_fresh_noise_and_the_chat_replays() -> None:
    """A seeded chat seeds reply n with seed + n: the same question asked twice gets a fresh sample
    (here from a model whose output ignores its input, so only the noise differs), and a new chat
    with the same seed replays both. Kills seeding every reply with the chat's seed alone."""
    engine = Engine(ScriptedGPT([[]]))  # every step: near-uniform logits over the vocabulary

    def replies() -> list[list[int]]:
        chat = ChatSession(engine, max_new_tokens=8, temperature=1.0, top_k=None, top_p=None, seed=11)
        return [chat.reply_result("Tell me something.").token_ids for _ in range(2)]

    first, second = replies()
    assert len(first) == len(second) == 8 and first != second
    assert replies() == [first, second]


def test_a_message_of_typed_markers_is_measured_as_the_text_it_is() -> None:
    """A typed `<bot>` is three ordinary tokens, never one control token, also where the session
    measures a message against its prompt budget: the error states the real size. Kills measuring
    the message with special tokens allowed."""
    engine = Engine(ScriptedGPT([[]]))  # block_size 128
    chat = ChatSession(engine, max_new_tokens=32)
    text = "<bot>" * 60  # 60 control tokens would fit the 92 left; as text it does not
    n = len(engine.enc.encode_ordinary(text))
    assert n > 92
    with pytest.raises(ValueError, match=f"message is {n} tokens; only 92 fit"):
        chat.prompt_ids(text)


# ---------------------------------------------------------------- split: opening key, leak audit


def _openings(conversations: dict[str, list[str]], min_chars: int) -> dict[str, int]:
    """conversation_id -> opening key, computed as the build computes it (dedup row hashes)."""
    rows = [
        {"conversation_id": cid, "turn": t, "role": "human" if t % 2 == 0 else "bot", "text": text}
        for cid, texts in conversations.items()
        for t, text in enumerate(texts)
    ]
    frame = pl.DataFrame(rows, schema_overrides={"turn": pl.Int32})
    keys = (
        frame.with_columns(dedup.folded_text())
        .with_columns(*dedup.row_key_hashes(), _fchars=pl.col("_folded").str.len_chars())
        .group_by("conversation_id")
        .agg(split.opening_key_agg(min_chars))
    )
    return dict(keys.iter_rows())


def test_a_thread_and_its_first_exchange_alone_share_the_opening() -> None:
    """A short question whose answer takes the first exchange past the floor: the thread and the copy
    scraped before any more replies came (its first exchange alone) must share a split, so their
    openings must be equal (and differ from another answer's). Kills `turn <= 1` -> `turn <= 2`."""
    question = "What is a lighthouse?"
    answer = "A tower with a bright lamp at the top that guides ships along a dangerous coast at night."
    other = "A building by the sea whose light warns sailors away from rocks, sandbanks and reefs."
    keys = _openings(
        {
            "cut": [question, answer],
            "thread": [question, answer, "Who keeps it?", "A keeper, who lives in it."],
            "other": [question, other],
        },
        min_chars=60,
    )
    assert len(question) < 60 <= len(question) + len(answer)
    assert keys["cut"] == keys["thread"] != keys["other"]


def test_a_first_turn_of_exactly_the_floor_is_the_opening() -> None:
    """The opening is "its first turn when that holds at least split_opening_chars characters": a
    first turn of exactly the floor keys the split alone, so two answers to it share one. Kills
    `>=` -> `>`."""
    prompt = "abcde fghij klmno pq"  # folds to itself: 20 characters
    keys = _openings({"a": [prompt, "first answer"], "b": [prompt, "second answer"]}, min_chars=20)
    assert keys["a"] == keys["b"]
    keys = _openings({"a": [prompt[:-1], "first answer"], "b": [prompt[:-1], "second answer"]}, min_chars=20)
    assert keys["a"] != keys["b"]  # one character short: the first exchange keys it


def test_the_leak_audit_counts_a_val_turn_of_exactly_the_floor() -> None:
    """The audit says "A val turn counts when it holds at least audit_floor folded characters": one
    of exactly the floor that is also a train turn is a leak; one character less is not audited.
    Kills `>=` -> `>` on the folded length."""
    at_floor, below = "abcde fghij klmno pq", "abcde fghij klmno p"
    audit = split.LeakAudit(20)
    audit.add(pl.DataFrame({"text": [at_floor, below, "unrelated train text here"], "split": ["train"] * 3}))
    # the val copies differ in case and end with a mark: they fold to the train turns
    audit.add(pl.DataFrame({"text": [at_floor.upper() + "!", below.upper() + "?"], "split": ["val"] * 2}))
    result = audit.result()
    assert (result["min_chars"], result["val_turns_checked"], result["val_turns_in_train"]) == (20, 1, 1)
    assert result["val_characters_in_train"] == len(at_floor) + 1


# ---------------------------------------------------------------- build: quarantine, commercial guard

REGISTRY = {
    "a": {"kind": "package", "licence": "MIT", "commercial": True},
    "b": {"kind": "package", "licence": "CC-BY-NC-4.0", "commercial": False},
}


def _rows(cid: str, texts: list[str], source: str) -> list[dict]:
    """test_build_edge's turn rows, under `source`'s licence terms in REGISTRY."""
    return rows(cid, texts, source, REGISTRY[source]["licence"], REGISTRY[source]["commercial"])


def _build(root: Path, names: list[str], variant: str = "full", **cfg) -> None:
    build_variant(root, names, REGISTRY, BuildConfig(variant=variant, val_fraction=0.3, **cfg))


def test_a_conversation_is_quarantined_under_its_first_failing_row(tmp_path: Path) -> None:
    """With two bad rows, the quarantine names the first one (turn 1's control character), not
    turn 3's length. Kills aggregating the failing-row codes with max instead of min."""
    bad = _rows("a:bad", ["hello", "ring \x07 ring", "and then?", "x" * 100], "a")
    good = [r for i in range(4) for r in _rows(f"a:ok{i}", [f"question {i}", f"answer {i}"], "a")]
    write_tables(tmp_path, {"a": good + bad})
    _build(tmp_path, ["a"], max_turn_chars=80)
    q = pl.read_parquet(tmp_path / "data/dataset/full/quarantine.parquet")
    assert q["conversation_id"].to_list() == ["a:bad"] * 4  # the whole conversation
    assert set(q["check"]) == {"text_no_control_chars"}
    assert set(q["reason"]) == {
        "turn 1: text holds control characters (the first, U+0007, at character 6)"  # "ring \x07"
    }


def test_quarantine_rows_are_in_input_order_across_write_parts(tmp_path: Path) -> None:
    """quarantine.parquet lists every quarantined row in input order (source rank, then row), also
    when the write pass routes them through many parts. Kills dropping that sort."""
    tables: dict[str, list[dict]] = {"a": [], "b": []}
    for name in tables:
        for i in range(12):
            tables[name] += _rows(f"{name}:ok{i}", [f"{name} question {i}", f"{name} answer {i}"], name)
            tables[name] += _rows(f"{name}:bad{i}", [f"{name} asks {i}", " padded "], name)  # not stripped
    write_tables(tmp_path, tables)
    _build(tmp_path, ["a", "b"], part_chars=40)
    q = pl.read_parquet(tmp_path / "data/dataset/full/quarantine.parquet")
    assert q.height == 48 and set(q["check"]) == {"text_stripped"}
    origins = q["origin"].str.extract_groups(r"^data/normalized/(\w)\.parquet:row (\d+)$")
    order = [(o["1"], int(o["2"])) for o in origins.to_list()]
    assert order == sorted(order)


def test_the_write_pass_refuses_non_commercial_rows_the_plan_did_not_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build checks commercial purity twice: on the plan, and on the conversations each write
    part is about to append. A write pass that carries a non-commercial source's rows (simulated
    here) must be refused with nothing written. Kills dropping the write-time check."""
    tables = {
        "a": [r for i in range(6) for r in _rows(f"a:{i}", [f"question {i}", f"answer {i}"], "a")],
        "b": [r for i in range(6) for r in _rows(f"b:{i}", [f"nc question {i}", f"nc answer {i}"], "b")],
    }
    write_tables(tmp_path, tables)
    _build(tmp_path, ["a", "b"], variant="commercial")  # the plan filters b out: a clean build
    out = tmp_path / "data/dataset/commercial"
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = build_mod.assemble_conversations
    monkeypatch.setattr(
        build_mod,
        "assemble_conversations",
        lambda kept: real(kept).with_columns(source=pl.lit("b"), licence=pl.lit("CC-BY-NC-4.0")),
    )
    with pytest.raises(CommercialLeakError, match="refusing to write the commercial variant"):
        _build(tmp_path, ["a", "b"], variant="commercial")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_conversation_with_one_non_commercial_row_is_outside_the_commercial_variant(tmp_path: Path) -> None:
    """Contributed rows carry their own terms. A (hand-edited) conversation whose rows mix a
    commercial and a non-commercial licence is not in the commercial variant at all: filtered whole
    as not_commercial before any check, while the full variant quarantines it (its terms differ
    between turns). Kills deciding eligibility with `any` row instead of `all` rows."""
    registry = {"contrib": {"kind": "contrib", "licence": "per-file", "commercial": False}}

    def row(cid: str, turn: int, text: str, licence: str, commercial: bool) -> dict:
        role = "human" if turn % 2 == 0 else "bot"
        return dict(
            conversation_id=cid,
            turn=turn,
            role=role,
            text=text,
            source="contrib/x",
            licence=licence,
            commercial=commercial,
            context=None,
        )

    rows = [row("contrib/x:mixed", 0, "mixed question", "MIT", True)]
    rows.append(row("contrib/x:mixed", 1, "mixed answer", "CC-BY-NC-4.0", False))
    for i in range(4):
        rows += [
            row(f"contrib/x:{i}", 0, f"question {i}", "MIT", True),
            row(f"contrib/x:{i}", 1, f"a {i}", "MIT", True),
        ]
    write_tables(tmp_path, {"contrib": rows})
    for variant in ("commercial", "full"):
        build_variant(tmp_path, ["contrib"], registry, BuildConfig(variant=variant, val_fraction=0.3))
    stats = json.loads((tmp_path / "data/dataset/commercial/stats.json").read_text())["sources"]["contrib"]
    assert stats["rows_filtered"]["not_commercial"] == 2 and stats["rows_quarantined"] == 0
    assert pl.read_parquet(tmp_path / "data/dataset/commercial/quarantine.parquet").is_empty()
    full_q = pl.read_parquet(tmp_path / "data/dataset/full/quarantine.parquet")
    assert set(full_q["conversation_id"]) == {"contrib/x:mixed"}
    assert set(full_q["check"]) == {"conversation_consistent"}


def test_a_turn_of_exactly_the_length_limit_is_allowed() -> None:
    """max_turn_chars is the longest turn allowed ("text longer than N characters" is the rule):
    a turn of exactly N passes, N + 1 fails. Kills `>` -> `>=`."""
    check = next(bad for name, bad, _ in row_violations(10) if name == "text_length")
    frame = pl.DataFrame({"text": ["x" * 10, "x" * 11, "é" * 10]})
    assert frame.select(check)["text"].to_list() == [False, True, False]


# ---------------------------------------------------------------- training: dropout seeds, resume


def test_dropout_seeds_differ_at_every_step_and_place_and_follow_the_place(tmp_path: Path) -> None:
    """Dropout noise depends on (seed, step, place in the global batch): no two micro-batches of a
    run share a seed, and two processes give each place the seed one process gives it. Kills
    leaving the step out of the seed (every step would drop the same units)."""
    data = write_tokens(tmp_path / "full")
    cfg = tiny_config(grad_accum=4)
    cpu = torch.device("cpu")
    one = GlobalBatches(data / "train", cfg, Runtime(cpu, torch.float32, device.DistInfo()), cfg.seed)
    seeds = [s for step in range(50) for s in one.dropout_seeds(step)]
    assert len(seeds) == 200 and len(set(seeds)) == 200
    two = [
        GlobalBatches(data / "train", cfg, Runtime(cpu, torch.float32, device.DistInfo(r, r, 2)), cfg.seed)
        for r in (0, 1)
    ]
    for step in (0, 7):
        assert two[0].dropout_seeds(step) + two[1].dropout_seeds(step) == one.dropout_seeds(step)


def test_a_run_resumes_from_its_latest_complete_checkpoint(tmp_path: Path) -> None:
    """A kill between a save's rename and the prune of older steps leaves two complete steps: the
    resume takes the latest. A step folder without its state.pt or its weights, or a hidden
    temporary, is not one to resume from. Kills taking the oldest step, and counting a step
    without its training state as complete."""
    run = tmp_path / "run"
    layout = {
        "step-00000004": (checkpoint.WEIGHTS_FILE, checkpoint.STATE_FILE),
        "step-00000012": (checkpoint.WEIGHTS_FILE, checkpoint.STATE_FILE),
        "step-00000016": (checkpoint.WEIGHTS_FILE,),  # no training state
        "step-00000020": (checkpoint.STATE_FILE,),  # no weights
        ".step-abc.tmp": (checkpoint.WEIGHTS_FILE, checkpoint.STATE_FILE),  # a save killed half-way
    }
    for folder, files in layout.items():
        (run / folder).mkdir(parents=True)
        for name in files:
            (run / folder / name).write_bytes(b"x")
    assert [p.name for p in checkpoint.run_checkpoints(run)] == ["step-00000004", "step-00000012"]
    assert checkpoint.latest_run_checkpoint(run) == run / "step-00000012"


class _Stop(Exception):
    pass


def _stop_after(last: int):
    def on_step(step: int) -> None:
        if step == last:
            raise _Stop

    return on_step


def test_a_resumed_float16_run_carries_its_loss_scaler_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under float16 autocast the loss scaler's state (scale, steps since the last overflow) is part of
    the run: a resumed run that restarts it would skip steps the uninterrupted one took once it had
    backed off. An interrupted run ends with the scaler state and weights of a straight one. Kills not
    restoring the saved scaler."""
    monkeypatch.setattr(device, "resolve_dtype", lambda name, dev: torch.float16)  # CPU: would be float32
    data = write_tokens(tmp_path / "full")
    cfg = tiny_config(dtype="float16", max_iters=4, ckpt_interval=2, eval_interval=4)

    def paths(name: str) -> TrainPaths:
        return paths_in(tmp_path / name, data)

    train(cfg, paths("straight"))
    with pytest.raises(_Stop):
        train(cfg, paths("resumed"), on_step=_stop_after(2))
    train(cfg, paths("resumed"))  # picks up the step-2 checkpoint
    states = [
        checkpoint.load_state(checkpoint.latest_run_checkpoint(paths(name).run_dir))
        for name in ("straight", "resumed")
    ]
    assert states[0]["step"] == states[1]["step"] == 4
    assert "scale" in states[0]["scaler"]
    assert states[1]["scaler"] == states[0]["scaler"]
    weights = [checkpoint.load_model(paths(name).ckpt_dir).state_dict() for name in ("straight", "resumed")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert json.loads(paths("resumed").metrics_file.read_text())["iters"] == 4
