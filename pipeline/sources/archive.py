"""Safe extraction of the members a source's `files:` (or `licence_files:`) globs select from a
.tar(.gz/.bz2/.xz) or .zip.

An archive is data from the network: a member may be named `../../.bashrc` or `/etc/cron.d/x`, or
be a link or a device. Nothing is handed to tarfile's or zipfile's own extraction. The whole member
list is checked before a byte is written: a name that is absolute, has a '..' part, a backslash or a
drive letter refuses the archive (SourceError, nothing written); symbolic links, devices and FIFOs are
never created, only counted as skipped, and a selected hard link (tar's way of storing a second name
of one file) gets a copy of its target's bytes. Each selected regular file is copied out by this
module, to `out/<its path in the archive>`, opened with 'xb' (a second member of the same name is
refused, not silently laid over the first). Before that, the selection's sizes as the archive
declares them (exact for tar; zipfile reads no more than a zip entry declares) are checked against
the free disk space, so an archive that would fill the disk (a "zip bomb" among them) is refused
with its figures, not half written; so is a selection unpacking to more than the readers allow a .gz
(readers.unpacked_limit: MAX_GZIP_RATIO times the archive's size, past UNPACKED_FLOOR), whatever
the free space: a 1 MB zip of 1 GiB of zeros, or a small tar of one file and hundreds of hard links
to it (each a full copy once extracted), is no corpus; so is an archive of more than MAX_MEMBERS
members, and a tar whose extended headers (a GNU long name, a pax record) would take more memory than
MAX_HEADER each or MAX_HEADERS in all: tarfile reads one whole into memory, and a gigabyte of zeros
declared as a member's long name packs into a megabyte of .tar.gz. A compressed tar is decompressed
by a reader of gzip members (_GzipMembers), bz2's or lzma's, a buffer's worth at a time, never all
that one compressed block expands to at once (tarfile's own stream reader did: a few KB of .tar.bz2
can hold gigabytes of zeros).
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pipeline.sources import globs, readers
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import brief

_DRIVE = re.compile(r"^[A-Za-z]:")
# Members an archive may hold. Each costs about 1 KB of memory to list (tarfile keeps every header
# it reads) and its selected files an inode each: 10 million empty members pack into a 50 MB
# .tar.gz. A corpus archive with more files than that is better unpacked and read by `local_path:`.
MAX_MEMBERS = 1_000_000
# An extended header (GNU long name or link name, pax record) is read whole into memory by tarfile,
# and what it says is kept for the member (a long name, pax fields): a real one holds a path or a few
# timestamps, a few hundred bytes. MAX_HEADERS bounds what all of them may hold, about what
# MAX_MEMBERS members' headers take anyway.
MAX_HEADER = 1 << 20
MAX_HEADERS = 256 << 20
_BUFFER = 256 << 10  # bytes of a compressed tar decompressed ahead of tarfile's reads
_EXTENDED = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class _OversizedHeader(tarfile.TarError):
    """A tar extended header over MAX_HEADER, or the archive's over MAX_HEADERS (not a ReadError:
    tarfile.open would take that for 'not this compression' and try the next)."""


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's TarInfo, refusing an extended header before tarfile reads it into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED:
            total = getattr(tar, "_extended_bytes", 0) + self.size
            if self.size > MAX_HEADER or total > MAX_HEADERS:
                over = f"{self.size:,} bytes" if self.size > MAX_HEADER else f"{total:,} bytes in all"
                raise _OversizedHeader(f"an extended header (long name or pax record) of {over}")
            tar._extended_bytes = total  # type: ignore[attr-defined]
        return super()._proc_member(tar)  # type: ignore[misc]


@dataclass(frozen=True)
class Member:
    """One archive entry: its name as stored, its kind, and how to read it (regular files only)."""

    name: str
    kind: str  # file | dir | symlink | hardlink | device | fifo | other
    opener: Callable[[], IO[bytes]] | None = None
    link: str | None = None  # a tar hard link's target (an earlier member's name)
    size: int = 0  # bytes the archive declares for a regular file


def _unsafe(name: str) -> bool:
    """A member name that could land outside the folder it is extracted into."""
    if not name or "\0" in name or _DRIVE.match(name):
        return True
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts


def _relative(name: str) -> str:
    """`./a//b/` -> `a/b`: the member's path below the extraction folder."""
    return "/".join(p for p in PurePosixPath(name).parts if p not in ("", "."))


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isreg():
        return "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "fifo"
    return "other"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if not info.filename:  # ZipInfo.is_dir() raises IndexError on it; _unsafe refuses the name
        return "other"
    if info.is_dir():
        return "dir"
    # The high bits are a unix mode only from a unix zipper (create_system 3; DOS/Windows leave
    # stray bits), and may hold permissions without a file type (Python's writestr(name, data)
    # stores 0o600): both are plain files.
    mode = info.external_attr >> 16
    if info.create_system != 3 or stat.S_IFMT(mode) in (0, stat.S_IFREG):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "other"


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Member:
    kind = _zip_kind(info)
    opener = partial(zf.open, info) if kind == "file" else None
    return Member(info.filename, kind, opener, size=info.file_size)


