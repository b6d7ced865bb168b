"""Read params.yaml and the source registry. Stages get plain dicts, namespaced per stage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.errortext import first_line

DEFAULT_PARAMS = "params.yaml"


def project_root() -> Path:
    """The directory holding params.yaml: the cwd for DVC stages, overridable for tests."""
    return Path(os.environ.get("NANOCHATGPT_ROOT", ".")).resolve()


def shown_path(path: Path, root: Path) -> str:
    """`path` as messages name it: relative to the project's root (data/tokens/full/train) when it
    lies under it, else as it is."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def outside_root_hint(base: Path | None = None) -> str:
    """Where the project's root is when the command ran from elsewhere (`nanochatgpt check` from
    data/contrib/ said the registry was missing; `chat` from /tmp said to train a model that
    exists), or "" when it ran from the root. `base` is the folder the missing path was read from:
    project_root() by default, the current directory for a path the user typed."""
    root = base.resolve() if base is not None else project_root()
    if (root / DEFAULT_PARAMS).is_file():
        return ""
    above = next(
        (d for d in root.parents if (d / DEFAULT_PARAMS).is_file() and (d / "dvc.yaml").is_file()), None
    )
    where = f"the project's root, {above}" if above else "the project's root, where params.yaml is"
    if base is None and "NANOCHATGPT_ROOT" in os.environ:
        return f"paths are read from NANOCHATGPT_ROOT, {root}, not the project's root: point it at {where}"
    return f"paths are read from {root}, not the project's root: run the command from {where}"


def root_first(message: str, base: Path | None = None) -> str:
    """An error about a missing project path, led by outside_root_hint when there is one: from /tmp,
    `chat` opened with "`dvc checkout model/ckpt` restores..." and named the real cause last, and a
    newcomer ran dvc checkout in /tmp. The message follows in parentheses, as the symptom."""
    hint = outside_root_hint(base)
    return f"{hint} ({message})" if hint else message


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, refusing a key given twice in one mapping. PyYAML keeps the last one
    silently: a second `licence: MIT` / `commercial: true` further down a sidecar that says
    CC-BY-NC-4.0 would put non-commercial data in the commercial variant, unseen. (DVC's own
    YAML reader, ruamel, refuses them in params.yaml too.)"""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may repeat what it merges
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = key in first_line
        except TypeError:  # an unhashable key: construct_mapping says so
            continue
        if seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first given on line {first_line[key] + 1})",
                key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def safe_load(stream: Any) -> Any:
    """yaml.safe_load, refusing duplicate keys (UniqueKeyLoader)."""
    return yaml.load(stream, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_error(e: yaml.YAMLError, where: str) -> str:
    """One line for a YAML error: `where:line: not valid YAML (what)`."""
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        where = f"{where}:{mark.line + 1}"
    what = getattr(e, "problem", None) or first_line(e)
    return f"{where}: not valid YAML ({what})"


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        try:
            data = safe_load(f) or {}
        except yaml.YAMLError as e:  # a repeated key, a tab: one line naming the file and line
            raise ValueError(yaml_error(e, str(path))) from None
        except UnicodeDecodeError as e:  # codecs' message named no file ("can't decode byte 0xff")
            raise ValueError(not_utf8(path, e)) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def not_utf8(path: str | os.PathLike[str], e: UnicodeDecodeError) -> str:
    """A YAML file's decoding error in one line naming the file (a file saved as Latin-1, say)."""
    # (no offset: PyYAML decodes the file in blocks, and the error's position is within one)
    return f"{path}: not UTF-8 text (a byte 0x{e.object[e.start]:02x}): save it as UTF-8"


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    return load_yaml(path or project_root() / DEFAULT_PARAMS)


def settings(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """params.yaml's `name:` section (a stage's namespace: normalize, build, ...): {} when absent or
    left empty (`build:` with nothing under it: the defaults), else the mapping; ValueError in one
    line naming the section for anything else. The stages read `params.get(name) or {}`, which took
    `normalize: 0`, `build: []` or `build: false` for an empty section and ran on the defaults,
    unsaid."""
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"params.yaml {name}: expected a mapping of settings, got {value!r:.80}")
    return value


def train_variant(params: dict[str, Any]) -> str:
    """params.yaml's `train.variant`, the dataset variant the train and evaluate stages read: a name
    such as `full`, else ValueError in one line naming the setting (a missing one read
    data/dataset/None/, which names none; `../x` would read outside data/dataset/)."""
    train = params.get("train")
    variant = train.get("variant") if isinstance(train, dict) else None
    if not isinstance(variant, str) or not variant.isidentifier():
        raise ValueError(
            f"params.yaml train.variant: expected a dataset variant name like full, got {variant!r}"
        )
    return variant


def train_profile(train: dict[str, Any], profiles: Any) -> tuple[str, dict[str, Any]]:
    """(name, settings) of the profile `train.profile` names in `profiles` (params.yaml's top-level
    `train_profiles:`), else ValueError in one line naming the setting. Checked by the registry stage
    (trainchoice: before DVC clears the train stage's outputs) and by TrainConfig.from_params."""
    name = train.get("profile")
    if not isinstance(profiles, dict):
        raise ValueError("params.yaml train_profiles: expected a mapping of profile name -> settings")
    if not isinstance(name, str) or name not in profiles:
        # listed by their text: YAML reads a profile named `2048` or `on` as a number or a boolean,
        # and sorting those beside names is a TypeError (a traceback for a profile nobody uses)
        raise ValueError(
            f"params.yaml train.profile={name!r} is not one of {sorted(profiles, key=str)} "
            "(the keys of train_profiles:)"
        )
    settings = profiles[name]
    if not isinstance(settings, dict):
        raise ValueError(f"params.yaml train_profiles.{name}: expected a mapping of settings")
    return name, settings
