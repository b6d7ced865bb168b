"""Connections for pipeline/serve.py's HTTP server: how many are served, how a refused one is
closed, and how long a request may take to arrive.

    ChatHTTPServer    http.server's threading server with a kernel backlog of LISTEN_BACKLOG and at
                      most MAX_CONNECTIONS connections at once (each has a thread); past that a new
                      connection is answered 503 on the accept thread, without reading its request;
                      at close, so is each connection still in the kernel's accept queue
    _Reaper           the lingering close of those refused connections: one daemon thread reads and
                      drops what each client still sends, briefly and bounded, then closes it, so a
                      client that writes its whole request before reading gets the 503, not a reset
    DeadlineReader    a handler's socket as its rfile, with a deadline for the whole request on top
                      of the per-read timeout: a client pacing one byte a minute cannot hold a thread;
                      once the server stops, a request still arriving is cut after a grace

What is said on a connection (routes, the Host check, bodies, errors) is serve.py's Handler.
"""

from __future__ import annotations

import contextlib
import io
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

from pipeline.chatapi import ServerStopping, error_body

LISTEN_BACKLOG = 128  # connections the kernel holds for accept() (socketserver's default: 5)
MAX_CONNECTIONS = 64  # connections served at once (each has a thread); more get 503 at once
MAX_REFUSED_LINGERING = 64  # refused connections drained at once (one thread for all); more close at once
REFUSED_LINGER_SECONDS = 1.0  # how long a refused connection's request is read and dropped
# A chat request is text: serve.Handler refuses a larger body (413) before reading it; the reaper
# reads up to twice it off a refused connection (a request the server would take, and its headers).
MAX_BODY_BYTES = 1 << 20
# Once the server stops, a request still arriving has this long to arrive whole; then it is cut (408
# if no byte of it came meanwhile, else 503) and the stop goes on. Counted from the stop, not from each
# byte: a client that sent a byte and stalled, or one sending a byte a second, held the stop for
# STOP_SECONDS.
ARRIVAL_GRACE_SECONDS = 1.0
STALLED = "stalled"  # DeadlineReader.cut_by_stop: no byte of the request since the stop began (408)
UNFINISHED = "unfinished"  # bytes came since the stop began, but not the whole request (503)
STOP_POLL_SECONDS = 0.1  # how often a read of a request under way looks whether the stop began


