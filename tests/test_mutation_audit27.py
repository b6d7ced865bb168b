"""Mutation audit 27: the training run's setup decisions (pipeline/trainsetup.py), called directly.

The resume / finalise / discard decisions of init_model were covered only by tests that train for
seconds; these call the decision on a run folder written by pipeline.checkpoint's own writer (a model
of a few thousand parameters, no training), so a mutant that resumes a run of other settings or data
is caught by the fast suite. Each test's docstring names the mutation it kills.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from test_train import paths_in, tiny_config

from pipeline import argtypes, checkpoint, hf, params, trainchoice, trainsetup, workers
from pipeline.device import DistInfo
from pipeline.lr import lr_at
from pipeline.model import GPT, GPTConfig
from pipeline.shards import ShardWriter
from pipeline.tokenizer import PADDED_VOCAB, render
from pipeline.trainconfig import TrainConfig, TrainPaths, data_digest, data_sha
from pipeline.trainsetup import Runtime, Start, TrainSetupError

DATA = b'{"meta": "tokens v1"}'


class LoggedRuntime(Runtime):
    """A CPU runtime that keeps its log lines."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(device=torch.device(device), dtype=torch.float32, dist=DistInfo())
        self.lines: list[str] = []

    def log(self, msg: str) -> None:
        self.lines.append(msg)


def saved_state(cfg: TrainConfig, step: int, data: bytes = DATA, **over: Any) -> dict[str, Any]:
    """A run state as the run of `cfg` at `step` saves it (its fingerprint and data on `data`)."""
    state = {
        "step": step,
        "fingerprint": cfg.fingerprint(data),
        "config": json.dumps(dataclasses.asdict(cfg)),
        "data_sha": data_sha(data),
    }
    return {**state, **over}


def run_state(cfg: TrainConfig, step: int, data: bytes = DATA, **over: Any) -> dict[str, Any]:
    """saved_state with the rest of what a run saves (runstate.STATE_KEYS), so init_model reads it."""
    rest = {
        "best_val_loss": None,
        "initial_val_loss": None,
        "last_val_loss": None,
        "recent_train_losses": [],
        "optimizer": {},
        "scaler": {},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": None,
        "data_rng": "{}",
    }
    return {**rest, **saved_state(cfg, step, data, **over)}


def tiny_model() -> GPT:
    """A model small enough to save and load in milliseconds, with tiny_config's block_size (a
    resume refuses a checkpoint of a shorter context) and the vocabulary a run of this code has (a
    resume refuses one without the chat tokens: test_vocab37)."""
    torch.manual_seed(0)
    shape = dict(block_size=tiny_config().block_size, n_layer=1, n_head=2, n_embd=8)
    return GPT(GPTConfig(vocab_size=PADDED_VOCAB, **shape))


@pytest.fixture
def run_of(tmp_path: Path):
    """Write, with pipeline.checkpoint's own writer, a run checkpoint holding `state` (None: no run);
    with `finished`, the outputs finish() writes for it too (model/ckpt of its weights, metrics.json)."""

    def put(state: dict[str, Any] | None, finished: bool = False) -> TrainPaths:
        paths = paths_in(tmp_path, tmp_path / "data")
        if state is not None:
            checkpoint.save_run_checkpoint(tiny_model(), state, paths.run_dir, state["step"])
        if finished:
            checkpoint.save_model(tiny_model(), paths.ckpt_dir)
            paths.metrics_file.write_text(json.dumps({"iters": state["step"]}), encoding="utf-8")
        return paths

    return put


def resumed_from(start: Start, paths: TrainPaths, step: int) -> bool:
    """Whether `start` continues the run checkpoint at `step`: its state, its folder and its weights."""
    source = paths.run_dir / f"step-{step:08d}"
    if start.state is None or start.state["step"] != step or start.source != source:
        return False
    saved = checkpoint.load_model(source).state_dict()
    return all(torch.equal(v, saved[k]) for k, v in start.model.state_dict().items())


# ---------------------------------------------------------------- init_from: resume


def test_resume_refuses_a_run_of_another_seed_naming_it(run_of) -> None:
    """Kills trainsetup.init_model `if differ:` -> `if False:` (a resume continued a run of other
    settings) and EXTENSION_KEYS gaining "seed" (the seed no longer compared)."""
    paths = run_of(run_state(tiny_config(seed=1, max_iters=10), step=5))
    with pytest.raises(TrainSetupError, match=r"other settings: seed 1 \(asked: 2\)"):
        trainsetup.init_model(
            tiny_config(seed=2, max_iters=20, init_from="resume"), paths, LoggedRuntime(), DATA
        )


