"""Tests from mutation audit 12 (serve, httpconn: the HTTP server behind `nanochatgpt serve`): each kills
a hand-made mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading

import pytest
from test_engine_support import tiny_gpt
from test_serve import (
    CHAT_BODY,
    LogWatch,
    RecordingGPT,
    _chat,
    _connect,
    _raw,
    _replies_of_queued_connections,
    _request,
    _wait_until,
    scripted,
    serving_service,
)

from pipeline.chatapi import ChatService
from pipeline.engine import Engine
from pipeline.httpconn import _Reaper
from pipeline.serve import _allowed_hosts
from pipeline.tokenizer import get_encoding


@pytest.fixture(scope="module")
def enc():
    return get_encoding()


def _status_and_error(reply: bytes) -> tuple[bytes, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], json.loads(body)["error"]


def test_a_refused_host_or_content_type_is_never_generated(enc) -> None:
    """Mutations serve.Handler: parse_request's `return False` after the 403 dropped (the POST ran
    anyway: the model generated for a rebinding page, its reply lost on the closed connection);
    _host_refusal's `_HOST_HEADER.fullmatch` made `.match` (a Host of localhost plus junk after its
    port answered); do_POST's media type check made `JSON_TYPE not in content_type.lower()`
    (text/plain with a parameter naming application/json, a CORS-safelisted type a page may send
    without a preflight, was read as JSON)."""
    model = RecordingGPT([scripted(enc, "Fine.")])
    with serving_service(ChatService(Engine(model, enc=enc))) as (url, _):
        for host in ("attacker.example", "localhost:8000@attacker.example", "[::1]attacker.example"):
            status, error = _status_and_error(_raw(url, _chat(host)))
            assert status.startswith(b"HTTP/1.1 403 ") and error["type"] == "permission_error", host
        for content_type in ("text/plain; charset=application/json", "text/plain;application/json"):
            status, error = _status_and_error(_raw(url, _chat("localhost", content_type)))
            assert status.startswith(b"HTTP/1.1 415 ") and "application/json" in error["message"]
        assert model.prompts == []  # nothing refused reached the model
        assert _raw(url, _chat("localhost")).startswith(b"HTTP/1.1 200 ")
        assert len(model.prompts) == 1


def test_the_name_a_loopback_server_was_bound_by_is_an_allowed_host() -> None:
    """Mutation serve._allowed_hosts: `host.lower().strip("[]")` dropped from the set. Debian maps the
    machine's name to 127.0.1.1: `--host mybox` binds 127.0.1.1 (loopback), and a client of
    http://mybox:8000 sends Host: mybox, which was refused 403."""
    allowed = _allowed_hosts("MyBox", "127.0.1.1")
    assert allowed is not None and {"mybox", "127.0.1.1", "localhost", "127.0.0.1", "::1"} <= allowed
    assert "[::1]" not in _allowed_hosts("[::1]", "::1") and "::1" in _allowed_hosts("[::1]", "::1")
    assert _allowed_hosts("0.0.0.0", "0.0.0.0") is None


def test_a_chunked_body_over_the_limit_in_small_chunks_is_a_413(enc) -> None:
    """Mutation serve.Handler._read_chunked: the limit checked against each chunk's `size` rather than
    the running `total` (a body of any size, sent in chunks under the limit, was read whole)."""
    body = CHAT_BODY + b" " * 100
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    extra = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    request = _request("POST", "/v1/chat/completions", "localhost", extra, chunks + b"0\r\n\r\n")
    service = ChatService(Engine(tiny_gpt(), enc=enc))
    with serving_service(service, max_body_bytes=half + 10) as (url, server):
        status, error = _status_and_error(_raw(url, request))
        assert status.startswith(b"HTTP/1.1 413 ") and "over the limit" in error["message"]
        server.RequestHandlerClass.max_body_bytes = len(body)  # exactly the limit: read
        assert _raw(url, request).startswith(b"HTTP/1.1 200 ")


