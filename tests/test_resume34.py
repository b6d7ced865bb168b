"""Resume gaps a mutation audit of pipeline/checkpoint.py and runlock.py found (session 34): a re-save
killed between its two renames (no renameat2), the run lock's refusal naming the wrong folder, and
trim_plots on a plot file dvclive left empty. All fast: a tiny model, no training loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pipeline import atomic, checkpoint
from pipeline.model import GPT, GPTConfig
from pipeline.runlock import RunLocked, exclusive_run


def _tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=8))


class _Killed(BaseException):
    """Stands in for a kill: nothing catches it, only `finally` blocks run (as for Ctrl-C)."""


def _kill_at_rename_in(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Make the rename of a save's temporary folder onto `target` the instant the process dies."""
    replace = os.replace

    def dying(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == target and Path(src).name.endswith(".tmp"):
            raise _Killed
        replace(src, dst)

    monkeypatch.setattr(os, "replace", dying)


# ---------------------------------------------------------------- a re-save killed between its renames


def test_a_re_save_killed_between_its_renames_leaves_the_step_to_resume_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without renameat2, a re-save of step N renames the old copy to `.step-N.old`, then the new one
    in. Killed between the two, the run held only `.step-N.old` (older steps pruned long before): the
    next run found no checkpoint, trained from scratch, and its first save deleted the `.old`."""
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    model, run = _tiny(), tmp_path / "run"
    step = checkpoint.save_run_checkpoint(model, {"step": 4, "copy": "first"}, run, 4)
    with monkeypatch.context() as m:
        _kill_at_rename_in(m, step)
        with pytest.raises(_Killed):
            checkpoint.save_run_checkpoint(model, {"step": 4, "copy": "second"}, run, 4)
    assert not step.exists() and (run / ".step-00000004.old").is_dir()  # the window the test is about
    assert checkpoint.latest_run_checkpoint(run) == step
    assert checkpoint.load_state(step)["copy"] == "first"
    assert checkpoint.load_model(step).config.n_embd == 8  # put back whole: config.json too
    assert sorted(p.name for p in run.iterdir()) == [step.name]


def _step_folder(path: Path, files: tuple[str, ...]) -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"")
    return path


def test_only_a_whole_set_aside_copy_newer_than_every_step_is_put_back(tmp_path: Path) -> None:
    """What a prune leaves (`.step-M.old` of an older step, its deletion killed part-way) is no
    checkpoint to resume from: a step newer than it is there. Nor is a set-aside copy without its
    weights or state, as a `step-N/` without them is none."""
    run = tmp_path / "run"
    whole = (checkpoint.STATE_FILE, checkpoint.WEIGHTS_FILE, checkpoint.CONFIG_FILE)
    _step_folder(run / "step-00000008", whole)
    _step_folder(run / ".step-00000004.old", whole)  # a prune of step 4, killed
    assert [p.name for p in checkpoint.run_checkpoints(run)] == ["step-00000008"]
    assert (run / ".step-00000004.old").is_dir()  # the next save's cleanup removes it, as before
    _step_folder(run / ".step-00000012.old", (checkpoint.STATE_FILE,))  # no weights
    assert checkpoint.latest_run_checkpoint(run) == run / "step-00000008"
    assert not (run / "step-00000012").exists()


# ---------------------------------------------------------------- the run lock


def test_the_run_locks_refusal_names_the_run_folder_it_guards(tmp_path: Path) -> None:
    """`model/run.lock` guards `model/run`: the refusal said "is using model", a folder that also
    holds model/ckpt and model/live, which a second run of another folder may use freely."""
    lock = tmp_path / "model" / "run.lock"
    with exclusive_run(lock), pytest.raises(RunLocked) as e, exclusive_run(lock):
        pass
    assert f"is using {tmp_path / 'model' / 'run'};" in str(e.value)


# ---------------------------------------------------------------- trim_plots


def test_a_resume_tolerates_a_plot_file_a_kill_left_empty(tmp_path: Path) -> None:
    """dvclive opens a .tsv for appending, then writes header and row on closing it: a kill between
    leaves the file empty. A run resumed from a checkpoint without a plot snapshot (older code; an
    `init_from: resume` extension of it) by hand (model/live is not deleted then) crashed on it in
    trim_plots ("not enough values to unpack"). The empty file is removed: dvclive writes a header
    only into a file it creates, so its rows would otherwise follow none."""
    from pipeline.runlog import RunLogger

    ckpt, live = tmp_path / "step-00000002", tmp_path / "live"
    ckpt.mkdir()
    plots = live / "plots" / "metrics" / "train"
    plots.mkdir(parents=True)
    (plots / "loss.tsv").write_text("")
    (plots / "lr.tsv").write_text("step\tlr\n")  # header-only: nothing to trim either
    logger = RunLogger(live, is_main=True, total=4, initial=2, resume=True, history=ckpt)
    logger.log(3, {"train/loss": 1.5})
    logger.close()
    assert (plots / "loss.tsv").read_text().splitlines() == ["step\tloss", "3\t1.5"]
    assert (plots / "lr.tsv").read_text() == "step\tlr\n"
