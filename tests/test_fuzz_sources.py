"""Corpus inputs found while fuzzing the readers and adapters (atheris, coverage-guided) and reading
their code, kept as explicit bytes: each crashed download, normalize or `nanochatgpt check` with a
traceback where the contract is a quarantined row or the one-line SourceError, or took time growing
with the square of its size (measured in steps here, never in seconds)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from pipeline.sources.adapters import hackernews, oasst1
from pipeline.sources.archive import extract
from pipeline.sources.contrib import scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

SIDECAR = b"licence: MIT\ncommercial: true\n"


def _put(folder: Path, name: str, body: bytes) -> None:
    (folder / name).write_bytes(body)
    (folder / f"{name.split('.')[0]}.yaml").write_bytes(SIDECAR)


def test_a_jsonl_file_whose_first_line_nests_too_deeply_is_refused_in_one_line(tmp_path: Path) -> None:
    # No format key in the head, so the format is unknown, and the refusal's hint parses the first
    # line: json.loads raised RecursionError there, a traceback instead of the one-line error.
    _put(tmp_path, "deep.jsonl", b"[" * 100_000 + b"\n")  # past any Python's limit
    with pytest.raises(
        SourceError,
        match=r"deep\.jsonl: cannot tell its format \(its first line is not JSON: nested too deeply\)",
    ):
        scan_contrib(tmp_path)


def _zip_with_an_unnamed_member() -> bytes:
    """A zip whose central directory names its one member "" (a file name length of 0)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a", "x")
    data = buf.getvalue()
    entry, end = data.index(b"PK\x01\x02"), data.index(b"PK\x05\x06")
    header = bytearray(data[entry : entry + 46])  # the fixed part; the 1-byte name "a" follows
    header[28:30] = (0).to_bytes(2, "little")
    tail = bytearray(data[end:])
    tail[12:16] = (46).to_bytes(4, "little")  # the central directory's size, less the name
    return data[:entry] + bytes(header) + bytes(tail)


def test_a_zip_member_without_a_name_refuses_the_archive_in_one_line(tmp_path: Path) -> None:
    # zipfile.ZipInfo.is_dir() indexes the name's last character: IndexError, a traceback from
    # the download of an `archive: true` source, before the member's name could be refused.
    path = tmp_path / "a.zip"
    path.write_bytes(_zip_with_an_unnamed_member())
    assert [i.filename for i in zipfile.ZipFile(path).infolist()] == [""]
    with pytest.raises(
        SourceError, match=r"demo: archive a\.zip has a member named '', which would be written outside"
    ):
        extract(path, ("*",), tmp_path / "out", name="demo", origin="a.zip")
    assert not (tmp_path / "out").exists()


def test_a_long_reply_chain_off_the_chosen_one_is_read_in_linear_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Comment 1's second reply (3) starts a chain of 3,000 replies that no conversation takes:
    # each was walked up to comment 1 for its reason, 4.5 million steps here (20,000 replies,
    # a 1 MB file, took 75 s). Counted in steps, not seconds: a slow machine must not fail it.
    n = 3000
    items = [
        {"id": 1, "by": "a", "text": "top", "kids": [2, 3]},
        {"id": 2, "parent": 1, "by": "b", "text": "chosen reply"},
        *({"id": 3 + i, "parent": 2 + i if i else 1, "by": "c", "text": "off"} for i in range(n)),
    ]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    steps = 0
    live = hackernews._live

    def counted(item: dict) -> bool:
        nonlocal steps
        steps += 1
        return live(item)

    monkeypatch.setattr(hackernews, "_live", counted)
    raw = hackernews.read(tmp_path, SourceSpec("hackernews", "local", "x", "hackernews", "MIT", True), {})
    assert raw.get_column("filter").drop_nulls().value_counts().rows() == [("hn_not_on_thread", n)]
    assert steps < 20 * n


class _CountedId(str):
    """A message id that counts the comparisons made with it (a list's `in` compares each item)."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _CountedId.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_a_long_oasst1_thread_is_walked_in_linear_time() -> None:
    # A thread of n messages was checked message by message against the thread as a list: n²/2
    # comparisons (a 2 MB file of 20,000 messages took 2.5 s, 10 MB a minute).
    n = 2000
    ids = [_CountedId(f"m{i}") for i in range(n)]
    messages = {
        mid: {"message_id": mid, "parent_id": ids[i - 1] if i else None, "role": "prompter", "text": "t"}
        for i, mid in enumerate(ids)
    }
    rows = RawRows("oasst1", "MIT", True)
    _CountedId.compared = 0
    oasst1._threads(rows, messages, {mid: f"m.jsonl:{i + 1}" for i, mid in enumerate(ids)}, ids, None)
    assert len(rows) == n
    assert _CountedId.compared < 20 * n
