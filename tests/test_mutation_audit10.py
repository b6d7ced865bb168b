"""Tests from mutation audit 10 (chatapi, responsesapi, transcripts, trainchoice, argtypes): each kills
a hand-made mutant that the suite let through; its docstring names the mutation."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
from test_engine_support import tiny_gpt

from pipeline import chatapi
from pipeline.chatapi import ChatService, ClientLeft, Event, ServerBusy, ServerStopping, ended_on_failure
from pipeline.chatrequest import ChatRequest, RequestError
from pipeline.engine import Engine
from pipeline.responsesapi import ResponsesRequest
from pipeline.tokenizer import get_encoding


@pytest.fixture(scope="module")
def service_engine() -> Engine:
    return Engine(tiny_gpt(), enc=get_encoding())


def test_retry_after_is_a_running_mean_weighted_to_the_past_and_capped_at_a_minute(
    service_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutations chatapi.ChatService.turn: the running mean's weights swapped (0.3 * last + 0.7 * took)
    and the Retry-After cap lowered (min(60, ...) -> min(6, ...)). Turns of 10 s then 100 s: the mean
    is 0.7 * 10 + 0.3 * 100 = 37 s (the swap says 73, capped to 60); one more of 300 s makes it
    0.7 * 37 + 0.3 * 300 = 115.9 s, which a client is told as the cap, 60 s (the lowered cap: 6)."""
    service = ChatService(service_engine, max_waiting=0)
    clock = [0.0]
    monkeypatch.setattr(chatapi.time, "monotonic", lambda: clock[0])
    told = []
    for took in (10.0, 100.0, 300.0, 0.0):
        with service.turn():  # a generation of `took` s; a request refused meanwhile is told the mean so far
            clock[0] += took
            with pytest.raises(ServerBusy) as busy, service.turn():
                pass
        told.append(busy.value.retry_after)
    assert told == [1, 10, 37, 60]  # 1: no generation yet to learn from


def test_a_turn_after_two_requests_that_left_the_line_in_a_row_is_served(service_engine: Engine) -> None:
    """Mutations chatapi.ChatService._leave_line: the skip over tickets that left the line done once
    (`while self._serving in self._gone` -> `if`), and a ticket that left not recorded as gone
    (`self._gone.add(ticket)` dropped: the line then waits for it for good). Tickets 1 and 2 leave
    while ticket 0 generates; once 0 is done, ticket 3 (the only one left) must be served at once,
    not wait behind a ticket that is gone: under the mutants it waits, asks whether its client left,
    and is dropped."""
    service = ChatService(service_engine)
    left: list[BaseException] = []

    def gone_client() -> None:
        try:
            with service.turn(client_left=lambda: True):
                pass
        except ClientLeft as e:
            left.append(e)

    with service.turn():  # ticket 0
        for _ in range(2):  # tickets 1 and 2, one after the other: their clients are gone
            waiter = threading.Thread(target=gone_client)
            waiter.start()
            waiter.join(timeout=60)  # a bound for a hang, not a timing
            assert not waiter.is_alive(), "a request whose client left kept its place"
    assert len(left) == 2
    # Ticket 3: its turn has come, so its client is never asked (it would say it left).
    with service.turn(client_left=lambda: True):
        pass


def test_a_stream_that_fails_ends_with_its_failure_events_then_raises_it_again() -> None:
    """Mutation chatapi.ended_on_failure: the failure swallowed after its events (`raise` -> `return`).
    The client gets the error event, and the server still gets the exception to log: swallowed, a
    bug mid-stream left no trace on the server's side."""

    def failing() -> Iterator[Event]:
        yield None, {"piece": 1}
        raise RuntimeError("a bug mid-stream")

    seen: list[Event] = []
    with pytest.raises(RuntimeError, match="a bug mid-stream"):
        for event in ended_on_failure(failing(), lambda e: [(None, f"failed: {e}")]):
            seen.append(event)
    assert seen == [(None, {"piece": 1}), (None, "failed: a bug mid-stream")]


