"""Mutation audit 22 (session 34): the crash-safety and exact-resume code, second pass: atomic writes
and fingerprints (pipeline.atomic), the run lock (pipeline.runlock), the resume state
(pipeline.runstate), the run's plots (pipeline.runlog) and run checkpoints (pipeline.checkpoint).
Each test kills a mutation the earlier audits and the rest of the suite let pass; its docstring
names it. All are fast: tiny models, no training loop.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from test_mutation_audit3 import _Batches

from pipeline import atomic, checkpoint
from pipeline.model import GPT, GPTConfig
from pipeline.optim import make_optimizer
from pipeline.runlock import RunLocked, exclusive_run
from pipeline.runstate import Progress, make_state, restore_state
from pipeline.trainconfig import TrainConfig

# ---------------------------------------------------------------- atomic


def test_a_files_sha256_covers_every_chunk(tmp_path: Path) -> None:
    """Mutation atomic.sha256_file: only the first chunk hashed (the read loop made one read). A
    fingerprint then missed any change past the first MiB, so a mixed set of outputs of the same
    size passed fingerprint_mismatch."""
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 5
    path.write_bytes(data)
    assert atomic.sha256_file(path, chunk=100) == hashlib.sha256(data).hexdigest()


def test_a_link_inside_a_published_folder_does_not_change_its_targets_mode(tmp_path: Path) -> None:
    """Mutation atomic.fsync_tree: the `is_symlink(): continue` dropped. give_default_mode then
    followed a link in the folder and chmodded a file outside it (a private key made 0644)."""
    outside = tmp_path / "secret"
    outside.write_text("x")
    outside.chmod(0o600)
    with atomic.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "link").symlink_to(outside)
    assert (tmp_path / "out" / "link").is_symlink()
    assert outside.stat().st_mode & 0o777 == 0o600


def test_a_dangling_link_in_the_way_of_a_folder_is_replaced(tmp_path: Path) -> None:
    """Mutation atomic.atomic_dir: `present` without `or target.is_symlink()`. A link whose target is
    gone does not `exist()`: the folder was then renamed onto the link, which fails (ENOTDIR)."""
    target = tmp_path / "out"
    target.symlink_to(tmp_path / "gone")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "f.txt").write_text("new")
    assert not target.is_symlink() and (target / "f.txt").read_text() == "new"


def test_a_temporary_deleted_before_it_is_opened_is_made_again(tmp_path: Path) -> None:
    """Mutation atomic.held_file: FileNotFoundError on opening the new file re-raised instead of
    making another (another run's cleanup deleted it in the instant after mkstemp)."""
    kept = tmp_path / "kept"
    kept.write_text("")
    names = iter([str(tmp_path / "deleted"), str(kept)])
    fd, path = atomic.held_file(lambda: next(names))
    os.close(fd)
    assert path == kept


def test_a_killed_writes_leftover_is_found_for_a_name_with_glob_characters(tmp_path: Path) -> None:
    """Mutation atomic.remove_stale: `glob.escape` dropped. `[1]` in a target's name is then a glob
    character class, so a killed write's `.a[1].txt.<8>.tmp` was never matched and stayed."""
    target = tmp_path / "a[1].txt"
    leftover = tmp_path / ".a[1].txt.abcd1234.tmp"
    leftover.write_text("half")
    atomic.write_text(target, "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


# ---------------------------------------------------------------- runlock


def test_run_lock_makes_its_folder_and_names_it_when_refused(tmp_path: Path) -> None:
    """Mutations runlock.exclusive_run: the `lock_file.parent.mkdir` dropped (a first run, before
    model/ exists, failed to open its lock) and the folder dropped from the refusal."""
    lock = tmp_path / "model" / "run.lock"
    with exclusive_run(lock), pytest.raises(RunLocked) as e, exclusive_run(lock):
        pass
    assert f"is using {lock.with_suffix('')};" in str(e.value)


# ---------------------------------------------------------------- runstate


def _tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=8))