def test_resume_mismatch_ignores_only_the_extension_and_logging_keys() -> None:
    """Kills resume_mismatch/EXTENSION_KEYS mutants: max_iters, init_from and logging knobs may
    differ on an extension, any weight-deciding setting (dropout, seed) may not."""
    state = saved_state(tiny_config(max_iters=10, eval_interval=5), step=3)
    asked = tiny_config(max_iters=99, eval_interval=7, init_from="resume")
    assert trainsetup.resume_mismatch(asked, state) == {}
    other = dataclasses.replace(asked, dropout=asked.dropout + 0.05, seed=7)
    assert set(trainsetup.resume_mismatch(other, state)) == {"dropout", "seed"}


def test_resume_of_a_finished_run_without_more_steps_is_refused(run_of) -> None:
    """Kills init_model `state["step"] >= cfg.max_iters` -> `>` and dropping `and died_finishing`
    (a finished run, its outputs written, was "finalised" again instead of refused)."""
    paths = run_of(run_state(tiny_config(max_iters=10), step=10), finished=True)
    with pytest.raises(TrainSetupError, match="is at step 10 already; set max_iters above 10"):
        trainsetup.init_model(tiny_config(max_iters=10, init_from="resume"), paths, LoggedRuntime(), DATA)


def test_resume_of_a_run_that_died_finishing_finalises_it(run_of) -> None:
    """Kills init_model's finalise branch `if state["step"] == cfg.max_iters == ... and died_finishing:`
    -> `if False:` (an extension killed before finish() was refused as "at step N already" for good)."""
    paths = run_of(run_state(tiny_config(max_iters=10), step=10))  # no model/ckpt, no metrics.json
    rt = LoggedRuntime()
    start = trainsetup.init_model(tiny_config(max_iters=10, init_from="resume"), paths, rt, DATA)
    assert resumed_from(start, paths, 10)
    assert any("finalising it" in line for line in rt.lines)


def test_an_extension_on_the_same_data_from_an_old_state_is_not_called_changed(run_of) -> None:
    """Kills init_model `same = dataclasses.replace(cfg, max_iters=saved[...], ...)` -> `same = cfg`:
    a state without data_sha is judged by the saved run's fingerprint, which an extension's other
    max_iters must not change (it marked unchanged data as changed: no commercial use)."""
    state = run_state(tiny_config(max_iters=10), step=10)
    del state["data_sha"]
    paths = run_of(state)
    rt = LoggedRuntime()
    start = trainsetup.init_model(tiny_config(max_iters=20, init_from="resume"), paths, rt, DATA)
    assert start.data_changed is False
    assert not any("warning" in line for line in rt.lines)


def test_an_extension_on_other_data_is_recorded_as_changed(run_of) -> None:
    """Kills data_changed `return saved != data_sha(data)` -> `return False`."""
    paths = run_of(run_state(tiny_config(max_iters=10), step=10, data=b"old tokens"))
    rt = LoggedRuntime()
    start = trainsetup.init_model(tiny_config(max_iters=20, init_from="resume"), paths, rt, DATA)
    assert start.data_changed is True
    assert any("the training data changed" in line for line in rt.lines)


def test_data_changed_without_a_recorded_data_sha_follows_the_fingerprint() -> None:
    """Kills data_changed `fingerprint != state["fingerprint"]` -> `False`."""
    assert trainsetup.data_changed({"fingerprint": "a"}, DATA, "b") is True
    assert trainsetup.data_changed({"fingerprint": "a"}, DATA, "a") is False


def test_an_extension_after_a_code_change_says_so(run_of) -> None:
    """Kills init_model's code-change warning `if not changed and same_fingerprint != ...` -> `if False`."""
    paths = run_of(run_state(tiny_config(max_iters=10), step=10, fingerprint="older code"))
    rt = LoggedRuntime()
    trainsetup.init_model(tiny_config(max_iters=20, init_from="resume"), paths, rt, DATA)
    assert any("the code changed since this run's checkpoint" in line for line in rt.lines)


