"""Resumable HTTP download of one file, checked against a pinned sha256.

Bytes go to `<cache>/<sha256>.part` first; an interrupted download resumes from where it
stopped with an HTTP Range request (a server that ignores Range restarts it from zero). A connection
that closes before the size the server declared (Content-Length, or Content-Range's total) keeps
the partial file for that resume: it is not hashed, nor taken for a wrong pin. A 206 reply that
starts elsewhere than asked is never appended (from byte 0 it starts the file over; from elsewhere
the partial file is dropped). A reply that declares no size stops before it leaves less than
RESERVE free on the cache's disk. The file is handed over only once its sha256 matches the pin, so
a truncated or tampered file never reaches data/raw. A plain file is then moved into data/raw; an
archive stays in the cache as `<cache>/<sha256>` (cached_url) and only its selected members are
extracted (archive.py).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

from pipeline.atomic import held_file, sha256_file
from pipeline.sources.errors import SourceError

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-\d+/(\d+)\s*$")
# Free space a reply that declares no size (chunked) may not write into: nothing else bounds it, and a
# server streaming without end would fill the disk (and the kept .part refill it on every resume).
RESERVE = 256 << 20
SCHEMES = ("http", "https")  # what a download is; urllib also opens file://, ftp:// and data:


def _web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in SCHEMES and bool(parts.hostname)
    except ValueError:  # `http://[::1` (an unclosed IPv6 address), a port that is not a number
        return False


class _RefusedRedirect(urllib.error.HTTPError):
    """A redirect to a URL that is not http(s): its message says where it pointed."""


class _WebRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, to http(s) only: its own rule also follows one to ftp://."""

    def http_error_302(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message
    ) -> IO[bytes] | None:
        # urllib refuses a redirect to file:// (or data:) itself, before redirect_request, as a bare
        # "HTTP 302" that said nothing of where it pointed: the same refusal as for ftp:// instead
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            newurl = urljoin(req.full_url, target)
            if not _web_url(newurl):
                raise _RefusedRedirect(
                    newurl, code, f"redirect to a non-http(s) URL: {newurl[:150]}", headers, fp
                )
        return super().http_error_302(req, fp, code, msg, headers)  # type: ignore[no-any-return]

    # urllib calls redirect_request only from http_error_302, after the check above: its own quoting
    # and path fix-up of the target change neither its scheme nor its host, so no second check there.
    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_WebRedirects)


def download_cache() -> Path:
    """Where partial downloads wait between runs (outside data/raw, which is written atomically)."""
    env = os.environ.get("NANOCHATGPT_DOWNLOAD_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "nanochatgpt" / "downloads"


def _declared_size(resp: http.client.HTTPResponse, start: int) -> int | None:
    """The whole file's size as the response declares it: Content-Range's total (a 206 reply),
    else `start` + Content-Length; None when neither says (a chunked reply)."""
    total = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
    if total:
        return int(total.group(2))
    length = (resp.headers.get("Content-Length") or "").strip()
    return start + int(length) if length.isdigit() else None


def _reply_start(resp: http.client.HTTPResponse, have: int) -> int:
    """Where in the file the reply's body starts: 0 for a whole file (200), Content-Range's first
    byte for a part (206; one without a Content-Range is taken at its word, `have`). A server may
    answer a Range with another part than asked, the whole file from 0 say: appended to the kept
    bytes, that made a file whose hash the pin refused ("check the pin") though both were right."""
    if resp.status != 206:
        return 0
    sent = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
    return have if sent is None else int(sent.group(1))


def _interrupted(name: str, url: str, have: int, total: int | None, why: str, hint: str) -> SourceError:
    of = f" of {total:,}" if total is not None else ""
    return SourceError(
        f"{name}: download of {url} interrupted at {have:,}{of} bytes ({why}); rerun to resume, {hint}"
    )


def _check_space(total: int | None, got: int, cache: Path, name: str, url: str, hint: str) -> None:
    """Refuse, before a byte is written, a download whose declared size is more than the disk
    holding the cache has free: a server (or a wrong URL) declaring terabytes would otherwise fill
    the disk before the sha256 pin could say it is the wrong file."""
    free = shutil.disk_usage(cache).free
    if total is not None and total - got > free:
        raise SourceError(
            f"{name}: {url} is {total:,} bytes, {total - got:,} more than the download cache {cache} has "
            f"free ({free:,}); free disk space or set NANOCHATGPT_DOWNLOAD_CACHE to a larger disk, {hint}"
        )


def _check_room(block: int, got: int, cache: Path, name: str, url: str, hint: str) -> None:
    """Stop a download of undeclared size before its next `block` bytes leave less than RESERVE
    free on the disk holding the cache; the partial file is kept, to resume once there is room."""
    free = shutil.disk_usage(cache).free
    if free - block < RESERVE:
        raise SourceError(
            f"{name}: download of {url} stopped at {got:,} bytes: the server declares no size and the "
            f"download cache {cache} has {free:,} bytes free (a download stops before it leaves less than "
            f"{RESERVE:,}); free disk space or set NANOCHATGPT_DOWNLOAD_CACHE to a larger disk, then "
            f"rerun to resume, {hint}"
        )


def _refuse_non_web(url: str, name: str, hint: str) -> None:
    if not _web_url(url):
        # `location: file:///home/you/.ssh/id_rsa` would read a file of this machine (and print its
        # sha256); a file already here is what `local_path:` is for
        raise SourceError(
            f"{name}: cannot download {url[:150]}: a url source's `location:` must be an https:// (or "
            f"http://) URL; {hint}"
        )


def _download(url: str, sha256: str, *, name: str, hint: str, timeout: float) -> Path:
    """`<cache>/<sha256>.part`, complete and matching the pin: resumed from a partial earlier run,
    kept (and SourceError raised) when the connection ends short of the declared size, deleted (and
    SourceError raised) when the whole file's hash differs. The caller has refused a non-web URL and
    holds the cache's lock for it (_one_download_of, which made the cache folder)."""
    cache = download_cache()
    part = cache / f"{sha256}.part"
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    got, total = have, None
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            start = _reply_start(resp, have)
            if start not in (0, have):  # neither the rest asked for nor the whole file
                part.unlink(missing_ok=True)
                raise SourceError(
                    f"{name}: {url} answered a request for its bytes from {have:,} on with bytes from "
                    f"{start:,} on; the partial download is dropped, rerun to fetch it whole, {hint}"
                )
            resumed = have > 0 and start == have
            got = have if resumed else 0
            total = _declared_size(resp, got)
            _check_space(total, got, cache, name, url, hint)
            with (
                open(part, "ab" if resumed else "wb") as out,
                tqdm(
                    total=total,
                    initial=got,
                    unit="B",
                    unit_scale=True,
                    desc=name,
                    disable=None,
                ) as bar,
            ):
                # A clean close part-way ends read() with b"" like the end of the file does: only
                # the byte count against the declared size tells the two apart (checked below).
                while block := resp.read(CHUNK):
                    if total is None:  # a declared size was checked against the free space above
                        _check_room(len(block), got, cache, name, url, hint)
                    out.write(block)
                    got += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and have):  # 416: nothing left to fetch; the hash check decides
            why = f"HTTP {e.code}: {e.msg}" if isinstance(e, _RefusedRedirect) else f"HTTP {e.code}"
            raise SourceError(f"{name}: cannot download {url} ({why}); {hint}") from None
    except http.client.HTTPException as e:  # a chunked reply cut short (IncompleteRead), a garbled one
        raise _interrupted(name, url, got, total, type(e).__name__, hint) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceError(f"{name}: cannot download {url} ({reason}); rerun to resume, {hint}") from None
    if total is not None and got < total:
        raise _interrupted(name, url, got, total, "the connection closed early", hint)
    got_sha = sha256_file(part)
    if got_sha != sha256:
        part.unlink()
        raise SourceError(
            f"{name}: {url} has sha256 {got_sha}, expected the pinned {sha256}; check the pin, {hint}"
        )
    return part


