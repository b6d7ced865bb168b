"""What a new user reads matches what the commands do: every option of every `nanochatgpt`
subcommand is named in README.md or CONTRIBUTING.md (none is found only by reading --help), and
each documented way back to the committed run restores what `dvc checkout` cannot."""

from __future__ import annotations

import argparse
import importlib
import re
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


def test_each_way_back_to_the_committed_run_restores_what_dvc_checkout_cannot() -> None:
    """README's `git checkout HEAD -- ... && dvc checkout` recipes: the one after `dvc exp run -S`
    named params.yaml and dvc.lock only, so model/metrics.json and model/live stayed the
    experiment's, `dvc status` listed train as changed and the next `dvc repro` retrained."""
    readme = (ROOT / "README.md").read_text()
    found = re.findall(
        r"`(?:git add --renormalize -- ([^`\n]*?) && )?git checkout HEAD -- ([^`\n]*?) && dvc checkout`",
        readme,
    )
    assert len(found) >= 2, "README lost its ways back to the committed run"
    # a re-index first (after a failed experiment git's index can hold the committed blob with the
    # experiment's stat) must cover what the checkout restores, or those files stay the experiment's
    assert all(renormalized in ("", recipe) for renormalized, recipe in found), found
    assert any(renormalized for renormalized, _ in found), (
        "the way back after `dvc exp run` lost its re-index"
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