def test_an_extension_is_judged_by_the_shape_of_the_hub_model_it_started_from(run_of) -> None:
    """Kills init_model `origin = str(state.get("origin") or ...)` -> `origin = cfg.init_from`: a
    run extended from gpt2-xl on `device: auto` without a GPU trains gpt2-xl, not the profile's 2 layers."""
    cfg = tiny_config(device="auto", max_iters=10)
    paths = run_of(run_state(cfg, step=10, origin="gpt2-xl"))
    with pytest.raises(TrainSetupError, match="found no GPU"):
        trainsetup.init_model(
            dataclasses.replace(cfg, max_iters=100_000, init_from="resume"), paths, LoggedRuntime(), DATA
        )


# ---------------------------------------------------------------- automatic resume / discard


def test_a_leftover_run_of_other_settings_is_discarded_not_resumed(run_of) -> None:
    """Kills init_model dropping `leftover["fingerprint"] == fingerprint` (a killed run of other
    settings was resumed automatically) and dropping the rmtree of the run folder."""
    paths = run_of(run_state(tiny_config(seed=1, max_iters=10), step=5))
    rt = LoggedRuntime()
    start = trainsetup.init_model(tiny_config(seed=2, max_iters=10), paths, rt, DATA)
    assert start.state is None
    assert not paths.run_dir.exists()
    assert any("discarding the unfinished run" in line and "seed 1 (now 2)" in line for line in rt.lines)


def test_a_leftover_run_at_max_iters_of_the_same_fingerprint_is_finalised(run_of) -> None:
    """Kills init_model `leftover["step"] <= cfg.max_iters` -> `<` (a run killed after its final
    checkpoint was discarded and trained again from scratch)."""
    cfg = tiny_config(max_iters=10)
    paths = run_of(run_state(cfg, step=10))
    rt = LoggedRuntime()
    start = trainsetup.init_model(cfg, paths, rt, DATA)
    assert resumed_from(start, paths, 10)
    assert any("reached max_iters but has no model/ckpt yet" in line for line in rt.lines)


def test_the_discard_notice_of_a_finished_run_says_it_is_replaced() -> None:
    """Kills discard_notice `step >= planned` -> `step > planned`."""
    state = saved_state(tiny_config(seed=1, max_iters=10), step=10)
    notice = trainsetup.discard_notice(tiny_config(seed=2, max_iters=10), state, Path("run/step-10"))
    assert notice.startswith("replacing the finished run at run/step-10 (step 10): seed 1 (now 2)")


def test_the_discard_notice_of_an_extension_says_resume_would_have_continued_it() -> None:
    """Kills discard_notice `set(differ) <= {"max_iters", "init_from"}` -> `<= {"max_iters"}`: an
    unfinished extension (saved with init_from: resume) differs from a scratch run in init_from only."""
    state = saved_state(tiny_config(max_iters=20, init_from="resume"), step=12)
    notice = trainsetup.discard_notice(tiny_config(max_iters=20), state, Path("run/step-12"))
    assert notice.endswith("(`init_from: resume` would have continued it)")


# ---------------------------------------------------------------- finished


def finished_run(
    tmp_path: Path, step: int, weights: bytes | None, run_weights: bytes
) -> tuple[TrainPaths, Path]:
    paths = paths_in(tmp_path, tmp_path / "data")
    ckpt = paths.run_dir / f"step-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / checkpoint.WEIGHTS_FILE).write_bytes(run_weights)
    paths.ckpt_dir.mkdir()
    if weights is not None:
        (paths.ckpt_dir / checkpoint.WEIGHTS_FILE).write_bytes(weights)
    paths.metrics_file.write_text(json.dumps({"iters": step}), encoding="utf-8")
    return paths, ckpt


def test_finished_needs_model_ckpt_to_hold_the_runs_own_weights(tmp_path: Path) -> None:
    """Kills finished() dropping `or not weights.is_file()` and `filecmp.cmp(...)` -> `True`: a run
    whose model/ckpt is missing or another run's is not finished (it is finalised, not refused)."""
    paths, ckpt = finished_run(tmp_path / "same", 10, b"weights", b"weights")
    assert trainsetup.finished(paths, ckpt, 10) is True
    paths, ckpt = finished_run(tmp_path / "other", 10, b"wEights", b"weights")
    assert trainsetup.finished(paths, ckpt, 10) is False
    paths, ckpt = finished_run(tmp_path / "none", 10, None, b"weights")
    assert trainsetup.finished(paths, ckpt, 10) is False


