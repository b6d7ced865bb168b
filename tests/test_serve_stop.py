"""How `nanochatgpt serve` stops (Ctrl-C, SIGTERM): a request still arriving once the stop begins,
whatever its pace, and a mutation audit of the signal handling (_stop_signals, run's exit status,
_stop's last line)."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import threading
import time

import pytest
from test_engine_support import tiny_gpt
from test_mutation_audit12 import _one_reply
from test_serve import (
    CHAT_BODY,
    PausesAtStep3,
    _connect,
    _request,
    _small_buffers,
    _stopping,
    _wait_until,
    post_stream,
    scripted,
    serving_service,
)

from pipeline import httpconn
from pipeline.chatapi import ChatService
from pipeline.engine import Engine
from pipeline.httpconn import STALLED, UNFINISHED, DeadlineReader
from pipeline.tokenizer import get_encoding

GRACE = 0.5  # the tests' arrival_grace: short, yet wide enough for a loaded machine's client thread
PACE = 0.02  # seconds between a trickling client's bytes (it never pauses for the grace)
JSON_HEADERS = "Content-Type: application/json\r\nContent-Length: "
SHUTTING_DOWN = "the server is shutting down; try again once it is back"


@pytest.fixture(scope="module")
def enc():
    return get_encoding()


def _padded_chat(expect_continue: bool = False) -> tuple[bytes, bytes]:
    """A chat request's head and body, each padded so that at PACE it takes ~10 s to send a byte at
    a time (far longer than the stop's grace: the reply must come long before its end)."""
    body = CHAT_BODY + b" " * 500  # JSON allows trailing spaces
    extra = (
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        f"X-Padding: {'p' * 400}\r\n" + ("Expect: 100-continue\r\n" if expect_continue else "")
    )
    return _request("POST", "/v1/chat/completions", "localhost", extra), body


def _trickle_until_answered(client: socket.socket, data: bytes) -> int:
    """Send `data` a byte at a time, never idle for long, until the server answers (the socket is
    readable) or all of it is sent; how many bytes were sent."""
    for sent in range(len(data)):
        if select.select([client], [], [], PACE)[0]:
            return sent
        client.sendall(data[sent : sent + 1])
    return len(data)


def _reply(client: socket.socket) -> tuple[bytes, dict]:
    """One reply's head and JSON body (read to its Content-Length: bytes the client sent after the
    server closed may reset the connection once the reply is in)."""
    head, _, body = _one_reply(client).partition(b"\r\n\r\n")
    return head, json.loads(body)


def _assert_stop_503(head: bytes, reply: dict) -> None:
    assert head.startswith(b"HTTP/1.1 503") and b"Connection: close" in head, head
    assert b"Retry-After" not in head  # a server stopping has no "when"
    assert reply["error"]["message"] == SHUTTING_DOWN and reply["error"]["type"] == "server_error"


# ---- a request still arriving, a byte at a time, as the server stops ------------------------------


@pytest.mark.parametrize("phase", ["head", "body"])
def test_a_request_sent_a_byte_at_a_time_is_answered_503_and_does_not_hold_the_stop(
    enc, capsys, phase: str
) -> None:
    """A client sending its request a byte every PACE (never idle for the grace, so the 408 rule
    never fired) held the stop until its request was whole, up to STOP_SECONDS (10 s): then
    "did not end within 10 s; exiting anyway". The grace now counts from the stop: the request is
    answered 503 (the stop's OpenAI error) long before the client has sent it, and the stop ends."""
    service = ChatService(Engine(tiny_gpt(), enc=enc))
    head, body = _padded_chat(expect_continue=phase == "body")
    with serving_service(service, arrival_grace=GRACE) as (url, server):
        client = _connect(url, timeout=30)
        if phase == "head":
            client.sendall(head[:1])
            rest = head[1:] + body
        else:  # its head read, the server asked for the body: the handler is reading it
            client.sendall(head)
            assert client.recv(4096).startswith(b"HTTP/1.1 100 Continue")
            client.sendall(body[:1])
            rest = body[1:]
        assert _wait_until(lambda: server._answering == 1)
        stopper = _stopping(server, service)
        assert _wait_until(lambda: server.stopped_at is not None)  # each byte now comes after the stop
        sent = _trickle_until_answered(client, rest)
        reply = _reply(client)
        stopper.join(30)
        client.close()
    assert not stopper.is_alive()
    assert sent < len(rest), "answered only once the whole request had come"
    _assert_stop_503(*reply)
    assert capsys.readouterr().err.strip().endswith("serve: stopped")


def test_a_trickling_request_is_refused_while_a_stream_in_flight_ends_with_its_error_event(
    enc, capsys
) -> None:
    """The stop with both at once: a stream generating and a request trickling in. The stream
    still ends with its error event (not [DONE]), the trickling request gets its 503 before it is
    whole, and the stop ends within its time ("serve: stopped")."""
    model = PausesAtStep3([scripted(enc, "word " * 100)])
    service = ChatService(Engine(model, enc=enc))
    talk = {"messages": [{"role": "user", "content": "talk"}], "max_tokens": 120, "stream": True}
    events: list = []
    head, body = _padded_chat()
    with serving_service(service, arrival_grace=GRACE) as (url, server):
        streaming = threading.Thread(target=lambda: events.extend(post_stream(url, talk)))
        streaming.start()
        assert model.paused.wait(30)
        client = _connect(url, timeout=30)
        client.sendall(head[:1])
        assert _wait_until(lambda: server._answering == 2)
        stopper = _stopping(server, service)
        assert _wait_until(service._stopping.is_set)
        model.release.set()  # the generation goes on to its next piece, where it stops
        sent = _trickle_until_answered(client, head[1:] + body)
        reply = _reply(client)
        streaming.join(30)
        stopper.join(30)
        client.close()
    assert not stopper.is_alive() and not streaming.is_alive()
    assert sent < len(head) - 1 + len(body)
    _assert_stop_503(*reply)
    assert events[-1]["error"]["message"] == SHUTTING_DOWN  # the stream's end: its error, no [DONE]
    assert model.steps < 3 + 2  # stopped at its next piece
    assert capsys.readouterr().err.strip().endswith("serve: stopped")


def test_a_request_come_after_the_grace_gets_its_503_not_a_reset(enc) -> None:
    """Found with the fix: once the stop's grace is over, every read of a request is cut at once,
    the lingering close's too. A request that arrived then (a keep-alive client's next one) was
    answered 503 before its body was read, and the drain of that body ended at its first read: the
    connection closed on unread data, and http.client, still writing its body, saw a reset, not
    the 503. The drain after a reply has its own bound (linger_seconds), not the stop's grace."""
    service = ChatService(Engine(tiny_gpt(), enc=enc))
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 300_000}]}).encode()
    with serving_service(service, arrival_grace=GRACE) as (url, server):
        service.stop(5)
        server.stopped_at = time.monotonic() - 10 * GRACE  # the stop began, its grace is over
        conn = http.client.HTTPConnection(*url.removeprefix("http://").split(":"), timeout=30)
        _small_buffers(server, conn)  # the body cannot sit in socket buffers: it must be read
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        reply = json.loads(resp.read())
        conn.close()
    assert resp.status == 503 and reply["error"]["message"] == SHUTTING_DOWN


