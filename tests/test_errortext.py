"""One way to quote a library's error in a one-line report (pipeline/errortext.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errortext import first_line, gist

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("error", "line", "summary"),
    [
        (
            OSError("\n  No space left on device\nmore context"),
            "No space left on device",
            "OSError: No space left on device",
        ),
        (KeyError(), "KeyError", "KeyError"),  # an empty message still says something
        (ValueError("   \n \n"), "ValueError", "ValueError"),
        (RuntimeError("one line"), "one line", "RuntimeError: one line"),
    ],
)
def test_the_first_line_or_the_type(error: BaseException, line: str, summary: str) -> None:
    assert first_line(error) == line
    assert gist(error) == summary


def test_a_limit_cuts_a_foreign_message() -> None:
    e = RuntimeError("x" * 1000 + "\nsecond")
    assert first_line(e) == "x" * 1000
    assert first_line(e, 10) == "x" * 10
    assert gist(e) == "RuntimeError: " + "x" * 300
    assert gist(e, 5) == "RuntimeError: xxxxx"


# `python -m stages.<stage> <item>` held inside its main() (in the first project function it calls),
# saying "ready" once it is there: a SIGINT then lands where a Ctrl-C during the stage's work would.
HELD_STAGE = """
import runpy, sys, time
import pipeline.params, pipeline.sources.registry
def hold(*args, **kwargs):
    print("ready", flush=True)
    time.sleep(60)
pipeline.params.load_params = hold
pipeline.sources.registry.get_source = hold
sys.argv = ["python -m stages." + sys.argv[1], *sys.argv[2:]]
runpy.run_module("stages." + sys.argv[0].rpartition(".")[2], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    ("stage", "item"),
    [
        ("registry", None),
        ("download", "alpaca"),
        ("normalize", "alpaca"),
        ("build", "full"),
        ("tokenize", "full"),
        ("export", None),
        ("evaluate", None),
    ],
)
def test_ctrl_c_in_a_stage_is_one_line_and_status_130(stage: str, item: str | None, tmp_path: Path) -> None:
    """Ctrl-C during a stage printed a Python traceback (KeyboardInterrupt) and ended by the signal.
    One line now, that its outputs are unchanged (they are written atomically), status 130. (train
    has its own: where the run stands, tests/test_train*.)"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NANOCHATGPT_ROOT": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD_STAGE, stage, *([item] if item else [])],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    name = f"{stage}@{item}" if item else stage
    # registry swaps its specs in whole, then removes a disabled source's folders: not all-or-nothing
    after = (
        "`dvc repro` runs it again (a disabled source's folders may be half removed)"
        if stage == "registry"
        else "its outputs are unchanged"
    )
    assert (proc.returncode, err) == (130, f"{name}: interrupted; {after}\n")