# ---------------------------------------------------------------- refusals


def huge_config(**over: Any) -> TrainConfig:
    return TrainConfig(n_layer=48, n_head=25, n_embd=1600, max_iters=100_000, **over).validated()


def test_a_cpu_run_asked_for_by_name_is_never_refused_as_endless() -> None:
    """Kills refuse_endless_cpu_run `cfg.device != "auto" or ...` -> `and` (train.device: cpu is the
    documented way to run it here anyway)."""
    trainsetup.refuse_endless_cpu_run(huge_config(device="cpu"), LoggedRuntime())
    with pytest.raises(TrainSetupError, match="found no GPU"):
        trainsetup.refuse_endless_cpu_run(huge_config(device="auto"), LoggedRuntime())


def test_the_endless_cpu_refusal_counts_only_the_steps_left() -> None:
    """Kills training_flops `max(cfg.max_iters - done, 0)` -> `max(cfg.max_iters, 0)`."""
    cfg = huge_config(device="auto")
    trainsetup.refuse_endless_cpu_run(cfg, LoggedRuntime(), done=cfg.max_iters - 1)
    assert trainsetup.training_flops(cfg, done=cfg.max_iters)[1] == 0


def test_a_state_missing_keys_is_unreadable(run_of) -> None:
    """Kills _load_state `if missing:` -> `if False:` (a state of other code was resumed, failing later
    on a KeyError mid-run instead of starting afresh)."""
    paths = run_of({"step": 3})
    with pytest.raises(trainsetup.UnreadableState, match="not a training state of this code"):
        trainsetup.init_model(tiny_config(init_from="resume"), paths, LoggedRuntime(), DATA)


def test_start_shape_reads_a_local_folders_config(tmp_path: Path) -> None:
    """Kills start_shape returning None for a local folder (a local copy of gpt2-xl judged by the
    profile's shape, so an endless CPU run of it was let through)."""
    config = {"model_type": "gpt2", "n_layer": 48, "n_embd": 1600, "n_head": 25, "vocab_size": 50257}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert trainsetup.start_shape(str(tmp_path)) == (48, 1600)
    assert trainsetup.start_shape("scratch") is None


def test_the_extension_notice_starts_from_the_last_steps_rate() -> None:
    """Kills extension_notice `lr_at(step - 1, ...)` -> `lr_at(step, ...)`: the jump it reports is from
    the rate the run last trained at."""
    cfg = tiny_config(max_iters=40, lr=1.0, min_lr=0.1, warmup_iters=0)
    before = lr_at(9, lr=1.0, min_lr=0.1, warmup_iters=0, decay_iters=20)
    after = lr_at(10, lr=1.0, min_lr=0.1, warmup_iters=0, decay_iters=40)
    assert trainsetup.extension_notice(cfg, 10, 20).endswith(
        f"lr {before:.3g} -> {after:.3g} (no new warmup)"
    )


def test_windows_that_never_reach_a_bot_token_are_refused(tmp_path: Path) -> None:
    """Kills check_data `if reaching == 0:` -> `if reaching < 0:` (a block_size whose windows see
    only human text trained a run whose every gradient is zero)."""
    turns = [{"role": "human", "content": "tell me " * 30}, {"role": "bot", "content": "ok"}]
    ids, mask = render(turns, None)
    for split in ("train", "val"):
        writer = ShardWriter(tmp_path / split, shard_tokens=100_000)
        writer.add(np.array(ids), np.array(mask), np.array([len(ids)]))
        writer.close()
    cfg = TrainConfig(n_layer=1, n_head=1, n_embd=8, block_size=2, device="cpu").validated()
    with pytest.raises(TrainSetupError, match="none of 256 windows of block_size 2 reaches a bot token"):
        trainsetup.check_data(tmp_path, LoggedRuntime(), cfg)


# ---------------------------------------------------------------- trainconfig


def test_a_shard_renamed_or_moved_between_splits_changes_the_data_digest(tmp_path: Path) -> None:
    """Kills data_digest hashing the files' bytes without their split/name: a shard moved from train
    to val (same bytes) is other data, and an unfinished run must not resume on it."""
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
    (tmp_path / "train" / "a.bin").write_bytes(b"tokens")
    before = data_digest(tmp_path)
    (tmp_path / "train" / "a.bin").rename(tmp_path / "val" / "a.bin")
    assert data_digest(tmp_path) != before