def test_a_reply_finished_as_the_stop_begins_says_connection_close(enc) -> None:
    """Mutation serve.Handler._json: `if self.service.stopping: self.close_connection = True` dropped.
    A request read before the stop began (so not refused 503 by parse_request) whose reply goes out
    after it was answered keep-alive: its client would send the next request into a closing server."""
    service = ChatService(Engine(tiny_gpt(), enc=enc))
    models = service.models

    def models_as_the_stop_begins() -> dict:
        service._stopping.set()  # stop() begins while this request is being answered
        return models()

    service.models = models_as_the_stop_begins
    with serving_service(service) as (url, _):
        client = _connect(url, timeout=10)
        client.sendall(_request("GET", "/v1/models", "localhost"))  # keep-alive: no Connection: close
        head = b""
        while b"\r\n\r\n" not in head and (data := client.recv(4096)):
            head += data
        client.close()
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in head, head


@pytest.mark.parametrize("leaves", ["closes", "resets"])
def test_a_request_whose_client_left_before_its_turn_came_at_once_is_not_generated(enc, leaves: str) -> None:
    """Mutations serve.Handler: _generate's `if self._client_left(): raise ClientLeft` dropped (the
    line checks only a request that waits: one whose turn came at once was generated for nobody), and
    _client_left's `except OSError: return True` made `return False` (a client that reset its
    connection counted as still there)."""
    model = RecordingGPT([scripted(enc, "Fine.")])
    service = ChatService(Engine(model, enc=enc))
    prepare, client_gone = service.prepare, threading.Event()

    def prepare_once_the_client_left(req):  # the request was read whole, then its client left
        assert client_gone.wait(30)
        return prepare(req)

    service.prepare = prepare_once_the_client_left
    with serving_service(service) as (url, server):
        log = LogWatch(server.RequestHandlerClass)
        client = _connect(url, timeout=10)
        if leaves == "resets":  # close() then sends RST, not FIN
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.sendall(_chat("localhost", close=False))
        client.close()
        client_gone.set()
        assert log.wait_for("client left")
    assert model.prompts == [] and service._admitted == 0
    assert any("not generated" in line for line in log.lines), log.lines


def test_a_refused_body_unsent_gets_its_reply_and_the_end_of_it_at_once(enc) -> None:
    """Mutation serve.Handler._linger: `self.connection.shutdown(socket.SHUT_WR)` dropped. The reply
    (413) was written, but the connection stayed open for the whole linger while the server waited
    for a body it had refused: a client reading to the end of the reply waited linger_seconds."""
    service = ChatService(Engine(tiny_gpt(), enc=enc))
    extra = "Content-Type: application/json\r\nContent-Length: 5000\r\n"
    with serving_service(service, max_body_bytes=1000, linger_seconds=60) as (url, _):
        client = _connect(url, timeout=20)  # far less than the linger: the end must come first
        client.sendall(_request("POST", "/v1/chat/completions", "localhost", extra))  # no body yet
        reply = b"".join(iter(lambda: client.recv(65536), b""))
        client.close()
    status, error = _status_and_error(reply)
    assert status.startswith(b"HTTP/1.1 413 ") and "over the limit of 1000 bytes" in error["message"]


def test_the_503_of_a_server_stopping_names_no_retry_time(enc) -> None:
    """Mutation httpconn.ChatHTTPServer._refuse: `retry_after` ignored (Retry-After: 1 always). A
    connection still queued as the server stops was told to come back in a second: OpenAI's clients
    then retry into a server that is going away, as they do for a busy one."""
    (reply,) = _replies_of_queued_connections(enc, 1)
    head = reply.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After" not in head, reply


