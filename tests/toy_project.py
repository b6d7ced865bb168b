"""The real pipeline at toy scale in a temporary git repository: dvc.yaml, stages/ and pipeline/
copied as a commit holds them, two offline sources (chatterbot, contrib), a one-layer model trained
for a few steps. Shared by the end-to-end tests (test_e2e.py, test_dvc_remote.py): conftest.py's
session-scoped `toy_repro` runs the one `dvc repro` they need, and each takes a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Contributed files the shared toy project adds to the project's own data/contrib: a non-commercial
# one (CC-BY-NC-4.0, `commercial: false`) whose rows the full variant holds and the commercial
# variant must drop (test_e2e.py).
E2E_CONTRIB = Path(__file__).parent / "fixtures" / "e2e" / "contrib"
# What a commit of the project holds that the pipeline needs (.dvc/.gitignore keeps the cache and
# config.local out of a commit, as in a real checkout).
COPY = [
    "pipeline",
    "stages",
    "params.yaml",
    "dvc.yaml",
    "sources.yaml",
    "data/contrib",
    "data/licences",  # the licence texts sources.yaml's `licence_text:` names
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",  # the project's plot templates
    ".dvcignore",
    ".gitignore",
]
TINY_PROFILE = {
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "block_size": 64,
    "batch_size": 4,
    "max_iters": 12,
    "warmup_iters": 2,
    "eval_interval": 6,
    "eval_iters": 2,
    "ckpt_interval": 6,
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`cmd` in `cwd`; a failure's assertion shows the ends of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} in {cwd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def tiny_params(params: dict, profile: dict[str, Any], prompts: int, max_new_tokens: int) -> dict:
    """The project's params.yaml with the offline sources, `profile` over cpu-tiny, and a short evaluation."""
    params["sources"] = ["chatterbot", "contrib"]
    params["train_profiles"]["cpu-tiny"].update(profile)
    params["evaluate"].update(max_new_tokens=max_new_tokens, eval_iters=profile["eval_iters"])
    params["evaluate"]["prompts"] = params["evaluate"]["prompts"][:prompts]
    return params


def make_project(
    repo: Path,
    *,
    extra_contrib: Path | None = None,
    profile: dict[str, Any] | None = None,
    prompts: int = 2,
    max_new_tokens: int = 8,
) -> dict[str, str]:
    """Copy the project into `repo` (plus the files of `extra_contrib` in data/contrib), make it a
    git repository and run `dvc repro`; return the environment its commands run in."""
    for rel in COPY:
        src, dst = ROOT / rel, repo / rel
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    if extra_contrib is not None:
        for src in extra_contrib.iterdir():
            shutil.copy2(src, repo / "data" / "contrib" / src.name)
    params = tiny_params(
        yaml.safe_load((ROOT / "params.yaml").read_text()),
        {**TINY_PROFILE, **(profile or {})},
        prompts,
        max_new_tokens,
    )
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    run(["git", "init", "-q"], repo, env)
    run([sys.executable, "-m", "dvc", "repro"], repo, env)
    return env


def copy_project(src: Path, dst: Path) -> None:
    """A copy of the repository `src` (git, DVC cache, outputs) at `dst`, for a test that changes it.
    DVC's own temporary state (.dvc/tmp: locks, the updater, experiments) stays behind; it is
    rebuilt on demand. Outputs, the cache and dvc.lock carry no absolute path, so the copy is as
    up to date as `src` (test_dvc_remote.py checks exactly that for a clone at another path)."""
    shutil.copytree(src, dst, symlinks=True, ignore=lambda d, _: ["tmp"] if Path(d) == src / ".dvc" else [])
