"""`nanochatgpt serve`: the trained model behind OpenAI-style chat completions and Responses APIs,
on localhost.

    POST /v1/chat/completions   messages, max_tokens, temperature, top_p, top_k, seed, stop, stream
    POST /v1/responses          input, instructions, max_output_tokens, temperature, top_p, stream
                                (stateless: nothing is stored, so GET /v1/responses/<id> is a 404)
    GET  /v1/models             the one model served
    GET  /health                {"status": "ok"}

This module is the HTTP side; the APIs themselves are pipeline/chatrequest.py (validation, the mapping
onto the chat format), pipeline/chatapi.py (one generation at a time) and, mapped onto them, pipeline/responsesapi.py (whose
docstring says what of the Responses API is taken and what is a 400). Requests map onto the chat format the model was
trained on: `system` messages become the persona (the --context of `nanochatgpt chat`), `user`
turns are <human> turns, `assistant` turns are <bot> turns, and the reply is generated after a
final `user` message. Every message is rendered as ordinary text (pipeline.tokenizer.render), so a
client cannot forge a turn or a marker; the oldest exchanges are dropped when the conversation
outgrows the context window, the persona never. Stop strings follow OpenAI (at most four; the stop
string is not returned) and streamed pieces are whole UTF-8 characters (server-sent events, ending
with `data: [DONE]`; a Responses stream is OpenAI's named events, response.created to
response.completed).

The engine runs one generation at a time, and at most --max-waiting requests (default 8) wait for
it: more are answered 503 with Retry-After at once, which OpenAI's clients retry. A request whose
client has closed its connection is not generated, and a reply stops once its client is gone.
Every error is OpenAI's JSON error object, http.server's own included (a malformed request line,
HTTP/2, a URI or headers over its limits, a method HTTP does not define: 501), and a bug, even a
panic in a Rust extension (a BaseException), is a 500 rather than a connection closed unanswered.
Ctrl-C or SIGTERM stops it: the generation in flight stops at its next piece (a stream ends with
an error event), the requests waiting are answered 503, so are the connections still in the
kernel's accept queue and the requests still arriving (once they have arrived, or arrival_grace,
1 s, after the stop began, whatever their pace: 408 for one with no byte since), then it exits
(ChatService.stop, _stop).
The server binds to 127.0.0.1 unless --host says otherwise; it has no authentication, so only expose it on purpose.
Built on the standard library's http.server: a small local endpoint, not a production gateway.
A body over 1 MiB is refused with 413 (before "100 Continue", and read off the socket, bounded, so
the client sees it). Connections are pipeline/httpconn.py's: at most 64 at once (more are answered
503 at once), and a request must arrive whole within request_deadline (60 s) of its first byte.

Web pages the user visits must not reach it (cf. Ollama's CVE-2024-28224): bound to a loopback
address, the server answers 403 to any request whose Host header is not localhost, 127.0.0.1,
[::1] or the bound address (any port), which defeats DNS rebinding; bound to another address with
--host, it was exposed on purpose and takes any Host. Each POST route also requires
`Content-Type: application/json` (else 415): a page cannot send that cross-origin without a CORS
preflight, which this server never grants, so a form or a simple fetch cannot make it generate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from pipeline import responsesapi
from pipeline.argtypes import whole_number, whole_number_or
from pipeline.chat import CKPT_HELP, DEFAULT_CKPT, THREADS_HELP, load_engine
from pipeline.chatapi import (
    MAX_WAITING,
    ChatService,
    ClientLeft,
    Event,
    ServerBusy,
    ServerStopping,
    error_body,
)
from pipeline.chatrequest import ChatRequest, RequestError
from pipeline.cli import EXIT_INTERRUPTED
from pipeline.httpconn import (
    ARRIVAL_GRACE_SECONDS,
    MAX_BODY_BYTES,
    STALLED,
    UNFINISHED,
    ChatHTTPServer,
    ChatHTTPServerV6,
    DeadlineReader,
)
from pipeline.threadtuner import AUTO

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
STOP_SECONDS = 10.0  # how long a shutdown waits for the generation in flight to stop
MAX_TRAILER_LINES = 64  # a chunked body's trailer fields (read and ignored)
_HEX = frozenset(b"0123456789abcdefABCDEF")
ROUTES = {"/health": "GET", "/v1/models": "GET", "/v1/chat/completions": "POST", "/v1/responses": "POST"}
JSON_TYPE = "application/json"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST_HEADER = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::\d*)?")  # name or [IPv6], then an optional :port


@dataclass(frozen=True)
class Api:
    """A generating endpoint: its body parsed into a request, answered whole or as events."""

    parse: Callable[[Any], ChatRequest]
    complete: Callable[..., dict[str, Any]]  # (service, request, client_left, session)
    stream: Callable[..., Iterator[Event]]  # (service, request, session)


APIS = {
    "/v1/chat/completions": Api(ChatRequest.parse, ChatService.complete, ChatService.events),
    "/v1/responses": Api(responsesapi.ResponsesRequest.parse, responsesapi.create, responsesapi.stream),
}


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
    # Once the server stops, a request still arriving has this long to arrive whole, then it is cut:
    # 408 if no byte of it came meanwhile, else 503. A slow client does not hold the stop for STOP_SECONDS.
    arrival_grace = ARRIVAL_GRACE_SECONDS
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
        # rfile reads through a clock that enforces request_deadline (see DeadlineReader).
        self.rfile.close()
        self._reader = DeadlineReader(
            self.connection,
            self.timeout,
            self.request_deadline,
            self._request_began,
            stopped=lambda: getattr(self.server, "stopped_at", None),
            grace=self.arrival_grace,
        )
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = None  # the next request's clock starts with its first byte
        self._reader.cut_by_stop = None
        self._replied = False
        # Not the last request's: a request cut before its line was read is answered without them.
        self.command = self.requestline = ""
        # The body was read, or given up on. Until this request's headers are parsed there is no
        # body to know of (a 414 comes before them; the last request's headers are stale).
        self._body_done = True
        self._request = contextlib.ExitStack()  # left once this request is answered (_request_began)
        with self._request:
            super().handle_one_request()
            if self._reader.cut_by_stop == STALLED and not self._replied:
                # Cut in its line or headers: http.server closed without a word; say why.
                self.send_error(HTTPStatus.REQUEST_TIMEOUT, self._cut_by_stop_message())
            elif self._reader.cut_by_stop == UNFINISHED and not self._replied:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, str(ServerStopping()))

    def _cut_by_stop_message(self) -> str:
        return (
            f"the server is shutting down, and this request stopped arriving: no byte of it came "
            f"for {self.arrival_grace:g} s after the stop began; send it again once the server is back"
        )

    def send_response(self, code: int, message: str | None = None) -> None:
        self._replied = True  # a status line is out: a request cut now has had its answer
        super().send_response(code, message)

    def _request_began(self) -> None:
        """A request's first byte arrived: a server stopping waits for its answer (wait_answered),
        which is a 503 once its headers are read (parse_request). Counted only from the body's end,
        a request that arrived as Ctrl-C came was cut by the exit, unanswered."""
        self._request.enter_context(self.server.answering())

    def parse_request(self) -> bool:
        """http.server's parsing, then the checks every request passes before its method runs."""
        self._reader.start()  # a pipelined request's line came from the buffer: no read started it
        self._expects_continue = False  # the client waits for "100 Continue" before its body
        self._continue_sent = False
        self._body_done = True  # its errors (400, 431, 505) come before the headers are known
        if not super().parse_request():
            return False
        self._body_done = False
        refusal = self._host_refusal()
        if refusal:
            self._error(HTTPStatus.FORBIDDEN, refusal, "permission_error")
            return False
        if self.service.stopping:  # its body is not read: the 503 says all there is to say
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(ServerStopping()), "server_error")
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
        elif self.route.startswith("/v1/models/"):
            model, asked = self.service.model(), unquote(self.route.removeprefix("/v1/models/"))
            if asked == model["id"]:
                self._json(HTTPStatus.OK, model)
            else:
                self._error(
                    HTTPStatus.NOT_FOUND,
                    f"no model {asked!r}: this server has {model['id']!r}",
                    "invalid_request_error",
                    "model",
                    code="model_not_found",
                )
        else:
            self._not_found()

    def _not_found(self) -> None:
        if self.route in ROUTES:
            allowed = ROUTES[self.route]
            self._error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{self.route} takes {allowed}",
                "invalid_request_error",
                headers={"Allow": f"{allowed}, HEAD" if allowed == "GET" else allowed},  # RFC 9110 15.5.6
            )
        else:
            message = f"no route {self.command} {self.route}"
            if self.route.startswith("/v1/responses/"):  # retrieve, cancel, delete, input_items...
                message += (
                    ": this server keeps no responses (each POST /v1/responses is answered, then "
                    "forgotten, whatever `store` says), so none can be retrieved, listed or changed"
                )
            if f"/v1{self.route}" in ROUTES or self.route.startswith("/models/"):
                # An OpenAI client whose base_url lacks /v1 (many local servers take both): say so,
                # or "no route POST /chat/completions" leaves the user looking for a bug.
                message += f"; the API is under /v1 (/v1{self.route}): a client's base_url ends in /v1"
            self._error(HTTPStatus.NOT_FOUND, message, "invalid_request_error")  # as OpenAI types its 404

    # HTTP's other methods answer in the same JSON error format; one HTTP does not define is
    # answered 501 (RFC 9110 9.1: an unrecognized method), also in JSON (send_error).
    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_found  # noqa: N815

    # GET's status and headers without the body (_json leaves it out for HEAD).
    do_HEAD = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        api = APIS.get(self.route)
        if api is None:
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
        self._answer(api)

    def _answer(self, api: Api) -> None:
        """Generate the reply (_generate), or answer what went wrong instead."""
        try:
            self._generate(api)
        except RequestError as e:
            self._error(e.status, str(e), "invalid_request_error", e.param, code=e.code)
        except ServerBusy as e:
            headers = {"Retry-After": str(e.retry_after)}
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(e), "server_error", headers=headers)
        except ClientLeft as e:
            self.log_message("client left %s", e)
            self.close_connection = True
        except ServerStopping as e:  # a stream has said so in its error event already
            if not self._streaming:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(e), "server_error")
            self.close_connection = True
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # a bug must still answer the client (and leave the server up):
            # a Rust extension's panic (pyo3's PanicException, tiktoken's) is a BaseException
            self.log_error("error in %s: %r", self.path, e)
            if not self._streaming:  # once a stream has started, closing it is all that is left
                # OpenAI's SDKs retry every 5xx twice unless told not to: a bug here is
                # deterministic, and a retry would only run the failing generation again.
                self._error(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    f"internal error: {type(e).__name__}",
                    "server_error",
                    headers={"x-should-retry": "false"},
                )
            self.close_connection = True

    def _generate(self, api: Api) -> None:
        """The request parsed, its turn at the engine awaited, and the reply sent, whole or as a
        stream; what goes wrong is raised for do_POST to answer."""
        body = self._body()
        req = api.parse(body)
        session = self.service.prepare(req)  # a 400 is said at once, never after the line
        with self.service.turn(self._client_left):
            # Requests queue for the engine; one whose client gave up meanwhile is not generated.
            if self._client_left():
                raise ClientLeft("while its request waited: not generated")
            if req.stream:  # a stream stops at the first write that fails
                self._sse(api.stream(self.service, req, session))
            else:
                self._json(HTTPStatus.OK, api.complete(self.service, req, self._client_left, session))

    def _body(self) -> Any:
        # Repeated Transfer-Encoding lines are one comma-separated list (RFC 9110 5.3).
        codings = [
            c.strip().lower()
            for line in self.headers.get_all("Transfer-Encoding") or []
            for c in line.split(",")
            if c.strip()
        ]
        if codings and self.headers.get("Content-Length") is not None:
            # The coding frames the body, but a proxy may have framed it by the length and sent
            # what follows as its own request (smuggling): RFC 9112 6.1 says close after the reply.
            self.close_connection = True
        if codings and codings != ["chunked"]:
            raise RequestError(f"Transfer-Encoding {', '.join(codings)} is not supported (only chunked)")
        try:
            raw = self._read_chunked() if codings else self._read_sized()
        except TimeoutError:
            self._body_done = True  # given up on: a client this slow is not waited for again (_linger)
            if self._reader.cut_by_stop == UNFINISHED:  # still arriving when the stop's grace ran out
                raise ServerStopping() from None  # the 503 of every request the stop refuses
            message = (
                self._cut_by_stop_message()
                if self._reader.cut_by_stop
                else f"the request did not arrive in time (a read waits {self.timeout} s, a whole request "
                f"{self.request_deadline:g} s)"
            )
            raise RequestError(message, status=HTTPStatus.REQUEST_TIMEOUT) from None
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
        if self.service.stopping:  # a keep-alive connection carries no next request: it would be cut
            self.close_connection = True
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
        # A request cut by the stop's grace (its line, headers or body) has the rest of it unread too.
        if self.close_connection and (self._reader.cut_by_stop or self._body_unread()):
            self._linger()

    def _error(
        self,
        status: HTTPStatus,
        message: str,
        kind: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        self.close_connection = True  # the body may be unread: this connection cannot carry another request
        self._json(status, error_body(message, kind, param, code), headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, HTTP/2.0, a URI or headers over its
        limits, an unknown method) in the JSON format of every other reply, not its HTML page.

        A request line it could not read leaves the request at HTTP/0.9, for which http.server
        writes a bare body: the reply gets its status line and headers all the same (a client of
        this server speaks HTTP/1.x, and the status is the message)."""
        status = HTTPStatus(code)
        text = message or status.phrase
        if explain:
            text = f"{text}: {explain}"
        text = text[:300]  # a request line or header of up to 64 KiB may be quoted in it
        if code == HTTPStatus.NOT_IMPLEMENTED and self.route in ROUTES:  # a method HTTP does not define
            text = f"{text}; {self.route} takes {ROUTES[self.route]}"
        self.log_error("code %d, message %s", code, text)
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = self.protocol_version
        # What the client sent wrong (501: a method HTTP does not define; 505: HTTP/2 as text).
        client = code < 500 or code in (HTTPStatus.NOT_IMPLEMENTED, HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
        self._error(status, text, "invalid_request_error" if client else "server_error")

    def _linger(self) -> None:
        """Read and drop the rest of an unread body (up to linger_bytes / linger_seconds) after the
        reply, before the connection closes: closing on unread data resets the connection, and a
        client still writing its body then sees BrokenPipeError instead of the reply. A request cut
        by the stop is drained the same way, so the stop waits linger_seconds more at most."""
        self._body_done = True
        self._reader.deadline = time.monotonic() + self.linger_seconds
        # The reply is out: the stop's grace is for requests still arriving, and would cut this drain
        # at once past it (a request that came after the stop's grace, answered 503, then reset).
        self._reader.stopped = None
        left = self.linger_bytes
        # A request cut in its line or headers has no headers of its own (they may be the last
        # request's): what is left of it is not known, so only linger_bytes bounds it.
        if not self._reader.cut_by_stop and self.headers.get("Transfer-Encoding") is None:
            with contextlib.suppress(RequestError):  # all of it is unread: no need to wait for the close
                left = min(left, self._content_length())
        with contextlib.suppress(OSError, ValueError):
            self.connection.shutdown(socket.SHUT_WR)  # the reply is whole: the client may read it now
            while left > 0 and (data := self.rfile.read1(min(left, 1 << 16))):
                left -= len(data)

    def _sse(self, events: Iterator[Event]) -> None:
        """Server-sent events until `events` ends, the client leaves, or a failure (whose error
        events `events` sends first: see chatapi.ended_on_failure) is raised for do_POST to log."""
        self._streaming = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the stream's end is the connection's end
        self.end_headers()
        self.close_connection = True
        try:
            for name, data in events:
                event = "" if name is None else f"event: {name}\n"
                payload = data if isinstance(data, str) else json.dumps(data)
                self.wfile.write(f"{event}data: {payload}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client left: stop generating
            pass
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # Escaped as http.server's own logger does: a request line with terminal escapes must not
        # retitle or clear the operator's terminal, nor forge log lines.
        message = (format % args).translate(_CONTROL_CHARS_ESCAPED)
        sys.stderr.write(f"serve: {self.address_string()} {message}\n")


# C0 and C1 control characters -> \xNN, as http.server's own logger writes them (Python >= 3.11.4).
_CONTROL_CHARS_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def make_server(service: ChatService, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> ChatHTTPServer:
    """A ready server (not yet serving); port 0 picks a free port (see server.server_address)."""
    handler = type("BoundHandler", (Handler,), {"service": service})
    server_class = ChatHTTPServerV6 if ":" in host else ChatHTTPServer  # an IPv6 address
    server = server_class((host, port), handler)
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
    parser.add_argument("--ckpt", default=DEFAULT_CKPT, help=CKPT_HELP)
    parser.add_argument(
        "--host",
        type=_bind_address,
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
    parser.add_argument("--threads", type=whole_number_or(AUTO, 1), default=AUTO, help=THREADS_HELP)
    parser.add_argument(
        "--max-waiting",
        type=whole_number(0),
        default=MAX_WAITING,
        help=f"requests that may wait while one generates (default {MAX_WAITING}); more are answered "
        "503 with Retry-After at once",
    )


def _bind_address(value: str) -> str:
    """--host, refused when blank: socket's "" is every interface, so `--host "$HOST"` with HOST unset
    exposed the server to the network, when leaving --host out keeps it on this machine."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "an empty address would listen on every interface: leave --host out for this machine only, "
            "or give 0.0.0.0 (or ::) to expose the server on purpose"
        )
    return value