def test_response_settings_default_as_openai_echoes_them() -> None:
    """Mutations responsesapi.ResponsesRequest.parse: parallel_tool_calls' default (True -> False),
    tool_choice's (`or "auto"` -> `or "none"`) and _verbosity's (return "medium" -> "low"). A body that
    sets none of them is echoed with OpenAI's defaults."""
    settings = ResponsesRequest.parse({"input": "hi"}).settings
    assert settings["parallel_tool_calls"] is True
    assert settings["tool_choice"] == "auto"
    assert settings["text"] == {"format": {"type": "text"}, "verbosity": "medium"}


def test_metadata_at_openais_limits_is_taken_and_one_past_them_refused() -> None:
    """Mutations responsesapi._metadata: each limit's comparison made one stricter (`len(value) >
    MAX_METADATA_PAIRS` -> `>=`, `len(text) > MAX_METADATA_VALUE` -> `>=`) or the key-length check
    dropped. 16 pairs, a 64-character key and a 512-character value are taken; one more is a 400."""
    at_limits = {"k" * 64: "v" * 512, **{f"k{i}": "v" for i in range(15)}}
    assert ResponsesRequest.parse({"input": "hi", "metadata": at_limits}).settings["metadata"] == at_limits
    for past in ({**at_limits, "one": "more"}, {"k" * 65: "v"}, {"k": "v" * 513}):
        with pytest.raises(RequestError) as e:
            ResponsesRequest.parse({"input": "hi", "metadata": past})
        assert e.value.param == "metadata"


def test_a_turn_that_gets_the_engine_after_stop_began_generates_nothing(service_engine: Engine) -> None:
    """Mutation chatapi.ChatService.turn: the stop check once the engine's lock is held dropped. A
    stop that began while another request generated (stop() not yet holding the engine) must keep
    the next request from generating: it is refused (503), not started and cut at its first piece."""
    service = ChatService(service_engine)
    with service.turn():
        assert service.stop(timeout=0) is False  # the engine is busy: the stop has begun, not ended
    generated = []
    with pytest.raises(ServerStopping), service.turn():
        generated.append("a reply")
    assert generated == []


def test_a_long_bad_value_is_quoted_in_its_400_up_to_60_characters() -> None:
    """Mutation responsesapi._quoted: the cut shortened (`repr(value)[:60]` -> `[:6]`): the value
    quoted back is the client's first 60 characters, enough to recognise it."""
    with pytest.raises(RequestError) as caught:
        ResponsesRequest.parse({"input": "hi", "truncation": "x" * 100})
    assert "'" + "x" * 59 in str(caught.value) and "x" * 60 not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("store", "yes", "`store` must be true or false"), ("include", {}, "`include` must be a list")],
)
def test_store_and_include_of_the_wrong_type_are_a_400_naming_them(
    field: str, value: object, message: str
) -> None:
    """Mutations responsesapi._refuse_unsupported: store's check dropped (`flag(body, "store", True)`
    removed: it is taken either way, but a non-boolean is still a mistake, refused as chat's `stream`
    is) and include's type check dropped (an object then iterated as no items: accepted)."""
    with pytest.raises(RequestError, match=message) as caught:
        ResponsesRequest.parse({"input": "hi", field: value})
    assert caught.value.param == field


def test_a_waiting_request_whose_client_left_leaves_the_line_before_its_turn(service_engine: Engine) -> None:
    """Mutation chatapi.ChatService._wait_for_turn: `client_left` never asked while a request waits
    in the line (`if ... client_left():` -> `if False:`). It then held its place (and a thread) for
    as long as the generation ahead of it ran, a place live clients were refused for."""
    service = ChatService(service_engine)
    left: list[BaseException] = []

    def gone_client() -> None:
        with contextlib.suppress(ClientLeft), service.turn(client_left=lambda: left.append("asked") or True):
            left.append("served")

    with service.turn():  # generating all along: the waiter never reaches its turn
        waiter = threading.Thread(target=gone_client)
        waiter.start()
        waiter.join(timeout=60)  # a bound for a hang, not a timing
        assert not waiter.is_alive(), "a request whose client left kept its place in the line"
    assert left == ["asked"]


