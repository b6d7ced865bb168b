"""`nanochatgpt serve`: the trained model behind an OpenAI-style chat completions API, on localhost.

    POST /v1/chat/completions   messages, max_tokens, temperature, top_p, top_k, seed, stop, stream
    GET  /v1/models             the one model served
    GET  /health                {"status": "ok"}

Requests map onto the chat format the model was trained on: `system` messages become the persona
(the --context of `nanochatgpt chat`), `user` turns are <human> turns, `assistant` turns are <bot>
turns, and the reply is generated after a final `user` message. Every message is rendered as
ordinary text (pipeline.tokenizer.render), so a client cannot forge a turn or a marker; the oldest
exchanges are dropped when the conversation outgrows the context window, the persona never.
Stop strings follow OpenAI (at most four; the stop string is not returned) and streamed pieces
are whole UTF-8 characters (server-sent events, ending with `data: [DONE]`).

The engine runs one generation at a time (a lock serialises requests), and at most --max-waiting
requests (default 8) wait for it: more are answered 503 with Retry-After at once, which OpenAI's
clients retry. A request whose client has closed its connection is not generated, and a reply stops once its client is gone. The server binds
to 127.0.0.1 unless --host says otherwise; it has no authentication, so only expose it on purpose.
Built on the standard library's http.server: a small local endpoint, not a production gateway.
A request must arrive whole within request_deadline (60 s) of its first byte; a body over 1 MiB is
refused with 413 (before "100 Continue", and read off the socket, bounded, so the client sees it).

Web pages the user visits must not reach it (cf. Ollama's CVE-2024-28224): bound to a loopback
address, the server answers 403 to any request whose Host header is not localhost, 127.0.0.1,
[::1] or the bound address (any port), which defeats DNS rebinding; bound to another address with
--host, it was exposed on purpose and takes any Host. POST /v1/chat/completions also requires
`Content-Type: application/json` (else 415): a page cannot send that cross-origin without a CORS
preflight, which this server never grants, so a form or a simple fetch cannot make it generate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import math
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline.chat import DEFAULT_CKPT, ChatSession, NoRoomError, clean_text
from pipeline.stops import check_stop_strings

if TYPE_CHECKING:
    from pipeline.engine import Engine, Generation

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_BODY_BYTES = 1 << 20  # a chat request is text; anything larger is refused (413) before it is read
MAX_WAITING = 8  # requests that may wait for the engine while one generates; more get 503 (--max-waiting)
CLIENT_CHECK_EVERY = 16  # reply pieces (about a token each) between checks that the client is still there
PERSONA_ROLES = {"system", "developer"}  # OpenAI's newer models call the system message `developer`
ROLES = {*PERSONA_ROLES, "user", "assistant"}
MAX_TRAILER_LINES = 64  # a chunked body's trailer fields (read and ignored)
_HEX = frozenset(b"0123456789abcdefABCDEF")
ROUTES = {"/health": "GET", "/v1/models": "GET", "/v1/chat/completions": "POST"}
JSON_TYPE = "application/json"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST_HEADER = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::\d*)?")  # name or [IPv6], then an optional :port


class RequestError(ValueError):
    """A bad request: becomes a 400 reply (or `status`) naming the offending field (`param`)."""

    def __init__(
        self, message: str, param: str | None = None, status: HTTPStatus = HTTPStatus.BAD_REQUEST
    ) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


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

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if _optional(body, ("n",), int) not in (None, 1):
            raise RequestError("only n=1 is supported", "n")
        context_parts: list[str] = []
        turns: list[tuple[str, str]] = []
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
            content = _content_text(m.get("content"), f"{where}.content")
            try:
                text = clean_text(content)
            except ValueError as e:  # a run of combining marks too long to normalize safely
                raise RequestError(f"{where}.content: {e}", f"{where}.content") from None
            if m["role"] in PERSONA_ROLES:
                if turns:
                    raise RequestError(
                        f"{where}: system and developer messages must come first", f"{where}.role"
                    )
                if text:
                    context_parts.append(text)
                continue
            if not text:
                continue
            role = "human" if m["role"] == "user" else "bot"
            if not turns and role == "bot":
                raise RequestError(
                    f"{where}: the conversation must start with a user message", f"{where}.role"
                )
            if turns and turns[-1][0] == role:  # consecutive messages of one role read as one turn
                turns[-1] = (role, f"{turns[-1][1]}\n{text}")
            else:
                turns.append((role, text))
        if not turns or turns[-1][0] != "human":
            raise RequestError(
                "the last message must be a user message with text (empty messages are left out, as in "
                "training)",
                "messages",
            )
        req = cls(
            context="\n".join(context_parts) or None,
            history=turns[:-1],
            user_text=turns[-1][1],
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
        stop = body.get("stop")
        if not (stop is None or isinstance(stop, (str, list))):
            raise RequestError("`stop` must be a string or a list of up to 4 strings", "stop")
        try:
            req.stop = list(check_stop_strings(stop))
        except ValueError as e:
            raise RequestError(f"`stop`: {e}", "stop") from None
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
        self._turn_seconds = 1.0  # a running mean of how long one request holds the engine

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the engine for one request, after those already waiting; raise ServerBusy at once
        when max_waiting requests wait already (OpenAI's clients retry a 503 after Retry-After)."""
        with self._admitted_lock:
            if self._admitted > self.max_waiting:  # one generating, max_waiting waiting
                raise ServerBusy(
                    f"the server is busy: one request is generating and {self.max_waiting} wait "
                    "(serve --max-waiting); try again shortly",
                    retry_after=max(1, min(60, math.ceil(self._turn_seconds))),
                )
            self._admitted += 1
        try:
            with self.lock:
                start = time.monotonic()
                try:
                    yield
                finally:
                    self._turn_seconds = 0.8 * self._turn_seconds + 0.2 * (time.monotonic() - start)
        finally:
            with self._admitted_lock:
                self._admitted -= 1

    def session(self, req: ChatRequest) -> ChatSession:
        """A ChatSession holding the request's persona and past turns."""
        limit = self.engine.block_size - 1
        key = req.max_tokens_param
        if req.max_tokens is not None and req.max_tokens > limit:
            raise RequestError(f"{key} must be at most {limit} (context window {limit + 1})", key)
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
            raise RequestError(e.describe("the system message", key), param) from e
        for role, text in req.history:
            session.add_turn(role, text)
        return session

    def complete(self, req: ChatRequest, client_left: Callable[[], bool] | None = None) -> dict[str, Any]:
        """A chat.completion object. Call under `lock`.

        `client_left` is asked every CLIENT_CHECK_EVERY pieces of the reply; once it says yes, the
        generation stops and ClientLeft is raised (a reply nobody reads must not hold the lock)."""
        results: list[Generation] = []
        session = self.session(req)
        pieces = session.stream(req.user_text, results)
        text: list[str] = []
        try:
            for n, piece in enumerate(pieces, 1):
                text.append(piece)
                if client_left is not None and n % CLIENT_CHECK_EVERY == 0 and client_left():
                    raise ClientLeft(f"during its reply: stopped after {n} pieces")
        except ValueError as e:  # the new message alone does not fit the window
            raise RequestError(str(e), "messages") from e
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

    def stream(self, req: ChatRequest) -> Iterator[dict[str, Any]]:
        """chat.completion.chunk objects: the role, then text pieces, then the finish reason.
        Call under `lock`, and close the iterator if you stop early (generation stops with it).

        Validation errors raise here, before the first chunk, so the caller can still answer 400.
        """
        session = self.session(req)
        results: list[Generation] = []
        pieces = session.stream(req.user_text, results)
        try:
            first = next(pieces, None)
        except ValueError as e:  # the new message alone does not fit the window
            raise RequestError(str(e), "messages") from e
        return self._chunks(session, first, pieces, results)

    def _chunks(
        self, session: ChatSession, first: str | None, pieces: Iterator[str], results: list[Generation]
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
            yield {**chunk({}, gen.finish_reason), "usage": _usage(session, gen)}
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
        return {
            "object": "list",
            "data": [
                {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "nanochatgpt"}
            ],
        }


def _usage(session: ChatSession, gen: Generation) -> dict[str, int]:
    prompt = len(session.last_prompt_ids or [])
    return {"prompt_tokens": prompt, "completion_tokens": gen.n_tokens, "total_tokens": prompt + gen.n_tokens}


class Handler(BaseHTTPRequestHandler):
    """HTTP in, JSON (or server-sent events) out; the work is ChatService's."""

    service: ChatService  # set on the subclass make_server builds
    allowed_hosts: frozenset[str] | None = LOOPBACK_NAMES  # Host names answered (no port); None: any
    server_version = "nanochatgpt"
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a read may wait (also an idle keep-alive connection's life)
    # Seconds from a request's first byte to the end of its body, however the client paces it: one
    # byte every 59 s would pass `timeout` forever and hold a thread. Class attributes: tests shrink them.
    request_deadline = 60.0
    max_body_bytes = MAX_BODY_BYTES
    # After a reply to a request whose body was not read (413, 415, ...), up to this much of the
    # body is read and dropped before closing, as nginx's lingering close does: a client that writes
    # its whole body before reading (http.client, the SDKs) gets the reply, not a reset.
    linger_bytes = 16 << 20
    linger_seconds = 1.0

    @property
    def route(self) -> str:
        return urlsplit(self.path).path  # a query string does not change the route

    def setup(self) -> None:
        super().setup()
        # rfile reads through a clock that enforces request_deadline (see _DeadlineReader).
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection, self.timeout, self.request_deadline)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = None  # the next request's clock starts with its first byte
        super().handle_one_request()

    def parse_request(self) -> bool:
        """http.server's parsing, then the checks every request passes before its method runs."""
        self._expects_continue = False  # the client waits for "100 Continue" before its body
        self._continue_sent = False
        self._body_done = False  # the body was read, or given up on
        if not super().parse_request():
            return False
        refusal = self._host_refusal()
        if refusal:
            self._error(HTTPStatus.FORBIDDEN, refusal, "permission_error")
            return False
        if self.command != "POST" and self._has_body():
            # Only POST reads a body: an unread one would be parsed as the next request line on
            # this keep-alive connection. Answer this request, then close (_json says so).
            self.close_connection = True
        return True

    def _host_refusal(self) -> str | None:
        """Why this request's Host is refused (DNS rebinding: a page whose name now resolves to
        127.0.0.1 still sends its own name), or None. A request without Host is no browser's."""
        if self.allowed_hosts is None:
            return None
        values = self.headers.get_all("Host") or []
        if not values:
            return None
        match = _HOST_HEADER.fullmatch(values[0].strip().lower()) if len(values) == 1 else None
        if match and match.group(1).strip("[]") in self.allowed_hosts:
            return None
        shown = ", ".join(repr(v) for v in values)[:200]
        names = " / ".join(f"[{h}]" if ":" in h else h for h in sorted(self.allowed_hosts))
        return (
            f"Host {shown} refused: this server listens on this machine only and answers "
            f"requests to {names} (any port)"
        )

    def handle_expect_100(self) -> bool:
        """Put "100 Continue" off until the body is about to be read (_body): a request refused
        before that (403 Host, 415, 413 over the size limit) is answered instead, so its client
        never sends the body."""
        self._expects_continue = True
        return True

    def _continue(self) -> None:
        if self._expects_continue and not self._continue_sent:
            self._continue_sent = True
            super().handle_expect_100()  # sends "100 Continue"

    def _body_unread(self) -> bool:
        """Whether the client is sending a body this request has not read (one it was never told
        to send after `Expect: 100-continue` does not count)."""
        if self._body_done or not self._has_body():
            return False
        return self._continue_sent or not self._expects_continue

    def _client_left(self) -> bool:
        """Whether the client has closed its connection, looked at without waiting: end of stream
        (or a reset) on a peek. Data waiting is a pipelined request, not a close."""
        sock = self.connection
        timeout = sock.gettimeout()
        sock.settimeout(0)  # a peek on a socket with a timeout would wait up to it for data
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:  # nothing to read, connection open
            return False
        except OSError:  # reset
            return True
        finally:
            sock.settimeout(timeout)

    def _has_body(self) -> bool:
        """Whether the request declares a body (an unreadable Content-Length counts as one)."""
        if self.headers.get("Transfer-Encoding") is not None:
            return True
        length = self.headers.get("Content-Length")
        try:
            return length is not None and int(length) != 0
        except ValueError:
            return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.route == "/health":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif self.route == "/v1/models":
            self._json(HTTPStatus.OK, self.service.models())
        else:
            self._not_found()

    def _not_found(self) -> None:
        if self.route in ROUTES:
            allowed = ROUTES[self.route]
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{self.route} takes {allowed}", "invalid_request_error"
            )
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.command} {self.route}", "not_found_error")

    # Every other method answers in the same JSON error format.
    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_found  # noqa: N815

    # GET's status and headers without the body (_json leaves it out for HEAD).
    do_HEAD = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        if self.route != "/v1/chat/completions":
            self._not_found()
            return
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != JSON_TYPE:
            got = f"got {content_type[:100]!r}" if content_type else "none was given"
            self._error(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be {JSON_TYPE}; {got}",
                "invalid_request_error",
            )
            return
        self._streaming = False
        try:
            req = ChatRequest.parse(self._body())
            with self.service.turn():
                # Requests queue for the engine; one whose client gave up meanwhile is not generated.
                if self._client_left():
                    raise ClientLeft("while its request waited: not generated")
                if req.stream:  # a stream stops at the first write that fails
                    self._sse(self.service.stream(req))
                else:
                    self._json(HTTPStatus.OK, self.service.complete(req, self._client_left))
        except RequestError as e:
            self._error(e.status, str(e), "invalid_request_error", e.param)
        except ServerBusy as e:
            headers = {"Retry-After": str(e.retry_after)}
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(e), "server_error", headers=headers)
        except ClientLeft as e:
            self.log_message("client left %s", e)
            self.close_connection = True
        except Exception as e:  # a bug must still answer the client (and leave the server up)
            self.log_error("error in %s: %r", self.path, e)
            if not self._streaming:  # once a stream has started, closing it is all that is left
                self._error(
                    HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(e).__name__}", "server_error"
                )
            self.close_connection = True

    def _body(self) -> Any:
        codings = [
            c.strip().lower() for c in self.headers.get("Transfer-Encoding", "").split(",") if c.strip()
        ]
        if codings and codings != ["chunked"]:
            raise RequestError(f"Transfer-Encoding {', '.join(codings)} is not supported (only chunked)")
        try:
            raw = self._read_chunked() if codings else self._read_sized()
        except TimeoutError:
            self._body_done = True  # given up on: a client this slow is not waited for again (_linger)
            raise RequestError(
                f"the request did not arrive in time (a read waits {self.timeout} s, a whole request "
                f"{self.request_deadline:g} s)",
                status=HTTPStatus.REQUEST_TIMEOUT,
            ) from None
        self._body_done = True
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(f"the request body is not valid JSON: {e}") from None
        except RecursionError:  # Python's json gives up past ~1,000 levels of [ or {
            raise RequestError("the request body is JSON nested too deeply") from None
        except ValueError as e:  # an integer of over 4,300 digits (Python's int conversion limit)
            raise RequestError(f"the request body is not valid JSON: {str(e).split(';')[0][:200]}") from None

    def _content_length(self) -> int:
        """The request's Content-Length: one value (repeats agreeing), digits only; else RequestError."""
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            raise RequestError("a Content-Length header (or chunked Transfer-Encoding) is required")
        if len(values) > 1:  # which one frames the body? (request smuggling's classic)
            shown = ", ".join(repr(v) for v in sorted(values))[:200]
            raise RequestError(f"conflicting Content-Length headers: {shown}")
        (value,) = values
        if not (value.isascii() and value.isdigit()):  # int() also takes "+5", "5_0", " 5", "٥"
            raise RequestError(f"Content-Length must be a number of bytes (digits only), got {value[:40]!r}")
        return int(value)

    def _read_sized(self) -> bytes:
        length = self._content_length()
        if length > self.max_body_bytes:
            raise RequestError(
                f"request body of {length} bytes is over the limit of {self.max_body_bytes} bytes",
                status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        self._continue()
        raw = self.rfile.read(length)
        if len(raw) < length:
            raise RequestError(f"the request body ended after {len(raw)} of {length} bytes (Content-Length)")
        return raw

    def _read_chunked(self) -> bytes:
        """A `Transfer-Encoding: chunked` body (RFC 9112 7.1): what clients that stream a body send."""
        parts: list[bytes] = []
        total = 0
        self._continue()
        while True:
            line = self.rfile.readline(1024)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not size_text or not set(size_text) <= _HEX:
                raise RequestError(f"bad chunk size line {line[:40]!r} in a chunked body")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > self.max_body_bytes:
                raise RequestError(
                    f"request body over the limit of {self.max_body_bytes} bytes",
                    status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )
            data = self.rfile.read(size)
            if len(data) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise RequestError("a chunk of the chunked body is cut short or not followed by CRLF")
            parts.append(data)
        for _ in range(MAX_TRAILER_LINES):  # trailer fields, up to the blank line
            if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                return b"".join(parts)
        raise RequestError(f"more than {MAX_TRAILER_LINES} trailer lines after a chunked body")

    def _json(self, status: HTTPStatus, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:  # say so: a keep-alive client would send its next request into it
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # nobody to answer: a log line, not a traceback
            self.log_message("client left before the %d reply", status)
            self.close_connection = True
            return
        if self.close_connection and self._body_unread():
            self._linger()

    def _error(
        self,
        status: HTTPStatus,
        message: str,
        kind: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.close_connection = True  # the body may be unread: this connection cannot carry another request
        error = {"message": message, "type": kind, "param": param, "code": None}
        self._json(status, {"error": error}, headers)

    def _linger(self) -> None:
        """Read and drop the rest of an unread body (up to linger_bytes / linger_seconds) after the
        reply, before the connection closes: closing on unread data resets the connection, and a
        client still writing its body then sees BrokenPipeError instead of the reply."""
        self._body_done = True
        self._reader.deadline = time.monotonic() + self.linger_seconds
        left = self.linger_bytes
        if self.headers.get("Transfer-Encoding") is None:
            with contextlib.suppress(RequestError):  # all of it is unread: no need to wait for the close
                left = min(left, self._content_length())
        with contextlib.suppress(OSError, ValueError):
            self.connection.shutdown(socket.SHUT_WR)  # the reply is whole: the client may read it now
            while left > 0 and (data := self.rfile.read1(min(left, 1 << 16))):
                left -= len(data)

    def _sse(self, chunks: Iterator[dict[str, Any]]) -> None:
        self._streaming = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the stream's end is the connection's end
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks:
                self._event(json.dumps(chunk))
            self._event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):  # the client left: stop generating
            pass
        except Exception as e:
            # The status line is gone: end the stream with an error event (OpenAI's clients raise
            # on it) rather than cutting it, which reads as a finished reply. Then log it as a bug.
            error = {"message": f"internal error: {type(e).__name__}", "type": "server_error"}
            with contextlib.suppress(OSError):
                self._event(json.dumps({"error": {**error, "param": None, "code": None}}))
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # Escaped as http.server's own logger does: a request line with terminal escapes must not
        # retitle or clear the operator's terminal, nor forge log lines.
        message = (format % args).translate(_CONTROL_CHARS_ESCAPED)
        sys.stderr.write(f"serve: {self.address_string()} {message}\n")


class _DeadlineReader(io.RawIOBase):
    """A handler's socket as its rfile's raw stream, with a total deadline per request.

    Each read waits at most `idle` seconds (http.server's per-read timeout) and, once a request's
    first byte has arrived, no later than `deadline` (set then, `budget` seconds on; the handler
    clears it between requests). Past it a read raises TimeoutError: http.server closes the
    connection on one in the request line or headers, _body answers 408.
    """

    def __init__(self, sock: socket.socket, idle: float | None, budget: float) -> None:
        self.sock = sock
        self.idle = idle
        self.budget = budget
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wait = self.idle
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request did not arrive whole in time")
            wait = left if wait is None else min(wait, left)
        self.sock.settimeout(wait)
        try:
            n = self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(self.idle)  # writes keep the plain timeout
        if n and self.deadline is None:
            self.deadline = time.monotonic() + self.budget
        return n


# C0 and C1 control characters -> \xNN, as http.server's own logger writes them (Python >= 3.11.4).
_CONTROL_CHARS_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def make_server(
    service: ChatService, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> ThreadingHTTPServer:
    """A ready server (not yet serving); port 0 picks a free port (see server.server_address)."""
    handler = type("BoundHandler", (Handler,), {"service": service})
    server_class = ThreadingHTTPServer
    if ":" in host:  # an IPv6 address
        server_class = type(
            "ThreadingHTTPServerV6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6}
        )
    server = server_class((host, port), handler)
    server.daemon_threads = True
    handler.allowed_hosts = _allowed_hosts(host, server.server_address[0])
    return server


def _allowed_hosts(host: str, bound: str) -> frozenset[str] | None:
    """The Host names a server bound to `bound` (asked for as `host`) answers; None: any.

    Bound to loopback, only this machine's names: a page that rebinds its own name to 127.0.0.1
    still sends that name. Bound elsewhere on purpose (--host), clients may use any name."""
    try:
        loopback = ipaddress.ip_address(bound).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    return LOOPBACK_NAMES | {host.lower().strip("[]"), bound.lower()}


# ---- CLI ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", default=DEFAULT_CKPT, help=f"checkpoint directory (default {DEFAULT_CKPT})")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}: this machine only, and only requests whose Host "
        "is localhost, 127.0.0.1, [::1] or the bound address, against DNS rebinding; another address "
        "exposes the server on purpose and takes any Host, with no authentication)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)"
    )
    parser.add_argument(
        "--model-name", default="nanochatgpt", help="the model id clients see (default nanochatgpt)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the decode step (GPU)")
    parser.add_argument(
        "--max-waiting",
        type=_non_negative,
        default=MAX_WAITING,
        help=f"requests that may wait while one generates (default {MAX_WAITING}); more are answered "
        "503 with Retry-After at once",
    )


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from pipeline.chat import load_chat_model
    from pipeline.engine import Engine

    try:
        model = load_chat_model(args.ckpt, args.device)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
    engine = Engine(model, compile_decode=args.compile)
    service = ChatService(engine, model_name=args.model_name, max_waiting=args.max_waiting)
    try:
        server = make_server(service, args.host, args.port)
    except (OSError, OverflowError) as e:  # OverflowError: a port outside 0-65535
        print(f"serve: cannot bind {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    if server.RequestHandlerClass.allowed_hosts is None:  # not a loopback address
        print(
            f"serve: listening on {host}, not only this machine, for any Host; there is no authentication",
            file=sys.stderr,
        )
    print(
        f"serve: http://{host}:{port}/v1/chat/completions (model {args.model_name!r}); Ctrl-C stops",
        file=sys.stderr,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
