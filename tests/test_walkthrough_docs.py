"""What a new user reads matches what the commands do: every option of every `nanochatgpt`
subcommand is named in README.md or CONTRIBUTING.md (none is found only by reading --help), and
each documented way back to the committed run restores what `dvc checkout` cannot."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _options(module: str) -> list[str]:
    parser = argparse.ArgumentParser()
    importlib.import_module(module).add_arguments(parser)
    return sorted(
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    )


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_documented(command: str) -> None:
    docs = (ROOT / "README.md").read_text() + (ROOT / "CONTRIBUTING.md").read_text()
    # an option as the docs write it: in backticks, alone or with its value (`--port 0`)
    missing = [o for o in _options(COMMANDS[command][0]) if not re.search(rf"`{re.escape(o)}[` ]", docs)]
    assert not missing, f"nanochatgpt {command}: options not in README.md or CONTRIBUTING.md: {missing}"


def _uncached_outputs() -> list[str]:
    """Every stage output of dvc.yaml with `cache: false`: git keeps it, so `dvc checkout` cannot
    bring it back (a `${item}` path kept as written: only its leading folders matter here)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind) or []:
                if isinstance(entry, dict):
                    (path, options), *_ = entry.items()
                    if (options or {}).get("cache") is False:
                        paths.append(path)
    return paths


# README's ways back to the committed run:
# `[<index reset> -- PATHS && ]git checkout HEAD -- PATHS && dvc checkout`
WAY_BACK = re.compile(
    r"`((?:git rm -r -q -f --cached -- ([^`\n]*?) && )?git checkout HEAD -- ([^`\n]*?)) && dvc checkout`"
)


def _ways_back(readme: str) -> list[tuple[str, str]]:
    """(index reset's paths or "", checkout's paths) of each way back README gives."""
    return [(reset, recipe) for _, reset, recipe in WAY_BACK.findall(readme)]


def test_each_way_back_to_the_committed_run_restores_what_dvc_checkout_cannot() -> None:
    """README's `git checkout HEAD -- ... && dvc checkout` recipes: the one after `dvc exp run -S`
    named params.yaml and dvc.lock only, so model/metrics.json and model/live stayed the
    experiment's, `dvc status` listed train as changed and the next `dvc repro` retrained."""
    found = _ways_back((ROOT / "README.md").read_text())
    assert len(found) >= 2, "README lost its ways back to the committed run"
    # an index reset first (after a failed experiment git's index can hold the committed blob with the
    # experiment's stat) must cover what the checkout restores, or those files stay the experiment's
    assert all(renormalized in ("", recipe) for renormalized, recipe in found), found
    assert any(renormalized for renormalized, _ in found), (
        "the way back after `dvc exp run` lost its index reset"
    )
    recipes = [recipe for _, recipe in found]
    uncached = _uncached_outputs()
    assert any(p.startswith("model/") for p in uncached)  # the case that was missed
    for recipe in recipes:
        specs = [s.strip("'\"") for s in recipe.split()]
        restored = [s.rstrip("/") for s in specs if not s.startswith(":!")]
        assert "dvc.lock" in restored, recipe
        left = [p for p in uncached if not any(p == r or p.startswith(r + "/") for r in restored)]
        assert not left, f"`git checkout HEAD -- {recipe}` leaves {left} as the run made them"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_the_way_back_after_a_failed_experiment_restores_it(tmp_path: Path) -> None:
    """The state README's way back after `dvc exp run` is for: a failed run after another experiment.
    DVC cleared the train stage's outputs git tracks (model/metrics.json, model/live/) before running
    it, and its reset left git's index holding the committed blob of model/eval/metrics.json with the
    stat of the experiment's file. The recipe once began `git add --renormalize`, which stops at a
    deleted file ("fatal: unable to stat 'model/live/metrics.json'") and restored nothing."""
    (git_part,) = [m[0] for m in WAY_BACK.findall((ROOT / "README.md").read_text()) if "params.yaml" in m[2]]
    committed = {
        "params.yaml": "lr: 1\n",
        "dvc.lock": "lock: committed\n",
        "model/metrics.json": '{"iters": 800}\n',
        "model/live/metrics.json": '{"step": 800}\n',
        "model/eval/metrics.json": '{"loss": 5.37}\n',
        "data/normalized/a.metrics.json": '{"rows": 3}\n',
        "data/contrib/mine.jsonl": "committed corpus\n",
    }
    long_ago = (1_577_836_800, 1_577_836_800)  # 2020: older than the index, so git trusts its stat
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "core.trustctime", "false")  # a test cannot set ctime; DVC's reset kept it
    for name, text in committed.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    os.utime(tmp_path / "model/eval/metrics.json", long_ago)
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    # the experiment's evaluate metrics, same size, same inode, same mtime: the index calls it unchanged
    stale = tmp_path / "model/eval/metrics.json"
    stale.write_text('{"loss": 6.70}\n')
    os.utime(stale, long_ago)
    (tmp_path / "model/metrics.json").unlink()
    (tmp_path / "model/live/metrics.json").unlink()
    (tmp_path / "params.yaml").write_text("lr: 2\n")  # the failed run's -S
    (tmp_path / "dvc.lock").write_text("lock: experiment\n")
    _git(tmp_path, "add", "dvc.lock")  # core.autostage
    (tmp_path / "data/contrib/mine.jsonl").write_text("my new rows\n")
    run = subprocess.run(["bash", "-c", git_part], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, f"README's `{git_part}` failed: {run.stderr}"
    for name, text in committed.items():
        if name.startswith("data/contrib/"):  # the recipe's `:!data/contrib` keeps the corpus edits
            assert (tmp_path / name).read_text() == "my new rows\n", name
        else:
            assert (tmp_path / name).read_text() == text, f"{name} is not the committed run's"
