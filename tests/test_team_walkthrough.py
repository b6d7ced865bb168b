"""What a team member following README's "Training and resuming" and "Training on a GPU" sees: a run
they stop with Ctrl-C, and the way back from a GPU run refused on a CPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_params_validation import _project, _train_params

from pipeline import checkpoint


def _interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt  # what Ctrl-C raises in the middle of a step


@pytest.mark.parametrize("has_checkpoint", [True, False])
def test_ctrl_c_says_where_the_run_resumes_instead_of_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    has_checkpoint: bool,
) -> None:
    from stages import train as stage

    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    _project(tmp_path, _train_params())
    run_dir = tmp_path / "model" / "run"
    if has_checkpoint:
        for step in ("step-00000200", "step-00000400"):
            (run_dir / step).mkdir(parents=True)
            (run_dir / step / checkpoint.WEIGHTS_FILE).write_bytes(b"w")
            (run_dir / step / checkpoint.STATE_FILE).write_bytes(b"s")
    monkeypatch.setattr(stage, "train", _interrupt)

    assert stage.main() == 130  # 128 + SIGINT, as a shell reports a Ctrl-C
    err = capsys.readouterr().err
    assert err.startswith("\ntrain: interrupted"), err  # on a line of its own, after the progress bar's
    err = err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    if has_checkpoint:
        assert f"the newest run checkpoint is {run_dir / 'step-00000400'}" in err[0]
        assert "the next `dvc repro` resumes from it if the settings, data and code are unchanged" in err[0]
    else:
        assert f"interrupted before the run's first checkpoint ({run_dir} holds none)" in err[0]
        assert "the next run starts afresh" in err[0]


def test_the_cpu_refusals_advice_leads_from_the_readme_gpu_command_to_the_cpu_run() -> None:
    """README's `dvc exp run -S train.profile=gpt2-medium -S train.init_from=gpt2-medium` is refused on
    a machine without a GPU, and `dvc exp run -S` leaves both settings in params.yaml. The refusal said
    `dvc exp run -S train.profile=cpu-tiny`; followed, that kept init_from: gpt2-medium, so it tried
    the Hub (offline: five retries and an error; online: a 355M download fine-tuned on the CPU)
    instead of the 7M CPU run from scratch. Its advice, applied to those params, must be that run."""
    import re

    import torch
    import yaml

    from pipeline.device import dist_info_from_env
    from pipeline.trainconfig import TrainConfig
    from pipeline.trainsetup import Runtime, TrainSetupError, refuse_endless_cpu_run

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    train = {**params["train"], "profile": "gpt2-medium", "init_from": "gpt2-medium", "device": "auto"}
    profiles = params["train_profiles"]
    cpu = Runtime(device=torch.device("cpu"), dtype=torch.float32, dist=dist_info_from_env())
    with pytest.raises(TrainSetupError) as refused:
        refuse_endless_cpu_run(TrainConfig.from_params(train, profiles), cpu)
    advice = re.search(r"use the CPU profile \(`dvc exp run ((?:-S \S+ ?)+)`\)", str(refused.value))
    assert advice, refused.value
    for setting in re.findall(r"-S train\.(\w+)=(\S+)", advice.group(1)):
        train[setting[0]] = setting[1]
    followed = TrainConfig.from_params(train, profiles)
    assert train["profile"] == "cpu-tiny" and followed.init_from == "scratch"  # no Hub weights to fetch
    refuse_endless_cpu_run(followed, cpu)  # and a run the CPU finishes
