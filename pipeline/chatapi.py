"""The chat completions API without HTTP: a request body in, a chat.completion object (or its
chunks) out, one generation at a time. pipeline/serve.py carries it over HTTP.

ChatRequest.parse validates an OpenAI-style body and maps it onto the chat format the model was
trained on: `system` (or `developer`) messages become the persona, `user` turns <human> turns,
`assistant` turns <bot> turns, each message cleaned as training text was; a bad field raises
RequestError naming it. ChatService runs requests through one Engine: `turn()` admits one request
to the engine and at most max_waiting more to wait (ServerBusy past that), and `complete`/`stream`
build the reply, stopping early once `client_left` says nobody reads it (ClientLeft).

The Responses API (pipeline/responsesapi.py) maps its body onto a ChatRequest too (Conversation,
ChatRequest.build, FieldNames for the names its errors use) and builds its reply from the same
generate()/reply().
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


def _no_room(e: ValueError, req: ChatRequest) -> RequestError:
    """The 400 for a new message that alone does not fit the context window."""
    return RequestError(str(e), req.names.conversation, code=CONTEXT_LENGTH_EXCEEDED)


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


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: what every error reply, and a chat stream's error event, carries."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# A server-sent event: its `event:` name (None: none, as chat completions send them) and its data,
# a JSON object (a string goes as it is: "[DONE]").
Event = tuple[str | None, "dict[str, Any] | str"]


def ended_on_failure(
    events: Iterator[Event], failure: Callable[[BaseException], list[Event]]
) -> Iterator[Event]:
    """`events`, ended by failure(e)'s events when making them fails (a bug, even a panic in a Rust
    extension, a BaseException): cut short, a stream reads as a finished reply, while OpenAI's
    clients raise on (or report) an error event. The failure is raised again after them, for the
    server to log. Closing this closes `events` (generation stops with it)."""
    try:
        yield from events
    except (GeneratorExit, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        yield from failure(e)
        raise


@dataclass
class Reply:
    """A reply being generated (ChatService.generate): its text pieces, then, once they are all
    read, its Generation (finish reason, token count). Close it if you stop early."""

    session: ChatSession
    first: str | None  # read ahead, so that a message that does not fit is a 400 before any event
    pieces: Iterator[str]
    results: list[Generation]

    def __iter__(self) -> Iterator[str]:
        if self.first is not None:
            yield self.first
        yield from self.pieces

    def close(self) -> None:
        self.pieces.close()

    @property
    def generation(self) -> Generation:
        return self.results[0]

    @property
    def prompt_tokens(self) -> int:
        return len(self.session.last_prompt_ids or [])


class ServerBusy(Exception):
    """max_waiting requests already wait for the engine: this one is refused (503) at once."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientLeft(Exception):
    """The client closed its connection before its reply was generated: nobody to generate it for."""


@dataclass(frozen=True)
class FieldNames:
    """What an API calls the parts of a request that its errors are about (the `param` they name)."""

    conversation: str = "messages"  # the turns (/v1/responses: input)
    persona: str = "messages"  # the field to shorten when the persona leaves no room
    persona_text: str = "the system message"  # the persona, as an error message calls it
    budget: str = "max_tokens"  # the reply budget, as the client named it


CHAT_FIELDS = FieldNames()


