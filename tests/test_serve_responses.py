"""`nanochatgpt serve`'s POST /v1/responses (pipeline/responsesapi.py), driven by the OpenAI SDK.

The SDK parses every reply and event into its pydantic types; the raw JSON is validated again
strictly (a missing required field fails) and no field may be one the type does not declare. The
server runs in a thread with a tiny model, as in tests/test_serve_openai_sdk.py (whose helpers
these tests share). Skipped where openai is not installed (the GPU check's image).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request

import pytest
import test_serve_openai_sdk
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_engine_support import tiny_gpt
from test_properties_serve import junk, numbers, role, text
from test_serve import (
    FailsMidStream,
    GateLock,
    RecordingGPT,
    _raw,
    _request,
    scripted,
    serving,
    serving_service,
)
from test_serve_openai_sdk import client, hello_gpt, no_extras

from pipeline.chatapi import ChatService
from pipeline.chatrequest import RequestError
from pipeline.engine import Engine
from pipeline.responsesapi import ResponsesRequest, create
from pipeline.tokenizer import get_encoding

openai = pytest.importorskip("openai")
Response = openai.types.responses.Response
# The chat completions tests' servers, one per module as there: a tiny random model, and hello_gpt.
tiny = test_serve_openai_sdk.tiny
hello = test_serve_openai_sdk.hello


def strict(raw: dict) -> Response:
    """The raw response object, validated (no missing field) and with no field the SDK lacks."""
    response = Response.model_validate(raw)
    no_extras(response)
    return response


def test_a_plain_create_answers_as_openai_documents(hello) -> None:
    """What the SDK's quick start sends: a model and a string (store unset: OpenAI's true), and a
    temperature of 0 for the scripted model's text."""
    response = hello.responses.create(model="gpt-4o-mini", input="Hello there!", temperature=0)
    assert response.output_text == "Hello there, friend"
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.incomplete_details is None and response.error is None
    assert response.model == "tiny" and isinstance(response.created_at, (int, float))
    (message,) = response.output
    assert (message.type, message.role, message.status) == ("message", "assistant", "completed")
    assert message.id.startswith("msg_")
    (part,) = message.content
    assert (part.type, part.text, part.annotations) == ("output_text", "Hello there, friend", [])
    usage = response.usage
    chat = hello.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hello there!"}], temperature=0
    )
    assert (usage.input_tokens, usage.output_tokens) == (
        chat.usage.prompt_tokens,
        chat.usage.completion_tokens,
    )
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    assert response.tools == [] and response.truncation == "auto" and response.metadata == {}


def test_the_body_validates_and_matches_a_chat_completion(tiny) -> None:
    """The same conversation and settings give the same text and token counts on both routes."""
    raw = tiny.responses.with_raw_response.create(
        model="tiny",
        instructions="Be brief.",
        input=[
            {"role": "user", "content": "Hello there!"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
            {"role": "user", "content": [{"type": "input_text", "text": "How are you?"}]},
        ],
        max_output_tokens=6,
        temperature=0.8,
        top_p=0.9,
        metadata={"k": "v"},
        user="u-1",
        store=True,
        extra_body={"seed": 5},
    )
    response = strict(json.loads(raw.text))
    assert response == raw.parse()
    chat = tiny.chat.completions.create(
        model="tiny",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there!"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "How are you?"},
        ],
        max_tokens=6,
        temperature=0.8,
        top_p=0.9,
        seed=5,
    )
    assert response.output_text == chat.choices[0].message.content
    # The budget ran out: incomplete, as OpenAI says it (the message is incomplete too).
    assert chat.choices[0].finish_reason == "length"
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        chat.usage.prompt_tokens,
        chat.usage.completion_tokens,
    )
    # What the request set is echoed.
    assert (response.instructions, response.max_output_tokens, response.metadata) == (
        "Be brief.",
        6,
        {"k": "v"},
    )
    assert (response.temperature, response.top_p, response.user) == (0.8, 0.9, "u-1")


