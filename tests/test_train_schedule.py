"""The learning-rate schedule's edge cases and what a resumed run says it does to the schedule."""

from __future__ import annotations

import pytest

from pipeline.lr import lr_at
from pipeline.trainconfig import TrainConfig
from pipeline.trainsetup import extension_notice


def test_no_warmup_starts_at_lr_and_ends_near_min_lr() -> None:
    kw = dict(lr=1.0, min_lr=0.1, warmup_iters=0, decay_iters=10)
    lrs = [lr_at(s, **kw) for s in range(10)]  # a 10-step run: steps 0..9
    assert lrs[0] == 1.0  # no step at lr 0: warmup 0 is no warmup
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert 0.1 < lrs[-1] < 0.13 and lr_at(10, **kw) == 0.1  # min_lr is reached at decay_iters


def test_warmup_as_long_as_the_run_only_warms_up_and_is_warned_about() -> None:
    kw = dict(lr=1.0, min_lr=0.1, warmup_iters=8, decay_iters=8)
    lrs = [lr_at(s, **kw) for s in range(8)]
    assert lrs == pytest.approx([(s + 1) / 9 for s in range(8)]) and max(lrs) < 1.0
    assert any("never reaches lr" in w for w in TrainConfig(warmup_iters=8, max_iters=8).warnings())
    assert TrainConfig(warmup_iters=7, max_iters=8).warnings() == []


def test_min_lr_equal_to_lr_is_a_constant_schedule_after_warmup() -> None:
    kw = dict(lr=0.5, min_lr=0.5, warmup_iters=2, decay_iters=20)
    assert [lr_at(s, **kw) for s in range(2, 25)] == [0.5] * 23


def test_resuming_with_a_shorter_max_iters_says_it_shortens_the_schedule() -> None:
    """An unfinished run (planned 8 steps, at step 4) resumed with max_iters 6 was logged as
    "extending the run ... its cosine schedule is stretched", while its lr drops."""
    kw = dict(lr=1.0, min_lr=0.1, warmup_iters=0)
    shorter = extension_notice(TrainConfig(**kw, max_iters=6), step=4, planned=8)
    before, after = lr_at(3, **kw, decay_iters=8), lr_at(4, **kw, decay_iters=6)
    assert after < before
    assert shorter == (
        f"shortening the run at step 4 from 8 to 6 steps: its cosine schedule is compressed to 6 steps, "
        f"lr {before:.3g} -> {after:.3g}"
    )
    longer = extension_notice(TrainConfig(**kw, max_iters=12), step=8, planned=8)
    assert longer.startswith("extending the run from step 8 to 12: its cosine schedule is stretched to 12")
    assert extension_notice(TrainConfig(**kw, max_iters=8), step=4, planned=8) == (
        "continuing the run from step 4 to 8"
    )