@pytest.mark.parametrize(
    ("cut", "status"), [("head", b"408"), ("body, stalled", b"408"), ("body, arriving", b"503")]
)
def test_a_request_cut_by_the_stop_has_its_rest_drained_so_its_client_reads_the_reply(
    enc, cut: str, status: bytes
) -> None:
    """A request cut by the stop's grace was answered, then closed with the rest of it unread: a
    client that sends its whole request before reading (http.client, the SDKs) got BrokenPipeError
    or a reset writing the rest, never the 408 / 503. The rest is now read and dropped after the
    reply (the lingering close of a refused body), bounded by linger_seconds."""
    service = ChatService(Engine(tiny_gpt(), enc=enc))
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 300_000}]}).encode()
    head = _request("POST", "/v1/chat/completions", "localhost", f"{JSON_HEADERS}{len(body)}\r\n")
    before, rest = (head[:30], head[30:] + body) if cut == "head" else (head + body[:1000], body[1000:])
    grace = GRACE if cut == "body, arriving" else 0.1  # room for its byte; else no need to wait
    with serving_service(service, arrival_grace=grace) as (url, server):
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # accepted sockets inherit it
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the rest cannot sit in buffers
        client.settimeout(30)
        client.connect(("127.0.0.1", server.server_address[1]))
        client.sendall(before)
        assert _wait_until(lambda: server._answering == 1)
        stopper = _stopping(server, service)
        if cut == "body, arriving":  # a byte since the stop: 503, not 408
            assert _wait_until(lambda: server.stopped_at is not None)
            client.sendall(rest[:1])
            rest = rest[1:]
        assert select.select([client], [], [], 30)[0]  # cut and answered: the client writes the rest
        client.sendall(rest)
        reply = client.makefile("rb").read()  # to the server's end of its reply (shutdown)
        client.close()
        stopper.join(30)
    assert not stopper.is_alive()
    assert reply.startswith(b"HTTP/1.1 " + status) and b"Connection: close" in reply, reply[:200]
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["message"].startswith(
        "the server is shutting down"
    )


