"""The dataset variant and model recipe params.yaml tells the train stage to use, checked by the
registry stage, which every `dvc repro` and `dvc exp run` runs first.

Why there and not in the train stage: DVC resolves dvc.yaml's `data/tokens/${train.variant}` dep and
`train_profiles.${train.profile}` param only when it reaches `train`, after it has cleared that
stage's outputs (model/ckpt, model/metrics.json, model/live/), and then stops naming a missing
folder (`No such file or directory: data/tokens/Full`) or parameter, never the setting; the train
stage's own checks never run. Refused first, a typo in `-S train.variant=...` costs no model.
"""

from __future__ import annotations

from typing import Any

from pipeline.buildinputs import VARIANTS
from pipeline.params import train_variant


def check_train_choice(params: dict[str, Any]) -> None:
    """ValueError in one line naming the setting when `train.variant` is not a build variant or
    `train.profile` is not a key of `train_profiles:`. A params.yaml without them passes: DVC cannot
    interpolate dvc.yaml then and stops before running anything; the train stage checks the rest."""
    train = params.get("train")
    if not isinstance(train, dict):
        return
    if "variant" in train:
        variant = train_variant(params)
        if variant not in VARIANTS:
            raise ValueError(
                f"params.yaml train.variant={variant!r} is not one of {', '.join(VARIANTS)} "
                "(the dataset variants dvc.yaml's build stage makes)"
            )
    if "profile" in train:
        profile = train["profile"]
        profiles = params.get("train_profiles")
        if not isinstance(profile, str) or not isinstance(profiles, dict) or profile not in profiles:
            # listed here only, and by their text: YAML reads a profile named `2048` or `on` as a
            # number or a boolean, and sorting those beside names is a TypeError (a traceback that
            # stopped every repro, for a profile the run does not even use)
            names = sorted(profiles, key=str) if isinstance(profiles, dict) else []
            raise ValueError(
                f"params.yaml train.profile={profile!r} is not one of {names} (the keys of train_profiles:)"
            )
