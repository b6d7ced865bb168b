"""Read params.yaml and the source registry. Stages get plain dicts, namespaced per stage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = "params.yaml"


def project_root() -> Path:
    """The directory holding params.yaml: the cwd for DVC stages, overridable for tests."""
    return Path(os.environ.get("NANOCHATGPT_ROOT", ".")).resolve()


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    return load_yaml(path or project_root() / DEFAULT_PARAMS)


def section(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """One stage's namespace of params.yaml (e.g. `train`)."""
    params = load_params(path)
    if name not in params:
        raise KeyError(f"params.yaml has no '{name}' section")
    return params[name]
