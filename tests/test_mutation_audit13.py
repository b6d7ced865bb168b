"""Mutation audit 13: pipeline/sources/http.py (resumable downloads) and pipeline/sources/hub.py.

Each test names the mutation it kills. The HTTP tests serve from a local ThreadingHTTPServer; the
Hub tests replace huggingface_hub.snapshot_download (no network here).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.sources import http as web
from pipeline.sources.errors import SourceError

PAYLOAD = os.urandom(200_000)
PIN = hashlib.sha256(PAYLOAD).hexdigest()


class _Server(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD. `status` answers every request with that HTTP error instead; `ranges` False
    ignores a Range (a 200 of the whole file), `content_range` False leaves Content-Range off a 206;
    `send` cuts the body after that many bytes (the connection closed cleanly)."""

    protocol_version = "HTTP/1.1"
    status = 0
    ranges = True
    content_range = True
    send: int | None = None

    def do_GET(self) -> None:  # noqa: N802
        if self.status:
            self.send_error(self.status)
            return
        rng = self.headers.get("Range") if self.ranges else None
        start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        if rng and self.content_range:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if self.send is None else body[: self.send])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NANOCHATGPT_DOWNLOAD_CACHE", str(tmp_path / "dl-cache"))
    return tmp_path / "dl-cache"


