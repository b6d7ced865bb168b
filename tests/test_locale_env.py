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
    assert "(the loss counts the tokens between \\u27e6 and \\u27e7; \\u27ea \\u27eb mark" in proc.stdout
    assert (
        "\\u27ea<bot>\\u27eb\\u27e6hello! \\U0001f642 caf\\xe9\\u27ea<endOfText>\\u27eb\\u27e7" in proc.stdout
    )


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


@pytest.mark.parametrize("env", ASCII_TERMINALS, ids=["C-locale", "ascii"])
def test_help_to_an_ascii_terminal_is_escaped(env: dict[str, str]) -> None:
    """argparse prints --help before main() reached escape_unencodable: `tokens --help` (which
    names its loss markers) ended in a UnicodeEncodeError traceback."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "tokens", "--help"],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        encoding="latin-1",
        timeout=120,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "\\u27e6" in proc.stdout, proc.stdout


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


# `nanochatgpt chat` with ChatSession recording what reaches the model: the persona, the stop
# strings and each message, as ascii() (one line each on stderr, whatever the locale).
_RECORDING_CHAT = """
import sys
import pipeline.chat as chat
from pipeline import cli

class Recording(chat.ChatSession):
    def __init__(self, engine, *, context=None, stop=(), **kw):
        print("context", ascii(context), ascii(tuple(stop)), file=sys.stderr)
        super().__init__(engine, context=context, stop=stop, **kw)

    def stream(self, text):
        print("message", ascii(text), file=sys.stderr)
        return super().stream(text)

chat.ChatSession = Recording
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_engine_support import tiny_gpt

    from pipeline.checkpoint import save_model

    folder = tmp_path_factory.mktemp("ckpt")
    save_model(tiny_gpt(), folder)
    return folder


def _chat(ckpt: Path, stdin: bytes, *extra: bytes, **env: str) -> tuple[int, list[str]]:
    """The recording chat's exit code and its stderr lines (`extra`: arguments as raw bytes)."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    argv = [b"chat", b"--ckpt", os.fsencode(ckpt), b"--device", b"cpu", b"--max-new-tokens", b"2"]
    proc = subprocess.run(
        [sys.executable, "-c", _RECORDING_CHAT, *argv, *extra],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    return proc.returncode, proc.stderr.decode("latin-1").splitlines()


def test_chat_in_an_ascii_locale_reads_utf8(tiny_ckpt: Path) -> None:
    """stdin was decoded as ASCII with errors="replace": the model got `caf\\ufffd\\ufffd`; a UTF-8
    --context was refused as "not UTF-8 text: byte 0xC3". An ASCII locale is read as UTF-8, as
    Python's UTF-8 mode would (PEP 540); bytes that are not UTF-8 are still refused by name."""
    code, lines = _chat(
        tiny_ckpt,
        "café 🙂\n".encode(),
        *(b"--context", "Renée".encode(), b"--stop", "été".encode()),
        **NON_UTF8_LOCALE,
    )
    assert code == 0, lines
    assert "context 'Ren\\xe9e' ('\\xe9t\\xe9',)" in lines and "message 'caf\\xe9 \\U0001f642'" in lines, (
        lines
    )
    code, lines = _chat(tiny_ckpt, b"hi\n", b"--context", b"Ren\xe9e", **NON_UTF8_LOCALE)
    assert (code, lines) == (2, ["chat: --context is not UTF-8 text: byte 0xE9 at character 4"])


@pytest.fixture(scope="module")
def latin1_locale(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of an en_US.ISO-8859-1 locale, built with localedef (skipped where it cannot be)."""
    folder = tmp_path_factory.mktemp("locale")
    try:
        subprocess.run(
            ["localedef", "-f", "ISO-8859-1", "-i", "en_US", str(folder / "en_US.ISO-8859-1")],
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("localedef cannot build en_US.ISO-8859-1 here")
    return {
        "LOCPATH": str(folder),
        "LC_ALL": "en_US.ISO-8859-1",
        "LANG": "en_US.ISO-8859-1",
        "PYTHONUTF8": "0",
    }


def test_chat_in_a_latin1_locale_reads_latin1_and_refuses_utf8(
    tiny_ckpt: Path, latin1_locale: dict[str, str]
) -> None:
    """Latin-1 bytes are read as the locale says; UTF-8 ones (a file piped from elsewhere) reached
    the model as mojibake (`caf\\xc3\\xa9`), silently: they are refused in one line naming the fix."""
    code, lines = _chat(tiny_ckpt, b"caf\xe9\n", b"--context", b"Ren\xe9e", **latin1_locale)
    assert code == 0 and "context 'Ren\\xe9e' ()" in lines and "message 'caf\\xe9'" in lines, lines
    code, lines = _chat(tiny_ckpt, "café\nnaïve\n".encode() + b"na\xefve\n", **latin1_locale)
    assert code == 0, lines
    refusals = [line for line in lines if line.startswith("chat: the message is UTF-8 text")]
    assert len(refusals) == 2 and all("PYTHONUTF8=1" in line for line in refusals), lines
    assert [line for line in lines if line.startswith("message")] == ["message 'na\\xefve'"], lines
    code, lines = _chat(tiny_ckpt, b"hi\n", b"--context", "Renée".encode(), **latin1_locale)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("chat: --context is UTF-8 text"), lines


@pytest.mark.parametrize("command", ["chat", "serve"])
def test_chat_and_serve_with_torch_under_a_non_ascii_folder_are_one_line(
    tmp_path: Path, command: str
) -> None:
    """A project's own .venv in a non-ASCII folder: in an ASCII locale torch's import encodes its
    path, lone surrogates, as UTF-8, and both ended in "...: surrogates not allowed" naming nothing."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.origin is not None
    (tmp_path / "prøve").symlink_to(Path(spec.origin).parents[1])  # the site-packages torch is in
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", command, "--device", "cpu"],
        cwd=ROOT,
        env={**base, "PYTHONPATH": f"{tmp_path / 'prøve'}{os.pathsep}{ROOT}", **NON_UTF8_LOCALE},
        input="hi\n",
        capture_output=True,
        encoding="latin-1",
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        f"{command}: torch is installed at {tmp_path}/pr\\xf8ve/torch, which is not ASCII"
    ), line
    assert "PYTHONUTF8=1" in line and "C.UTF-8" in line, line


def test_a_non_ascii_path_in_a_message_is_written_as_its_bytes(tiny_ckpt: Path, tmp_path: Path) -> None:
    """In an ASCII locale a non-ASCII file name's bytes are lone surrogates, which the messages'
    escapes wrote as `pr\\udcc3\\udcb8ve`, naming no character: they are the bytes `pr\\xc3\\xb8ve`."""
    missing = tmp_path / "prøve" / "nope"
    code, lines = _chat(tiny_ckpt, b"hi\n", b"--ckpt", os.fsencode(missing), **NON_UTF8_LOCALE)
    assert (code, lines) == (2, [f"chat: no checkpoint at {tmp_path}/pr\\xc3\\xb8ve/nope: no such folder"])