def test_instructions_and_input_render_as_the_chat_completion_prompt() -> None:
    """instructions + system/developer items are the persona; user/assistant items the turns."""
    enc = get_encoding()
    model = RecordingGPT([scripted(enc, "Fine.")] * 2)
    with serving(Engine(model, enc=enc)) as url, client(url) as sdk:
        sdk.responses.create(
            model="m",
            instructions="You are kind.",
            input=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Hi <bot> there"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"},
            ],
            temperature=0,
        )
        sdk.chat.completions.create(
            model="m",
            messages=[
                {"role": "system", "content": "You are kind.\nBe brief."},
                {"role": "user", "content": "Hi <bot> there"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"},
            ],
            temperature=0,
        )
    assert model.prompts[0] == model.prompts[1]


def sse(url: str, body: dict) -> list[tuple[str, dict]]:
    """The raw stream: (event name, data) per server-sent event."""
    req = urllib.request.Request(
        f"{url}/v1/responses",
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        text = resp.read().decode()
    events = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    # response.output_text.delta, one per piece
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]


@pytest.mark.parametrize(
    ("max_output_tokens", "last"), [(None, "response.completed"), (3, "response.incomplete")]
)
def test_the_stream_is_openais_named_events_in_order(max_output_tokens: int | None, last: str) -> None:
    enc = get_encoding()
    with serving(Engine(hello_gpt(), enc=enc)) as url, client(url) as sdk:
        body = {"model": "m", "input": "Hello!", "temperature": 0, "max_output_tokens": max_output_tokens}
        events = sse(url, body)
        whole = sdk.responses.create(**body)
    names = [name for name, _ in events]
    deltas = [data["delta"] for name, data in events if name == "response.output_text.delta"]
    assert [n for n in names if n != "response.output_text.delta"] == [*STREAM_ORDER, last]
    assert names[4 : 4 + len(deltas)] == ["response.output_text.delta"] * len(deltas) and deltas
    assert [data["type"] for _, data in events] == names  # the event line names the data's type
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    adapter = openai._models.TypeAdapter(openai.types.responses.ResponseStreamEvent)
    for _, data in events:
        no_extras(adapter.validate_python(data))  # strict: every required field, no stray one
    final = events[-1][1]["response"]
    assert strict(final).output_text == "".join(deltas) == whole.output_text
    assert final["usage"] == whole.to_dict()["usage"] and final["status"] == whole.status
    assert len({data["response"]["id"] for name, data in events if "response" in data}) == 1
    assert events[0][1]["response"]["status"] == "in_progress" and events[0][1]["response"]["output"] == []


def test_a_stream_sends_whole_utf8_characters() -> None:
    """A character split across tokens (an emoji is several byte tokens) arrives in one delta."""
    enc = get_encoding()
    text = "Caf\u00e9 \U0001f600 ok"
    with serving(Engine(RecordingGPT([scripted(enc, text)]), enc=enc)) as url:
        events = sse(url, {"input": "hi", "temperature": 0})
    deltas = [data["delta"] for name, data in events if name == "response.output_text.delta"]
    assert "".join(deltas) == text and all("\ufffd" not in d for d in deltas)
    assert any("\U0001f600" in d for d in deltas)


def test_the_sdks_stream_helpers_read_the_stream_sync_and_async(hello) -> None:
    with hello.responses.stream(model="m", input="Hello!", temperature=0) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello there, friend"
    events = list(hello.responses.create(model="m", input="Hello!", temperature=0, stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Hello there, friend"

    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=str(hello.base_url), api_key="x", max_retries=0) as sdk:
            async with sdk.responses.stream(model="m", input="Hello!", temperature=0) as stream:
                async for _ in stream:
                    pass
                helper = (await stream.get_final_response()).output_text
            raw = await sdk.responses.create(model="m", input="Hello!", temperature=0, stream=True)
            text = "".join([e.delta async for e in raw if e.type == "response.output_text.delta"])
            return helper, text

    assert asyncio.run(run()) == ("Hello there, friend", "Hello there, friend")


def test_a_failure_mid_stream_ends_with_error_and_response_failed() -> None:
    """Cut short, a stream reads as a finished reply; OpenAI ends a failed one with `error` and
    `response.failed` (its error saying what went wrong)."""
    enc = get_encoding()
    model = FailsMidStream([scripted(enc, "one two three four five six")])
    with serving(Engine(model, enc=enc)) as url, client(url) as sdk:
        events = list(sdk.responses.create(model="m", input="talk", temperature=0, stream=True))
    error, failed = events[-2:]
    assert (error.type, error.code) == ("error", "server_error") and "RuntimeError" in error.message
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error.code == "server_error" and "RuntimeError" in failed.response.error.message
    shown = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert shown and failed.response.output_text == shown
    assert not any(e.type == "response.completed" for e in events)
    for event in (error, failed):
        no_extras(type(event).model_validate(event.to_dict()))


@pytest.mark.parametrize(
    ("kwargs", "param", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "keeps no responses"),
        ({"conversation": "conv_1"}, "conversation", "keeps no conversations"),
        ({"background": True}, "background", "background"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools", "tools"),
        ({"tool_choice": "required"}, "tool_choice", "tools"),
        ({"text": {"format": {"type": "json_object"}}}, "text.format", "JSON"),
        ({"include": ["message.output_text.logprobs"]}, "include", "not supported"),
        ({"top_logprobs": 2}, "top_logprobs", "log-probabilities"),
        ({"truncation": "middle"}, "truncation", "auto"),
        ({"metadata": {"k": 1}}, "metadata", "string"),
        ({"max_output_tokens": 0}, "max_output_tokens", "at least 1"),
        ({"max_output_tokens": 5000}, "max_output_tokens", "at most"),
        ({"temperature": -1}, "temperature", "temperature"),
        ({"temperature": 2.5}, "temperature", "temperature must be in [0, 2]"),  # OpenAI's range
        ({"top_p": 1.5}, "top_p", "top_p must be in [0, 1]"),
        ({"input": []}, "input", "non-empty"),
        (
            {"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            "input",
            "last",
        ),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "role"),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
            "input[0].type",
            "message",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}
                ]
            },
            "input[0].content",
            "text parts",
        ),
        ({"input": "word " * 300}, "input", "fit"),
        ({"instructions": "word " * 300}, "instructions", "instructions"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_what_it_cannot_do_is_a_400_naming_the_field(
    tiny, kwargs: dict, param: str, words: str, stream: bool
) -> None:
    request = {"model": "tiny", "input": "hi", "max_output_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        tiny.responses.create(**request, stream=stream)
    assert (e.value.status_code, e.value.type, e.value.param) == (400, "invalid_request_error", param)
    assert words in e.value.message, e.value.message


def test_truncation_disabled_refuses_what_auto_drops(tiny) -> None:
    """The server drops the oldest turns to fit the window (reported as truncation "auto");
    truncation "disabled" asks that nothing be dropped: a 400 then, as OpenAI's."""
    history = [{"role": r, "content": "word " * 40} for r in ("user", "assistant") * 3]
    body = {"model": "tiny", "input": [*history, {"role": "user", "content": "hi"}], "max_output_tokens": 4}
    assert tiny.responses.create(**body, truncation="auto").truncation == "auto"
    with pytest.raises(openai.BadRequestError) as e:
        tiny.responses.create(**body, truncation="disabled")
    assert (e.value.param, e.value.code) == ("input", "context_length_exceeded")
    short = {**body, "input": "hi"}
    assert tiny.responses.create(**short, truncation="disabled").truncation == "disabled"


def test_nothing_is_stored_so_nothing_can_be_retrieved(tiny) -> None:
    response = tiny.responses.create(model="tiny", input="hi", max_output_tokens=2, store=True)
    for call in (
        lambda: tiny.responses.retrieve(response.id),
        lambda: tiny.responses.delete(response.id),
        lambda: tiny.responses.cancel(response.id),
        lambda: tiny.responses.input_items.list(response.id),
    ):
        with pytest.raises(openai.NotFoundError) as e:
            call()
        assert "keeps no responses" in e.value.message


def test_the_route_keeps_the_servers_checks(tiny) -> None:
    """Host (DNS rebinding), Content-Type (cross-origin forms), methods: as for chat completions."""
    url = str(tiny.base_url).removesuffix("/").removesuffix("/v1")
    body = json.dumps({"input": "hi", "max_output_tokens": 2}).encode()
    extra = f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    json_type = "Content-Type: application/json\r\n"
    assert _raw(url, _request("POST", "/v1/responses", "evil.example", extra + json_type, body)).startswith(
        b"HTTP/1.1 403"
    )
    assert _raw(url, _request("POST", "/v1/responses", "localhost", extra, body)).startswith(b"HTTP/1.1 415")
    assert _raw(url, _request("POST", "/v1/responses", "localhost", extra + json_type, body)).startswith(
        b"HTTP/1.1 200"
    )
    reply = _raw(url, _request("GET", "/v1/responses", "localhost", "Connection: close\r\n"))
    assert reply.startswith(b"HTTP/1.1 405") and b"Allow: POST" in reply
    reply = _raw(url, _request("POST", "/responses", "localhost", extra + json_type, body))
    assert reply.startswith(b"HTTP/1.1 404") and b"/v1/responses" in reply


def test_a_busy_server_answers_503_on_this_route_too() -> None:
    """One request generating (held at the engine's lock) and no room to wait: 503 at once."""
    service = ChatService(Engine(tiny_gpt(), enc=get_encoding()), max_waiting=0)
    service.lock = gate = GateLock()
    with serving_service(service) as (url, _), client(url) as sdk:
        gate.lock.acquire()
        first = threading.Thread(
            target=lambda: sdk.responses.create(model="m", input="hi", max_output_tokens=2)
        )
        first.start()
        assert gate.waiting.wait(30)  # the first request holds the one place
        with pytest.raises(openai.InternalServerError) as e:
            sdk.responses.create(model="m", input="hi", max_output_tokens=2)
        assert e.value.status_code == 503 and e.value.response.headers["Retry-After"]
        gate.lock.release()
        first.join(30)
        assert sdk.responses.create(model="m", input="hi", max_output_tokens=2).status == "incomplete"


def test_parse_maps_the_body_onto_a_chat_request() -> None:
    req = ResponsesRequest.parse(
        {
            "instructions": "Be kind.",
            "input": [
                {"role": "system", "content": "Be brief."},
                {"role": "assistant", "content": "A greeting before any user turn is left out."},
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}],
                },
                {"type": "message", "role": "assistant", "content": "c"},
                {"role": "user", "content": "d"},
            ],
            "max_output_tokens": 7,
            "text": {"format": {"type": "text"}, "verbosity": "low"},
            "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "low"},
        }
    )
    assert (req.context, req.history, req.user_text) == (
        "Be kind.\nBe brief.",
        [("human", "a\nb"), ("bot", "c")],
        "d",
    )
    assert req.max_tokens == 7 and not req.stream and not req.keep_all_turns
    assert req.settings["text"] == {"format": {"type": "text"}, "verbosity": "low"}
    with pytest.raises(RequestError) as e:
        ResponsesRequest.parse({"input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}})
    assert e.value.param == "metadata"


# ---- any body: a 400 naming a field, or a response the SDK reads --------------------------------

item_content = st.one_of(
    text,
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text"]), "text": text}),
            st.fixed_dictionaries({"type": st.sampled_from(["input_image", "refusal"]), "text": junk}),
            junk,
        ),
        max_size=3,
    ),
    junk,
)
item = st.one_of(
    st.fixed_dictionaries(
        {"role": role, "content": item_content},
        optional={"type": st.sampled_from(["message", "function_call", "reasoning"]), "id": junk},
    ),
    junk,
)
responses_bodies = st.fixed_dictionaries(
    {"input": st.one_of(text, st.lists(item, max_size=4), junk)},
    optional={
        "instructions": st.one_of(text, junk),
        "max_output_tokens": numbers(st.integers(1, 8)),
        "temperature": numbers(st.floats(0, 2)),
        "top_p": numbers(st.floats(0, 1)),
        "metadata": st.one_of(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3), junk),
        "store": junk,
        "truncation": st.one_of(st.sampled_from(["auto", "disabled"]), junk),
        "text": st.one_of(st.fixed_dictionaries({}, optional={"format": junk, "verbosity": junk}), junk),
        "include": st.one_of(st.just(["reasoning.encrypted_content"]), junk),
        "user": junk,
        "tool_choice": junk,
        "parallel_tool_calls": junk,
    },
)