class Conversation:
    """Messages in, one role and text at a time; the chat format out (see ChatRequest).

    Each message is cleaned before it joins, and an empty one is left out (it neither joins nor
    opens a turn): how normalize built the training text from such messages (adapters/_messages.py;
    normalize drops empty rows, then merges same-role runs)."""

    def __init__(self) -> None:
        self.persona: list[str] = []
        # (role, its messages' texts): a run of one role's messages joins once at the end, since
        # joining at each message costs the square of the run (35,000 of them fit in 1 MiB).
        self.turns: list[tuple[str, list[str]]] = []

    def add(self, role: str, content: str, where: str) -> None:
        """One message: `role` one of ROLES, `content` its text, `where` the field it came in."""
        _refuse_lone_surrogates(content, where)
        try:
            text = clean_text(content)
        except ValueError as e:  # a run of combining marks or whitespace too long to take safely
            raise RequestError(f"{where}: {e}", where) from None
        if role in PERSONA_ROLES:  # anywhere, as OpenAI takes them: the persona, as in training
            if text:
                self.persona.append(text)
            return
        if not text:
            return
        turn = "human" if role == "user" else "bot"
        if not self.turns and turn == "bot":  # a greeting before the first user message: left out, as
            return  # normalize leaves out bot rows before a conversation's first human turn
        if self.turns and self.turns[-1][0] == turn:  # consecutive messages of one role read as one turn
            self.turns[-1][1].append(text)
        else:
            self.turns.append((turn, [text]))

    def fields(self, param: str) -> dict[str, Any]:
        """ChatRequest's context, history and user_text; a 400 on `param` unless a user turn is last."""
        if not self.turns or self.turns[-1][0] != "human":
            raise RequestError(
                "the last message must be a user message with text (empty messages are left out, as in "
                "training)",
                param,
            )
        return {
            "context": "\n".join(self.persona) or None,
            "history": [(role, "\n".join(texts)) for role, texts in self.turns[:-1]],
            "user_text": "\n".join(self.turns[-1][1]),
        }


@dataclass
class ChatRequest:
    """A validated request: a /v1/chat/completions body, or the part of a /v1/responses one that
    generates (pipeline/responsesapi.py)."""

    context: str | None
    history: list[tuple[str, str]]  # (human | bot, text), before the last user message
    user_text: str
    max_tokens: int | None = None
    names: FieldNames = CHAT_FIELDS  # how the client's API names the fields (for error messages)
    temperature: float = 1.0  # OpenAI's defaults
    top_p: float | None = 1.0
    top_k: int | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage, as OpenAI's
    keep_all_turns: bool = False  # a 400 rather than drop the oldest turns (Responses' truncation "disabled")

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        body = request_object(body)
        if _optional(body, ("n",), int) not in (None, 1):
            raise RequestError("only n=1 is supported", "n")
        refuse_unsupported(body)
        conversation = Conversation()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("`messages` must be a non-empty list", "messages")
        for i, m in enumerate(messages):
            where = f"messages[{i}]"
            role = m.get("role") if isinstance(m, dict) else None
            if not isinstance(role, str) or role not in ROLES:  # a list or object is no role (nor hashable)
                raise RequestError(f"{where}.role must be one of {sorted(ROLES)}", f"{where}.role")
            content = m.get("content")
            if role == "assistant":
                # OpenAI's assistant message may have a null (or no) content: the one that made
                # tool calls has none. Empty, then, like "" (left out); its tool calls are refused
                # rather than dropped unseen, as a request's `tools` are (refuse_unsupported).
                for key in ("tool_calls", "function_call"):
                    if m.get(key):
                        raise RequestError(f"{where}.{key}: this model cannot call tools", f"{where}.{key}")
                content = "" if content is None else content
            conversation.add(
                role, content_text(content, f"{where}.content", CHAT_TEXT_PARTS), f"{where}.content"
            )
        budget = ("max_completion_tokens", "max_tokens")  # the newer name first, as OpenAI reads them
        given = next((key for key in budget if body.get(key) is not None), "max_tokens")
        req = cls.build(body, conversation.fields("messages"), budget, FieldNames(budget=given))
        # stream_options and stop are checked before the values' ranges (check_values), as they
        # always were: a body with several mistakes is still answered with the same one.
        include = (body.get("stream_options") or {}).get("include_usage")
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
        req.check_values()
        return req

    @classmethod
    def build(
        cls, body: dict[str, Any], turns: dict[str, Any], budget_keys: tuple[str, ...], names: FieldNames
    ) -> ChatRequest:
        """The request from its `turns` (Conversation.fields) and what every API's body sets alike:
        the reply budget (the first of `budget_keys` given), sampling and `stream`, each of the
        right type. Their ranges are check_values()'s, which the caller runs after its own fields'."""
        req = cls(
            **turns,
            max_tokens=_optional(body, budget_keys, int),
            names=names,
            temperature=_optional(body, ("temperature",), float, 1.0),
            top_p=_optional(body, ("top_p",), float, 1.0),
            top_k=_optional(body, ("top_k",), int),
            seed=_optional(body, ("seed",), int),
        )
        if req.top_k is not None and req.top_k < 0:  # SamplingParams would say "unset"
            raise RequestError(f"top_k must be >= 1, or 0 or null for no limit, got {req.top_k}", "top_k")
        req.top_k = req.top_k or None  # 0 = no limit (as vLLM)
        req.stream = flag(body, "stream", False)
        if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
            raise RequestError("`stream_options` must be an object", "stream_options")
        return req

    def check_values(self) -> None:
        """A 400 for a reply budget under 1 or a sampling value out of range; `seed` becomes the
        sampler's (see _sampler_seed)."""
        if self.max_tokens is not None and self.max_tokens < 1:
            raise RequestError(f"{self.names.budget} must be at least 1", self.names.budget)
        from pipeline.sampling import SamplingParams  # imports torch: not at the CLI's start-up

        seed = _sampler_seed(self.seed)
        try:
            SamplingParams(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, seed=seed)
        except ValueError as e:  # the message starts with the field's name
            raise RequestError(str(e), str(e).split()[0]) from None
        # after SamplingParams, which checks the seed last: the first mistake named stays the same
        if self.seed is not None and not INT64[0] <= self.seed <= INT64[1]:
            raise RequestError(
                f"seed must be in {INT64[0]}..{INT64[1]} (a 64-bit integer), got {self.seed}", "seed"
            )
        self.seed = seed


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A true/false field (null or absent: `default`)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"`{key}` must be true or false", key)
    return value