def test_the_precision_code_is_part_of_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills FINGERPRINT_CODE dropping "device.py": an edit of the dtype/autocast/TF32 rules must not
    let an unfinished run resume (its old weights were finalised as the new code's)."""
    cfg = tiny_config()
    before = cfg.fingerprint(DATA)
    read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: read(p) + (b"#" if p.name == "device.py" else b""))
    assert cfg.fingerprint(DATA) != before


def test_other_data_is_another_fingerprint() -> None:
    """Kills TrainConfig.fingerprint dropping `h.update(data)`: an unfinished run resumed
    automatically on rebuilt shards (its sampler position applied to other data)."""
    cfg = tiny_config()
    assert cfg.fingerprint(DATA) != cfg.fingerprint(b'{"meta": "tokens v2"}')


def test_the_files_of_a_local_init_from_are_part_of_the_fingerprint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Kills TrainConfig.fingerprint dropping the `init_from files:` digest: after a local folder's
    weights change, an unfinished run of the same settings must not resume as if nothing had."""
    cfg = tiny_config(init_from=str(tmp_path))
    monkeypatch.setattr(hf, "source_digest", lambda path: "weights v1")
    before = cfg.fingerprint(DATA)
    monkeypatch.setattr(hf, "source_digest", lambda path: "weights v2")
    assert cfg.fingerprint(DATA) != before


# ---------------------------------------------------------------- params


def test_a_yaml_merge_key_is_read_not_taken_for_a_duplicate() -> None:
    """Kills params._unique_mapping dropping its skip of merge keys (`<<: *base`): every params.yaml
    that merges an anchor was refused with a constructor error."""
    doc = "base: &base {lr: 0.001, n_layer: 2}\nsmall:\n  <<: *base\n  n_layer: 4\n"
    assert params.safe_load(doc)["small"] == {"lr": 0.001, "n_layer": 4}


def test_a_key_given_twice_in_one_mapping_is_refused_naming_the_first_line() -> None:
    """Kills params._unique_mapping dropping `first_line[key] = ...` (no key was ever seen twice:
    a second `commercial: true` further down a sidecar silently won)."""
    with pytest.raises(
        yaml.constructor.ConstructorError, match=r"duplicate key 'lr' \(first given on line 2\)"
    ):
        params.safe_load("train:\n  lr: 0.1\n  seed: 1\n  lr: 0.2\n")


def test_an_empty_yaml_file_reads_as_no_settings(tmp_path: Path) -> None:
    """Kills params.load_yaml `safe_load(f) or {}` -> `safe_load(f)`: an empty params file (or one of
    comments only) is no settings, not "expected a mapping at the top level"."""
    empty = tmp_path / "params.yaml"
    empty.write_text("# nothing set yet\n", encoding="utf-8")
    assert params.load_yaml(empty) == {}


def test_only_a_local_folder_counts_as_an_init_from_folder(tmp_path: Path) -> None:
    """Kills TrainConfig.init_from_folder dropping "resume" from the names that are no folder."""
    assert [tiny_config(init_from=n).init_from_folder for n in ("scratch", "resume", "gpt2")] == [False] * 3
    assert tiny_config(init_from=str(tmp_path)).init_from_folder is True


# ---------------------------------------------------------------- trainchoice, argtypes, workers


def test_a_train_section_that_is_no_mapping_is_left_to_dvc() -> None:
    """Kills trainchoice.check_train_choice `not isinstance(train, dict)` -> `not train` (`train: 5`
    was a TypeError traceback from `"variant" in 5`)."""
    assert trainchoice.check_train_choice({"train": 5}) is None


def test_a_profile_without_train_profiles_names_the_missing_section() -> None:
    """Kills check_train_choice `params.get("train_profiles")` -> `... or {}` (the refusal then
    listed no profiles instead of naming the missing train_profiles: section)."""
    with pytest.raises(ValueError, match="params.yaml train_profiles: expected a mapping"):
        trainchoice.check_train_choice({"train": {"variant": "full", "profile": "cpu-tiny"}})


def test_a_count_or_its_word_takes_the_word_and_names_it_in_refusals() -> None:
    """Kills argtypes.whole_number_or dropping `if text == word: return word` (`--workers auto`
    refused) and dropping the refusal's `(or auto)`."""
    parse = argtypes.whole_number_or("auto", 1)
    assert parse("auto") == "auto" and parse("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"^must be 1 or more, got 0 \(or auto\)$"):
        parse("0")


def test_a_pool_worker_arranges_to_die_with_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills workers.start_worker dropping `die_with_parent()` (a worker of a killed stage ran on,
    holding its output pipe open) and calling it after get_encoding() (a worker stuck loading the
    encoding outlived its stage). The real-process test below catches the first, not the order; these
    stubs replace public functions of workers, no private code."""
    calls: list[str] = []
    monkeypatch.setattr(workers, "die_with_parent", lambda: calls.append("die_with_parent"))
    monkeypatch.setattr(workers, "get_encoding", lambda: calls.append("get_encoding"))
    workers.start_worker()
    assert calls == ["die_with_parent", "get_encoding"]


# The tokenize stage and its pool worker, for real: a subreaper (so that the orphaned worker is its
# child to wait for) forks a "stage", which forks a worker that runs the pool's initializer and says
# its pid; the stage is then killed -9 and the subreaper prints how its worker ended (as
# os.waitstatus_to_exitcode: -9 for SIGKILL), or how it never got going.
_STAGE_KILLED = """
import ctypes, os, signal, time
from pipeline.workers import start_worker

signal.alarm(10)  # a worker that outlives its stage must not hang the test: this process ends
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
r, w = os.pipe()
stage = os.fork()
if stage == 0:
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # the stage itself goes with this process, whatever happens
    if os.fork() == 0:
        start_worker()
        os.write(w, b"%d" % os.getpid())
        time.sleep(15)  # a stage-less worker that the code under test let live ends anyway
        os._exit(0)
    os.close(w)  # the worker's end alone: an early exit of it reads as EOF below
    signal.pause()
    os._exit(0)
os.close(w)
pid = os.read(r, 32)  # empty: the worker exited before saying it was up
os.kill(stage, signal.SIGKILL)
os.waitpid(stage, 0)
if not pid:
    print("the worker exited while its stage lived")
else:
    print(os.waitstatus_to_exitcode(os.waitpid(int(pid), 0)[1]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="prctl: PR_SET_PDEATHSIG and a child subreaper")
def test_a_worker_gets_sigkill_when_its_stage_is_killed() -> None:
    """W4 of audit 27. Kills workers.die_with_parent's `signal.SIGKILL` -> `signal.SIGTERM` (a worker
    whose code handles or ignores SIGTERM, as libraries do, outlived a killed stage, holding its output
    pipe open; SIGKILL no handler can catch), dropping start_worker's `die_with_parent()` (the worker
    is not signalled at all), and `os.getppid() != parent` -> `==` (every worker exited at once while
    its stage lived). Real processes (one interpreter, two forks), the signal as the kernel reports it."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _STAGE_KILLED], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(-signal.SIGKILL)


def test_without_prctl_the_watcher_waits_while_the_parent_lives(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills workers.die_with_parent's watch loop `while os.getppid() == parent` -> `!=` (where prctl
    fails the fallback thread exited the worker at once). The thread runs inline; its first sleep ends it.

    Stubs kept on purpose: on Linux prctl(PR_SET_PDEATHSIG) does not fail, so the fallback runs only
    where ctypes.CDLL is made to fail, and a real watcher polls once a second (a real run of it would
    take seconds and a timed wait); os._exit must not end the test runner."""

    class FailingLibc:
        def prctl(self, *args: int) -> int:
            return -1

    class Slept(Exception):
        pass

    class InlineThread:
        def __init__(self, target: Any, **kwargs: Any) -> None:
            self.target = target

        def start(self) -> None:
            with pytest.raises(Slept):
                self.target()

    def exit_(code: int) -> None:
        raise AssertionError(f"os._exit({code}) while the parent lives")

    def sleep(seconds: float) -> None:
        raise Slept

    monkeypatch.setattr(workers.ctypes, "CDLL", lambda *a, **k: FailingLibc())
    monkeypatch.setattr(workers.os, "_exit", exit_)
    monkeypatch.setattr(workers.time, "sleep", sleep)
    monkeypatch.setattr(workers.threading, "Thread", InlineThread)
    workers.die_with_parent()