class DeadlineReader(io.RawIOBase):
    """A handler's socket as its rfile's raw stream, with a total deadline per request, cut short
    once the server stops.

    Each read waits at most `idle` seconds (http.server's per-read timeout) and, once a request's
    first byte has arrived, no later than `deadline` (set then, `budget` seconds on; the handler
    clears it between requests). Past it a read raises TimeoutError: http.server closes the
    connection on one in the request line or headers, serve.Handler._body answers 408.

    Once `stopped()` gives the time a stop began, a request still arriving has `grace` seconds from
    then, whatever its byte rate: past that a read raises TimeoutError, with `cut_by_stop` saying
    whether any byte came since the stop (UNFINISHED) or none did (STALLED). A read of a request
    under way waits in slices of STOP_POLL_SECONDS so that it sees the stop begin.
    """

    def __init__(
        self,
        sock: socket.socket,
        idle: float | None,
        budget: float,
        began: Callable[[], None] | None = None,
        stopped: Callable[[], float | None] | None = None,
        grace: float = ARRIVAL_GRACE_SECONDS,
    ) -> None:
        self.sock = sock
        self.idle = idle
        self.budget = budget
        self.began = began  # called at each request's first byte (serve.Handler counts it in flight)
        self.stopped = stopped  # when the server began to stop (monotonic), or None
        self.grace = grace
        self.deadline: float | None = None
        self.cut_by_stop: str | None = None  # STALLED or UNFINISHED: the stop's grace ran out
        self.last_byte: float | None = None  # when a recv last returned data (monotonic)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        began = time.monotonic()
        while True:
            wait = self._wait(began)
            self.sock.settimeout(wait)
            try:
                n = self.sock.recv_into(buffer)
            except TimeoutError:
                continue  # a slice or a limit ran out: _wait says which
            finally:
                self.sock.settimeout(self.idle)  # writes keep the plain timeout
            if n:
                self.last_byte = time.monotonic()
                self.start()
            return n

    def _wait(self, began: float) -> float | None:
        """How long the next recv of a read begun at `began` may wait; TimeoutError once a limit
        (idle, the request's deadline, the stop's grace) has passed."""
        now = time.monotonic()
        ends = [] if self.idle is None else [began + self.idle]
        stopped = self.stopped() if self.stopped is not None and self.deadline is not None else None
        if self.deadline is not None:
            if self.deadline <= now:
                raise TimeoutError("the request did not arrive whole in time")
            ends.append(self.deadline)
        if stopped is not None:  # the stop's grace, from the stop: a byte now and then does not extend it
            if stopped + self.grace <= now:
                arrived = self.last_byte is not None and self.last_byte >= stopped
                self.cut_by_stop = UNFINISHED if arrived else STALLED
                raise TimeoutError(
                    f"the request was not whole {self.grace:g} s after the server began to stop"
                )
            ends.append(stopped + self.grace)
        if ends and min(ends) <= now:
            raise TimeoutError("timed out")  # idle: as the socket's own timeout says it
        wait = None if not ends else min(ends) - now
        if self.deadline is not None and self.stopped is not None and stopped is None:
            wait = STOP_POLL_SECONDS if wait is None else min(wait, STOP_POLL_SECONDS)  # see the stop come
        return wait

    def start(self) -> None:
        """Start the request's clock, and call `began`, unless its first byte read already did: a
        request pipelined behind the last one reached the buffer with that one's reads."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.budget
            if self.began is not None:
                self.began()


class _Reaper:
    """Lingering close for refused connections: one daemon thread reads and drops what each client
    still sends, for up to `seconds` (and `max_bytes`: a request the server would take, 1 MiB of
    body and its headers, fits), then closes it.

    Closing a socket with unread data resets the connection: a client that writes its whole
    request before reading (http.client, urllib, the OpenAI SDK) then got BrokenPipeError or a
    reset instead of the 503 waiting for it. The refusing thread (the accept loop) must never wait
    on a client, so it only hands the socket over; with `capacity` sockets held, add() says no
    and the caller closes at once (the reset, but nothing grows without bound)."""

    def __init__(self, capacity: int, seconds: float, max_bytes: int = 2 * MAX_BODY_BYTES) -> None:
        self.capacity = capacity
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # guards the fields below (the thread and add/close share them)
        self._incoming: list[socket.socket] = []  # handed over, not yet watched by the thread
        self._held = 0  # sockets handed over and not yet closed
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None  # a byte on this pair wakes the thread
        self._wake_w: socket.socket | None = None

    def add(self, sock: socket.socket) -> bool:
        """Take `sock` (its reply sent, its write side shut) to drain and close; False when full
        or closed (the caller closes it). Never waits."""
        with self._lock:
            if self._closed or self._held >= self.capacity:
                return False
            if self._thread is None:  # started on the first refusal: most servers never refuse
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                self._thread = threading.Thread(target=self._run, name="refused-connections", daemon=True)
                self._thread.start()
            self._held += 1
            self._incoming.append(sock)
            self._wake()
        return True

    def close(self) -> None:
        """Take no more sockets; those held still get their linger (each up to `seconds`, less once
        its client closes), then the thread closes them and ends (see join)."""
        with self._lock:
            self._closed = True
            if self._thread is not None:
                self._wake()

    def join(self, timeout: float) -> bool:
        """Wait until close() has let every held socket go; False at `timeout`."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is pending already
            self._wake_w.send(b"x")

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        draining: dict[socket.socket, list[float]] = {}  # socket -> [deadline, bytes left]
        try:
            while True:
                now = time.monotonic()
                wait = min((d for d, _ in draining.values()), default=now + 3600) - now
                for key, _ in selector.select(max(0.0, wait)):
                    self._read(selector, draining, key.fileobj)
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                    closed = self._closed
                self._watch(selector, draining, incoming)
                now = time.monotonic()
                for sock in [s for s, (d, _) in draining.items() if d <= now]:
                    self._drop(selector, draining, sock)
                if closed and not draining:  # closed: the last linger is over
                    return
        finally:  # done, or a bug: either way nothing is taken or held any more
            self._let_go(selector, draining)

    def _read(self, selector: selectors.BaseSelector, draining: dict, sock: Any) -> None:
        """Read and drop what `sock` has; close it once its client closed or sent max_bytes. On the
        wake-up socket, only clear the wake-ups (what they ask for is done after each select)."""
        if sock is self._wake_r:
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
            return
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:  # reset by the client: nothing left to wait for
            data = b""
        draining[sock][1] -= len(data)
        if not data or draining[sock][1] <= 0:  # the client closed, or sent enough
            self._drop(selector, draining, sock)

    def _watch(self, selector: selectors.BaseSelector, draining: dict, incoming: list[socket.socket]) -> None:
        """Start draining the sockets just handed over, each until `seconds` from now."""
        deadline = time.monotonic() + self.seconds
        for sock in incoming:
            try:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            except (OSError, ValueError):  # closed meanwhile
                self._release(sock)
                continue
            draining[sock] = [deadline, self.max_bytes]

    def _let_go(self, selector: selectors.BaseSelector, draining: dict) -> None:
        """Refuse any more sockets and close every one held, the thread's wake-up pair too."""
        with self._lock:
            self._closed = True
            left = [*draining, *self._incoming]
            self._incoming.clear()
            self._held -= len(left)
            self._wake_r.close()
            self._wake_w.close()
        for sock in left:
            sock.close()
        selector.close()

    def _drop(self, selector: selectors.BaseSelector, draining: dict, sock: socket.socket) -> None:
        selector.unregister(sock)
        del draining[sock]
        self._release(sock)

    def _release(self, sock: socket.socket) -> None:
        sock.close()
        with self._lock:
            self._held -= 1