def request_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


INT64 = (-(2**63), 2**63 - 1)  # OpenAI's seed: any signed 64-bit integer


def _sampler_seed(seed: int | None) -> int | None:
    """OpenAI's `seed` (int64) as the sampler takes it (0..MAX_SEED): a negative seed wraps to its
    two's complement's low 63 bits, as torch remaps a negative seed to an unsigned one. Each seed is
    one generator seed, so the same seed gives the same text (a negative seed shares its generator
    with one positive seed, as OpenAI promises only that the same seed repeats)."""
    if seed is None:
        return None
    from pipeline.sampling import MAX_SEED

    return seed % (MAX_SEED + 1)


CHAT_TEXT_PARTS = frozenset({"text"})


def content_text(content: Any, where: str, kinds: frozenset[str]) -> str:
    """A message's text: a string, or a list of parts of which only text parts (of a type in
    `kinds`, each with its `text`) are allowed."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or not isinstance(part.get("type"), str)  # a list is no type (nor hashable)
                or part["type"] not in kinds
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
            ids = session.prompt_ids(req.user_text)
        except ValueError as e:  # the new message alone does not fit the window
            raise _no_room(e, req) from e
        if req.keep_all_turns and len(ids) < _whole_length(session, req.user_text):
            raise RequestError(
                f"the conversation does not fit the {self.engine.block_size}-token context window "
                f"with {req.names.budget} {session.max_new_tokens}, and the oldest turns may not be "
                'dropped (truncation "disabled"): shorten it, or send truncation "auto"',
                req.names.conversation,
                code=CONTEXT_LENGTH_EXCEEDED,
            )
        return session

    def session(self, req: ChatRequest) -> ChatSession:
        """A ChatSession holding the request's persona and past turns."""
        limit = self.engine.block_size - 1
        key = req.names.budget
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
            param = req.names.persona if e.persona_at_fault else key
            unset = (
                ""
                if req.max_tokens is not None
                else f" ({e.max_new_tokens} is the default: the request set no {key})"
            )
            raise RequestError(
                e.describe(req.names.persona_text, key) + unset, param, code=CONTEXT_LENGTH_EXCEEDED
            ) from e
        for role, text in req.history:
            session.add_turn(role, text)
        return session

    def generate(self, req: ChatRequest, session: ChatSession | None = None) -> Reply:
        """Start the reply. Call within `turn()`, and close the Reply (generation stops with it);
        `session`: prepare(req)'s, if made already. A message that does not fit raises its 400
        here, before the first piece, so that the caller can still answer it."""
        session = session or self.session(req)
        results: list[Generation] = []
        pieces = session.stream(req.user_text, results)
        try:
            first = next(pieces, None)
        except ValueError as e:  # the new message alone does not fit the window
            raise _no_room(e, req) from e
        return Reply(session, first, pieces, results)

    def reply(
        self,
        req: ChatRequest,
        client_left: Callable[[], bool] | None = None,
        session: ChatSession | None = None,
    ) -> tuple[str, Reply]:
        """The whole reply's text, and its Reply (done). Call within `turn()`.

        `client_left` is asked every CLIENT_CHECK_EVERY pieces of the reply; once it says yes, the
        generation stops and ClientLeft is raised (a reply nobody reads must not hold the lock)."""
        text: list[str] = []
        with contextlib.closing(self.generate(req, session)) as reply:
            for n, piece in enumerate(reply, 1):
                text.append(piece)
                if client_left is not None and n % CLIENT_CHECK_EVERY == 0 and client_left():
                    raise ClientLeft(f"during its reply: stopped after {n} pieces")
        return "".join(text), reply

    def complete(
        self,
        req: ChatRequest,
        client_left: Callable[[], bool] | None = None,
        session: ChatSession | None = None,
    ) -> dict[str, Any]:
        """A chat.completion object (see reply())."""
        text, reply = self.reply(req, client_left, session)
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reply.generation.finish_reason,
                }
            ],
            "usage": _usage(reply),
        }

    def stream(self, req: ChatRequest, session: ChatSession | None = None) -> Iterator[dict[str, Any]]:
        """chat.completion.chunk objects: the role, then text pieces, then the finish reason (and
        usage, when asked). Call within `turn()`, and close the iterator if you stop early
        (generation stops with it); `session`: prepare(req)'s, if made already.

        Validation errors raise here, before the first chunk, so the caller can still answer 400.
        """
        return self._chunks(self.generate(req, session), req.include_usage)

    def _chunks(self, reply: Reply, include_usage: bool) -> Iterator[dict[str, Any]]:
        head = self._envelope("chat.completion.chunk")

        def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        with contextlib.closing(reply):
            yield chunk({"role": "assistant", "content": ""})
            for piece in reply:
                yield chunk({"content": piece})
            yield chunk({}, reply.generation.finish_reason)
            # As OpenAI streams it: usage only when asked, in a chunk of its own with no choices
            # (clients that wait for that chunk never saw usage riding on the last one).
            if include_usage:
                yield {**head, "choices": [], "usage": _usage(reply)}

    def events(self, req: ChatRequest, session: ChatSession | None = None) -> Iterator[Event]:
        """stream()'s chunks as server-sent events, then `data: [DONE]`; a failure midway ends
        them with an error event, which OpenAI's clients raise. Raises as stream() does."""
        return ended_on_failure(_with_done(self.stream(req, session)), _error_event)

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


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.prompt_tokens, reply.generation.n_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _whole_length(session: ChatSession, user_text: str) -> int:
    """The prompt's tokens with every past turn kept (what prompt_ids trims to the window)."""
    from pipeline.tokenizer import render

    new = {"role": "human", "content": clean_text(user_text)}
    ids, _ = render(
        [*session.history, new], session.context, enc=session.engine.enc, add_generation_prompt=True
    )
    return len(ids)


def _with_done(chunks: Iterator[dict[str, Any]]) -> Iterator[Event]:
    with contextlib.closing(chunks):  # type: ignore[type-var] - a generator, which closes
        for chunk in chunks:
            yield None, chunk
    yield None, "[DONE]"


def _error_event(e: BaseException) -> list[Event]:
    """How a chat completions stream ends when generation fails: OpenAI's clients raise on it."""
    return [(None, error_body(f"internal error: {type(e).__name__}", "server_error"))]
