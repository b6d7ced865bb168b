"""Sharing artifacts through a DVC remote (README "Sharing artifacts with a DVC remote").

One person runs `dvc repro`, commits and `dvc push`es; another clones, `dvc pull`s and has every
output without running anything: `dvc status` lists only the always-changed `registry` stage, and
the `dvc repro` that re-runs it must not cascade into downloads or training. That holds only if
every output reaches the clone one way or the other: cached ones through the remote, `cache: false`
ones (metrics, plots, reports, cards, data/registry) through git. An uncached output that git
ignores is lost in the clone, and the stage that wrote it (training, for model/metrics.json) and
every stage after it would re-run there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from toy_project import ROOT, copy_project, run

# What a pull does not give: the training run's resume state and its lock (pipeline/runlock.py) are
# no DVC outputs (README, "Training and resuming"), so they stay where the model was trained.
NOT_SHARED = re.compile(r"model/run(/|\.lock$)")


def _git_ignored(root: Path, paths: list[str]) -> set[str]:
    """Which of `paths` (repository-relative, existing or not) git ignores under root's .gitignore."""
    # A checkout owned by another user than the one running the tests (a CI runner, a container's
    # root) is "dubious ownership" to git, which then exits 128 without answering: trusted here.
    proc = subprocess.run(
        ["git", "-c", f"safe.directory={root}", "-C", str(root), "check-ignore", "--no-index", *paths],
        capture_output=True,
        text=True,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 0: some ignored, 1: none, else git failed
    return set(proc.stdout.split())


def unshared_outputs(root: Path) -> list[str]:
    """The outputs of root's dvc.yaml that a clone + `dvc pull` would not restore: `cache: false`
    ones git ignores. Also cached ones git does not ignore: DVC then writes a .gitignore of its own
    beside them on every run, and a `git add -A` stages the new files it keeps out."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        outs = [(o.def_path, o.use_cache) for stage in repo.index.stages for o in stage.outs]
    ignored = _git_ignored(root, [path for path, _ in outs])
    return [
        f"{path}: {'cached, but git does not ignore it' if cached else 'cache: false, but git ignores it'}"
        for path, cached in outs
        if cached != (path in ignored)
    ]


def test_every_output_reaches_a_clone_through_git_or_the_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    assert unshared_outputs(ROOT) == []


def test_an_uncached_output_git_ignores_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above catches the easy slip: a new `cache: false` file under model/ (ignored as
    `/model/*`) without its `!` exception in .gitignore."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for rel in ("dvc.yaml", "params.yaml", ".dvc/config"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    gitignore = (ROOT / ".gitignore").read_text()
    assert "!/model/metrics.json\n" in gitignore
    (tmp_path / ".gitignore").write_text(gitignore.replace("!/model/metrics.json\n", ""))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert unshared_outputs(tmp_path) == ["model/metrics.json: cache: false, but git ignores it"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    return run(cmd, cwd, env).stdout


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for top in ("data", "model")
        for p in sorted((root / top).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.slow
def test_push_then_clone_and_pull_gives_every_output_and_re_runs_nothing(
    tmp_path: Path, toy_repro: tuple[Path, dict[str, str]]
) -> None:
    """The README's share workflow on the real dvc.yaml: repro, commit, push; clone, pull. The clone
    holds every output byte for byte (the resume state aside), `dvc status` lists only `registry`,
    and `dvc repro` runs nothing else there and leaves git clean; `dvc pull export` alone gives
    model/hf without the data."""
    a, b, c, store = (tmp_path / name for name in ("a", "b", "c", "store"))
    # the real graph at toy scale, a few steps of training: a copy of the session's `dvc repro`
    # (conftest.py), which test_e2e.py shares, as building it takes the most time of any setup
    built, env = toy_repro
    copy_project(built, a)
    dvc = [sys.executable, "-m", "dvc"]
    # the remote in .dvc/config.local (`--local`), as for a personal path: nothing committed names it
    _run([*dvc, "remote", "add", "-d", "--local", "shared", str(store)], a, env)
    _run(["git", "add", "-A"], a, env)
    _run(["git", "commit", "-q", "-m", "run"], a, env)
    _run([*dvc, "push"], a, env)

    for clone in (b, c):
        _run(["git", "clone", "-q", str(a), str(clone)], tmp_path, env)
        _run([*dvc, "remote", "add", "-d", "--local", "shared", str(store)], clone, env)
    _run([*dvc, "pull"], b, env)
    shared = {path: data for path, data in _files(a).items() if not NOT_SHARED.match(path)}
    assert any(NOT_SHARED.match(path) for path in _files(a))  # the check below has something to leave out
    pulled = _files(b)
    assert sorted(pulled) == sorted(shared), {"missing": sorted(set(shared) - set(pulled))}
    assert [path for path in shared if pulled[path] != shared[path]] == []

    status = _run([*dvc, "status"], b, env)
    assert re.findall(r"^(\S+):$", status, re.M) == ["registry"], status
    again = _run([*dvc, "repro"], b, env)
    assert re.findall(r"Running stage '([^']+)'", again) == ["registry"], again
    assert _run(["git", "status", "--porcelain"], b, env) == ""  # the registry rewrote the same bytes

    _run([*dvc, "pull", "export"], c, env)
    assert (c / "model/hf/model.safetensors").is_file()
    assert not (c / "data/raw").exists() and not (c / "model/ckpt").exists()
