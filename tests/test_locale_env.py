"""The CLI in a terminal whose encoding is not UTF-8: an ASCII locale without Python's UTF-8 mode
(`LC_ALL=C PYTHONUTF8=0`), a Latin-1 one, or `PYTHONIOENCODING=ascii`.

`nanochatgpt tokens` printed its loss markers (U+27E6/U+27E7) and the decoded text with the stream's
strict encoder: its first line ended the command in a UnicodeEncodeError traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_tokenview import write_project

ROOT = Path(__file__).resolve().parents[1]


def _tokens(project: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`nanochatgpt tokens` on `project`, its output read as the bytes it wrote (Latin-1 loses none)."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "tokens", "--count", "3", *extra],
        cwd=ROOT,
        env={**base, "NANOCHATGPT_ROOT": str(project), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        encoding="latin-1",
        timeout=120,
    )


ASCII_TERMINALS = [
    {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"},
    {"PYTHONIOENCODING": "ascii"},
]


@pytest.mark.parametrize("env", ASCII_TERMINALS, ids=["C-locale", "ascii"])
def test_tokens_prints_to_an_ascii_terminal_with_escapes(tmp_path: Path, env: dict[str, str]) -> None:
    proc = _tokens(write_project(tmp_path), **env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    # what the terminal cannot show is written as its escape, the rest as it is
    assert "(the loss counts the tokens between \\u27e6 and \\u27e7)" in proc.stdout
    assert "<bot>\\u27e6hello! \\U0001f642 caf\\xe9<endOfText>\\u27e7" in proc.stdout


@pytest.mark.parametrize("env", ASCII_TERMINALS, ids=["C-locale", "ascii"])
def test_tokens_json_to_an_ascii_terminal_is_the_same_json(tmp_path: Path, env: dict[str, str]) -> None:
    """--json escapes what the stream cannot encode as JSON does (\\uXXXX, surrogate pairs beyond
    the BMP): a parser reads the same value as from a UTF-8 terminal."""
    project = write_project(tmp_path)
    utf8 = _tokens(project, "--json", PYTHONIOENCODING="utf-8")
    ascii_ = _tokens(project, "--json", **env)
    assert ascii_.returncode == 0 and "Traceback" not in ascii_.stderr, ascii_.stderr
    assert ascii_.stdout.isascii()
    assert json.loads(ascii_.stdout) == json.loads(utf8.stdout.encode("latin-1").decode("utf-8"))


# An ASCII locale without UTF-8 mode decodes the file names' UTF-8 bytes with surrogateescape, a
# Latin-1 one into other characters: polars (Rust) takes a path as UTF-8 text and could open no file
# under a non-ASCII project folder. Every stage after download ended in a traceback ("Object does not
# have a .read() method", or FileNotFoundError for a `.tmp` it had just named).
NON_UTF8_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}


def _one_line_refusal(proc: subprocess.CompletedProcess[str], prefix: str) -> None:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"{prefix}: the project's path /") and "prøve" not in line, line  # mojibake
    assert "PYTHONUTF8=1" in line and "C.UTF-8" in line, line


def test_a_non_ascii_project_path_in_a_non_utf8_locale_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "prøve").mkdir()
    project = write_project(tmp_path / "prøve")
    _one_line_refusal(_tokens(project, **NON_UTF8_LOCALE), "tokens")
    with (project / "params.yaml").open("a") as params:  # what tokenize reads before its first table
        params.write("tokenize:\n  shard_tokens: 1000\n  workers: 1\n  batch_conversations: 2\n")
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    stage = subprocess.run(
        [sys.executable, "-m", "stages.tokenize", "full"],
        cwd=ROOT,
        env={**base, "NANOCHATGPT_ROOT": str(project), "PYTHONPATH": str(ROOT), **NON_UTF8_LOCALE},
        capture_output=True,
        encoding="latin-1",
        timeout=120,
    )
    _one_line_refusal(stage, "tokenize@full")


def test_an_ascii_project_path_in_a_non_utf8_locale_runs(tmp_path: Path) -> None:
    proc = _tokens(write_project(tmp_path), **NON_UTF8_LOCALE)
    assert proc.returncode == 0, proc.stderr
