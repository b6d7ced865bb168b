"""`nanochatgpt serve` driven by the official OpenAI Python SDK, as its users will drive it.

tests/test_serve.py checks the wire format with urllib; here the SDK itself parses every reply
(into its pydantic types, validated again from the raw JSON so that a missing required field or an
unknown finish_reason fails), maps each error status onto its exception, and reads the streams.
The server runs in a thread on a free port with a tiny model, as in tests/test_serve.py (whose
helpers these tests share). Skipped where openai is not installed (the GPU check's image).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from test_engine_support import ScriptedGPT, tiny_gpt
from test_serve import BrokenGPT, FailsMidStream, scripted, serving

from pipeline.engine import Engine
from pipeline.tokenizer import get_encoding

openai = pytest.importorskip("openai")

HELLO = [{"role": "user", "content": "Hello there!"}]


def client(url: str) -> openai.OpenAI:
    # No retries: a retried 5xx would hide how the first answer was read. The key is never checked.
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)


def hello_gpt() -> ScriptedGPT:
    """A model that always answers "Hello there, friend" at temperature 0 (then ends its turn)."""
    return ScriptedGPT([scripted(get_encoding(), "Hello there, friend")])


@pytest.fixture(scope="module")
def tiny() -> Iterator[openai.OpenAI]:
    """A client of a server with a tiny random model (varied greedy text; seeds matter)."""
    with serving(Engine(tiny_gpt(), enc=get_encoding())) as url, client(url) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def hello() -> Iterator[openai.OpenAI]:
    """A client of a server with hello_gpt."""
    with serving(Engine(hello_gpt(), enc=get_encoding())) as url, client(url) as sdk:
        yield sdk


def no_extras(model) -> None:
    """Every field the server sent is one the SDK's type declares (no misspelt or stray keys)."""
    assert model.model_extra == {}, type(model).__name__
    for value in dict(model).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, openai.BaseModel):
                no_extras(item)


def test_models_list_and_retrieve_parse(tiny) -> None:
    (model,) = tiny.models.list().data
    assert (model.id, model.object, model.owned_by) == ("tiny", "model", "nanochatgpt")
    assert isinstance(model.created, int)
    no_extras(model)
    assert tiny.models.retrieve("tiny") == model
    with pytest.raises(openai.NotFoundError) as e:
        tiny.models.retrieve("gpt-4o")
    assert e.value.code == "model_not_found" and e.value.param == "model"
    assert "'gpt-4o'" in e.value.message


