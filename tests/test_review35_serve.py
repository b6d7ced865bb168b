"""Review of session 35's serve stop changes: a stop signal before serve listens exits with that
signal's status (SIGTERM: 143) and says so, wherever it comes from the model's load to the bind."""

from __future__ import annotations

import signal

import pytest
from test_engine_support import tiny_gpt
from test_serve_stop import _serve_args

from pipeline import serve
from pipeline.engine import Engine
from pipeline.tokenizer import get_encoding

STOPPED_LOADING = "serve: stopped before it started listening"


@pytest.fixture(scope="module")
def enc():
    return get_encoding()


def _sigterm() -> None:
    """SIGTERM to this process, as serve's handler takes it (KeyboardInterrupt here)."""
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # it would end the test run itself
        pytest.fail("serve has no SIGTERM handler here")
    signal.raise_signal(signal.SIGTERM)


def _run_serve() -> int:
    try:
        return serve.run(_serve_args())
    except KeyboardInterrupt:  # pytest would take it for the user's Ctrl-C and end the whole run
        pytest.fail("the stop signal's KeyboardInterrupt left serve.run")


def _no_listening(*args) -> None:
    pytest.fail("serve went on to listen after SIGTERM")


def test_sigterm_while_the_model_loads_exits_143(enc, monkeypatch, capsys) -> None:
    """README: SIGTERM while it loads the model quits with 143 (Ctrl-C's 130 is the only status the
    load's tests looked at, so a 130 for every signal went unseen)."""

    def loads(args, prog):
        _sigterm()  # in the load
        return Engine(tiny_gpt(), enc=enc)

    monkeypatch.setattr(serve, "load_engine", loads)
    monkeypatch.setattr(serve, "make_server", _no_listening)
    assert _run_serve() == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == STOPPED_LOADING


@pytest.mark.parametrize("where", ["service", "bind"])
def test_sigterm_between_the_load_and_the_serving_exits_143(enc, monkeypatch, capsys, where: str) -> None:
    """Between the model's load and serve_forever's try (ChatService, the bind) a SIGTERM's
    KeyboardInterrupt left run() itself: cli.main took it for Ctrl-C (a blank line, exit 130)."""
    made: list = []
    real_make_server = serve.make_server
    real_service = serve.ChatService

    def service(*args, **kwargs):
        if where == "service":
            _sigterm()
        return real_service(*args, **kwargs)

    def make_server(*args):
        made.append(real_make_server(*args))
        _sigterm()  # bound, not yet serving
        return made[-1]

    monkeypatch.setattr(serve, "load_engine", lambda args, prog: Engine(tiny_gpt(), enc=enc))
    monkeypatch.setattr(serve, "ChatService", service)
    monkeypatch.setattr(serve, "make_server", make_server if where == "bind" else _no_listening)
    try:
        assert _run_serve() == 128 + signal.SIGTERM
        assert capsys.readouterr().err.strip() == STOPPED_LOADING
    finally:
        for server in made:
            server.server_close()
