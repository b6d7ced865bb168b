"""The exported tokenizer's chat template (pipeline.chattemplate.CHAT_TEMPLATE) gives the server's ids.

Whoever loads model/hf with transformers and calls `apply_chat_template` must feed the model what
`nanochatgpt serve` feeds it for the same OpenAI-style messages, or the model sees a format it was
not trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_engine_support import tiny_gpt

from pipeline import hfexport
from pipeline.chatapi import ChatService
from pipeline.chatrequest import ChatRequest, RequestError
from pipeline.chattemplate import CHAT_TEMPLATE, CONTROL_CODES, INVISIBLE_RANGES
from pipeline.engine import Engine
from pipeline.responsesapi import ResponsesRequest
from pipeline.tokenizer import END_OF_TURN_ID, get_encoding

transformers = pytest.importorskip("transformers")

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [
        {"role": "system", "content": "You are a cheerful librarian."},
        {"role": "user", "content": "Hi! What do you do?"},
        {"role": "assistant", "content": "I lend  books."},
        {"role": "user", "content": " ok\n\nbye "},
    ],
    [  # two persona messages, and consecutive messages of one role (one turn each)
        {"role": "developer", "content": "Be brief. "},
        {"role": "system", "content": "  Speak like a pirate."},
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second\n"},
        {"role": "assistant", "content": "Arr."},
        {"role": "user", "content": "Typed markers stay text: <bot> <endOfText>"},
    ],
    [  # whitespace at the edges of a merged turn goes, inside it stays
        {"role": "user", "content": "   "},
        {"role": "user", "content": " x  "},
        {"role": "user", "content": " y"},
        {"role": "assistant", "content": "z\n"},
        {"role": "user", "content": "w"},
    ],
    [  # OpenAI's list of text parts, in a persona and a turn (joined by newlines)
        {"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "kind."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
    ],
    [  # as OpenAI takes them (a review): an assistant greeting first (left out, as training left out
        # bot rows before the first human turn) and a system message mid-way (the persona, as training)
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What do you do?"},
    ],
    [  # Windows and old-Mac line ends read as LF (as clean_text does), empty messages, unicode
        {"role": "system", "content": "x\r\ny"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "caf\u00e9 \u2615\r\u65e5\u672c"},
        {"role": "user", "content": "a\r\n\r\nb\rc"},
    ],
    [  # NFD text and canonical singletons read as NFC, as the server and training read them
        {"role": "system", "content": "Caf\u0065\u0301 \u212b"},
        {"role": "user", "content": "e\u0301"},
        {"role": "assistant", "content": "A\u030a \u0f73"},
        {"role": "user", "content": "\u1e0b\u0323 \u2126"},
    ],
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "model"
    model = tiny_gpt()
    hfexport.export_hf(model, out)
    exported = json.loads((Path(out) / "tokenizer_config.json").read_text())["chat_template"]
    assert exported == CHAT_TEMPLATE
    return transformers.AutoTokenizer.from_pretrained(out)


@pytest.fixture(scope="module")
def service():
    return ChatService(Engine(tiny_gpt(), enc=get_encoding()))


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_apply_chat_template_gives_the_servers_prompt(tokenizer, service, messages):
    req = ChatRequest.parse({"messages": messages})
    ours = service.session(req).prompt_ids(req.user_text)
    theirs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    # One difference is inherent to Hugging Face tokenizers: marker text inside a message becomes
    # the marker there (documented in the model card); ours keeps it text.
    if "<bot>" in messages[-1]["content"]:
        assert len(theirs["input_ids"]) < len(ours)
        cut = messages[:-1] + [{"role": "user", "content": "Typed markers stay text:"}]
        req = ChatRequest.parse({"messages": cut})
        ours = service.session(req).prompt_ids(req.user_text)
        theirs = tokenizer.apply_chat_template(
            cut, add_generation_prompt=True, tokenize=True, return_dict=True
        )
    assert theirs["input_ids"] == ours


def test_chat_template_refuses_roles_the_model_does_not_know(tokenizer):
    with pytest.raises(Exception, match="not tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_the_model_cards_usage_snippet_runs(tokenizer, tmp_path, capsys):
    """The card's transformers example is code people paste: it must run against an export."""
    from pipeline import modelcard

    out = tmp_path / "hf"
    hfexport.export_hf(tiny_gpt(), out)
    facts = modelcard.ModelFacts(2, 2, 32, 128, 1, "full", "scratch", 1, 1, None, None)
    card = modelcard.model_card(facts, [])
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"model/hf"' in snippet
    exec(compile(snippet.replace('"model/hf"', repr(str(out))), "model card", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out.endswith("\n")  # it ran to its final print


@pytest.mark.parametrize(
    ("messages", "rule"),
    [
        ([{"role": "user", "content": None}], "string or a list of text parts"),
        ([{"role": "user"}], "string or a list of text parts"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "only text parts",
        ),
        ([{"role": "system", "content": 3}, {"role": "user", "content": "a"}], "string or a list"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message must be"),
        ([{"role": "system", "content": "S"}], "last message must be"),
        ([], "empty conversation|last message must be"),  # transformers refuses it before the template
    ],
)
def test_the_template_refuses_what_the_server_refuses(tokenizer, service, messages, rule):
    """A prompt the server would answer 400 to is no prompt: rendering it anyway (a list's repr, the
    text "None", a persona moved to the front, a <bot> turn after <bot>) feeds the model a format it
    never saw."""
    from pipeline.chatrequest import RequestError

    with pytest.raises(RequestError):
        service.session(ChatRequest.parse({"messages": messages}))
    with pytest.raises(Exception, match=rule):
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_a_whole_conversation_renders_as_training_text(tokenizer):
    """Without a generation prompt, a conversation that ends with the bot is the training format
    (pipeline.tokenizer.render): what fine-tuning with transformers would feed the model."""
    from pipeline.tokenizer import render

    messages = [
        {"role": "system", "content": " Be brief."},
        {"role": "user", "content": "hi\r\n"},
        {"role": "assistant", "content": "hello"},
    ]
    theirs = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    ids, _ = render(
        [{"role": "human", "content": "hi"}, {"role": "bot", "content": "hello"}],
        "Be brief.",
        enc=get_encoding(),
    )
    assert theirs == ids


# OpenAI-style records as a training source stores them (one each): the conversation so far,
# then the assistant's reply that training learns.
TRAINING_RECORDS = [
    [  # a list of text parts (the training adapters join parts by newlines)
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "how are you?"}],
        },
        {"role": "assistant", "content": "Fine."},
    ],
    [  # consecutive messages of one role, each with edge whitespace, one of them empty
        {"role": "user", "content": "Hi there. "},
        {"role": "user", "content": "  "},
        {"role": "user", "content": " How are you?\r\n"},
        {"role": "assistant", "content": "Fine."},
        {"role": "user", "content": " and you?"},
        {"role": "assistant", "content": "Same."},
    ],
    [  # an empty message of the other role (a reply that was only <endOfText>, sent back) opens no turn
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "there"},
        {"role": "assistant", "content": "Yo"},
    ],
    [  # an empty first message: the conversation starts at the first one with text
        {"role": "assistant", "content": " "},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
    ],
    [  # several persona messages, one of them empty
        {"role": "system", "content": "You are Ann. "},
        {"role": "developer", "content": ""},
        {
            "role": "system",
            "content": [{"type": "text", "text": " Be brief."}, {"type": "text", "text": "Be kind."}],
        },
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ],
]