# ---- DeadlineReader's stop rule on a clock the test sets ------------------------------------------


class _Clock:
    """httpconn's time.monotonic, set by the test (and moved on by _Socket's waits)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class _Socket:
    """The reader's socket on the test's clock: a recv with nothing sent waits out its timeout at
    once, on that clock, so no test waits (or hangs) in real time."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.incoming = bytearray()
        self.timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def sendall(self, data: bytes) -> None:  # the client's side
        self.incoming += data

    def recv_into(self, buffer: bytearray) -> int:
        if not self.incoming:
            assert self.timeout is not None, "a recv that would wait forever"
            self.clock.now += self.timeout
            raise TimeoutError("timed out")
        n = min(len(buffer), len(self.incoming))
        buffer[:n], self.incoming[:n] = self.incoming[:n], b""
        return n


@pytest.fixture
def clocked(monkeypatch: pytest.MonkeyPatch):
    """A DeadlineReader on a socket and a clock set by the test; yields (reader, socket, clock,
    stop): socket.sendall is the client's, stop[0] is when the stop began (None: not yet)."""
    clock = _Clock(100.0)
    monkeypatch.setattr(httpconn, "time", clock)
    sock = _Socket(clock)
    stop: list[float | None] = [None]
    return DeadlineReader(sock, idle=30, budget=60, stopped=lambda: stop[0], grace=1.0), sock, clock, stop


def _read(reader: DeadlineReader) -> bytes:
    buffer = bytearray(64)
    return bytes(buffer[: reader.readinto(buffer)])


def test_bytes_since_the_stop_do_not_extend_its_grace_and_the_cut_is_unfinished(clocked) -> None:
    """Mutation: the grace counted from each read (`max(stopped, began) + grace`, as before the fix):
    a byte every 0.5 s after the stop was read at 1.4 s and later, held the stop to the end."""
    reader, client, clock, stop = clocked
    client.sendall(b"PO")
    assert _read(reader) == b"PO"  # the request is under way (its deadline set)
    stop[0] = 100.0
    for at, data in ((100.5, b"S"), (100.99, b"T")):  # within the grace: read
        clock.now = at
        client.sendall(data)
        assert _read(reader) == data
    clock.now = 101.0  # the grace is over, a byte waiting or not
    client.sendall(b" ")
    with pytest.raises(TimeoutError):
        _read(reader)
    assert reader.cut_by_stop == UNFINISHED


def test_no_byte_since_the_stop_is_stalled(clocked) -> None:
    """Mutation: `last_byte >= stopped` made `last_byte is not None`: a request whose last byte came
    before the stop (a stalled client) was told 503 like a slow one, not 408."""
    reader, client, clock, stop = clocked
    client.sendall(b"P")
    assert _read(reader) == b"P"
    stop[0] = 100.2  # the byte came before the stop
    clock.now = 101.2
    with pytest.raises(TimeoutError):
        _read(reader)
    assert reader.cut_by_stop == STALLED


def test_a_byte_at_the_stop_itself_counts_as_come_since(clocked) -> None:
    """Mutation: `last_byte >= stopped` made `>`: the boundary, a byte read as the stop began."""
    reader, client, clock, stop = clocked
    client.sendall(b"P")
    stop[0] = 100.0
    clock.now = 100.0
    assert _read(reader) == b"P"
    clock.now = 101.0
    with pytest.raises(TimeoutError):
        _read(reader)
    assert reader.cut_by_stop == UNFINISHED


