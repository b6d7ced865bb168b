"""Session 37's red-team of the inference side (`chat`, `serve`): hostile input found there, each
fixed, each tested here. No model is trained: the tiny scripted engine of test_chat, or the request
parsing alone."""

from __future__ import annotations

import argparse
import io

import pytest
from test_chat import scripted_engine

from pipeline.chat import chat_loop
from pipeline.chatrequest import ChatRequest, RequestError
from pipeline.chatsession import ChatSession, clean_text
from pipeline.responsesapi import ResponsesRequest
from pipeline.serve import DEFAULT_HOST, add_arguments
from pipeline.tokenizer import get_encoding

LINE_LIMIT = 1 << 20  # pipeline.chat.MAX_MESSAGE_CHARS, spelled here so the test runs without it


class _Stdin(io.StringIO):
    """A piped stdin that fails the test when one read takes more than a message's worth at once."""

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        line = super().readline(size)
        assert len(line) <= LINE_LIMIT + 1, f"one readline took {len(line)} characters"
        return line


def test_a_line_longer_than_any_message_is_skipped_in_bounded_reads_and_the_chat_goes_on() -> None:
    """`chat < /dev/zero` (or a binary file, a log without newlines) was read whole by readline():
    memory grew with the line, without bound. Now a line past MAX_MESSAGE_CHARS is read in pieces of
    that size, dropped, and said to be skipped; the next line is answered."""
    session = ChatSession(scripted_engine(get_encoding()), temperature=0.0)
    out, err = io.StringIO(), io.StringIO()
    stdin = _Stdin("x" * (3 * LINE_LIMIT) + "\nhello\n")
    assert chat_loop(session, stdin, out, err) == 0
    assert out.getvalue() == "Sure thing\n"
    assert "skipped" in err.getvalue() and str(LINE_LIMIT) in err.getvalue()
    assert [m["content"] for m in session.history if m["role"] == "human"] == ["hello"]


def test_a_line_of_exactly_the_limit_is_a_message() -> None:
    """The bound refuses only what is past it: a line of MAX_MESSAGE_CHARS characters (and its
    newline) is read as a message (here one too long for the window, which says so in its words)."""
    session = ChatSession(scripted_engine(get_encoding()), temperature=0.0)
    out, err = io.StringIO(), io.StringIO()
    assert chat_loop(session, _Stdin("y" * LINE_LIMIT + "\nhi\n"), out, err) == 0
    assert "skipped" not in err.getvalue() and "message is" in err.getvalue()
    assert out.getvalue() == "Sure thing\n"


@pytest.mark.parametrize("host", ["", "  "])
def test_serve_refuses_a_blank_host_that_would_listen_on_every_interface(host: str, capsys) -> None:
    """socket's "" is INADDR_ANY: `serve --host "$HOST"` with HOST unset listened on every interface
    (0.0.0.0, any Host header taken), where leaving --host out keeps it on 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="serve")
    add_arguments(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--host", host])
    assert exit_.value.code == 2
    assert "every interface" in capsys.readouterr().err
    assert parser.parse_args([]).host == DEFAULT_HOST == "127.0.0.1"


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "body, param",
    [
        ({**CHAT, "model": ["gpt-4o"]}, "model"),
        ({**CHAT, "model": 5}, "model"),
        ({**CHAT, "user": {"id": 1}}, "user"),
    ],
)
def test_chat_completions_refuse_a_model_or_user_that_is_no_string(body: dict, param: str) -> None:
    """Ignored here, they were taken with a 200 whatever their type; OpenAI refuses them (400
    invalid_type), so a client's bug passed here and failed there."""
    with pytest.raises(RequestError) as e:
        ChatRequest.parse(body)
    assert (e.value.param, e.value.code) == (param, "invalid_type")
    assert str(e.value) == f"`{param}` must be a string"


def test_responses_refuse_a_model_that_is_no_string_and_take_a_string_or_null() -> None:
    with pytest.raises(RequestError) as e:
        ResponsesRequest.parse({"input": "hi", "model": {"name": "x"}})
    assert (e.value.param, e.value.code) == ("model", "invalid_type")
    for model in ("nanochatgpt", None):
        assert ResponsesRequest.parse({"input": "hi", "model": model}).user_text == "hi"
        assert ChatRequest.parse({**CHAT, "model": model, "user": model}).user_text == "hi"


def test_a_persona_file_past_the_limit_is_refused_without_reading_it_whole(tmp_path, monkeypatch) -> None:
    """`--context-file` was read whole (read_text): /dev/zero or a stray multi-gigabyte log filled
    the memory before anything was said. Now at most MAX_PERSONA_BYTES (+1) are read, and a longer
    file is one error naming it; a file of the limit reads as before, its byte-order mark dropped."""
    from pipeline import chat

    limit = 1 << 20  # chat.MAX_PERSONA_BYTES, spelled here so the test runs without it
    big = tmp_path / "persona.txt"
    big.write_bytes(b"a" * (limit + 1))
    reads: list[int] = []
    real_open = type(big).open

    def recording_open(self, *args, **kwargs):
        f = real_open(self, *args, **kwargs)
        real_read = f.read
        f.read = lambda size=-1: reads.append(size) or real_read(size)  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(type(big), "open", recording_open)
    args = argparse.Namespace(context=None, context_file=big)
    with pytest.raises(ValueError, match=rf"persona\.txt: it is over {limit} bytes"):
        chat._read_context(args)
    assert reads == [limit + 1]

    fits = tmp_path / "fits.txt"
    fits.write_bytes(b"\xef\xbb\xbf" + b" Be kind.\r\n" + b"b" * (limit - 14))
    persona = clean_text(chat._read_context(argparse.Namespace(context=None, context_file=fits)))
    assert persona.startswith("Be kind.\nbbb") and len(persona) == limit - 5