def _round_trip(
    progress: Progress,
    saved: torch.amp.GradScaler,
    loaded: torch.amp.GradScaler,
    tmp_path: Path,
    **drop: bool,
) -> Progress:
    """make_state -> state.pt -> restore_state, with the keys named in `drop` left out (older code)."""
    model = _tiny()
    cfg = TrainConfig(init_from="gpt2")
    state = make_state(
        progress, make_optimizer(model, lr=1e-2, weight_decay=0.1), saved, _Batches(3), "fp", cfg
    )
    checkpoint.save_state({k: v for k, v in state.items() if not drop.get(k)}, tmp_path)
    rng = torch.get_rng_state()
    try:
        return restore_state(
            checkpoint.load_state(tmp_path),
            make_optimizer(model, lr=1e-2, weight_decay=0.1),
            loaded,
            _Batches(0),
        )
    finally:
        torch.set_rng_state(rng)


def test_the_data_a_run_trained_on_survives_a_resume(tmp_path: Path) -> None:
    """Mutations runstate: restore_state dropping `data_sha` or `data_changed`, and make_state writing
    False for `data_changed`. The flag is sticky: a resume that lost it let the model card call
    weights that also trained on other data fit for commercial use."""
    off = torch.amp.GradScaler("cpu", enabled=False)
    restored = _round_trip(Progress(step=3, data_sha="abc", data_changed=True), off, off, tmp_path)
    assert (restored.data_sha, restored.data_changed) == ("abc", True)


def test_a_state_without_an_origin_takes_the_configs_init_from(tmp_path: Path) -> None:
    """Mutation runstate.restore_state: the fallback to the saved config's init_from dropped. A
    state.pt of older code (no `origin`) then resumed with origin None: the card lost its start."""
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert _round_trip(Progress(step=3), off, off, tmp_path, origin=True).origin == "gpt2"


def test_the_loss_scale_is_restored_and_a_disabled_scalers_state_is_not_loaded(tmp_path: Path) -> None:
    """Mutations runstate: make_state saving {} for the scaler, restore_state skipping its
    load_state_dict, and `state["scaler"] and` dropped (an enabled scaler given a disabled one's {}
    raised; the dtype resolves differently on another machine)."""
    saved = torch.amp.GradScaler("cpu", init_scale=512.0, enabled=True)
    loaded = torch.amp.GradScaler("cpu", init_scale=2.0**16, enabled=True)
    _round_trip(Progress(step=3), saved, loaded, tmp_path)
    assert loaded.get_scale() == 512.0
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16, enabled=True)
    _round_trip(Progress(step=3), torch.amp.GradScaler("cpu", enabled=False), fresh, tmp_path)
    assert fresh.get_scale() == 2.0**16


# ---------------------------------------------------------------- runlog


def test_a_resumed_logger_puts_back_the_checkpoints_plot_history(tmp_path: Path) -> None:
    """Mutation runlog.RunLogger.__init__: the `restore_plots(history, live_dir)` call dropped. DVC
    deleted model/live before the stage ran again: the resumed run's curves started at its
    checkpoint instead of step 1."""
    from pipeline.runlog import PLOTS_SNAPSHOT, RunLogger

    ckpt, live = tmp_path / "step-00000002", tmp_path / "live"
    rows = "step\tloss\n1\t2.0\n2\t1.5\n"
    (ckpt / PLOTS_SNAPSHOT / "train").mkdir(parents=True)
    (ckpt / PLOTS_SNAPSHOT / "train" / "loss.tsv").write_text(rows)
    RunLogger(live, is_main=True, total=4, initial=2, resume=True, history=ckpt).close()
    assert (live / "plots" / "metrics" / "train" / "loss.tsv").read_text() == rows


# ---------------------------------------------------------------- checkpoint


def _state(step: int) -> dict:
    return {"step": step, "torch_rng": torch.get_rng_state()}


def test_a_refused_state_or_config_names_its_file(tmp_path: Path) -> None:
    """Mutations checkpoint: load_state without refuse_special (a state.pt that is a folder raised
    IsADirectoryError, a FIFO blocked), its missing-file message without the path, and
    refuse_special's message without the path."""
    path = tmp_path / checkpoint.STATE_FILE
    with pytest.raises(FileNotFoundError, match=f"^{path}: no training state"):
        checkpoint.load_state(tmp_path)
    path.mkdir()
    with pytest.raises(ValueError, match=f"^{path}: not a regular file"):
        checkpoint.load_state(tmp_path)
    (tmp_path / checkpoint.CONFIG_FILE).mkdir()
    with pytest.raises(ValueError, match=f"^{tmp_path / checkpoint.CONFIG_FILE}: not a regular file"):
        checkpoint.load_config(tmp_path)