def test_an_idle_connection_is_not_cut_by_the_stop(clocked) -> None:
    """Between requests (no deadline) the stop's grace does not apply: an idle keep-alive
    connection's next request, come after the grace, is read, and answered by parse_request."""
    reader, client, clock, stop = clocked
    stop[0], clock.now = 100.0, 150.0
    client.sendall(b"GET")
    assert _read(reader) == b"GET"
    assert reader.cut_by_stop is None and reader.deadline == 150.0 + 60


# ---- mutation audit: serve's signal handling ------------------------------------------------------


def test_the_signal_handlers_replaced_are_put_back() -> None:
    """Mutation serve._stop_signals: the `finally` that puts back the handlers dropped. After
    run() returned, Ctrl-C in the program that called it still raised serve's KeyboardInterrupt
    once, then exited the process at once (os._exit) on the next one."""
    import signal

    from pipeline import serve

    before = {signum: signal.getsignal(signum) for signum in serve.STOP_SIGNALS}
    with serve._stop_signals():
        assert all(signal.getsignal(signum) is not before[signum] for signum in serve.STOP_SIGNALS)
    assert {signum: signal.getsignal(signum) for signum in serve.STOP_SIGNALS} == before


class _StopParts:
    """A server and a service whose waits answer as the test says (no thread, no clock)."""

    def __init__(self, stopped: bool, answered: bool, refused: bool) -> None:
        self.results = {"stop": stopped, "wait_answered": answered, "wait_refused": refused}
        self.closed = False

    def server_close(self) -> None:
        self.closed = True

    def stop(self, timeout: float) -> bool:
        return self.results["stop"]

    def wait_answered(self, timeout: float) -> bool:
        return self.results["wait_answered"]

    def wait_refused(self, timeout: float) -> bool:
        return self.results["wait_refused"]


@pytest.mark.parametrize("late", ["stop", "wait_answered", "wait_refused", None])
def test_the_stop_says_did_not_end_when_any_wait_ran_out(capsys, late: str | None) -> None:
    """Mutations serve._stop: an `and` of its three waits made `or`, or one wait dropped: a stop
    whose generation, request or refused connection outlived STOP_SECONDS said "serve: stopped"."""
    from pipeline import serve

    parts = _StopParts(
        stopped=late != "stop", answered=late != "wait_answered", refused=late != "wait_refused"
    )
    serve._stop(parts, parts)
    err = capsys.readouterr().err.strip()
    assert parts.closed
    if late is None:
        assert err == "serve: stopped"
    else:
        assert (
            err
            == f"serve: the requests in flight did not end within {serve.STOP_SECONDS:g} s; exiting anyway"
        )


# ---- a stop signal whose KeyboardInterrupt was lost ------------------------------------------------


def _serve_args(*extra: str):
    import argparse

    from pipeline import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(["--port", "0", *extra])