def test_a_completion_validates_against_the_sdk_types(tiny) -> None:
    raw = tiny.chat.completions.with_raw_response.create(
        model="tiny", messages=HELLO, max_tokens=6, temperature=0
    )
    body = json.loads(raw.text)
    # The SDK builds its objects without validating them: validate the raw JSON strictly instead,
    # so that a missing required field or a finish_reason outside OpenAI's set fails here.
    checked = openai.types.chat.ChatCompletion.model_validate(body)
    reply = raw.parse()
    assert checked == reply
    no_extras(reply)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.model == "tiny" and isinstance(reply.created, int)
    (choice,) = reply.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content and choice.finish_reason == "length"
    usage = reply.usage
    assert usage.completion_tokens == 6 and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_stream_joins_to_the_same_reply_and_ends_with_usage_when_asked(tiny) -> None:
    kwargs = dict(model="tiny", messages=HELLO, max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    whole = tiny.chat.completions.create(**kwargs)
    again = tiny.chat.completions.create(**kwargs)
    chunks = list(tiny.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    for chunk in chunks:
        openai.types.chat.ChatCompletionChunk.model_validate(chunk.to_dict())
        no_extras(chunk)
    *pieces, last = chunks
    assert again.choices[0].message.content == whole.choices[0].message.content  # the seed holds
    assert pieces[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in pieces) == whole.choices[0].message.content
    assert pieces[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in pieces[:-1])
    assert last.choices == [] and last.usage == whole.usage  # as OpenAI sends it: a chunk of its own
    assert len({c.id for c in chunks}) == 1 and all(c.model == "tiny" for c in chunks)


def test_stop_strings_cut_the_reply_streamed_or_not(hello) -> None:
    for stop, text in ((", fr", "Hello there"), (["xyz", "there"], "Hello ")):
        reply = hello.chat.completions.create(model="tiny", messages=HELLO, stop=stop, temperature=0)
        assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == (text, "stop")
        stream = hello.chat.completions.create(
            model="tiny", messages=HELLO, stop=stop, temperature=0, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == text
    reply = hello.chat.completions.create(model="tiny", messages=HELLO, temperature=0)
    assert reply.choices[0].message.content == "Hello there, friend"
    assert reply.choices[0].finish_reason == "stop"


def test_max_completion_tokens_bounds_the_reply_like_max_tokens(tiny) -> None:
    """Newer SDK versions and clients send max_completion_tokens (max_tokens is deprecated)."""
    for key in ("max_tokens", "max_completion_tokens"):
        reply = tiny.chat.completions.create(model="tiny", messages=HELLO, temperature=0, **{key: 3})
        assert (reply.usage.completion_tokens, reply.choices[0].finish_reason) == (3, "length"), key
    with pytest.raises(openai.BadRequestError) as e:
        tiny.chat.completions.create(model="tiny", messages=HELLO, max_completion_tokens=5000)
    assert (e.value.param, e.value.code) == ("max_completion_tokens", "context_length_exceeded")


def test_the_sdks_stream_and_parse_helpers_read_the_replies(hello) -> None:
    with hello.chat.completions.stream(
        model="tiny", messages=HELLO, temperature=0, stream_options={"include_usage": True}
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content == "Hello there, friend"
    assert final.usage.completion_tokens > 0
    parsed = hello.chat.completions.parse(model="tiny", messages=HELLO, temperature=0)
    assert parsed.choices[0].message.content == "Hello there, friend"


@pytest.mark.parametrize(
    ("kwargs", "param", "code", "words"),
    [
        (
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": "c"}]},
            "messages[0].role",
            None,
            "role",
        ),
        (
            {"messages": [{"role": "user", "content": "word " * 300}]},
            "messages",
            "context_length_exceeded",
            "fit",
        ),
        ({"n": 2}, "n", "unsupported_value", "n=1"),
        (
            {"seed": 2**63},
            "seed",
            "integer_above_max_value",
            "64-bit",
        ),  # OpenAI's seed is an int64 (a negative one is taken)
        ({"stop": list("abcde")}, "stop", "array_above_max_length", "at most 4"),
        ({"response_format": {"type": "json_object"}}, "response_format", None, "JSON"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_bad_requests_raise_bad_request_error_with_the_servers_message(
    tiny, kwargs: dict, param: str, code: str | None, words: str, stream: bool
) -> None:
    """A stream's 400 comes before its first event, so the SDK raises it from create() too."""
    request = {"model": "tiny", "messages": HELLO, "max_tokens": 4, **kwargs, "stream": stream}
    with pytest.raises(openai.BadRequestError) as e:
        tiny.chat.completions.create(**request)
    error = e.value
    assert (error.status_code, error.type, error.param, error.code) == (
        400,
        "invalid_request_error",
        param,
        code,
    )
    assert words in error.message and error.body["message"] in error.message


def test_an_error_mid_stream_raises_api_error_from_the_iteration() -> None:
    enc = get_encoding()
    model = FailsMidStream([scripted(enc, "Hello there, friend")])
    with serving(Engine(model, enc=enc)) as url, client(url) as sdk:
        stream = sdk.chat.completions.create(model="tiny", messages=HELLO, temperature=0, stream=True)
        with pytest.raises(openai.APIError, match="internal error: RuntimeError") as e:
            list(stream)
    assert e.value.body["type"] == "server_error"


def test_what_sdk_users_send_is_served_or_refused_as_documented(tiny) -> None:
    """The SDK's own headers (x-stainless-*, a bearer key) and the fields clients fill in by habit
    are taken; the model name is not checked (the reply names the model served)."""
    reply = tiny.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Hi", "name": "ann"},
        ],
        max_tokens=2,
        temperature=0.7,
        top_p=1,
        n=1,
        presence_penalty=0,
        frequency_penalty=0,
        user="u-1",
        store=False,
        parallel_tool_calls=False,
        reasoning_effort="low",
        metadata={"k": "v"},
        modalities=["text"],
        extra_body={"top_k": 40},
    )
    assert reply.model == "tiny" and reply.choices[0].message.content is not None


def test_audio_output_is_a_400_not_a_reply_without_audio(tiny) -> None:
    """A review driving the server with the SDK: `modalities: ["text", "audio"]` came back 200 with
    text only, and the client's `message.audio.data` was an AttributeError on None."""
    with pytest.raises(openai.BadRequestError) as e:
        tiny.chat.completions.create(
            model="tiny",
            messages=HELLO,
            max_tokens=2,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
        )
    assert e.value.param == "modalities" and "audio" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        tiny.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2, audio={"voice": "alloy"})
    assert e.value.param == "audio"


def test_a_base_url_without_v1_is_told_where_the_api_is(tiny) -> None:
    """A review: base_url "http://127.0.0.1:8000" (no /v1, as many local servers take) got a bare
    "no route POST /chat/completions"; the 404 now says the base_url must end in /v1."""
    root = str(tiny.base_url).removesuffix("/").removesuffix("/v1")
    with openai.OpenAI(base_url=root, api_key="x", max_retries=0) as sdk:
        for call in (
            lambda: sdk.chat.completions.create(model="tiny", messages=HELLO),
            sdk.models.list,
            lambda: sdk.models.retrieve("tiny"),
        ):
            with pytest.raises(openai.NotFoundError) as e:
                call()
            assert "/v1" in e.value.message and "base_url" in e.value.message
            # OpenAI's own 404 for a URL it has no route for ("Invalid URL (POST /x)") is of type
            # invalid_request_error: there is no "not_found_error" among its error types
            assert e.value.type == "invalid_request_error" and e.value.code is None


def test_the_async_client_streams(tiny) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=str(tiny.base_url), api_key="x", max_retries=0) as sdk:
            kwargs = dict(model="tiny", messages=HELLO, max_tokens=8, temperature=0)
            whole = await sdk.chat.completions.create(**kwargs)
            stream = await sdk.chat.completions.create(**kwargs, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            return whole.choices[0].message.content, text

    whole, streamed = asyncio.run(run())
    assert streamed == whole and whole


def test_a_500_is_not_retried_by_the_sdk() -> None:
    """The SDK retries a 5xx twice by default (max_retries=2) unless the reply says
    `x-should-retry: false`. BrokenGPT fails once, then answers: had the SDK retried, the call would
    have succeeded on its second try and hidden the bug (and a real bug would run three times)."""
    engine = Engine(BrokenGPT([scripted(get_encoding(), "Fine.")]), enc=get_encoding())
    with serving(engine) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="x", timeout=60) as sdk:
        with pytest.raises(openai.InternalServerError, match="RuntimeError"):  # default max_retries: 2
            sdk.chat.completions.create(model="m", messages=HELLO, max_tokens=4, temperature=0)
        reply = sdk.chat.completions.create(model="m", messages=HELLO, max_tokens=4, temperature=0)
    assert reply.choices[0].message.content == "Fine."


def test_any_int64_seed_is_taken_and_repeats(tiny) -> None:
    """OpenAI takes any int64 seed; a negative one was a 400 ("seed must be in 0..2**63-1"), the
    sampler's range, though torch itself takes negative seeds. The same seed repeats its text."""
    kwargs = dict(model="tiny", messages=HELLO, max_tokens=8, temperature=1.0)
    for seed in (-1, -(2**63), -123456789):
        first = tiny.chat.completions.create(**kwargs, seed=seed).choices[0].message.content
        assert tiny.chat.completions.create(**kwargs, seed=seed).choices[0].message.content == first
    for seed in (-(2**63) - 1, 2**63):
        with pytest.raises(openai.BadRequestError) as e:
            tiny.chat.completions.create(**kwargs, seed=seed)
        assert e.value.param == "seed" and "64-bit" in e.value.message