class ChatHTTPServer(ThreadingHTTPServer):
    """http.server's threading server, with room in the kernel's queue and a cap on connections.

    Each connection has a thread for as long as it lives (an idle keep-alive or a request trickling
    in, up to serve.Handler's timeout / request_deadline): without a cap, 300 half-sent requests held 300
    threads. Past max_connections a new connection is answered 503 at once, and its request is read
    and dropped by one thread for all such connections (_Reaper) before it closes."""

    # socketserver listens with a backlog of 5: a burst of clients while a generation keeps the
    # CPUs busy was reset by the kernel before the server could answer them 503.
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Whether a stop signal has come (serve.run sets it): its KeyboardInterrupt may have been
        # lost (serve.StopSignal), so serve_forever looks at each turn of its loop (service_actions).
        self.stop_asked: Callable[[], bool] | None = None
        self._open = 0  # connections with a thread
        self._open_lock = threading.Lock()
        self._reaper = _Reaper(MAX_REFUSED_LINGERING, REFUSED_LINGER_SECONDS)
        self._answering = 0  # requests begun (a first byte read) and not yet answered (see answering())
        self._answered = threading.Condition()
        self.stopped_at: float | None = None  # when server_close began the stop (monotonic)
        super().__init__(*args, **kwargs)

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a request, from its first byte, until its reply is written: a server shutting down
        waits for those (wait_answered) so that their clients get the reply, not a connection cut."""
        with self._answered:
            self._answering += 1
        try:
            yield
        finally:
            with self._answered:
                self._answering -= 1
                self._answered.notify_all()

    def wait_answered(self, timeout: float) -> bool:
        """Wait until every request counted by answering() is answered; False at `timeout`."""
        with self._answered:
            return self._answered.wait_for(lambda: self._answering == 0, timeout)

    def wait_refused(self, timeout: float) -> bool:
        """Wait until the connections refused (503) have had their lingering close (_Reaper), so an
        exit does not reset them; False at `timeout`. Call after server_close."""
        return self._reaper.join(timeout)

    def server_close(self) -> None:
        """Stop: answer 503 to the connections waiting in the kernel's accept queue (closing the
        listener reset them: their clients saw ECONNRESET, not why), then close the listener. From
        here a request still arriving has a short grace (DeadlineReader), and refused connections
        their lingering close (wait_refused). Call after serve_forever has returned."""
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self._refuse_queued()
        super().server_close()
        self._reaper.close()

    def _refuse_queued(self) -> None:
        """Accept, without waiting, what the kernel has queued, and answer each 503 (_refuse). At
        most the queue's size: a client connecting meanwhile does not keep this going. One that
        connects between the last accept and the close is still reset, as is one past the
        reaper's capacity (it is answered, then closed at once)."""
        if self.socket.fileno() < 0:  # closed already
            return
        self.socket.setblocking(False)
        for _ in range(self.request_queue_size):
            try:
                request, _ = self.socket.accept()
            except BlockingIOError:  # the queue is empty
                return
            except OSError:  # one connection aborted (ECONNABORTED, accept(2)'s pending errors): next
                continue
            self._refuse(request, str(ServerStopping()), retry_after=False)

    def service_actions(self) -> None:
        """After each turn of serve_forever's loop (at most poll_interval, 0.5 s, apart): end it, as
        Ctrl-C's KeyboardInterrupt would have, once a stop signal has come."""
        super().service_actions()
        if self.stop_asked is not None and self.stop_asked():
            raise KeyboardInterrupt

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            full = self._open >= self.max_connections
            if not full:
                self._open += 1
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: it will not count itself out
            with self._open_lock:
                self._open -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open -= 1

    def _refuse(self, request: socket.socket, message: str = "", retry_after: bool = True) -> None:
        """503 on the accept thread, without reading the request: a small write to a new socket
        does not block, and nothing here may wait on the client. The request is then read and
        dropped by the reaper (see _Reaper), or, with it full, the socket closes at once. Without
        `message`, the refusal says the server has too many connections."""
        message = (
            message or f"too many connections (at most {self.max_connections} at once); try again shortly"
        )
        body = json.dumps(error_body(message, "server_error"))
        retry = "Retry-After: 1\r\n" if retry_after else ""  # a server stopping has no "when"
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n"
        )
        try:
            request.setblocking(False)
            request.send((head + body).encode())
            request.shutdown(socket.SHUT_WR)  # the reply is whole: the client may read it now
        except OSError:  # the client is gone already
            self.shutdown_request(request)
            return
        if not self._reaper.add(request):
            self.shutdown_request(request)


class ChatHTTPServerV6(ChatHTTPServer):
    address_family = socket.AF_INET6