def fetch_url(url: str, sha256: str, dest: Path, *, name: str, timeout: float = 60.0) -> None:
    """Download `url` to `dest`, resuming a previous partial download; raise SourceError on failure."""
    hint = f"or set `local_path:` for {name} in sources.yaml to the file you already have"
    _refuse_non_web(url, name, hint)  # before the cache is touched
    with _one_download_of(sha256, name):
        part = _download(url, sha256, name=name, hint=hint, timeout=timeout)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(part, dest)


def cached_url(url: str, sha256: str, *, name: str, timeout: float = 60.0) -> Path:
    """`<cache>/<sha256>`: the file at `url`, downloaded once and kept (an archive is read from here
    and only its selected members go to data/raw, so a changed `files:` re-extracts without a
    download). A kept file is hashed again before use; one that no longer matches is fetched anew."""
    hint = f"or set `local_path:` for {name} in sources.yaml to the archive you already have"
    _refuse_non_web(url, name, hint)  # before the cache is touched
    kept = download_cache() / sha256
    with _one_download_of(sha256, name):
        if kept.is_file() and sha256_file(kept) == sha256:
            return kept
        kept.unlink(missing_ok=True)
        part = _download(url, sha256, name=name, hint=hint, timeout=timeout)
        part.replace(kept)
    return kept


@contextlib.contextmanager
def _one_download_of(sha256: str, name: str) -> Iterator[None]:
    """Hold `<cache>/<sha256>.lock` (an flock, dropped by the kernel when its holder dies) while the
    pinned file is downloaded into `<sha256>.part` and moved out. The cache is shared by every clone
    of the project: two `dvc repro` at once wrote into one part file, and each was told to "check
    the pin" of a right pin. The second waits, then finds the file kept (cached_url) or fetches it
    again (fetch_url moved the part away)."""
    cache = download_cache()
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / f"{sha256}.lock"
    told: list[bool] = []  # `waiting` is said once, however often the lock file is made anew

    def waiting() -> None:
        if not told:
            print(f"{name}: waiting for another download of the same file into {cache}", file=sys.stderr)
            told.append(True)

    # A holder deletes it before it lets go, so a waiter may have locked a file no longer there:
    # held_file makes it anew then.
    fd, _ = held_file(lambda: (lock.touch(), str(lock))[1], on_wait=waiting)
    try:
        yield
    finally:
        # Deleted while still locked: a run that waited on it sees it gone and locks a new one.
        lock.unlink(missing_ok=True)
        os.close(fd)