@settings(max_examples=150, deadline=None)
@given(responses_bodies)
@example({"input": "hi", "max_output_tokens": 3})
def test_any_body_is_a_400_or_a_response_the_sdk_reads(body: dict) -> None:
    service = PROPERTY_SERVICE
    try:
        req = ResponsesRequest.parse(body)
        session = service.prepare(req)
    except RequestError as e:
        assert e.status == 400 and str(e)
        assert e.param is None or e.param.split("[")[0].split(".")[0] in body or e.param == "input"
        return
    with service.turn():
        response = create(service, req, session=session)
    assert strict(response).status in ("completed", "incomplete")
    assert response["usage"]["output_tokens"] <= (req.max_tokens or 10**9)


PROPERTY_SERVICE = ChatService(Engine(tiny_gpt(), enc=get_encoding()), model_name="tiny")


def test_an_unsupported_include_item_is_quoted_short_as_an_input_type_is() -> None:
    """A 1 MB `include` item came back whole in the 400 (found fuzzing the request parser)."""
    from pipeline.chatrequest import RequestError
    from pipeline.responsesapi import _refuse_unsupported

    with pytest.raises(RequestError, match="is not supported") as caught:
        _refuse_unsupported({"include": ["x" * 1_000_000]})
    assert caught.value.param == "include" and len(str(caught.value)) < 200


