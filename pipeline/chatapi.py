"""The chat completions API without HTTP: a request body in, a chat.completion object (or its
chunks) out, one generation at a time. pipeline/serve.py carries it over HTTP.

A request arrives checked and mapped onto the model's chat format as a ChatRequest
(pipeline/chatrequest.py). ChatService runs requests through one Engine: `turn()` admits one
request to the engine and at most max_waiting more to wait (ServerBusy past that), and
`complete`/`stream` build the reply, stopping early once `client_left` says nobody reads it
(ClientLeft). The Responses API (pipeline/responsesapi.py) builds its reply from the same
generate()/reply().
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.chatrequest import CONTEXT_LENGTH_EXCEEDED, ChatRequest, RequestError
from pipeline.chatsession import MIN_PROMPT_TOKENS, ChatSession, NoRoomError, clean_text, max_reply_budget

if TYPE_CHECKING:
    from pipeline.engine import Engine, Generation

WAIT_POLL_SECONDS = 0.25  # how often a waiting request asks whether its client is still there
MAX_WAITING = 8  # requests that may wait for the engine while one generates; more get 503 (--max-waiting)
CLIENT_CHECK_EVERY = 16  # reply pieces (about a token each) between checks that the client is still there


def _no_room(e: ValueError, req: ChatRequest) -> RequestError:
    """The 400 for a new message that alone does not fit the context window."""
    return RequestError(str(e), req.names.conversation, code=CONTEXT_LENGTH_EXCEEDED)


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


class ServerStopping(Exception):
    """The server is shutting down (ChatService.stop): a waiting request is refused (503) and a
    generation stops at its next piece (a stream ends with an error event)."""

    def __init__(self) -> None:
        super().__init__("the server is shutting down; try again once it is back")


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
        self._stopping = threading.Event()  # set by stop(): nothing more is generated

    def stop(self, timeout: float) -> bool:
        """Stop generating, for a server shutting down: waiting requests leave the line and a
        generation stops at its next piece (ServerStopping). True once the engine is free, and it
        is then held for good, so no generation starts; False when it was not free within `timeout`.

        Why: a generation still running in a daemon thread while the interpreter exits aborted the
        process inside torch ("terminate called without an active exception", SIGABRT)."""
        self._stopping.set()
        with self._line:
            self._line.notify_all()  # waiters see it now, not at their next poll
        return self.lock.acquire(timeout=timeout)

    @property
    def stopping(self) -> bool:
        """Whether stop() was called: the server answers every request 503 from then on."""
        return self._stopping.is_set()

    def _check_stopping(self) -> None:
        if self._stopping.is_set():
            raise ServerStopping

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
                self._check_stopping()
                if client_left is not None and client_left():
                    raise ClientLeft("while its request waited: not generated")
            try:
                self._check_stopping()  # stop() waits for the lock: let it have it
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
                self._check_stopping()
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
        limit = max_reply_budget(self.engine.block_size)
        key = req.names.budget
        if req.max_tokens is not None and req.max_tokens > limit:
            raise RequestError(
                f"{key} must be at most {limit} (context window {self.engine.block_size}, and the "
                f"shortest conversation takes {MIN_PROMPT_TOKENS} tokens)",
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
        pieces = self._until_stopped(session.stream(req.user_text, results))
        try:
            first = next(pieces, None)
        except ValueError as e:  # the new message alone does not fit the window
            raise _no_room(e, req) from e
        return Reply(session, first, pieces, results)

    def _until_stopped(self, pieces: Iterator[str]) -> Iterator[str]:
        """`pieces`, ended by ServerStopping once stop() is called (closing them stops the engine)."""
        with contextlib.closing(pieces):  # type: ignore[type-var] - a generator, which closes
            for piece in pieces:
                self._check_stopping()
                yield piece

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
        # OpenAI: with include_usage "all other chunks will also include a usage field, but with a
        # null value" (a client that reads chunk["usage"] would get KeyError); without it, none.
        usage: dict[str, None] = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **usage}

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
    return [(None, error_body(failure_message(e), "server_error"))]


def failure_message(e: BaseException) -> str:
    """What a stream's error event says of the failure that ended it."""
    return str(e) if isinstance(e, ServerStopping) else f"internal error: {type(e).__name__}"
