"""OpenAI's Responses API (POST /v1/responses), stateless, on the chat completions machinery.

A request maps onto a ChatRequest (pipeline/chatrequest.py), so it is rendered, bounded, queued and
generated as a chat completion is: `input` is a string (one user message) or a list of message
items (role user, assistant, system or developer; content a string or input_text/output_text
parts); `instructions` and system/developer messages become the persona; the reply is generated
after a final user message. Taken: max_output_tokens, temperature, top_p, stream, metadata
(echoed), store (nothing is ever kept, whatever it says), truncation ("auto", the default here:
the oldest turns are dropped to fit, as in chat completions; "disabled": a 400 instead), user,
safety_identifier, and the extensions top_k and seed. Refused with a 400 naming the field: what
needs a stored response (previous_response_id, conversation, prompt, background), tools, a text
format other than text, non-text input (images, files, audio), log-probabilities, any `include`
but reasoning.encrypted_content (there is no reasoning to include), and (as chat completions)
`stream_options` without `stream: true`.

The reply is a `response` object with one assistant message of one output_text part, status
"completed", or "incomplete" (incomplete_details.reason "max_output_tokens") when the budget ran
out; streamed, it is OpenAI's named server-sent events from response.created to
response.completed (or response.incomplete), each with the next sequence_number. A failure mid-
stream ends it with an `error` event and response.failed.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.chatapi import ChatService, Event, Reply, ended_on_failure, failure_message
from pipeline.chatrequest import (
    INVALID_VALUE,
    ROLES,
    ChatRequest,
    Conversation,
    FieldNames,
    RequestError,
    check_strings,
    content_text,
    flag,
    refuse_other_apis_fields,
    refuse_unsupported,
    request_object,
)

if TYPE_CHECKING:
    from pipeline.chatsession import ChatSession

TEXT_PARTS = frozenset({"input_text", "output_text"})  # a message's text, said or replied
INCLUDABLE = frozenset({"reasoning.encrypted_content"})  # asked for by stateless clients; none exists here
VERBOSITY = ("low", "medium", "high")
TRUNCATION = ("auto", "disabled")
# OpenAI's limits on metadata (a response echoes it, and the SDK reads it as str -> str)
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512

# What needs a response or prompt stored on the server: this one keeps nothing.
NEEDS_STORAGE = {
    "previous_response_id": "this server keeps no responses: send the whole conversation in `input`",
    "conversation": "this server keeps no conversations: send the whole conversation in `input`",
    "prompt": "stored prompts are not supported: send `instructions` and `input`",
    "context_management": "server-side compaction is not supported: this server keeps no context",
}

# Chat completions' fields, sent here: what the Responses API calls them (RESPONSES_ONLY_FIELDS
# is the other way). Ignored, `max_tokens` 3 came back with a 32-token reply and a `stop` was run past.
CHAT_ONLY_FIELDS = {
    "max_tokens": "the reply budget here is `max_output_tokens`",
    "max_completion_tokens": "the reply budget here is `max_output_tokens`",
    "stop": "the Responses API has no stop strings: send the request to /v1/chat/completions",
    "messages": "the conversation here is `input` (a string, or message items)",
}


@dataclass
class ResponsesRequest(ChatRequest):
    """A validated /v1/responses body: the ChatRequest it generates as, and what the response
    object repeats of it."""

    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: Any) -> ResponsesRequest:
        body = request_object(body)
        _refuse_unsupported(body)
        conversation = Conversation()
        instructions = _string(body, "instructions")
        if instructions is not None:
            conversation.add("system", instructions, "instructions")
        _add_input(conversation, body.get("input"))
        names = FieldNames(
            conversation="input",
            persona="instructions" if instructions else "input",
            persona_text="the instructions and system messages",
            budget="max_output_tokens",
        )
        req = cls.build(body, conversation.fields("input"), ("max_output_tokens",), names)
        req.check_values()
        truncation = body.get("truncation")
        if truncation is not None and truncation not in TRUNCATION:
            raise RequestError(
                f'`truncation` must be "auto" or "disabled", got {_quoted(truncation)}',
                "truncation",
                code=INVALID_VALUE,
            )
        req.keep_all_turns = truncation == "disabled"
        req.settings = {
            "instructions": instructions,
            "max_output_tokens": req.max_tokens,
            "metadata": _metadata(body),
            "parallel_tool_calls": flag(body, "parallel_tool_calls", True),
            "safety_identifier": _string(body, "safety_identifier"),
            "temperature": req.temperature,
            "text": {"format": {"type": "text"}, "verbosity": _verbosity(body)},
            "tool_choice": body.get("tool_choice") or "auto",  # none or auto (refuse_unsupported)
            "top_p": req.top_p,
            "truncation": truncation or "auto",
            "user": _string(body, "user"),
        }
        check_strings(body, ("model",))  # `user` is _string's, above
        req.refuse_stray_stream_options(body)  # last, as chat's: a body's first mistake stays the one named
        refuse_other_apis_fields(body, CHAT_ONLY_FIELDS, "/v1/chat/completions", "/v1/responses")
        return req


def _quoted(value: Any) -> str:
    """A client's value in an error, cut to 60 characters: a 1 MB string must not come back whole."""
    return repr(value)[:60]


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """A 400 for each field that asks what this server cannot do (ignored, it would come back 200
    as something else: a reply without the stored context, tool call or JSON the client counts on)."""
    refuse_unsupported(body)  # tools, tool_choice, top_logprobs
    for key, why in NEEDS_STORAGE.items():
        if body.get(key):
            raise RequestError(f"`{key}` is not supported: {why}", key)
    if flag(body, "background", False):
        raise RequestError(
            "`background` is not supported: this server keeps no response to poll", "background"
        )
    flag(body, "store", True)  # taken either way: nothing is kept (see the module docstring)
    include = body.get("include")
    if include is not None and not isinstance(include, list):
        raise RequestError("`include` must be a list", "include")
    for item in include or []:
        if not isinstance(item, str) or item not in INCLUDABLE:
            raise RequestError(
                f"`include` {_quoted(item)} is not supported (this server has no tools, log-probabilities or "
                "image inputs)",
                "include",
            )
    text = body.get("text")
    if text is not None and not isinstance(text, dict):
        raise RequestError("`text` must be an object", "text")
    fmt = (text or {}).get("format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise RequestError(
            'only `text.format` {"type": "text"} is supported (no JSON schema or JSON mode)', "text.format"
        )


