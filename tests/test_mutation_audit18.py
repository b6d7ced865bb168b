"""Tests from mutation audit 18 (chat, check, attention, chatsession): each kills a hand-made mutant
that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from test_engine_support import ScriptedGPT

from pipeline import cli
from pipeline.chat import chat_loop
from pipeline.chatsession import ChatSession
from pipeline.engine import Engine
from pipeline.tokenizer import END_OF_TURN_ID, get_encoding

ROOT = Path(__file__).resolve().parents[1]
GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n\n"

# ---------------------------------------------------------------- check


def test_two_files_refused_get_the_closing_count_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills check.run `if refused and files > 1` -> `files > 2`: with exactly two files checked,
    both refused, the closing "N of M files refused" line (the lines above may have scrolled by)
    was left out; one file alone still gets none."""
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))  # its sources.yaml and params.yaml
    for name in ("a.txt", "b.txt"):  # no sidecar: refused before any pipeline stage runs
        (tmp_path / name).write_text(GOOD)
    assert cli.main(["check", str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"check: 2 of 2 files refused: {tmp_path}/a.txt, {tmp_path}/b.txt", err


# ---------------------------------------------------------------- attention


@pytest.fixture
def switches():
    from pipeline import attention

    saved = attention.snapshot()
    yield saved
    attention.restore(saved)


def test_restore_puts_back_a_kernel_that_was_off(switches) -> None:
    """Kills attention.restore `switch(saved.enabled[key])` -> `switch(True)`: the suite only ever
    restored a state with every kernel on, so a restore that switched them all on passed; a kernel
    the user (or a benchmark) had turned off came back on."""
    import torch

    from pipeline import attention

    torch.backends.cuda.enable_flash_sdp(False)
    saved = attention.snapshot()
    assert saved.enabled["flash"] is False
    attention.allow_only(None)  # every kernel on
    attention.restore(saved)
    assert attention.snapshot() == saved and not torch.backends.cuda.flash_sdp_enabled()


def test_one_far_off_output_value_is_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills attention.probe's error `(a.float() - b).abs().max()` -> `.mean()`: a kernel whose
    output was wrong at one position (off by the output's whole size) agreed, its error diluted over
    every other value; the error is the largest difference, as Probe.error says."""
    import torch

    from pipeline import attention

    real = attention.F.scaled_dot_product_attention
    cuda = torch.backends.cuda

    def one_wrong_value(q, k, v, **kwargs):
        out = real(q, k, v, **kwargs)
        only = {name for name in ("flash", "math") if getattr(cuda, f"{name}_sdp_enabled")()}
        if only != {"flash"}:
            return out
        spike = torch.zeros_like(out)
        spike[0, 0, 0, 0] = out.detach().abs().max()  # a constant: the gradients stay right
        return out + spike

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", one_wrong_value)
    probes = {p.kernel: p for p in attention.probe(torch.device("cpu"), 1, 2, 32, 8, torch.float32, reps=1)}
    assert probes["flash"].ms is not None and probes["flash"].error > 0.5
    assert not probes["flash"].usable and "disagrees" in probes["flash"].why
    assert probes["math"].usable and attention.fastest(list(probes.values())) == "math"


# ---------------------------------------------------------------- chat


def _session(reply: str = "Sure thing") -> ChatSession:
    enc = get_encoding()
    return ChatSession(
        Engine(ScriptedGPT([enc.encode_ordinary(reply) + [END_OF_TURN_ID]]), enc=enc), temperature=0.0
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Flushed(io.StringIO):
    """A stdout that records what had been written each time it was flushed: what a reader saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def flush(self) -> None:
        self.seen.append(self.getvalue())


def test_each_piece_of_a_reply_is_flushed_as_it_comes() -> None:
    """Kills chat._write's `stdout.flush()` dropped: a stdout that is a pipe or a file buffers, and
    the reply then showed up only when the buffer filled or the chat ended, not piece by piece."""
    out = Flushed()
    assert chat_loop(_session(), io.StringIO("hello\n"), out, io.StringIO()) == 0
    assert out.getvalue() == "Sure thing\n"
    assert out.seen[-1] == "Sure thing\n" and "Sure" in out.seen[:-1]  # the first piece, before the rest


class CtrlCWhileShowing(io.StringIO):
    """A terminal's stdout; Ctrl-C lands while the reply's first piece is being written (outside the
    session's generator, which is left suspended at its yield)."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def write(self, s: str) -> int:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return super().write(s)


def test_a_reply_stopped_then_reset_does_not_come_back_into_the_history() -> None:
    """Kills chat._loop's `pieces.close()` dropped (after Ctrl-C at a terminal): the stopped reply's
    generator then joined its turns to the history only when it was garbage collected, at the next
    message, that is after a /reset, and the conversation the user had cleared was back in the
    next prompt."""
    session = _session()
    err = io.StringIO()
    assert chat_loop(session, Terminal("hello\n/reset\nagain\n"), CtrlCWhileShowing(), err) == 0
    assert "(reply stopped)" in err.getvalue() and "(conversation cleared)" in err.getvalue()
    assert [m["content"] for m in session.history] == ["again", "Sure thing"]


def test_a_reply_the_terminal_cannot_encode_is_shown_with_replacements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills chat._run's `for stream in (sys.stdin, sys.stdout)` -> `(sys.stdin,)`: stdout left
    strict, a reply holding a character an ASCII terminal cannot show ended the chat in a
    UnicodeEncodeError traceback instead of showing "?"."""
    from pipeline import chat

    monkeypatch.setattr(chat, "load_engine", lambda args, prog: _session("café").engine)
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii", errors="strict"))
    assert cli.main(["chat", "--device", "cpu", "--temperature", "0"]) == 0
    sys.stdout.flush()
    assert raw.getvalue() == b"caf?\n"


def test_a_message_of_invisible_characters_alone_is_skipped_like_an_empty_line() -> None:
    """Kills chat._loop `if blank_text(command)` -> `if not command`: a line holding only a zero-width
    space or a Hangul filler (invisible, and a row normalize drops) was sent to the model as a turn,
    a prompt it never saw in training, and got a reply."""
    session, out, err = _session(), io.StringIO(), io.StringIO()
    assert chat_loop(session, io.StringIO("\u200b\n\u3164 \u200b\nhello\n"), out, err) == 0
    assert out.getvalue() == "Sure thing\n" and err.getvalue() == ""
    assert [m["content"] for m in session.history] == ["hello", "Sure thing"]


def test_a_utf8_argument_read_in_a_latin1_locale_is_refused_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Kills chat._argument's `utf8_in_disguise(...)` -> `None`: `--context Renée` typed in UTF-8 in
    a Latin-1 locale (Python read it as `RenÃ©e`) reached the model as that mojibake, silently. (The
    subprocess test in test_locale_env needs localedef; this one runs anywhere.)"""
    from pipeline import chat

    def no_model(args, prog):  # the refusal comes first: loading a model would be a failure here
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(chat, "load_engine", no_model)
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "iso-8859-1")
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert cli.main(["chat", "--device", "cpu", "--context", "Renée".encode().decode("latin-1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chat: --context is UTF-8 text") and err.count("\n") == 1, err


# ---------------------------------------------------------------- chatsession


def test_when_the_length_estimate_is_short_the_recheck_still_drops_whole_exchanges() -> None:
    """Kills chatsession.ChatSession.prompt_ids's re-check `start += 2` -> `start += 1`: the cut is
    estimated from each turn's counted length and then checked against render(); were the estimate
    ever short (render's format changed), the re-check dropped single turns, and the prompt could
    open with a bot turn, a layout training never showed. (The estimate is exact today: here it is
    made short by hand.)"""
    from pipeline.tokenizer import HUMAN_ID, render

    session = _session()
    turns = [f"turn {i} " + "word " * 12 for i in range(10)]
    for i, text in enumerate(turns):
        session.add_turn(("human", "bot")[i % 2], text)
    session._lengths = [0] * len(turns)  # the estimate: everything fits
    room = session.engine.block_size - session.max_new_tokens
    new = {"role": "human", "content": "hi"}
    fits = [
        s
        for s in range(0, 11, 2)
        if len(render(session.history[s:] + [new], add_generation_prompt=True)[0]) <= room
    ]
    ids = session.prompt_ids("hi")
    assert (
        0 < fits[0] < 10 and ids == render(session.history[fits[0] :] + [new], add_generation_prompt=True)[0]
    )
    assert ids[1] == HUMAN_ID