@pytest.mark.parametrize("record", TRAINING_RECORDS)
def test_served_and_templated_prompts_are_the_training_text_up_to_the_reply(
    tokenizer, service, record, tmp_path: Path
):
    """What the model is asked is what it was trained on: the record through the real adapter and
    normalize gives the training ids; the server's and the template's prompt for the messages before
    the last reply are exactly those ids up to that reply's text."""
    from pipeline.sources.adapters.openai_messages import read_file
    from pipeline.sources.normalize import normalize_rows
    from pipeline.sources.rows import RawRows
    from pipeline.tokenizer import render

    (tmp_path / "x.jsonl").write_text(json.dumps({"id": "c1", "messages": record}) + "\n")
    rows = RawRows("demo", "CC0-1.0", True)
    read_file(tmp_path / "x.jsonl", "x.jsonl", rows)
    turns = normalize_rows(rows.frame()).turns.sort("turn")
    trained, _ = render(
        [{"role": r, "content": t} for r, t in zip(turns["role"], turns["text"], strict=True)],
        turns["context"][0],
    )
    asked = record[:-1]
    req = ChatRequest.parse({"messages": asked})
    served = service.session(req).prompt_ids(req.user_text)
    templated = tokenizer.apply_chat_template(
        asked, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    reply = get_encoding().encode_ordinary(turns["text"][-1])
    assert trained[: len(served)] == served
    assert trained[len(served) : len(served) + len(reply)] == reply  # what follows is the reply itself
    assert templated["input_ids"] == served


@pytest.mark.parametrize("assistant", [{"role": "assistant", "content": None}, {"role": "assistant"}])
def test_an_assistant_message_without_content_is_left_out_by_both(tokenizer, service, assistant):
    """OpenAI allows `"content": null` (or none) on an assistant message: the server leaves it out
    as it leaves out "", and the template must render the same prompt."""
    messages = [{"role": "user", "content": "Hi"}, assistant, {"role": "user", "content": "there"}]
    req = ChatRequest.parse({"messages": messages})
    ours = service.session(req).prompt_ids(req.user_text)
    empty = [*messages[:1], {"role": "assistant", "content": ""}, *messages[2:]]
    req = ChatRequest.parse({"messages": empty})
    assert ours == service.session(req).prompt_ids(req.user_text)
    theirs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    assert theirs["input_ids"] == ours


def test_an_assistant_tool_call_is_refused_by_the_template_as_by_the_server(tokenizer):
    from jinja2.exceptions import TemplateError

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    with pytest.raises(TemplateError, match="cannot call tools"):
        tokenizer.apply_chat_template(messages, tokenize=False)
    with pytest.raises(RequestError, match="tool"):
        ChatRequest.parse({"messages": messages})


def _trained(record: list[dict], tmp_path: Path) -> tuple[list[int], str] | None:
    """The training ids of an OpenAI-style record (the real adapter, normalize and render) and its
    last turn's text; None where normalize keeps no turn, or quarantines any row but an empty one
    (or a bot row before the first user turn), which it leaves out as serve does."""
    from pipeline.sources.adapters.openai_messages import read_file
    from pipeline.sources.normalize import normalize_rows
    from pipeline.sources.rows import RawRows
    from pipeline.tokenizer import render

    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"id": "c1", "messages": record}) + "\n")
    rows = RawRows("demo", "CC0-1.0", True)
    read_file(path, "x.jsonl", rows)
    result = normalize_rows(rows.frame())
    if (
        result.turns.is_empty()
        or not result.quarantine["check"].is_in(["text_present", "first_turn_human"]).all()
    ):
        return None
    turns = result.turns.sort("turn")
    ids, _ = render(
        [{"role": r, "content": t} for r, t in zip(turns["role"], turns["text"], strict=True)],
        turns["context"][0],
    )
    return ids, turns["text"][-1]