def _format(path: Path) -> str | None:
    """The archive's format: tar (any compression tarfile reads), zip, or None for neither."""
    try:
        with tarfile.open(path, tarinfo=_BoundedTarInfo):  # tarfile.is_tarfile, headers bounded
            return "tar"
    except _OversizedHeader:
        return "tar"  # extract's listing says why it is refused
    except tarfile.TarError:
        pass
    return "zip" if zipfile.is_zipfile(path) else None


@contextmanager
def _decompressed(path: Path) -> Iterator[IO[bytes]]:
    """The tar stream inside `path`: decompressed by _GzipMembers, bz2's or lzma's reader (recognised by its
    first bytes as tarfile's "r|*" does), or the file itself for a plain tar.

    tarfile's own stream reader decompresses each 10 KB it reads in one go and then copies what is
    left of the result for every 10 KB it hands on: quadratic in a member's compression ratio, and the
    whole result in memory (listing 32 MiB of zeros took 0.7 s as .tar.gz, 2.8 s as .tar.bz2, whose
    103 bytes tarfile unpacked at once; 0.08 s each through these readers, which return at most the
    bytes asked for: benchmarks/archive_list.py)."""
    with ExitStack() as stack:
        f: IO[bytes] = stack.enter_context(open(path, "rb"))
        head = f.read(10)
        f.seek(0)
        if head.startswith(b"\x1f\x8b\x08"):
            f = _GzipMembers(f)
        elif head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
            f = stack.enter_context(bz2.BZ2File(f))
        elif head.startswith((b"\x5d\x00\x00\x80", b"\xfd7zXZ")):  # .lzma (alone) or .xz
            f = stack.enter_context(lzma.LZMAFile(f))
        else:
            yield f
            return
        # tarfile asks for 10 KB at a time: served from a 256 KiB buffer, the decompressor's Python
        # layers run once per 256 KiB (listing 32 MiB of text members: about a tenth faster)
        yield stack.enter_context(io.BufferedReader(f, buffer_size=_BUFFER))  # type: ignore[arg-type]


_GZIP_MAGIC = b"\x1f\x8b"


