"""The `nanochatgpt` console script as a shell runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_a_reader_that_left_ends_sources_quietly(extra: list[str]) -> None:
    """`nanochatgpt sources | head -3` used to end in a BrokenPipeError traceback on stderr.

    The pipe's read end is closed before the command starts, so its first write fails every time
    (no race with a reader that has not left yet).
    """
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "sources", *extra],
            cwd=ROOT,
            stdout=write_fd,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_fd)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left


def test_sources_still_prints_to_a_reader() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "sources"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:3] == ["name", "kind", "licence"]
