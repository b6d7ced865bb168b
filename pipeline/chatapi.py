"""The chat completions API without HTTP: a request body in, a chat.completion object (or its
chunks) out, one generation at a time. pipeline/serve.py carries it over HTTP.

ChatRequest.parse validates an OpenAI-style body and maps it onto the chat format the model was
trained on: `system` (or `developer`) messages become the persona, `user` turns <human> turns,
`assistant` turns <bot> turns, each message cleaned as training text was; a bad field raises
RequestError naming it. ChatService runs requests through one Engine: `turn()` admits one request
to the engine and at most max_waiting more to wait (ServerBusy past that), and `complete`/`stream`
build the reply, stopping early once `client_left` says nobody reads it (ClientLeft).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pipeline.chat import ChatSession, NoRoomError, clean_text
from pipeline.stops import check_stop_strings

if TYPE_CHECKING:
    from pipeline.engine import Engine, Generation

WAIT_POLL_SECONDS = 0.25  # how often a waiting request asks whether its client is still there
MAX_WAITING = 8  # requests that may wait for the engine while one generates; more get 503 (--max-waiting)
CLIENT_CHECK_EVERY = 16  # reply pieces (about a token each) between checks that the client is still there
PERSONA_ROLES = frozenset(
    {"system", "developer"}
)  # OpenAI's newer models call the system message `developer`
ROLES = PERSONA_ROLES | {"user", "assistant"}


class RequestError(ValueError):
    """A bad request: becomes a 400 reply (or `status`) naming the offending field (`param`)."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: HTTPStatus = HTTPStatus.BAD_REQUEST,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code  # OpenAI's machine-readable reason, where it has one (context_length_exceeded)


# OpenAI's code for a request that does not fit the context window: clients that shorten the
# history on it (rather than parse the message) need it spelled so.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


def _no_room(e: ValueError) -> RequestError:
    """The 400 for a new message that alone does not fit the context window."""
    return RequestError(str(e), "messages", code=CONTEXT_LENGTH_EXCEEDED)


def refuse_unsupported(body: dict[str, Any]) -> None:
    """A 400 for what the client asked of the reply that this server cannot give. Ignored, these
    came back 200 with plain text: an agent read "the model chose no tool", a JSON-mode client
    crashed in json.loads, a logprobs reader found no logprobs, an audio client found no audio.
    (Sampling knobs it does not have, presence/frequency penalties and logit_bias, only shade the
    text: those are ignored, as the README says.)"""
    for key in ("tools", "functions"):
        if body.get(key):
            raise RequestError(f"`{key}` is not supported: this model cannot call tools", key)
    for key in ("tool_choice", "function_call"):
        if body.get(key) not in (None, "none", "auto"):  # "required" or a named tool demands a call
            raise RequestError(f"`{key}` is not supported: this model cannot call tools", key)
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise RequestError(
            'only `response_format` {"type": "text"} is supported (no JSON mode)', "response_format"
        )
    for key, off in (("logprobs", (None, False)), ("top_logprobs", (None, 0))):
        if body.get(key) not in off:
            raise RequestError("log-probabilities are not supported", key)
    # Audio out: the reply's message.audio would be null, and the client reading it crashed.
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or any(m != "text" for m in modalities)):
        raise RequestError('only `modalities` ["text"] is supported (no audio output)', "modalities")
    if body.get("audio"):
        raise RequestError("`audio` output is not supported: this model writes text only", "audio")