@pytest.mark.parametrize(
    "persona",
    [["You are Ann.", "\ufe0f"], ["\u200b", "You are Ann."], ["Be brief.", " \u3164 ", "Be kind."]],
)
def test_a_system_message_of_invisible_characters_adds_no_persona_line_in_training(
    service, persona, tmp_path: Path
):
    """Serve leaves out a system message of invisible characters alone (as an empty one); training
    took it into the context as a line of its own ("You are Ann.\\n\\ufe0f"), so the server asked
    with another persona than the model learned for those messages. (The template leaves it out too:
    test_the_template_leaves_out_a_message_of_invisible_characters_alone.)"""
    record = [
        *({"role": "system", "content": p} for p in persona),
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
    ]
    trained = _trained(record, tmp_path)
    assert trained is not None
    req = ChatRequest.parse({"messages": record[:-1]})
    assert trained[0][: -len(get_encoding().encode_ordinary("Yo")) - 1] == service.session(req).prompt_ids(
        req.user_text
    )


# Tricky text for the property below: whitespace of every kind, CR/CRLF, invisible characters, NFD
# pairs and canonical singletons (U+212B, U+0F73), combining marks, emoji, and long text. Marker
# look-alikes are left out: inside a message a Hugging Face tokenizer reads them as the markers (the
# documented difference, tested above with the model card's recipe).
_PIECES = [
    *("", " ", "  ", "\n", "\t", "\r", "\r\n", "\u00a0", "\u2000", "\u3000", "\u2028", "\u1680", "\u202f"),
    *("\u200b", "\u3164", "\ufe0f", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"),
    *("\u0301", "e\u0301", "\u00e9", "\u212b", "A\u030a", "\u0345", "\u0f73", "\u2800", "\U0001f600"),
    *("a", "Hi", "x y", "'s", "caf\u00e9", "\u65e5\u672c", "word " * 1500),
    *(
        "\x1b",
        "\x00",
        "\x85",
        "\x0b",
        "\x0c",
        "\x1f",
        "\x7f",
        "\x9b",
    ),  # controls; VT, FF, NEL are White_Space
]


def _texts():
    from hypothesis import strategies as st

    plain = st.text(st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\t\n\r"), max_size=8)
    text = st.lists(st.sampled_from(_PIECES), max_size=5).map("".join) | plain
    parts = st.lists(text, max_size=3).map(lambda ts: [{"type": "text", "text": t} for t in ts])
    return text | parts


@pytest.fixture(scope="module")
def roomy_service():
    """A server whose context window holds every generated conversation whole (no turn dropped)."""
    from pipeline.model import GPT, GPTConfig

    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=16384)).eval()
    return ChatService(Engine(model, enc=get_encoding()))


