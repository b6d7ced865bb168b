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
from pipeline.params import train_profile, train_variant


def check_train_choice(params: dict[str, Any]) -> None:
    """ValueError in one line naming the setting when `train.variant` is not a build variant or
    `train.profile` does not name a mapping in `train_profiles:` (params.train_profile, which the
    train stage's TrainConfig checks with too). A params.yaml without them passes: DVC cannot
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
        train_profile(train, params.get("train_profiles"))