def _ctrl_c_lost() -> None:
    """Ctrl-C whose KeyboardInterrupt is dropped where it is raised: in a finalizer (a __del__:
    "Exception ignored"), or in Python code that C code called and then cleared the error of."""
    import signal

    with contextlib.suppress(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("then", ["loads", "fails"])
def test_ctrl_c_lost_while_the_model_loads_still_stops_serve(enc, monkeypatch, capsys, then: str) -> None:
    """Seen with a loop of SIGINTs 0-2 s after `nanochatgpt serve` began: once the first one did
    nothing (the server came up, a second one stopped it), once it ended in a traceback of numpy's
    ImportError "cannot load module more than once per process". Its KeyboardInterrupt was raised,
    and dropped, inside the loading; the handler now records the signal, and serve looks at it."""
    from pipeline import serve

    def loads(args, prog):
        _ctrl_c_lost()
        if then == "fails":  # the module the lost KeyboardInterrupt left half imported
            raise ImportError("cannot load module more than once per process")
        return Engine(tiny_gpt(), enc=enc)

    def make_server(*args):
        pytest.fail("serve went on to listen after Ctrl-C")

    monkeypatch.setattr(serve, "load_engine", loads)
    monkeypatch.setattr(serve, "make_server", make_server)
    assert serve.run(_serve_args()) == 130
    assert capsys.readouterr().err.strip() == "serve: stopped before it started listening"


def test_ctrl_c_lost_while_serving_still_stops_serve(enc, monkeypatch, capsys) -> None:
    """The same once serving: a KeyboardInterrupt dropped in the accept loop (here in
    verify_request) left the server up. serve_forever now looks at the signal after each turn."""
    from pipeline import serve

    made: list = []
    real_make_server = serve.make_server

    def make_server(service, host, port):
        server = real_make_server(service, host, port)
        server.verify_request = lambda request, address: _ctrl_c_lost() or True
        made.append(server)
        return server

    left_up: list[bool] = []

    def client() -> None:  # connects (the lost Ctrl-C), then waits for the stop; ends a hang if none
        assert _wait_until(lambda: bool(made))  # bound: a connection waits for accept()
        _connect(f"http://127.0.0.1:{made[0].server_address[1]}").close()
        if not _wait_until(lambda: made[0].socket.fileno() < 0, timeout=20):
            left_up.append(True)
            made[0].shutdown()

    monkeypatch.setattr(serve, "load_engine", lambda args, prog: Engine(tiny_gpt(), enc=enc))
    monkeypatch.setattr(serve, "make_server", make_server)
    connecting = threading.Thread(target=client, daemon=True)
    connecting.start()
    assert serve.run(_serve_args()) == 0
    connecting.join(30)
    assert not left_up, "Ctrl-C lost: the server stayed up"
    assert capsys.readouterr().err.strip().endswith("serve: stopped")


# ---- session 36: a stop signal while the stop drains after serve_forever failed -------------------


class _Exited(BaseException):
    """os._exit, made to return to the test: what it was called with."""


def _exit_returns(code: int) -> None:
    raise _Exited(code)


class _FailingServer(_StopParts):
    """A server whose accept loop ends on an error of its own (not a stop signal), and whose drain
    is where the user presses Ctrl-C."""

    server_address = ("127.0.0.1", 8000)

    def serve_forever(self) -> None:
        raise RuntimeError("accept loop broke")

    def stop(self, timeout: float) -> bool:
        import signal

        signal.raise_signal(signal.SIGINT)  # the first stop signal, while the stop waits
        return True


def test_ctrl_c_while_the_stop_drains_after_an_error_exits_at_once(monkeypatch, capsys) -> None:
    """serve_forever ending on an unrelated error runs the stop (_stop) as Ctrl-C does, but no signal
    had come: a first Ctrl-C during its drain was taken for the first stop signal, its
    KeyboardInterrupt was swallowed by _stop, and serve went on to exit by the error (a traceback,
    status 1) with the generation it had been waiting for still running. During the stop, any
    signal is the "exit at once" one: the line that says so and 130."""
    import os

    from pipeline import serve

    parts = _FailingServer(stopped=True, answered=True, refused=True)
    monkeypatch.setattr(serve, "_ready", lambda args, stop: (parts, parts))
    monkeypatch.setattr(serve, "_announce", lambda server, name: None)
    monkeypatch.setattr(os, "_exit", _exit_returns)
    with pytest.raises(_Exited) as exited:
        serve.run(_serve_args())
    assert exited.value.args == (130,)
    assert capsys.readouterr().err.strip().splitlines() == [
        "serve: the server failed (RuntimeError: accept loop broke); stopping",
        "serve: stopping now, without waiting for the requests in flight",
    ]


class _FailingQuietServer(_FailingServer):
    def stop(self, timeout: float) -> bool:
        return True


def test_an_error_of_serve_forever_is_said_then_stops_then_raises(monkeypatch, capsys) -> None:
    """Without a signal, serve_forever's own error is named before the stop drains (so a Ctrl-C in
    the drain cannot leave it unsaid), the stop runs, and the error still ends serve (its traceback)."""
    from pipeline import serve

    parts = _FailingQuietServer(stopped=True, answered=True, refused=True)
    monkeypatch.setattr(serve, "_ready", lambda args, stop: (parts, parts))
    monkeypatch.setattr(serve, "_announce", lambda server, name: None)
    with pytest.raises(RuntimeError, match="accept loop broke"):
        serve.run(_serve_args())
    assert capsys.readouterr().err.strip().splitlines() == [
        "serve: the server failed (RuntimeError: accept loop broke); stopping",
        "serve: stopped",
    ]