def test_training_serve_and_template_agree_on_random_conversations(
    tokenizer, roomy_service, tmp_path_factory
):
    """Property: for any OpenAI-style record that training keeps whole, the server's prompt for the
    messages before the reply is the training ids up to the reply's text, and the template's prompt
    is the server's; a message the server refuses for a control character, training quarantines and
    the template refuses. It found a system message of invisible characters alone taken into the
    training persona as a line, and NFD text that the template did not normalize."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st
    from jinja2.exceptions import TemplateError

    enc = get_encoding()
    message = st.builds(
        lambda role, content: {"role": role, "content": content},
        st.sampled_from(["system", "developer", "user", "assistant"]),
        _texts(),
    )

    # The examples it found, kept (the derandomized search need not meet them again).
    @example([{"role": "system", "content": "Be brief."}, {"role": "system", "content": "\ufe0f"}], "Hi")
    @example([{"role": "developer", "content": "\u212b"}], "\u0301\u2000\u200b")
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(message, max_size=6), _texts())
    def check(history: list[dict], question) -> None:
        asked = [*history, {"role": "user", "content": question or "q"}]
        record = [*asked, {"role": "assistant", "content": "Fine."}]
        trained = _trained(record, tmp_path_factory.mktemp("rec"))
        try:
            req = ChatRequest.parse({"messages": asked, "max_tokens": 1})
        except RequestError as e:  # a last user message of nothing visible: training has no such turn
            if "control character" in str(e):
                assert trained is None
                with pytest.raises(TemplateError, match="control character"):
                    tokenizer.apply_chat_template(asked, add_generation_prompt=True, tokenize=False)
            return
        served = roomy_service.session(req).prompt_ids(req.user_text)
        if trained is not None:
            ids, reply = trained
            assert ids[: len(served)] == served
            assert ids[len(served) :] == [*enc.encode_ordinary(reply), END_OF_TURN_ID]
        templated = tokenizer.apply_chat_template(
            asked, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        assert templated["input_ids"] == served

    check()


@pytest.mark.parametrize(
    "text", ["a\x1b[31mb", "\x1fhi\x1f x", "\x00", "x\x7fy", "hi\x85there", "\x0b\x07", " \u200b\x9b"]
)
@pytest.mark.parametrize("role", ["system", "developer", "user"])
def test_a_control_character_is_refused_as_training_quarantines_it(
    tokenizer, service, text, role, tmp_path: Path
):
    """Training quarantines a message holding a control character (C0 but tab and newline, DEL,
    C1) once stripped, and the conversation from it on: the model never read one. Serve took
    "a\\x1bb" as text (a 200) and the template rendered it: now a 400 naming the message, the
    template's error, and the chat CLI's (a ValueError it prints)."""
    from jinja2.exceptions import TemplateError

    messages = [
        {"role": "user", "content": "Hi"},
        {"role": role, "content": text},
        {"role": "user", "content": "q"},
    ]
    assert _trained([*messages, {"role": "assistant", "content": "Yo"}], tmp_path) is None
    with pytest.raises(RequestError, match=r"messages\[1\]\.content: text holds a control character") as e:
        ChatRequest.parse({"messages": messages})
    assert e.value.param == "messages[1].content"
    with pytest.raises(RequestError, match=r"input\[1\]\.content: text holds a control character"):
        ResponsesRequest.parse({"input": messages})
    with pytest.raises(TemplateError, match="control character"):
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    with pytest.raises(ValueError, match="control character"):
        service.session(ChatRequest.parse({"messages": [{"role": "user", "content": "Hi"}]})).prompt_ids(text)


def _served_and_templated_after_a_reply(tokenizer, service, reply: str) -> tuple[list[int], list[int]]:
    """The prompt ids of Hi / `reply` / q from serve and from the exported template."""
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "q"},
    ]
    req = ChatRequest.parse({"messages": messages})
    served = service.session(req).prompt_ids(req.user_text)
    templated = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return served, templated["input_ids"]


def test_an_assistant_message_keeps_its_control_characters_as_chat_keeps_a_reply(tokenizer, service):
    """The model writes control characters (the evaluate transcripts escape them) and chat keeps its
    reply as written: a client sending that reply back gets the same prompt from serve and the
    template, not a 400 it cannot mend."""
    reply = "x\x1b[0my\x07"
    served, templated = _served_and_templated_after_a_reply(tokenizer, service, reply)
    assert templated == served
    chat = service.session(ChatRequest.parse({"messages": [{"role": "user", "content": "Hi"}]}))
    chat.add_turn("human", "Hi")
    chat.add_turn("bot", reply, generated=True)
    assert chat.prompt_ids("q") == served


@pytest.mark.parametrize("text", ["hi\x85", "\x0chi\x0b", "\x85 hi\tthere\n\x0c"])
def test_whitespace_control_characters_at_the_edges_are_stripped_as_in_training(
    tokenizer, service, text, tmp_path: Path
):
    """VT, FF and NEL are Unicode White_Space: normalize strips them from a message's edges (and
    keeps the row), so serve and the template take the message too, as the same prompt."""
    messages = [{"role": "user", "content": text}]
    trained = _trained([*messages, {"role": "assistant", "content": "Yo"}], tmp_path)
    assert trained is not None
    req = ChatRequest.parse({"messages": messages})
    served = service.session(req).prompt_ids(req.user_text)
    assert trained[0][: len(served)] == served
    templated = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    assert templated["input_ids"] == served


@pytest.mark.parametrize(
    "blank",
    [
        *("\u3164", "\u200b", " \ufeff\u200d ", "\U000e0001\u2060", "\u00ad\n\ufe0f", "\u115f\u1160"),
        "\u200b \u2060" * 300,  # longer than the walk's chunk (chattemplate._WALK_CHUNK)
    ],
)
@pytest.mark.parametrize("role", ["system", "user", "assistant"])
def test_the_template_leaves_out_a_message_of_invisible_characters_alone(tokenizer, service, blank, role):
    """The server (and normalize) leave out a message of whitespace and invisible characters alone
    (pipeline.invisible); the template took it as text (a <bot> turn of U+3164, a persona line
    of U+200B), a prompt the server never builds."""
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": role, "content": blank},
        {"role": "user", "content": "there \u200b"},
    ]
    req = ChatRequest.parse({"messages": messages})
    served = service.session(req).prompt_ids(req.user_text)
    templated = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    assert templated["input_ids"] == served


def test_the_templates_invisible_ranges_are_pipeline_invisibles():
    """The template's ranges (Jinja has no Unicode properties) are INVISIBLE_CHARS, code point by
    code point (a `regex` upgrade with a newer Unicode would fail here, not drift)."""
    import regex

    from pipeline.invisible import INVISIBLE_CHARS

    invisible = regex.compile(INVISIBLE_CHARS)
    expected = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and invisible.match(chr(c))]
    assert [c for lo, hi in INVISIBLE_RANGES for c in range(lo, hi + 1)] == expected


def test_the_templates_control_characters_are_the_schemas():
    import re

    from pipeline.terminal import CONTROL_CHARS

    expected = [c for c in range(0x110000) if re.fullmatch(CONTROL_CHARS, chr(c))]
    assert list(CONTROL_CODES) == expected


@pytest.mark.parametrize("reply", ["\u200b\x1c\u200b", "\ufeff\x1f\ufeff", "\u3164\x1d \u3164"])
def test_an_assistant_message_of_invisible_characters_and_a_separator_is_kept_by_both(
    tokenizer, service, reply
):
    """U+001C..U+001F are whitespace to str.strip (Jinja's trim) but not Unicode White_Space, so
    invisible.blank_text keeps such an assistant message (a reply sent back keeps its control
    characters) where the template's walk took the separator for whitespace and left the turn out."""
    served, templated = _served_and_templated_after_a_reply(tokenizer, service, reply)
    assert templated == served


# plain text, a BOM or an RTL mark first, and its first visible character past the walk's first chunk
@pytest.mark.parametrize("start", ["", "\ufeff", "\u200f", "\u200b\n" * 300])
def test_the_template_renders_a_long_message_without_walking_it(start):
    """The template walked every character of every message (a loop's `if` filter does not stop
    the loop): a 100 KB message took over a second where it took a millisecond, for text that
    needs no walk (it does not start with an invisible character) or only up to its first visible
    one. Counted, not timed: the template is rendered as transformers renders it (a sandboxed Jinja
    environment) with a `trim` (the last filter of a cleaned text) whose result counts the
    characters a loop takes from it, or from a slice of it."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    walked = [0]

    class Counted(str):
        def __iter__(self):
            for ch in str.__iter__(self):
                walked[0] += 1
                yield ch

        def __getitem__(self, key):
            return Counted(str.__getitem__(self, key))

    def raise_exception(message: str) -> None:
        raise AssertionError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["trim"] = lambda value: Counted(value.strip())
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(CHAT_TEMPLATE)
    text = start + "word " * 80_000
    messages = [{"role": "system", "content": text}, {"role": "user", "content": text}]
    rendered = template.render(messages=messages, add_generation_prompt=True)
    assert rendered.count("word") == 160_000
    # Each text is cleaned twice (a message, then the persona or turn it makes), and each walk
    # takes at most the opening before the first visible character and the rest of its chunk.
    assert walked[0] <= 4 * (len(start) + 256), walked[0]