def test_a_stream_opens_with_the_role_and_empty_content_and_the_model_says_when_it_was_made(
    service_engine: Engine,
) -> None:
    """Mutations chatapi: ChatService._chunks's first delta without its content
    (`{"role": "assistant", "content": ""}` -> `{"role": "assistant"}`: OpenAI's first chunk carries
    both, and a client that concatenates delta.content got None), and ChatService.model's `created`
    made 0 (OpenAI's model object says when the model was made: the server's start here)."""
    service = ChatService(service_engine)
    req = ChatRequest.parse({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": 1})
    with service.turn(), contextlib.closing(service.stream(req)) as chunks:
        first = next(chunks)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert service.model()["created"] == service.models()["data"][0]["created"] == service.created > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"text": "plain"}, "text"),
        ({"input": [{"role": ["user"], "content": "hi"}]}, "input[0].role"),
        ({"text": {"verbosity": "loud"}}, "text.verbosity"),
    ],
)
def test_a_wrong_text_role_or_verbosity_is_a_400_not_a_crash_or_an_echo(body: dict, param: str) -> None:
    """Mutations responsesapi: _refuse_unsupported's `text` object check dropped (a string then
    failed on .get, a 500) and _add_input's role type check dropped (`not isinstance(role, str) or`
    removed: a list role failed hashing against ROLES, a 500) and _verbosity's check dropped (any
    value then echoed back as if it were one of low, medium, high)."""
    with pytest.raises(RequestError) as caught:
        ResponsesRequest.parse({"input": "hi", **body})
    assert caught.value.param == param


def test_only_a_completed_response_says_when_it_completed_and_a_failure_before_text_has_no_output(
    service_engine: Engine,
) -> None:
    """Mutations responsesapi._Response: body's completed_at set whatever the status (`if status ==
    "completed" else None` dropped: an incomplete response read as completed at a time), and
    failure's output made a message even with no text written (`if self.text else []` dropped: a
    response.failed carried an empty assistant message)."""
    from pipeline.responsesapi import _Response, create

    service = ChatService(service_engine)
    req = ResponsesRequest.parse({"input": "hi", "max_output_tokens": 1, "seed": 1, "temperature": 0})
    with service.turn():
        response = create(service, req)
    assert response["status"] == "incomplete" and response["completed_at"] is None
    _, failed = _Response(service, req).failure(RuntimeError("at once"))[-1]
    assert isinstance(failed, dict) and failed["response"]["output"] == []
    assert failed["response"]["completed_at"] is None


def _post(url: str, body: bytes, length: int, close_after: bool = False) -> bytes:
    """A raw POST whose Content-Length says `length`; `close_after`: the client then shuts its
    sending side (a body cut short), as a client that died would."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head + body)
        if close_after:
            conn.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: conn.recv(65536), b""))


def test_a_body_of_exactly_the_limit_is_read_and_a_short_one_refused() -> None:
    """serve._read_sized: `length > max_body_bytes` made `>=` (a body of exactly the limit refused
    413), and `if len(raw) < length` made `if False` (a body shorter than its Content-Length, here
    still valid JSON, answered as if whole)."""
    from test_serve import CHAT_BODY, serving_service

    service = ChatService(Engine(tiny_gpt(), enc=get_encoding()))
    with serving_service(service, max_body_bytes=len(CHAT_BODY)) as (url, _):
        assert _post(url, CHAT_BODY, len(CHAT_BODY)).startswith(b"HTTP/1.1 200 ")
        assert _post(url, CHAT_BODY + b" ", len(CHAT_BODY) + 1).startswith(b"HTTP/1.1 413 ")
    with serving_service(service, max_body_bytes=1000) as (url, _):
        reply = _post(url, CHAT_BODY, len(CHAT_BODY) + 10, close_after=True)
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert (
            f"the request body ended after {len(CHAT_BODY)} of {len(CHAT_BODY) + 10} bytes".encode() in reply
        )
