"""Benchmark: listing a compressed tar the way pipeline.sources.archive does now (`_listing`: gzip's,
bz2's or lzma's reader under tarfile's plain-tar stream) against tarfile's own compressed stream
reader (`tarfile.open(path, "r|*")`, what it did before), on generated archives:

  zeros.tar.gz   one member of --zeros-mib MiB of zeros (a bomb: about 1 KB of .tar.gz per MiB)
  zeros.tar.bz2  one member of --bz2-mib MiB of zeros as .tar.bz2 (a few hundred bytes; tarfile's
                 stream reader unpacked it whole, and took 72 s to list 48 MiB)
  text.tar.gz    --text-mib members of 1 MiB of random words (compress like text)
  small.tar.gz   --small members of 200-800 bytes of words

    python -m benchmarks.archive_list
    python -m benchmarks.archive_list --zeros-mib 256 --bz2-mib 32 --text-mib 64 --small 50000

Each listing runs in its own process, so that its peak RSS is its own, and prints the listing's
seconds, the process's seconds and peak RSS. Both must list the same members (names, kinds, sizes:
checked).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from benchmarks.args import positive_int
from benchmarks.child import measure_steps, parser_with_children, ran_as_child, run_child, work_folder
from pipeline.sources import archive

ARCHIVES = ("zeros.tar.gz", "zeros.tar.bz2", "text.tar.gz", "small.tar.gz")
CURRENT = "current"  # in the work folder: which archive a listing child reads
SIZES = "sizes.json"  # in the work folder: the generate child's sizes
MODULE = "benchmarks.archive_list"
WORDS = [f"w{i}" for i in range(5000)]


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read without holding them all."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def _add(tar: tarfile.TarFile, name: str, size: int, data: io.RawIOBase | io.BytesIO) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    tar.addfile(info, io.BufferedReader(data) if isinstance(data, io.RawIOBase) else data)


def _words(rng: random.Random, size: int) -> bytes:
    out = " ".join(rng.choices(WORDS, k=size // 5 + 1)).encode()
    return out[:size]


def generate(work: Path, zeros_mib: int, bz2_mib: int, text_mib: int, small: int) -> None:
    for mode, name, mib in (("w:gz", "zeros.tar.gz", zeros_mib), ("w:bz2", "zeros.tar.bz2", bz2_mib)):
        with tarfile.open(work / name, mode) as tar:
            _add(tar, "zeros.bin", mib << 20, _Zeros(mib << 20))
    rng = random.Random(0)
    with tarfile.open(work / "text.tar.gz", "w:gz", compresslevel=6) as tar:  # gzip's own default
        for i in range(text_mib):
            _add(tar, f"text/{i:04d}.txt", 1 << 20, io.BytesIO(_words(rng, 1 << 20)))
    with tarfile.open(work / "small.tar.gz", "w:gz", compresslevel=6) as tar:
        for i in range(small):
            data = _words(rng, rng.randint(200, 800))
            _add(tar, f"small/{i // 1000:03d}/{i:06d}.txt", len(data), io.BytesIO(data))


def _summary(members: list[tuple[str, str, int, str | None]], t0: float) -> dict:
    seconds = time.perf_counter() - t0
    digest = hashlib.sha256(json.dumps(members).encode()).hexdigest()
    return {"seconds": seconds, "members": len(members), "sha256": digest}


def _current(work: Path) -> Path:
    return work / work.joinpath(CURRENT).read_text()


def _stream_pass(path: Path) -> Iterator[archive.Member]:
    """archive._listing's pass over a tar before: tarfile's own compressed stream reader."""
    with tarfile.open(path, mode="r|*", tarinfo=archive._BoundedTarInfo) as tar:
        for info in tar:
            kind = archive._tar_kind(info)
            opener = partial(tar.extractfile, info) if kind == "file" else None
            link = info.linkname if kind == "hardlink" else None
            yield archive.Member(info.name, kind, opener, link, info.size)


def child_stream(work: Path) -> dict:
    """The listing before: archive._listing's loop over _stream_pass."""
    t0 = time.perf_counter()
    listed = [archive.Member(m.name, m.kind, link=m.link, size=m.size) for m in _stream_pass(_current(work))]
    return _summary([(m.name, m.kind, m.size, m.link) for m in listed], t0)


def child_new(work: Path) -> dict:
    """The listing now: archive._listing."""
    t0 = time.perf_counter()
    with archive._listing(_current(work), "tar") as (listed, _):
        members = [(m.name, m.kind, m.size, m.link) for m in listed]
    return _summary(members, t0)


def child_generate(work: Path) -> dict:
    # In a child: a forked process starts from its parent's peak RSS, which generating would set.
    asked = json.loads(work.joinpath(SIZES).read_text())
    generate(work, **asked)
    return {name: (work / name).stat().st_size for name in ARCHIVES}


CHILDREN = {"generate": child_generate, "stream": child_stream, "new": child_new}


def main(argv: list[str] | None = None) -> int:
    parser = parser_with_children(__doc__, CHILDREN)
    parser.add_argument(
        "--zeros-mib", type=positive_int, default=48, help="MiB of zeros in zeros.tar.gz (default 48)"
    )
    parser.add_argument(
        "--bz2-mib", type=positive_int, default=16, help="MiB of zeros in zeros.tar.bz2 (default 16)"
    )
    parser.add_argument(
        "--text-mib", type=positive_int, default=32, help="1 MiB text members in text.tar.gz (default 32)"
    )
    parser.add_argument(
        "--small", type=positive_int, default=20_000, help="members of small.tar.gz (default 20000)"
    )
    args = parser.parse_args(argv)
    if ran_as_child(args, CHILDREN):
        return 0
    with work_folder(args.workdir, "bench-archive-list-") as work:
        asked = {
            "zeros_mib": args.zeros_mib,
            "bz2_mib": args.bz2_mib,
            "text_mib": args.text_mib,
            "small": args.small,
        }
        work.joinpath(SIZES).write_text(json.dumps(asked))
        sizes = run_child(MODULE, "generate", work)[2]
        failed = []
        for name in ARCHIVES:
            work.joinpath(CURRENT).write_text(name)
            print(f"\n{name}: {sizes[name]:,} bytes")
            results = measure_steps(MODULE, ("stream", "new"), work, timed="list")
            before, now = (results[step][2] for step in ("stream", "new"))
            same = (before["members"], before["sha256"]) == (now["members"], now["sha256"])
            print(
                f"{now['members']:,} members; the same listing: {same}; stream / new listing seconds: "
                f"{before['seconds'] / max(now['seconds'], 1e-9):.1f}x"
            )
            if not same:
                failed.append(name)
        if failed:
            raise SystemExit(f"the listings differ for {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