def base_url(host: str, port: int) -> str:
    """The URL clients use for a server bound to (host, port). An IPv6 address goes in brackets
    (RFC 3986: http://::1:8000 is no URL, curl exits 3) and its zone's % is written %25 (RFC 6874:
    a bare % starts a percent-escape, so curl refuses http://[fe80::1%eth0]:8000)."""
    if ":" in host:
        host = "[" + host.replace("%", "%25") + "]"
    return f"http://{host}:{port}"


def run(args: argparse.Namespace) -> int:
    # One handler from the first moment to exit: a signal must find it while torch imports and the
    # model loads (SIGTERM there killed it, 143, without a word), and a second one between
    # serve_forever's end and _stop (the default SIGTERM handler there did the same).
    with _stop_signals() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: StopSignal) -> int:
    try:
        ready = _ready(args, stop)
    except KeyboardInterrupt:
        # Ctrl-C while torch imports and the model loads (seconds on a CPU): it quits as chat does
        # there (exit 130), where it printed a traceback of that import.
        return _stopped_loading(stop)
    except Exception:
        # A stop signal's KeyboardInterrupt swallowed inside an import (torch's C code carries on
        # past a numpy import that failed) leaves that module half made: its next import fails
        # ("cannot load module more than once per process", a traceback). That is the signal's doing.
        if not stop.asked():
            raise
        return _stopped_loading(stop)
    if ready is None:
        return 2
    server, service = ready  # no call from here into the try (Python runs a pending signal handler at a call)
    try:
        _announce(server, args.model_name)  # after: whoever reads it may send SIGTERM at once
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    except Exception as e:
        # Said before the stop drains: a Ctrl-C there exits at once, and the traceback that this
        # error would print after the stop is then never printed.
        print(f"serve: the server failed ({type(e).__name__}: {e}); stopping", file=sys.stderr)
        raise
    finally:
        # However serve_forever ended (a signal, or an error of its own), the stop has begun: a signal
        # now is the "exit at once" one, not a first one for _stop to swallow as it drains.
        stop.stopping = True
        _stop(server, service)
    return 0