@pytest.fixture
def served(cache: Path) -> Iterator[tuple[str, type[_Server]]]:
    handler = type("Handler", (_Server,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/f.bin", handler
    httpd.shutdown()
    httpd.server_close()


def _kept(cache: Path, size: int) -> Path:
    """The partial file an interrupted earlier run left: PAYLOAD's first `size` bytes."""
    part = cache / f"{PIN}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(PAYLOAD[:size])
    return part


def test_a_fresh_download_answered_416_is_one_line(
    tmp_path: Path, cache: Path, served: tuple[str, type[_Server]]
) -> None:
    """Mutation http._download: `if not (e.code == 416 and have)` -> `if not (e.code == 416)`. A 416
    with nothing kept (no Range was sent) is the server's error, not "nothing left to fetch": the
    hash check of a part file that was never written raised FileNotFoundError (a traceback)."""
    url, handler = served
    handler.status = 416
    with pytest.raises(SourceError, match=rf"^demo: cannot download {re.escape(url)} \(HTTP 416\); or set"):
        web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert not (cache / f"{PIN}.part").exists() and not (tmp_path / "out").exists()


def test_a_resumed_download_answered_with_an_error_keeps_its_part(
    tmp_path: Path, cache: Path, served: tuple[str, type[_Server]]
) -> None:
    """Mutation http._download: `if not (e.code == 416 and have)` -> `if not have`. Any HTTP error
    to a resume was taken for "nothing left to fetch": the kept part was hashed, deleted as a wrong
    pin ("check the pin") and the error never said. And a 416 to a part already whole is the end of
    the download: the hash check takes it."""
    url, handler = served
    part = _kept(cache, 50_000)
    handler.status = 503
    with pytest.raises(SourceError, match=r"\(HTTP 503\); or set `local_path:`") as err:
        web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert "check the pin" not in str(err.value)
    assert part.read_bytes() == PAYLOAD[:50_000]
    _kept(cache, len(PAYLOAD))
    handler.status = 416
    web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert (tmp_path / "out" / "f.bin").read_bytes() == PAYLOAD and not part.exists()


def test_a_resume_needs_room_for_the_rest_only(
    tmp_path: Path, cache: Path, served: tuple[str, type[_Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation http._check_space: `total - got > free` -> `total > free`. A resume whose rest fits
    the free space was refused for the whole file's size, though most of it is already on disk."""
    url, _ = served
    _kept(cache, 150_000)
    monkeypatch.setattr(web.shutil, "disk_usage", lambda path: SimpleNamespace(free=100_000))
    web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert (tmp_path / "out" / "f.bin").read_bytes() == PAYLOAD
    _kept(cache, 50_000)  # the rest, 150,000 bytes, does not fit
    with pytest.raises(SourceError, match=r"is 200,000 bytes, 150,000 more than the download cache"):
        web.fetch_url(url, PIN, tmp_path / "out2" / "f.bin", name="demo")


def test_a_resume_without_content_range_cut_short_keeps_its_part(
    tmp_path: Path, cache: Path, served: tuple[str, type[_Server]]
) -> None:
    """Mutation http._declared_size: `start + int(length)` -> `int(length)`. A 206 without a
    Content-Range declares the rest's length only: taken for the whole size, a resume cut short past
    it (here 50,000 kept + 120,000 read of the 150,000 rest) was hashed and deleted as a wrong pin."""
    url, handler = served
    part = _kept(cache, 50_000)
    handler.content_range, handler.send = False, 120_000
    with pytest.raises(SourceError, match=r"interrupted at 170,000 of 200,000 bytes") as err:
        web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert "check the pin" not in str(err.value)
    assert part.read_bytes() == PAYLOAD[:170_000]


def test_a_server_ignoring_the_range_starts_the_file_over(
    tmp_path: Path, cache: Path, served: tuple[str, type[_Server]]
) -> None:
    """Mutations http._reply_start: `if resp.status != 206: return 0` dropped (a 200 of the whole
    file was appended to the kept bytes: "check the pin"); http._download: `_declared_size(resp,
    got)` -> `(resp, have)` and `got = have if resumed else 0` -> `got = have` (the kept bytes were
    counted into a reply that starts the file over: interrupted "at 80,000 of 250,000", or a whole
    file reported as interrupted)."""
    url, handler = served
    part = _kept(cache, 50_000)
    handler.ranges, handler.send = False, 30_000
    with pytest.raises(SourceError, match=r"interrupted at 30,000 of 200,000 bytes"):
        web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert part.read_bytes() == PAYLOAD[:30_000]  # the file started over, not appended
    handler.send = None
    web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert (tmp_path / "out" / "f.bin").read_bytes() == PAYLOAD and not part.exists()


@pytest.mark.parametrize("url", ["http:///etc/passwd", "https:relative/path", "http://[::1/x"])
def test_a_url_without_a_host_is_refused_before_the_cache_is_touched(
    tmp_path: Path, cache: Path, url: str
) -> None:
    """Mutations http._web_url: `and bool(parts.hostname)` dropped (urllib was asked, and said "no
    host given" after the cache and its lock were made), and `except ValueError` dropped (an unclosed
    IPv6 address raised ValueError: a traceback)."""
    with pytest.raises(SourceError, match=r"must be an https:// \(or http://\) URL"):
        web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    assert not cache.exists()


def test_a_cached_download_leaves_no_part_file(cache: Path, served: tuple[str, type[_Server]]) -> None:
    """Mutation http.cached_url: `part.replace(kept)` -> a copy. The whole file stayed twice in the
    cache, and its `.part` was taken for an interrupted download of it by the next fetch."""
    url, _ = served
    kept = web.cached_url(url, PIN, name="demo")
    assert kept == cache / PIN and kept.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == [PIN]


# ------------------------------------------------------------------------------------------- hub


@pytest.mark.parametrize(
    "error, race",
    [
        (AttributeError("x", name="request", obj=None), True),
        (AttributeError("x", name="stream", obj=None), True),
        (AttributeError("x", name="request", obj=object()), False),
        (AttributeError("x", name="headers", obj=None), False),
        (RuntimeError("Cannot send a request, as the client has been closed."), True),
        (RuntimeError("dictionary changed size during iteration"), False),
    ],
)
def test_only_the_hub_clients_own_race_is_taken_for_it(error: BaseException, race: bool) -> None:
    """Mutations hub._shared_client_race: `e.obj is None` dropped, or `e.name in ("request",
    "stream")` dropped. Any AttributeError of the hub's code (a bug, an API change) was retried once
    as the lost race, the first error lost behind the second."""
    from pipeline.sources.hub import _shared_client_race

    assert _shared_client_race(error) is race


@pytest.mark.parametrize(
    "value, offline", [("1", True), ("yes", True), ("ON", True), (" True ", True), ("0", False), ("", False)]
)
def test_hf_hub_offline_reads_as_huggingface_hub_reads_it(
    monkeypatch: pytest.MonkeyPatch, value: str, offline: bool
) -> None:
    """Mutation hub.offline: "yes" and "on" dropped from the values read as set. huggingface_hub takes
    1/ON/YES/TRUE (any case) for offline: read otherwise, a gated source without a token was refused
    offline, and a snapshot read from the cache alone was taken as complete."""
    from pipeline.sources.hub import offline as hub_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline


def test_an_empty_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation hub.fetch_snapshot: `os.environ.get(spec.token_env) or None` -> without `or None`.
    `export HF_TOKEN=` (empty) passed the gated check and reached the Hub, which refused it; the
    message to set the token is given before any call."""
    import dataclasses

    import huggingface_hub

    from pipeline.sources.hub import fetch_snapshot
    from pipeline.sources.registry import load_registry

    def never(*args: object, **kwargs: object) -> str:
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", never)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "")
    spec = dataclasses.replace(load_registry()["oasst1"], gated=True)
    with pytest.raises(SourceError, match=r"is gated and HF_TOKEN is not set; accept its terms"):
        fetch_snapshot(spec)


def test_the_hubs_log_level_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation hub.fetch_snapshot: `hf_logging.set_verbosity(verbosity)` dropped from the `finally`.
    The hub's warnings stayed silenced for the rest of the process (the chat CLI's model download,
    say) after one dataset fetch, failed or not."""
    import huggingface_hub
    from huggingface_hub.utils import logging as hf_logging

    from pipeline.sources.hub import fetch_snapshot
    from pipeline.sources.registry import load_registry

    def fails(*args: object, **kwargs: object) -> str:
        raise OSError("unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fails)
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_info()
    try:
        with pytest.raises(SourceError, match="unreachable"):
            fetch_snapshot(load_registry()["oasst1"])
        assert hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity(before)


class _Redirect(http.server.BaseHTTPRequestHandler):
    code = 302

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.code)
        self.send_header("Location", "ftp://127.0.0.1:9/elsewhere.bin")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("code", [301, 303, 307, 308])
def test_every_redirect_code_is_held_to_http(tmp_path: Path, cache: Path, code: int) -> None:
    """Mutation http._WebRedirects: one of http_error_301/303/307/308 left to urllib's own handler,
    which follows a redirect to ftp:// (only 302 was tested)."""
    handler = type("Handler", (_Redirect,), {"code": code})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/f.bin"
        with pytest.raises(SourceError, match=rf"\(HTTP {code}: redirect to a non-http\(s\) URL: ftp://"):
            web.fetch_url(url, PIN, tmp_path / "out" / "f.bin", name="demo")
    finally:
        httpd.shutdown()
        httpd.server_close()
