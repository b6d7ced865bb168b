"""train: token shards -> model/ckpt (safetensors), model/metrics.json, model/live (the export stage makes model/hf).

Reads params.yaml `train` (variant, profile, init_from, seed, device) and the chosen profile of
`train_profiles`.
Several GPUs: `torchrun --nproc_per_node=N -m stages.train` (DDP; grad_accum is split across them).
An unfinished run with the same config, data and code resumes automatically (see pipeline/trainsetup.py).
"""

from __future__ import annotations

import sys

from pipeline.checkpoint import CheckpointWriteError, latest_run_checkpoint
from pipeline.device import dist_info_from_env, exit_process, keep_freed_memory
from pipeline.params import load_params, project_root, train_variant
from pipeline.train import train
from pipeline.trainconfig import TrainConfig, TrainPaths
from pipeline.trainsetup import TrainSetupError


def main() -> int:
    try:
        everything = load_params()  # no valid YAML: load_yaml names file and line
        params = everything.get("train")
        if not isinstance(params, dict):
            raise ValueError("params.yaml: no `train:` section (a mapping of training settings)")
        cfg = TrainConfig.from_params(params, everything.get("train_profiles"))
        variant = train_variant(everything)
    except (KeyError, ValueError, OSError) as e:  # a settings mistake: one line, no traceback
        # args[0]: a KeyError's str() adds quotes (an OSError's args[0] is its errno)
        print(f"train: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1
    paths = TrainPaths.under(project_root(), variant)
    keep_freed_memory()  # ~1.6x on CPU: no page faults for every step's vocabulary-sized tensors
    try:
        summary = train(cfg, paths)
    except (TrainSetupError, CheckpointWriteError) as e:
        say(str(e))
        return 1
    except KeyboardInterrupt:  # Ctrl-C is how a run is stopped: where it stands, not a traceback
        say(interrupted_notice(paths), after_bar=True)
        return 130
    val = (  # an empty val split measures nothing ("val loss None -> None" read like a failure)
        f"val loss {summary['initial_val_loss']} -> {summary['val_loss']}"
        if summary["val_loss"] is not None
        else "no val loss (the val split is empty)"
    )
    say(f"{summary['iters']} iters, {val}, {summary['tokens_per_sec']} tokens/s, {summary['wall_time_s']} s")
    return 0


def interrupted_notice(paths: TrainPaths) -> str:
    """What a Ctrl-C leaves: the newest run checkpoint, from which the next run of the same settings,
    data and code resumes (another run discards it), or none (the next run starts afresh)."""
    latest = latest_run_checkpoint(paths.run_dir)
    if latest is None:
        return (
            f"interrupted before the run's first checkpoint ({paths.run_dir} holds none): "
            "the next run starts afresh"
        )
    return (
        f"interrupted; the newest run checkpoint is {latest}: the next `dvc repro` resumes from it "
        "if the settings, data and code are unchanged (the steps after it run again)"
    )


def say(msg: str, after_bar: bool = False) -> None:
    """One line from the main process only: under torchrun every rank reaches the same end (a setup
    error is the same on each), and N copies of it, with N different timings, would only confuse.
    `after_bar`: the run's progress bar may still hold the line (an interrupt leaves it unclosed)."""
    try:
        is_main = dist_info_from_env().is_main
    except ValueError:  # a RANK that is no number: the refusal of it must still be read
        is_main = True
    if is_main:
        sys.stderr.write(("\n" if after_bar else "") + f"train: {msg}\n")


if __name__ == "__main__":
    exit_process(main())  # under torchrun, past the C++ teardown that could abort a rank