def _ready(args: argparse.Namespace, stop: StopSignal) -> tuple[ChatHTTPServer, ChatService] | None:
    """The model loaded and the server bound, not yet serving; None where it cannot be (said on
    stderr: exit 2). All of it under _run's handling of a stop signal: one between the load and
    serve_forever (ChatService, the bind) left run() itself, and cli.main took SIGTERM for Ctrl-C."""
    engine = load_engine(args, "serve")
    stop.check()  # its KeyboardInterrupt may have been swallowed while the model loaded
    if engine is None:
        return None
    service = ChatService(engine, model_name=args.model_name, max_waiting=args.max_waiting)
    try:
        server = make_server(service, args.host, args.port)
    except (OSError, OverflowError) as e:  # OverflowError: a port outside 0-65535
        print(f"serve: cannot bind {args.host}:{args.port}: {e}", file=sys.stderr)
        return None
    server.stop_asked = stop.asked  # serve_forever looks at each turn of its loop (service_actions)
    return server, service


def _stopped_loading(stop: StopSignal) -> int:
    print("\nserve: stopped before it started listening", file=sys.stderr)
    return EXIT_INTERRUPTED if stop.signum is None else 128 + stop.signum


def _announce(server: ChatHTTPServer, model_name: str) -> None:
    """The lines that say the server is up, and where."""
    host, port = server.server_address[:2]
    if server.RequestHandlerClass.allowed_hosts is None:  # not a loopback address
        print(
            f"serve: listening on {host}, not only this machine, for any Host; there is no authentication",
            file=sys.stderr,
        )
    print(
        f"serve: {base_url(host, port)}/v1/chat/completions and /v1/responses (model {model_name!r}); "
        "Ctrl-C stops",
        file=sys.stderr,
    )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Which stop signal has come (None: none yet), set by _stop_signals' handler before it raises
    KeyboardInterrupt. That exception can be lost: raised in a finalizer (a __del__, a weakref
    callback: "Exception ignored") or in Python code that C code called and then cleared the error
    of, as imports and torch's loading do. The first Ctrl-C then did nothing (a second one stopped
    serve), so run() also looks here where it goes on (check, asked)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopping = False  # the stop (_stop) under way: any signal exits at once

    def asked(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """KeyboardInterrupt again if a stop signal has come."""
        if self.signum is not None:
            raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_signals() -> Iterator[StopSignal]:
    """The first Ctrl-C or SIGTERM (systemd, docker stop, kill) stops the server (KeyboardInterrupt,
    then _stop), rather than killing it mid-reply; a second one, while it stops, exits at once with
    a line that says so and the shell's status for that signal (130 for Ctrl-C, 143 for SIGTERM),
    no traceback. The handlers they replace are put back after. Yields what signal came."""
    stop = StopSignal()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.signum is None and not stop.stopping:
            stop.signum = signum
            raise KeyboardInterrupt
        # RuntimeError: the signal came inside the main thread's own write to stderr (reentrant)
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            print(
                "serve: stopping now, without waiting for the requests in flight", file=sys.stderr, flush=True
            )
        # os._exit, not sys.exit: the generation still running in a daemon thread aborted the
        # interpreter's exit inside torch (see ChatService.stop), and this must not wait on it.
        os._exit(128 + signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(server: ChatHTTPServer, service: ChatService) -> None:
    """Stop the generation in flight and the requests waiting, and let their clients have their
    answers (a 503, or a stream's error event), before the interpreter exits: a generation left
    running in a daemon thread aborted the process inside torch, and the rest were cut unanswered.
    The listening socket is closed first (server_close), so a new connection is refused, not cut;
    those the kernel had queued are answered 503 before it closes, and an idle keep-alive
    connection closes. A request that has begun to arrive is waited for too (and answered 503 once
    its headers are read), for Handler.arrival_grace from the stop at most, whatever its pace: then
    it is a 503, or a 408 if no byte of it came meanwhile. A second Ctrl-C exits at once
    (_stop_signals). Call once serve_forever has returned."""
    with contextlib.suppress(KeyboardInterrupt):
        deadline = time.monotonic() + STOP_SECONDS
        server.server_close()
        if (
            service.stop(STOP_SECONDS)
            and server.wait_answered(max(0.0, deadline - time.monotonic()))
            and server.wait_refused(max(0.0, deadline - time.monotonic()))
        ):
            print("serve: stopped", file=sys.stderr)
        else:
            print(
                f"serve: the requests in flight did not end within {STOP_SECONDS:g} s; exiting anyway",
                file=sys.stderr,
            )