def test_a_bad_truncation_is_quoted_short_as_an_include_item_is() -> None:
    """A 1 MB `truncation` string came back whole in the 400's message."""
    from pipeline.chatrequest import RequestError
    from pipeline.responsesapi import ResponsesRequest

    with pytest.raises(RequestError, match="`truncation` must be") as caught:
        ResponsesRequest.parse({"input": "hi", "truncation": "x" * 1_000_000})
    assert caught.value.param == "truncation" and len(str(caught.value)) < 200


@pytest.mark.parametrize("stream", [None, False])
def test_stream_options_without_stream_is_refused_as_chat_refuses_it(stream: bool | None) -> None:
    """/v1/chat/completions refuses `stream_options` without `stream: true` (OpenAI's 400); /v1/responses
    took it and answered a whole response. Both now run the one check (ChatRequest)."""
    from pipeline.chatrequest import ChatRequest, RequestError

    options = {"stream_options": {"include_obfuscation": False}}
    if stream is not None:
        options["stream"] = stream
    with pytest.raises(RequestError) as responses:
        ResponsesRequest.parse({"input": "hi", **options})
    with pytest.raises(RequestError) as chat:
        ChatRequest.parse({"messages": [{"role": "user", "content": "hi"}], **options})
    assert (str(responses.value), responses.value.param) == (str(chat.value), chat.value.param)
    assert responses.value.param == "stream_options" and "only allowed when `stream` is true" in str(
        chat.value
    )
    assert ResponsesRequest.parse({"input": "hi", **options, "stream": True}).stream