def test_the_reaper_lets_a_refused_connection_go_after_max_bytes(enc) -> None:
    """Mutation httpconn._Reaper._read: `or draining[sock][1] <= 0` dropped. A refused client that kept
    sending was read for the whole linger (`seconds`), past the bound of `max_bytes`."""
    with serving_service(ChatService(Engine(tiny_gpt(), enc=enc))) as (url, server):
        server.max_connections = 0
        server._reaper.seconds, server._reaper.max_bytes = 60, 100
        client = _connect(url)
        assert client.recv(4096).startswith(b"HTTP/1.1 503")
        assert _wait_until(lambda: server._reaper._held == 1)
        client.sendall(b"x" * 1000)  # past max_bytes, and the client neither stops nor closes
        assert _wait_until(lambda: server._reaper._held == 0)
        client.close()


def test_the_reaper_join_says_whether_the_lingers_ended() -> None:
    """Mutation httpconn._Reaper.join: `return not thread.is_alive()` made `return True`. A stop whose
    refused connections were still lingering at its deadline said "serve: stopped" (wait_refused)."""
    reaper = _Reaper(capacity=1, seconds=60)
    held, client = socket.socketpair()
    assert reaper.add(held)
    reaper.close()
    assert reaper.join(0.2) is False  # the client neither closed nor sent: up to 60 s of linger
    client.close()  # its client closed: let go, and the thread ends
    assert reaper.join(30) is True and reaper._held == 0


def test_a_server_closed_lets_its_refused_connections_go(enc) -> None:
    """Mutation httpconn.ChatHTTPServer.server_close: `self._reaper.close()` dropped. The reaper's
    thread, once started by a refusal, never ended: every stop waited wait_refused's whole time, then
    said the requests in flight "did not end"."""
    with serving_service(ChatService(Engine(tiny_gpt(), enc=enc))) as (url, server):
        server.max_connections = 0
        client = _connect(url)
        assert client.recv(4096).startswith(b"HTTP/1.1 503")
        client.close()
        assert _wait_until(lambda: server._reaper._held == 0)
        server.shutdown()
        server.server_close()
        assert server.wait_refused(10)


def _one_reply(client: socket.socket) -> bytes:
    """One whole reply off a keep-alive connection: its head, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += client.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_refused_host_that_expects_100_continue_is_not_invited_to_send_its_body(enc) -> None:
    """Mutation serve.Handler.parse_request: `return False` after the 403 dropped. A request whose body
    was unread (Expect: 100-continue, as curl sends for a large body) then ran its method after the
    403: "100 Continue" went out, the body was read, and the model generated for a refused Host."""
    model = RecordingGPT([scripted(enc, "Fine.")])
    head, body = _chat("attacker.example", close=False).split(b"\r\n\r\n", 1)
    with serving_service(ChatService(Engine(model, enc=enc))) as (url, _):
        client = _connect(url, timeout=10)
        client.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        status, error = _status_and_error(_one_reply(client))
        assert status.startswith(b"HTTP/1.1 403 ") and error["type"] == "permission_error"
        with contextlib.suppress(OSError):  # the client sends its body anyway, as curl does after 1 s
            client.sendall(body)
        with contextlib.suppress(OSError):  # the server closed (it may reset on the unread body)
            rest = b"".join(iter(lambda: client.recv(65536), b""))
            assert b"100 Continue" not in rest and b"200 OK" not in rest, rest
        client.close()
    assert model.prompts == []


def test_a_get_with_an_unreadable_content_length_closes_after_its_reply(enc) -> None:
    """Mutation serve.Handler._has_body: an unreadable Content-Length (`except ValueError`) counted as
    no body. The GET kept its connection, and the bytes after its headers were read as the next
    request (here a second reply, to a request the client never made)."""
    request = _request(
        "GET", "/health", "localhost", "Content-Length: 5x\r\n", b"GET /v1/models HTTP/1.1\r\n\r\n"
    )
    with serving_service(ChatService(Engine(tiny_gpt(), enc=enc))) as (url, _):
        reply = _raw(url, request)
    assert reply.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in reply
    assert reply.count(b"HTTP/1.1 ") == 1, reply