class _GzipMembers(io.RawIOBase):
    """The data of a file's gzip members, one after another as gzip.GzipFile reads them, ending where
    the bytes after a member (past any zero padding) begin no other, as gzip(1) does ("trailing
    garbage ignored"): GzipFile took them for a member's header and refused the archive, where
    tarfile's own reader had stopped at its stream's end. A truncated member is an EOFError, as in
    GzipFile; a corrupt one zlib's error (CRC included)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._member = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer, CRC checked
        self._pending = b""  # compressed bytes read and not yet taken by the decompressor
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._done:
            if not self._pending:
                self._pending = self._f.read(_BUFFER)
                if not self._pending:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            out = self._member.decompress(self._pending, len(b))  # at most what was asked: bounded
            self._pending = self._member.unconsumed_tail
            if self._member.eof:
                self._next_member(self._member.unused_data)
            if out:
                b[: len(out)] = out
                return len(out)
        return 0

    def _next_member(self, rest: bytes) -> None:
        """Start on the member `rest` (the bytes after the one just ended) begins, or end the data."""
        while len(rest.lstrip(b"\0")) < len(_GZIP_MAGIC) and (more := self._f.read(_BUFFER)):
            rest = rest.lstrip(b"\0") + more
        rest = rest.lstrip(b"\0")
        self._done = not rest.startswith(_GZIP_MAGIC)
        self._member = zlib.decompressobj(wbits=31)
        self._pending = rest


@contextmanager
def _listing(path: Path, fmt: str) -> Iterator[tuple[list[Member], Callable[[], Iterator[Member]]]]:
    """(every member, a pass over the members in archive order that can open each regular file).

    A compressed tar is read as a stream twice (once to list, once to copy) rather than by seeking,
    which in a .tar.gz means decompressing from the start again for each member (_decompressed)."""
    if fmt == "tar":

        def tar_pass() -> Iterator[Member]:
            with (
                _decompressed(path) as raw,
                tarfile.open(fileobj=raw, mode="r|", tarinfo=_BoundedTarInfo) as tar,
            ):
                for info in tar:
                    kind = _tar_kind(info)
                    # a stream reads the member it stands on only: opened before the next one
                    opener = partial(tar.extractfile, info) if kind == "file" else None
                    link = info.linkname if kind == "hardlink" else None
                    yield Member(info.name, kind, opener, link, info.size)

        listed = []
        for m in tar_pass():
            listed.append(Member(m.name, m.kind, link=m.link, size=m.size))
            if len(listed) > MAX_MEMBERS:  # stop reading: tarfile keeps every header it has read
                break
        yield listed, tar_pass
    else:
        with zipfile.ZipFile(path) as zf:
            members = [_zip_member(zf, info) for info in zf.infolist()]
            yield members, lambda: iter(members)


def extract(
    path: Path, patterns: tuple[str, ...], out: Path, *, name: str, origin: str, key: str = "files"
) -> dict[str, Any]:
    """Copy the regular-file members of archive `path` that `patterns` select (the same rules as for
    files on disk, globs.select) into `out`, keeping their paths; return what was done for the
    manifest: {"members_extracted": n, "members_skipped": {kind: count}}. `origin` names the archive in
    messages (its URL or local path), `key` the sources.yaml field the patterns come from (`files:`,
    or `licence_files:` for the members holding its licence, extracted into data/raw/<name>/.licence/)."""
    fmt = _format(path)
    if fmt is None:
        raise SourceError(
            f"{name}: {origin} is not a tar or zip archive; drop `archive: true` for {name} in sources.yaml "
            "to keep the file as it is"
        )
    try:
        with _listing(path, fmt) as (members, second_pass):
            # Every check runs on the listing, before a byte is written: a refused archive leaves
            # nothing behind to be mistaken for its contents.
            plan = _plan(members, patterns, path, out, _Where(name, origin, key))
            _copy_out(second_pass(), plan, out, name)
    except _OversizedHeader as e:
        raise SourceError(
            f"{name}: archive {origin} holds {e} (at most {MAX_HEADER:,} each, {MAX_HEADERS:,} in all: "
            f"tarfile reads each into memory); the archive is refused; unpack it yourself and point "
            f"`local_path:` for {name} at the folder"
        ) from None
    # zlib.error / lzma.LZMAError: a corrupt deflate or LZMA member of a zip (bzip2 raises OSError)
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
        EOFError,
        OSError,
        RuntimeError,
        ValueError,
    ) as e:
        kind = "zlib.error" if isinstance(e, zlib.error) else type(e).__name__  # not a bare "error"
        raise SourceError(f"{name}: cannot extract archive {origin} ({kind}: {brief(str(e), 150)})") from None
    return {"members_extracted": len(plan.wanted), "members_skipped": dict(sorted((+plan.skipped).items()))}


@dataclass(frozen=True)
class _Where:
    """What extract's messages name: the source, the archive (URL or local path) and the
    sources.yaml field whose globs select its members."""

    name: str
    origin: str
    key: str

    @property
    def hint(self) -> str:
        return f"fix `{self.key}:` for {self.name} in sources.yaml"


@dataclass(frozen=True)
class _Plan:
    """What the second pass writes, decided from the listing alone."""

    wanted: set[str]  # selected paths below `out`: regular files, and hard links under their own name
    copies: dict[str, list[str]]  # a regular file's path -> the selected hard links to it, sorted
    skipped: Counter[str]  # members not written, by kind (for the manifest)


def _plan(members: list[Member], patterns: tuple[str, ...], path: Path, out: Path, at: _Where) -> _Plan:
    """Check the whole listing and decide what is written; raise SourceError for a refused archive."""
    _check_names(members, at.name, at.origin)
    files = [m for m in members if m.kind == "file"]
    counts = Counter(_relative(m.name) for m in files)
    links, linked = _selected_links(members, counts, patterns, at)
    counts.update(linked)  # a selected link is a file of its own name once extracted
    wanted = set(globs.select(counts, patterns))
    _check_wanted(wanted, counts, at.name, at.origin, at.key)
    _check_matched(wanted, patterns, at)
    copies: dict[str, list[str]] = {}
    for rel in sorted(linked):
        copies.setdefault(links[rel], []).append(rel)
    sizes = {_relative(m.name): m.size for m in files}
    # (a selected hard link is in `wanted` under its own name, with its target's size)
    need = sum(sizes[r] if r in sizes else sizes[links[r]] for r in wanted)
    _check_ratio(need, path, at.name, at.origin, at.key)
    _check_space(need, out, at.name, at.origin, at.key)
    skipped = Counter(m.kind for m in members if m.kind not in ("file", "dir"))
    skipped["hardlink"] -= linked.total()  # written as copies, so not skipped
    return _Plan(wanted, copies, skipped)


def _check_names(members: list[Member], name: str, origin: str) -> None:
    """Refuse an archive too long to list, or one with a member name that could not be laid out
    below data/raw/<name> as it is: any such name refuses the whole archive, selected or not."""
    if len(members) > MAX_MEMBERS:
        raise SourceError(
            f"{name}: archive {origin} holds more than {MAX_MEMBERS:,} members (listing them takes "
            f"gigabytes of memory, and as many files); unpack it yourself and point `local_path:` "
            f"for {name} at the folder"
        )
    for m in members:
        if "\\" in m.name:
            raise SourceError(
                f"{name}: archive {origin} names a member {brief(m.name, 100)} with '\\' as its "
                f"folder separator (a Windows zip); unpack it and point `local_path:` for {name} at "
                "the folder"
            )
        if _unsafe(m.name):
            raise SourceError(
                f"{name}: archive {origin} has a member named {brief(m.name, 100)}, which would be "
                f"written outside data/raw/{name}; the archive is refused"
            )


def _selected_links(
    members: list[Member], counts: Counter[str], patterns: tuple[str, ...], at: _Where
) -> tuple[dict[str, str], Counter[str]]:
    """(every usable hard link's path -> its target's path, the links `patterns` select whose target
    is a regular file with the number of link members of each name). A tar stores the second name
    of a hard-linked file as a link to the first: a selected link gets its target's bytes (the
    target comes earlier in the stream)."""
    pairs = [
        (_relative(m.name), _relative(m.link))
        for m in members
        if m.kind == "hardlink" and m.link and not _unsafe(m.link)  # else skipped, counted
    ]
    links = dict(pairs)
    selected = {rel for rel in globs.select(links, patterns) if links[rel] in counts}
    # Counted per member, not per name: two links of one name (`links` keeps the last) are one name
    # twice, refused by _check_wanted as two files of one name are, not the last silently winning.
    linked = Counter(rel for rel, _ in pairs if rel in selected)
    for rel in sorted(linked):  # which of the copies it means is unknowable
        if counts[links[rel]] > 1:
            raise SourceError(
                f"{at.name}: archive {at.origin} holds {brief(links[rel], 100)} twice (a hard link, "
                f"{brief(rel, 100)}, names it); refused"
            )
    return links, linked


def _check_matched(wanted: set[str], patterns: tuple[str, ...], at: _Where) -> None:
    """Every `files:` glob must select a member (as in a folder, download._select_each): a misspelt
    one among several would drop its files without a word. `licence_files:` globs may be listed in
    hope (LICENSE*, NOTICE*): one of them matching is enough."""
    unmatched = globs.unmatched(wanted, patterns)
    if not wanted or (at.key == "files" and unmatched):
        shown = ", ".join(unmatched if wanted else patterns) or "*"
        raise SourceError(f"{at.name}: archive {at.origin} has no file matching {shown}; {at.hint}")


def _copy_out(stream: Iterator[Member], plan: _Plan, out: Path, name: str) -> None:
    """Write each planned member as the pass over the archive reaches it: a stream reads only the
    member it stands on, so a member's hard-link copies are made from its file just written."""
    for m in stream:
        rel = _relative(m.name)
        dests = ([rel] if rel in plan.wanted else []) + plan.copies.get(rel, [])
        if m.opener is None or not dests:
            continue
        for i, dest_rel in enumerate(dests):
            dest = out / dest_rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.parent.resolve().is_relative_to(out.resolve()):  # cannot happen: _unsafe
                raise SourceError(f"{name}: archive member {brief(m.name, 100)} leaves data/raw/{name}")
            # 'xb': a second member of one name is refused, never laid over the first
            if i:  # a hard link's copy of the member just written (the stream has moved past its bytes)
                with open(out / dests[0], "rb") as src, open(dest, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                continue
            with m.opener() as src, open(dest, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def _check_ratio(need: int, path: Path, name: str, origin: str, key: str = "files") -> None:
    """Refuse, before a byte is written, a selection unpacking to more than a .gz may
    (readers.unpacked_limit): only the free space bounded it, and a bomb that fits fills the disk."""
    limit = readers.unpacked_limit(path)
    if need > limit:
        raise SourceError(
            f"{name}: the members of archive {origin} that `{key}:` selects unpack to {need:,} bytes, more "
            f"than {readers.MAX_GZIP_RATIO} times the archive's size (at most {limit:,}), which no corpus "
            f"does; the archive is refused; if it is real, unpack it yourself and point `local_path:` for "
            f"{name} at the folder"
        )


def _check_space(need: int, out: Path, name: str, origin: str, key: str = "files") -> None:
    """Refuse, before a byte is written, a selection larger than the disk space free at `out`."""
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    if need > free:
        raise SourceError(
            f"{name}: the members of archive {origin} that `{key}:` selects hold {_size(need)} unpacked, "
            f"but data/raw/{name} has {_size(free)} free; free disk space or narrow `{key}:` for {name}"
        )


def _size(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def _check_wanted(wanted: set[str], counts: Counter[str], name: str, origin: str, key: str = "files") -> None:
    """Refuse, before a byte is written, a selection that cannot be laid out as files: one name
    twice, a name that is also another's folder, a name that is not UTF-8 (the manifest could not
    say it)."""
    for rel in sorted(wanted):
        if counts[rel] > 1:
            raise SourceError(f"{name}: archive {origin} holds {brief(rel, 100)} twice; refused")
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise SourceError(
                f"{name}: archive {origin} has a member named {brief(rel, 100)} that is not UTF-8; "
                "unpack it, rename the file and point `local_path:` at the folder"
            ) from None
        parents = {str(p) for p in PurePosixPath(rel).parents if str(p) != "."}
        clash = sorted(parents & wanted)
        if clash:
            raise SourceError(
                f"{name}: archive {origin} holds {brief(clash[0], 100)} both as a file and as the folder "
                f"of {brief(rel, 100)}; narrow `{key}:`"
            )
