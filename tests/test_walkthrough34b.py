"""Session 34's walkthrough as someone who rebuilds the dataset and model with DVC: what a command
said that the run did not do."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.trainconfig import TrainConfig
from pipeline.trainsetup import discard_notice

TINY = dict(n_layer=1, n_head=1, n_embd=8, block_size=8, batch_size=1, max_iters=16, lr=0.002, device="cpu")


def _state(step: int, **saved: object) -> dict[str, object]:
    """A run state as a checkpoint holds it: its step and the config it was made with."""
    config = TrainConfig(**{**TINY, **saved}).validated()
    return {"step": step, "config": json.dumps(config.__dict__), "fingerprint": "old"}


def test_discarding_an_unfinished_run_does_not_offer_to_continue_it() -> None:
    """`dvc exp run -S ...lr=0.001` after a killed run logged "discarding the unfinished run ...; to
    continue it instead, set those back and `init_from: resume`", but the run folder is deleted right
    after that line: followed, the advice met "made with other settings". It now says the run is gone
    and what would have kept it."""
    ckpt = Path("model/run/step-00000004")
    now = TrainConfig(**{**TINY, "lr": 0.001}).validated()
    line = discard_notice(now, _state(4), ckpt)
    assert line.startswith("warning: discarding the unfinished run at model/run/step-00000004 (step 4 of 16)")
    assert "lr 0.002 (now 0.001)" in line
    assert "it is deleted as this run starts" in line
    assert "continue it instead" not in line and "continues it instead" not in line
    assert "with those set back, `init_from: resume` would have continued it" in line
    # Same settings, other code or data: only init_from: resume could have kept it.
    same = TrainConfig(**TINY).validated()
    line = discard_notice(same, _state(4), ckpt)
    assert line.endswith(
        "the code or the data changed; it is deleted as this run starts "
        "(`init_from: resume` would have continued it)"
    )
    # A finished run is only replaced: its model is the last model/ckpt.
    assert discard_notice(now, _state(16), ckpt).startswith("replacing the finished run at ")


def test_the_model_card_does_not_promise_a_whole_split_evaluation() -> None:
    """model/hf/README.md said "The evaluate stage scores the whole split", also after
    `dvc exp run -S evaluate.eval_iters=2` (945 of 70,810 bot tokens scored: val_bot_tokens_share
    0.0133). The export does not read evaluate's settings, so the card says when that holds."""
    from pipeline import modelcard
    from tests.test_cards import facts_of, token_row

    card = modelcard.model_card(facts_of(), [token_row("chitchat")], {})
    assert "The evaluate stage scores the whole split (`model/eval/metrics.json`)" not in card
    assert (
        "The evaluate stage scores the whole split unless `evaluate.eval_iters` limits it "
        "(`model/eval/metrics.json`: `val_bot_tokens_share` is the share scored)." in card
    )
