"""An unknown train.variant or train.profile (`dvc exp run -S train.variant=Full`) is refused by the
registry stage, which every repro runs first. Before, DVC met it only at the train stage, after
clearing model/ckpt, model/metrics.json and model/live/, and stopped with `No such file or directory:
data/tokens/Full` or `Parameters 'train_profiles.nope' are missing`, never naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.buildinputs import VARIANTS
from pipeline.trainchoice import check_train_choice
from pipeline.trainconfig import TrainConfig
from stages import registry as registry_stage

ROOT = Path(__file__).resolve().parents[1]


def _params(**train: Any) -> dict[str, Any]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(train)
    return params


def test_the_project_params_and_every_variant_pass() -> None:
    for variant in VARIANTS:
        check_train_choice(_params(variant=variant))
    check_train_choice(_params(profile="gpt2-medium"))


def test_the_build_variants_are_dvc_yaml_s() -> None:
    """data/tokens/${train.variant} exists for exactly the variants dvc.yaml's build makes."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert tuple(stages["build"]["foreach"]) == tuple(stages["tokenize"]["foreach"]) == VARIANTS


@pytest.mark.parametrize(
    ("train", "named"),
    [
        ({"variant": "Full"}, "train.variant='Full' is not one of full, commercial"),
        ({"variant": "bogus"}, "train.variant='bogus'"),
        ({"variant": None}, "train.variant"),
        ({"profile": "nope"}, "train.profile='nope' is not one of ['cpu-tiny', 'gpt2-medium']"),
        ({"profile": 1}, "train.profile=1"),
    ],
)
def test_an_unknown_choice_is_one_line_naming_it(train: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match="params.yaml") as e:
        check_train_choice(_params(**train))
    assert named in str(e.value)
    assert "\n" not in str(e.value)


def test_params_without_them_are_left_to_dvc() -> None:
    """DVC cannot interpolate dvc.yaml without them and stops before any stage runs."""
    check_train_choice({"sources": ["chitchat"]})
    check_train_choice({"train": {"seed": 1}})


def test_the_registry_stage_refuses_before_writing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(variant="Full")))
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    assert registry_stage.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("registry: params.yaml train.variant='Full' is not one of full, commercial")
    assert not (tmp_path / "data").exists()


def test_a_profile_yaml_reads_as_a_number_or_boolean_is_no_traceback() -> None:
    """A profile named `2048` or `on` (YAML 1.1 reads them as an int and a bool) beside `cpu-tiny`:
    the run's own profile passes, and an unknown one is still the one-line ValueError. Sorting the
    names eagerly raised a TypeError, which the registry stage does not catch: every repro stopped
    with a traceback, though neither DVC nor the train stage minds such a key."""
    params = _params()
    params["train_profiles"][2048] = dict(params["train_profiles"]["cpu-tiny"])
    params["train_profiles"][True] = dict(params["train_profiles"]["cpu-tiny"])
    check_train_choice(params)
    params["train"]["profile"] = "nope"
    with pytest.raises(ValueError, match=r"train.profile='nope' is not one of \[2048, True, 'cpu-tiny'"):
        check_train_choice(params)
    # The train stage's own check (`python -m stages.train` run by hand) is the same one: it sorted
    # the names eagerly too, a TypeError traceback where the stage prints settings mistakes in a line.
    with pytest.raises(ValueError, match=r"train.profile='nope' is not one of \[2048, True, 'cpu-tiny'"):
        TrainConfig.from_params(params["train"], params["train_profiles"])


def test_a_profile_that_is_no_mapping_is_refused_before_dvc_clears_the_model() -> None:
    """`train_profiles: {cpu-tiny: 3}` (or `-S train_profiles.cpu-tiny=3`): the registry stage said
    nothing and the train stage refused it only after DVC had cleared its outputs."""
    params = _params()
    params["train_profiles"]["cpu-tiny"] = 3
    with pytest.raises(ValueError, match=r"^params.yaml train_profiles.cpu-tiny: expected a mapping"):
        check_train_choice(params)
