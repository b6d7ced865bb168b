"""Session 34's walkthrough as a user who chats with the model and serves it (chat, serve's two APIs).

Each test pins a mismatch found by following README.md, fixed in this session."""

from __future__ import annotations

import pytest

from pipeline.chatrequest import ChatRequest, RequestError
from pipeline.responsesapi import ResponsesRequest

CHAT_BODY = {"messages": [{"role": "user", "content": "hi"}]}
RESPONSES_BODY = {"input": "hi"}


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("max_tokens", 3, "max_output_tokens"),
        ("max_completion_tokens", 3, "max_output_tokens"),
        ("stop", ["lot"], "/v1/chat/completions"),
        ("messages", [{"role": "user", "content": "hi"}], "input"),
    ],
)
def test_a_chat_completions_field_sent_to_responses_is_a_400_naming_the_right_one(
    field: str, value: object, named: str
) -> None:
    """`{"input": "hi", "max_tokens": 3}` came back 200 with a 32-token reply (the default budget),
    and a `stop` was run past: the field was dropped unseen. OpenAI's API refuses a parameter it does
    not know; here the 400 also names the Responses API's own field."""
    with pytest.raises(RequestError) as e:
        ResponsesRequest.parse({**RESPONSES_BODY, field: value})
    assert e.value.param == field and e.value.code == "unknown_parameter"
    assert named in str(e.value)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("max_output_tokens", 3, "max_completion_tokens"),
        ("instructions", "You are a cheerful librarian.", "system"),
        ("input", "hi", "messages"),
    ],
)
def test_a_responses_field_sent_to_chat_completions_is_a_400_naming_the_right_one(
    field: str, value: object, named: str
) -> None:
    """`instructions` beside `messages` was dropped (a reply without the persona), and
    `max_output_tokens` 3 gave a 32-token reply."""
    with pytest.raises(RequestError) as e:
        ChatRequest.parse({**CHAT_BODY, field: value})
    assert e.value.param == field and e.value.code == "unknown_parameter"
    assert named in str(e.value)


@pytest.mark.parametrize("field", ["max_tokens", "stop", "messages"])
def test_a_null_foreign_field_is_taken_as_absent(field: str) -> None:
    """A client that sends every field, unset ones as null (as OpenAI's SDKs never do, but hand-made
    bodies do), asks for nothing: refusing it would break such clients for no reason."""
    assert ResponsesRequest.parse({**RESPONSES_BODY, field: None}).user_text == "hi"
    assert ChatRequest.parse({**CHAT_BODY, "instructions": None, "max_output_tokens": None}).user_text == "hi"


def test_each_apis_own_fields_still_parse() -> None:
    req = ResponsesRequest.parse({**RESPONSES_BODY, "max_output_tokens": 3, "instructions": "Be brief."})
    assert (req.max_tokens, req.context) == (3, "Be brief.")
    chat = ChatRequest.parse({**CHAT_BODY, "max_tokens": 3, "stop": ["x"]})
    assert (chat.max_tokens, chat.stop) == (3, ["x"])


def test_readme_states_serves_sampling_defaults_beside_chats() -> None:
    """README gave chat's defaults (0.8, 50, 0.95) and none for serve, whose defaults are OpenAI's:
    the README's curl example read wilder than the same message in `nanochatgpt chat`."""
    import argparse
    import re
    from pathlib import Path

    from pipeline import chat

    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split())
    req = ChatRequest.parse(CHAT_BODY)
    parser = argparse.ArgumentParser()
    chat.add_arguments(parser)
    ours = {a.option_strings[0]: a.default for a in parser._actions if a.option_strings}
    said = (
        f"whose defaults are OpenAI's (`temperature` {req.temperature:g}, `top_p` {req.top_p:g}, no `top_k`; "
        f"chat's are {ours['--temperature']:g}, {ours['--top-p']:g} and {ours['--top-k']:g},"
    )
    assert req.top_k is None and said in readme, said
    assert re.search(r"`max_completion_tokens`; default chat's, a quarter of `block_size`", readme)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory):
    from test_engine_support import tiny_gpt

    from pipeline.checkpoint import save_model

    folder = tmp_path_factory.mktemp("ckpt")
    save_model(tiny_gpt(), folder)
    return folder


def test_a_piped_message_that_is_not_utf8_is_refused_not_sent_as_replacement_characters(
    tiny_ckpt, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`printf 'caf\\xe9\\nhi\\n' | nanochatgpt chat` (a Latin-1 file, a UTF-8 locale) sent the model
    `caf\\ufffd` and replied, silently, where the same bytes as `--context` or `--stop` are refused
    and serve refuses a lone surrogate: the message is refused in one line naming the byte, and
    the chat goes on."""
    import io
    import sys

    import pipeline.chat
    from pipeline import cli

    sent: list[str] = []
    real = pipeline.chat.ChatSession.stream

    def spy(self, text, results=None):
        sent.append(text)
        return real(self, text, results)

    monkeypatch.setattr(pipeline.chat.ChatSession, "stream", spy)
    stdin = io.TextIOWrapper(io.BytesIO(b"caf\xe9\nhi\n"), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdin", stdin)
    argv = ["chat", "--ckpt", str(tiny_ckpt), "--device", "cpu", "--max-new-tokens", "2", "--threads", "1"]
    assert cli.main(argv) == 0
    assert sent == ["hi"]
    assert "chat: the message is not UTF-8 text: byte 0xE9 at character 4" in capsys.readouterr().err


def test_ctrl_c_while_serve_loads_the_model_quits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in the seconds `nanochatgpt serve` spends importing torch and loading the model printed
    a KeyboardInterrupt traceback of whatever was being imported (the process died of SIGINT),
    where chat quits there with exit status 130, as README says of chat."""
    import argparse

    from pipeline import serve

    def interrupted(args, prog):
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "load_engine", interrupted)
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    try:
        code = serve.run(parser.parse_args([]))
    except KeyboardInterrupt:  # unfixed, it would end the whole test run, not fail this test
        pytest.fail("Ctrl-C while serve loads escaped as KeyboardInterrupt (a traceback)")
    assert code == 130
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["chat", "serve"])
def test_ctrl_c_while_the_cli_starts_quits_130_without_a_traceback(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in the half second before the command runs (the CLI importing the command's module,
    checking that torch can load) still printed a traceback, for chat as for serve (seen at 0.6 s
    after `nanochatgpt serve` started): it quits as a Ctrl-C while the model loads does."""
    from pipeline import cli

    def interrupted(*modules: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "unloadable_package", interrupted)
    try:
        code = cli.main([command])
    except KeyboardInterrupt:  # unfixed, it would end the whole test run, not fail this test
        pytest.fail("Ctrl-C while the CLI starts escaped as KeyboardInterrupt (a traceback)")
    assert code == 130 and "Traceback" not in capsys.readouterr().err