class ServerBusy(Exception):
    """max_waiting requests already wait for the engine: this one is refused (503) at once."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientLeft(Exception):
    """The client closed its connection before its reply was generated: nobody to generate it for."""


@dataclass
class ChatRequest:
    """A validated /v1/chat/completions body."""

    context: str | None
    history: list[tuple[str, str]]  # (human | bot, text), before the last user message
    user_text: str
    max_tokens: int | None = None
    max_tokens_param: str = "max_tokens"  # the field the client named it with (for error messages)
    temperature: float = 1.0  # OpenAI's defaults
    top_p: float | None = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage, as OpenAI's

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if _optional(body, ("n",), int) not in (None, 1):
            raise RequestError("only n=1 is supported", "n")
        refuse_unsupported(body)
        context_parts: list[str] = []
        # (role, its messages' texts): a run of one role's messages joins once at the end, since
        # joining at each message costs the square of the run (35,000 of them fit in 1 MiB).
        turns: list[tuple[str, list[str]]] = []
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("`messages` must be a non-empty list", "messages")
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            role = m.get("role") if isinstance(m, dict) else None
            if not isinstance(role, str) or role not in ROLES:  # a list or object is no role (nor hashable)
                raise RequestError(f"{where}.role must be one of {sorted(ROLES)}", f"{where}.role")
            # Each message is cleaned before it joins, and an empty one is left out (it neither
            # joins nor opens a turn): how normalize built the training text from such messages
            # (adapters/_messages.py; normalize drops empty rows, then merges same-role runs).
            content = m.get("content")
            if role == "assistant":
                # OpenAI's assistant message may have a null (or no) content: the one that made
                # tool calls has none. Empty, then, like "" (left out); its tool calls are refused
                # rather than dropped unseen, as a request's `tools` are (refuse_unsupported).
                for key in ("tool_calls", "function_call"):
                    if m.get(key):
                        raise RequestError(f"{where}.{key}: this model cannot call tools", f"{where}.{key}")
                content = "" if content is None else content
            content = _content_text(content, f"{where}.content")
            _refuse_lone_surrogates(content, f"{where}.content")
            try:
                text = clean_text(content)
            except ValueError as e:  # a run of combining marks or whitespace too long to take safely
                raise RequestError(f"{where}.content: {e}", f"{where}.content") from None
            if m["role"] in PERSONA_ROLES:  # anywhere, as OpenAI takes them: the persona, as in training
                if text:
                    context_parts.append(text)
                continue
            if not text:
                continue
            role = "human" if m["role"] == "user" else "bot"
            if not turns and role == "bot":  # a greeting before the first user message: left out, as
                continue  # normalize leaves out bot rows before a conversation's first human turn
            if turns and turns[-1][0] == role:  # consecutive messages of one role read as one turn
                turns[-1][1].append(text)
            else:
                turns.append((role, [text]))
        if not turns or turns[-1][0] != "human":
            raise RequestError(
                "the last message must be a user message with text (empty messages are left out, as in "
                "training)",
                "messages",
            )
        req = cls(
            context="\n".join(context_parts) or None,
            history=[(role, "\n".join(texts)) for role, texts in turns[:-1]],
            user_text="\n".join(turns[-1][1]),
            max_tokens=_optional(body, ("max_completion_tokens", "max_tokens"), int),
            temperature=_optional(body, ("temperature",), float, 1.0),
            top_p=_optional(body, ("top_p",), float, 1.0),
            top_k=_optional(body, ("top_k",), int),
            seed=_optional(body, ("seed",), int),
        )
        if req.top_k is not None and req.top_k < 0:  # SamplingParams would say "unset"
            raise RequestError(f"top_k must be >= 1, or 0 or null for no limit, got {req.top_k}", "top_k")
        req.top_k = req.top_k or None  # 0 = no limit (as vLLM)
        stream = body.get("stream")
        stream = False if stream is None else stream
        if not isinstance(stream, bool):
            raise RequestError("`stream` must be true or false", "stream")
        req.stream = stream
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise RequestError("`stream_options` must be an object", "stream_options")
        include = (options or {}).get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise RequestError("`stream_options.include_usage` must be true or false", "stream_options")
        req.include_usage = bool(include)
        stop = body.get("stop")
        if not (stop is None or isinstance(stop, (str, list))):
            raise RequestError("`stop` must be a string or a list of up to 4 strings", "stop")
        try:
            req.stop = list(check_stop_strings(stop))
        except ValueError as e:
            raise RequestError(f"`stop`: {e}", "stop") from None
        for s in req.stop:  # the reply is UTF-8 text: a stop with a lone surrogate would never match
            _refuse_lone_surrogates(s, "stop")
        if body.get("max_completion_tokens") is not None:
            req.max_tokens_param = "max_completion_tokens"
        if req.max_tokens is not None and req.max_tokens < 1:
            key = req.max_tokens_param
            raise RequestError(f"{key} must be at least 1", key)
        from pipeline.sampling import SamplingParams  # imports torch: not at the CLI's start-up

        try:
            SamplingParams(temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, seed=req.seed)
        except ValueError as e:  # the message starts with the field's name
            raise RequestError(str(e), str(e).split()[0]) from None
        return req


def _content_text(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of parts of which only text parts are allowed."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise RequestError(f"{where}[{j}]: only text parts are supported", where)
            texts.append(part["text"])
        return "\n".join(texts)  # as the training adapters join parts (adapters/_messages.py)
    raise RequestError(f"{where} must be a string or a list of text parts", where)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins a valid pair into one character


def _refuse_lone_surrogates(text: str, where: str) -> None:
    """A 400 for a lone surrogate (JSON's "\\ud800" without its pair): no Unicode character, so no
    UTF-8 text; tiktoken silently turned it into U+FFFD, and the model read other text than sent."""
    if text.isascii():
        return
    found = _LONE_SURROGATE.search(text)
    if found is not None:
        raise RequestError(
            f"{where} has a lone surrogate (U+{ord(found.group()):04X}) at character {found.start() + 1}: "
            "text must be valid Unicode (a surrogate pair's halves come together)",
            where,
        )


def _optional(body: dict, keys: tuple[str, ...], kind: type, default: Any = None) -> Any:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        wrong = RequestError(f"`{key}` must be a{'n integer' if kind is int else ' number'}", key)
        # bool is an int in Python; a JSON true is never a number here.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        try:  # NaN and infinities (Python's json reads them) and integers past a float's range
            if kind is int and value != int(value):
                raise wrong
            return kind(value)
        except (ValueError, OverflowError):
            raise wrong from None
    return default


class ChatService:
    """Turns ChatRequests into replies with one Engine (one generation at a time)."""

    def __init__(
        self, engine: Engine, model_name: str = "nanochatgpt", max_waiting: int = MAX_WAITING
    ) -> None:
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be 0 or more, got {max_waiting}")
        self.engine = engine
        self.model_name = model_name
        self.created = int(time.time())
        self.lock = threading.Lock()  # the engine runs one generation at a time
        # Without a bound every client that asks waits: each holds a thread and its request, and
        # the last in line waits for all the others' replies (long past its own client's timeout).
        self.max_waiting = max_waiting
        self._admitted = 0  # requests generating or waiting for `lock`
        self._admitted_lock = threading.Lock()
        # The line: tickets in arrival order, served first come first served. (Waiters that poll
        # a lock with a timeout rejoin its queue at the back each time: under load one was
        # overtaken by 40 later requests.) `_line` guards the counters and wakes the waiters.
        self._line = threading.Condition()
        self._next_ticket = 0
        self._serving = 0  # the ticket whose turn it is
        self._gone: set[int] = set()  # tickets that left the line before their turn
        # A running mean of how long a generation holds the engine (None until the first): what a
        # refused client is told to wait (Retry-After), since each finished turn frees a place.
        self._turn_seconds: float | None = None

    @contextlib.contextmanager
    def turn(self, client_left: Callable[[], bool] | None = None) -> Iterator[None]:
        """Hold the engine for one request, after those already waiting; raise ServerBusy at once
        when max_waiting requests wait already (OpenAI's clients retry a 503 after Retry-After).

        While it waits, `client_left` is asked every WAIT_POLL_SECONDS: a request whose client has
        gone leaves the line (ClientLeft) rather than keep a place that live clients are refused."""
        with self._admitted_lock:
            if self._admitted > self.max_waiting:  # one generating, max_waiting waiting
                raise ServerBusy(
                    f"the server is busy: one request is generating and {self.max_waiting} wait "
                    "(serve --max-waiting); try again shortly",
                    retry_after=max(1, min(60, math.ceil(self._turn_seconds or 1.0))),
                )
            self._admitted += 1
        with self._line:
            ticket = self._next_ticket
            self._next_ticket += 1
        try:
            self._wait_for_turn(ticket, client_left)
            # The head of the line alone waits for the engine itself (only it can contend for it).
            while not self.lock.acquire(timeout=WAIT_POLL_SECONDS):
                if client_left is not None and client_left():
                    raise ClientLeft("while its request waited: not generated")
            try:
                start = time.monotonic()
                yield
                # Only a turn that generated teaches the mean: one that ended at once (a client
                # gone, a refusal) says nothing of how long the next one will hold the engine.
                took = time.monotonic() - start
                last = self._turn_seconds
                self._turn_seconds = took if last is None else 0.7 * last + 0.3 * took
            finally:
                self.lock.release()
        finally:
            self._leave_line(ticket)
            with self._admitted_lock:
                self._admitted -= 1

    def _wait_for_turn(self, ticket: int, client_left: Callable[[], bool] | None) -> None:
        with self._line:
            while self._serving != ticket:
                self._line.wait(WAIT_POLL_SECONDS)
                if self._serving != ticket and client_left is not None and client_left():
                    raise ClientLeft("while its request waited: not generated")

    def _leave_line(self, ticket: int) -> None:
        """`ticket` is done (served, refused or gone): the next ticket still waiting is served."""
        with self._line:
            if ticket != self._serving:
                self._gone.add(ticket)
                return
            self._serving += 1
            while self._serving in self._gone:
                self._gone.discard(self._serving)
                self._serving += 1
            self._line.notify_all()

    def prepare(self, req: ChatRequest) -> ChatSession:
        """The request's ChatSession, once everything that can only be a 400 is checked (the reply
        budget, the persona, the new message against the window): done before the request joins
        the line, so that it is answered 400 at once, never 503 or after the others' replies."""
        session = self.session(req)
        try:
            session.prompt_ids(req.user_text)
        except ValueError as e:  # the new message alone does not fit the window
            raise _no_room(e) from e
        return session

    def session(self, req: ChatRequest) -> ChatSession:
        """A ChatSession holding the request's persona and past turns."""
        limit = self.engine.block_size - 1
        key = req.max_tokens_param
        if req.max_tokens is not None and req.max_tokens > limit:
            raise RequestError(
                f"{key} must be at most {limit} (context window {limit + 1})",
                key,
                code=CONTEXT_LENGTH_EXCEEDED,
            )
        try:
            session = ChatSession(
                self.engine,
                context=req.context,
                max_new_tokens=req.max_tokens,
                temperature=req.temperature,
                top_k=req.top_k,
                top_p=req.top_p,
                seed=req.seed,
                stop=req.stop,
            )
        except NoRoomError as e:  # the reply budget leaves no room for the persona and a message
            param = "messages" if e.persona_at_fault else key
            unset = (
                ""
                if req.max_tokens is not None
                else f" ({e.max_new_tokens} is the default: the request set no {key})"
            )
            raise RequestError(
                e.describe("the system message", key) + unset, param, code=CONTEXT_LENGTH_EXCEEDED
            ) from e
        for role, text in req.history:
            session.add_turn(role, text)
        return session

    def complete(
        self,
        req: ChatRequest,
        client_left: Callable[[], bool] | None = None,
        session: ChatSession | None = None,
    ) -> dict[str, Any]:
        """A chat.completion object. Call within `turn()`; `session`: prepare(req)'s, if made already.

        `client_left` is asked every CLIENT_CHECK_EVERY pieces of the reply; once it says yes, the
        generation stops and ClientLeft is raised (a reply nobody reads must not hold the lock)."""
        results: list[Generation] = []
        session = session or self.session(req)
        pieces = session.stream(req.user_text, results)
        text: list[str] = []
        try:
            for n, piece in enumerate(pieces, 1):
                text.append(piece)
                if client_left is not None and n % CLIENT_CHECK_EVERY == 0 and client_left():
                    raise ClientLeft(f"during its reply: stopped after {n} pieces")
        except ValueError as e:  # the new message alone does not fit the window
            raise _no_room(e) from e
        finally:
            pieces.close()
        gen = results[0]
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(text)},
                    "finish_reason": gen.finish_reason,
                }
            ],
            "usage": _usage(session, gen),
        }

    def stream(self, req: ChatRequest, session: ChatSession | None = None) -> Iterator[dict[str, Any]]:
        """chat.completion.chunk objects: the role, then text pieces, then the finish reason.
        Call within `turn()`, and close the iterator if you stop early (generation stops with it);
        `session`: prepare(req)'s, if made already.

        Validation errors raise here, before the first chunk, so the caller can still answer 400.
        """
        session = session or self.session(req)
        results: list[Generation] = []
        pieces = session.stream(req.user_text, results)
        try:
            first = next(pieces, None)
        except ValueError as e:  # the new message alone does not fit the window
            raise _no_room(e) from e
        return self._chunks(session, first, pieces, results, req.include_usage)

    def _chunks(
        self,
        session: ChatSession,
        first: str | None,
        pieces: Iterator[str],
        results: list[Generation],
        include_usage: bool,
    ):
        head = self._envelope("chat.completion.chunk")

        def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        try:
            yield chunk({"role": "assistant", "content": ""})
            if first is not None:
                yield chunk({"content": first})
            for piece in pieces:
                yield chunk({"content": piece})
            gen = results[0]
            yield chunk({}, gen.finish_reason)
            # As OpenAI streams it: usage only when asked, in a chunk of its own with no choices
            # (clients that wait for that chunk never saw usage riding on the last one).
            if include_usage:
                yield {**head, "choices": [], "usage": _usage(session, gen)}
        finally:
            pieces.close()

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model_name,
        }

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model()]}

    def model(self) -> dict[str, Any]:
        """The one model object (GET /v1/models/<id>, which clients call to check a model exists)."""
        return {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "nanochatgpt"}


def _usage(session: ChatSession, gen: Generation) -> dict[str, int]:
    prompt = len(session.last_prompt_ids or [])
    return {"prompt_tokens": prompt, "completion_tokens": gen.n_tokens, "total_tokens": prompt + gen.n_tokens}