def test_a_step_saved_again_without_renameat2_is_replaced_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation checkpoint._write_step: where the kernel cannot exchange names, the old step is no
    longer set aside before the new one is renamed in (a resumed run saving its step again then
    failed: a folder cannot be renamed over a full one). The set-aside copy is pruned."""
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    model, run = _tiny(), tmp_path / "run"
    checkpoint.save_run_checkpoint(model, _state(4), run, 4)
    step = checkpoint.save_run_checkpoint(model, {**_state(4), "again": 1}, run, 4)
    assert checkpoint.load_state(step)["again"] == 1
    assert sorted(p.name for p in run.iterdir()) == [step.name]


def test_a_killed_saves_temporary_is_removed_and_extra_files_land_in_the_step(tmp_path: Path) -> None:
    """Mutations checkpoint.save_run_checkpoint: the `.step-*.tmp` leftovers no longer removed (a
    full-size copy a kill left stayed for the run), and `extra` called on the final folder instead
    of the temporary (the plot snapshot was lost or broke the rename)."""
    model, run = _tiny(), tmp_path / "run"
    (run / ".step-abcdefgh.tmp").mkdir(parents=True)
    step = checkpoint.save_run_checkpoint(
        model, _state(1), run, 1, extra=lambda d: (d / "x.txt").write_text("x")
    )
    assert (step / "x.txt").read_text() == "x"
    assert sorted(p.name for p in run.iterdir()) == [step.name]


def test_run_checkpoints_are_oldest_first_whatever_order_the_folder_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation checkpoint.run_checkpoints: the sort dropped. The folder's own order (a hash order
    on ext4) then decided which step latest_run_checkpoint resumed from."""
    run = tmp_path / "run"
    for step in (2, 10, 4):
        folder = run / f"step-{step:08d}"
        folder.mkdir(parents=True)
        (folder / checkpoint.STATE_FILE).write_bytes(b"")
        (folder / checkpoint.WEIGHTS_FILE).write_bytes(b"")
    listed = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter(sorted(listed(self), reverse=True)))
    assert checkpoint.latest_run_checkpoint(run) == run / "step-00000010"
    assert [p.name[-2:] for p in checkpoint.run_checkpoints(run)] == ["02", "04", "10"]


def test_a_failed_save_names_the_checkpoint_that_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation checkpoint.save_run_checkpoint: the kept checkpoint not looked up (the message said
    the next run starts afresh, and the user deleted a run that would have resumed)."""
    model, run = _tiny(), tmp_path / "run"
    checkpoint.save_run_checkpoint(model, _state(1), run, 1)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_state", full_disk)
    with pytest.raises(checkpoint.CheckpointWriteError, match="its checkpoint step-00000001 is kept"):
        checkpoint.save_run_checkpoint(model, _state(2), run, 2)
    assert checkpoint.latest_run_checkpoint(run) == run / "step-00000001"


def test_a_step_saved_again_after_a_killed_re_save_replaces_its_leftover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug found by this audit (checkpoint._write_step): without renameat2, a re-save of a step
    sets the old copy aside as `.step-N.old`; a save killed after that rename but before the prune
    left it, and the next re-save of that step failed ("Directory not empty"), reported as a
    CheckpointWriteError blaming the disk. The leftover is now removed first."""
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    model, run = _tiny(), tmp_path / "run"
    checkpoint.save_run_checkpoint(model, _state(4), run, 4)
    leftover = run / ".step-00000004.old"
    leftover.mkdir()
    (leftover / checkpoint.STATE_FILE).write_bytes(b"a killed save's")
    step = checkpoint.save_run_checkpoint(model, {**_state(4), "again": 1}, run, 4)
    assert checkpoint.load_state(step)["again"] == 1
    assert sorted(p.name for p in run.iterdir()) == [step.name]