def _add_input(conversation: Conversation, items: Any) -> None:
    """`input`'s messages into `conversation`: a string is one user message."""
    if isinstance(items, str):
        conversation.add("user", items, "input")
        return
    if not isinstance(items, list) or not items:
        raise RequestError("`input` must be a string or a non-empty list of message items", "input")
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise RequestError(f"{where} must be a message object", where)
        kind = item.get("type", "message")
        if kind != "message":
            raise RequestError(
                f"{where}.type {_quoted(kind)} is not supported: only message items (this server calls no "
                "tools, and keeps no items to refer to)",
                f"{where}.type",
            )
        role = item.get("role")
        if not isinstance(role, str) or role not in ROLES:  # a list or object is no role (nor hashable)
            raise RequestError(f"{where}.role must be one of {sorted(ROLES)}", f"{where}.role")
        where = f"{where}.content"
        conversation.add(role, content_text(item.get("content"), where, TEXT_PARTS), where)


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"`{key}` must be a string", key)
    return value


def _verbosity(body: dict[str, Any]) -> str:
    """text.verbosity, echoed: a hint this model cannot follow, which only shades the text (as
    the ignored presence_penalty does in chat completions)."""
    value = (body.get("text") or {}).get("verbosity")
    if value is None:
        return "medium"  # OpenAI's default
    if value not in VERBOSITY:
        raise RequestError(
            f"`text.verbosity` must be one of {', '.join(VERBOSITY)}", "text.verbosity", code=INVALID_VALUE
        )
    return value


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    """`metadata`, to echo: at most 16 string pairs, keys up to 64 characters, values up to 512."""
    value = body.get("metadata")
    if value is None:
        return {}
    wrong = RequestError(
        f"`metadata` must be an object of at most {MAX_METADATA_PAIRS} string values, keys of at most "
        f"{MAX_METADATA_KEY} characters and values of at most {MAX_METADATA_VALUE}",
        "metadata",
    )
    if not isinstance(value, dict) or len(value) > MAX_METADATA_PAIRS:
        raise wrong
    for key, text in value.items():
        if len(key) > MAX_METADATA_KEY or not isinstance(text, str) or len(text) > MAX_METADATA_VALUE:
            raise wrong
    return value


