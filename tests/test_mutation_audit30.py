"""Tests from mutation audit 30 (responsesapi, the request body reading of serve/httpconn, chatrequest):
each kills a hand-made mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import contextlib
import json

import pytest
from test_engine_support import tiny_gpt
from test_serve import CHAT_BODY, RecordingGPT, _raw, _request, scripted, serving_service

from pipeline.chatapi import ChatService
from pipeline.chatrequest import RequestError
from pipeline.engine import Engine
from pipeline.responsesapi import NEEDS_STORAGE, ResponsesRequest, _Response, stream
from pipeline.tokenizer import get_encoding


@pytest.fixture(scope="module")
def enc():
    return get_encoding()


def test_a_streams_item_events_agree_with_its_deltas_and_its_final_response(enc) -> None:
    """Mutations responsesapi._Response.events: output_text.done's `text` made the last delta only,
    output_item.done's `item` made an empty message (not the final response's output[0]), the parts'
    `item_id` made the response's id, and output_item.added's item status made "completed". A client
    that builds the message from the .done events (the SDK's stream helpers do) got other text than
    the deltas, or an item id that names no item."""
    service = ChatService(Engine(RecordingGPT([scripted(enc, "Fine, thanks.")]), enc=enc))
    req = ResponsesRequest.parse({"input": "hi", "stream": True, "temperature": 0})
    with service.turn(), contextlib.closing(stream(service, req)) as events:
        by_name = {}
        deltas = []
        for name, data in events:
            by_name[name] = data
            if name == "response.output_text.delta":
                deltas.append(data["delta"])
    text = "".join(deltas)
    assert len(deltas) > 1 and text == "Fine, thanks."
    added = by_name["response.output_item.added"]["item"]
    assert added["status"] == "in_progress" and added["content"] == []
    final = by_name["response.completed"]["response"]
    assert by_name["response.output_item.done"]["item"] == final["output"][0]
    assert final["output"][0]["id"] == added["id"] and final["output"][0]["content"][0]["text"] == text
    assert by_name["response.output_text.done"]["text"] == text
    assert by_name["response.content_part.done"]["part"]["text"] == text
    for name in ("content_part.added", "output_text.delta", "output_text.done", "content_part.done"):
        assert by_name[f"response.{name}"]["item_id"] == added["id"], name


def test_a_failed_streams_partial_message_is_incomplete(enc) -> None:
    """Mutation responsesapi._Response.failure: the partial message's status made "completed". The
    text written before the failure is no finished message: a client reading response.failed's output
    would take the cut reply as whole."""
    service = ChatService(Engine(tiny_gpt(), enc=enc))
    response = _Response(service, ResponsesRequest.parse({"input": "hi"}))
    response.text.append("Half a re")
    (_, error), (_, failed) = response.failure(RuntimeError("mid-stream"))
    assert error["type"] == "error"
    (message,) = failed["response"]["output"]
    assert message["status"] == "incomplete" and message["content"][0]["text"] == "Half a re"
    assert failed["response"]["status"] == "failed"


@pytest.mark.parametrize("key", sorted(NEEDS_STORAGE))
def test_each_field_that_needs_stored_state_is_a_400_naming_it(key: str) -> None:
    """Mutation responsesapi._refuse_unsupported: one NEEDS_STORAGE field let through (here
    context_management, which no test sent). Ignored, a reply came back 200 without the stored context
    the client counted on."""
    with pytest.raises(RequestError) as caught:
        ResponsesRequest.parse({"input": "hi", key: {"id": "x"}})
    assert caught.value.param == key and "not supported" in str(caught.value)


def test_an_include_item_that_is_no_string_is_a_400_not_a_500() -> None:
    """Mutation responsesapi._refuse_unsupported: `not isinstance(item, str) or` dropped from the
    include check. A list item is unhashable: `item not in INCLUDABLE` raised TypeError, a 500."""
    for item in (["reasoning.encrypted_content"], {"x": 1}):
        with pytest.raises(RequestError) as caught:
            ResponsesRequest.parse({"input": "hi", "include": [item]})
        assert caught.value.param == "include"


def _chunked(body: bytes, trailers: int = 0) -> bytes:
    """A chunked chat request of `body` in two chunks, then `trailers` trailer lines."""
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    extra = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    tail = b"0\r\n" + b"X-T: 1\r\n" * trailers + b"\r\n"
    return _request("POST", "/v1/chat/completions", "localhost", extra, chunks + tail)


def _status_and_error(reply: bytes) -> tuple[bytes, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], json.loads(body)["error"]["message"]


def test_a_chunked_body_one_byte_over_the_limit_or_with_too_many_trailers_is_refused(enc) -> None:
    """Mutations serve.Handler._read_chunked: the limit made one byte looser (`total >
    max_body_bytes + 1`: a body one byte over was read), and the trailer bound dropped (a return after
    MAX_TRAILER_LINES lines instead of the 400: a client could send trailer lines for as long as the
    request's deadline allowed). Neither request reaches the model."""
    model = RecordingGPT([scripted(enc, "Fine.")])
    with serving_service(ChatService(Engine(model, enc=enc)), max_body_bytes=len(CHAT_BODY) - 1) as (url, _):
        status, message = _status_and_error(_raw(url, _chunked(CHAT_BODY)))
        assert status.startswith(b"HTTP/1.1 413 ") and "over the limit" in message
    with serving_service(ChatService(Engine(model, enc=enc))) as (url, _):
        status, message = _status_and_error(_raw(url, _chunked(CHAT_BODY, trailers=65)))
        assert status.startswith(b"HTTP/1.1 400 ") and "more than 64 trailer lines" in message
        assert model.prompts == []
        assert _raw(url, _chunked(CHAT_BODY, trailers=63)).startswith(b"HTTP/1.1 200 ")  # within bound
    assert len(model.prompts) == 1


def test_a_refused_connection_reads_its_whole_503_without_waiting_for_the_linger(enc) -> None:
    """Mutation httpconn.ChatHTTPServer._refuse: `request.shutdown(socket.SHUT_WR)` dropped. The 503
    was sent, but its end (the close) came only after the reaper's linger: a client that reads a
    reply to its end (Connection: close) waited the whole linger for it."""
    from test_serve import _connect, _wait_until

    with serving_service(ChatService(Engine(tiny_gpt(), enc=enc))) as (url, server):
        server.max_connections = 0
        server._reaper.seconds = 60
        client = _connect(url, timeout=20)  # far less than the linger: the end must come first
        reply = b"".join(iter(lambda: client.recv(65536), b""))
        assert _wait_until(lambda: server._reaper._held == 1)  # still lingering: only the write side shut
        client.close()
    status, message = _status_and_error(reply)
    assert status.startswith(b"HTTP/1.1 503 ") and "too many connections" in message


class _AbortingListener:
    """A listener whose queue holds an aborted connection (accept's ECONNABORTED), then `queued`."""

    def __init__(self, queued) -> None:
        self.results = [ConnectionAbortedError("aborted"), (queued, ("127.0.0.1", 1))]

    def fileno(self) -> int:
        return 99

    def setblocking(self, flag: bool) -> None:
        pass

    def accept(self):
        if not self.results:
            raise BlockingIOError
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result


def test_a_connection_queued_behind_an_aborted_one_still_gets_the_stops_503() -> None:
    """Mutation httpconn.ChatHTTPServer._refuse_queued: `except OSError: continue` made `return`. One
    connection aborted in the kernel's queue ended the refusals: every connection queued behind it
    was reset by the listener's close instead of told the server is stopping."""
    import socket
    from http.server import BaseHTTPRequestHandler

    from pipeline.httpconn import ChatHTTPServer

    server = ChatHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler, bind_and_activate=False)
    queued, client = socket.socketpair()
    listener, server.socket = server.socket, _AbortingListener(queued)
    try:
        server._refuse_queued()
    finally:
        server.socket = listener
        server.server_close()
    client.settimeout(10)
    reply = b"".join(iter(lambda: client.recv(65536), b""))
    client.close()
    assert reply.startswith(b"HTTP/1.1 503 ") and b"Retry-After" not in reply, reply