class _Response:
    """One response object: its id and settings, its states, and its events' sequence numbers."""

    def __init__(self, service: ChatService, req: ResponsesRequest) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.model = service.model_name
        self.settings = req.settings
        self.text: list[str] = []  # the reply so far (a failed stream's response.failed holds it)
        self._sequence = itertools.count()

    def body(
        self,
        status: str,
        output: list[dict[str, Any]],
        reply: Reply | None = None,
        error: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The response object, `status` in_progress, completed, incomplete or failed."""
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": time.time() if status == "completed" else None,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "model": self.model,
            "output": output,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},  # a model that does not reason
            "service_tier": "default",
            "tools": [],
            "usage": None if reply is None else _usage(reply),
            **self.settings,
        }

    def message(self, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": parts,
        }

    def done(self, reply: Reply) -> dict[str, Any]:
        """The finished response object, its message holding the whole reply."""
        status = "incomplete" if reply.generation.finish_reason == "length" else "completed"
        return self.body(status, [self.message(status, [_text_part("".join(self.text))])], reply)

    def event(self, kind: str, **fields: Any) -> Event:
        return kind, {"type": kind, "sequence_number": next(self._sequence), **fields}

    def events(self, reply: Reply) -> Iterator[Event]:
        """The stream's events, as OpenAI sends them for one message of one text part."""
        at = {"output_index": 0}
        part = {**at, "item_id": self.item_id, "content_index": 0}
        with contextlib.closing(reply):
            yield self.event("response.created", response=self.body("in_progress", []))
            yield self.event("response.in_progress", response=self.body("in_progress", []))
            yield self.event("response.output_item.added", **at, item=self.message("in_progress", []))
            yield self.event("response.content_part.added", **part, part=_text_part(""))
            for piece in reply:
                self.text.append(piece)
                yield self.event("response.output_text.delta", **part, delta=piece, logprobs=[])
        text = "".join(self.text)
        yield self.event("response.output_text.done", **part, text=text, logprobs=[])
        yield self.event("response.content_part.done", **part, part=_text_part(text))
        response = self.done(reply)
        yield self.event("response.output_item.done", **at, item=response["output"][0])
        yield self.event(f"response.{response['status']}", response=response)

    def failure(self, e: BaseException) -> list[Event]:
        """How a stream ends when generation fails midway: an error event, then response.failed
        with what was written (status incomplete: the message never finished)."""
        message = failure_message(e)
        output = [self.message("incomplete", [_text_part("".join(self.text))])] if self.text else []
        error = {"code": "server_error", "message": message}
        return [
            self.event("error", code="server_error", message=message, param=None),
            self.event("response.failed", response=self.body("failed", output, error=error)),
        ]


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _usage(reply: Reply) -> dict[str, Any]:
    prompt, output = reply.prompt_tokens, reply.generation.n_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},  # no prompt cache
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + output,
    }


def create(
    service: ChatService,
    req: ResponsesRequest,
    client_left: Callable[[], bool] | None = None,
    session: ChatSession | None = None,
) -> dict[str, Any]:
    """The response object (ChatService.reply: call within its turn())."""
    response = _Response(service, req)
    text, reply = service.reply(req, client_left, session)
    response.text.append(text)
    return response.done(reply)


def stream(
    service: ChatService, req: ResponsesRequest, session: ChatSession | None = None
) -> Iterator[Event]:
    """The response's server-sent events (ChatService.generate: call within its turn(), and close
    the iterator if you stop early)."""
    response = _Response(service, req)
    return ended_on_failure(response.events(service.generate(req, session)), response.failure)
