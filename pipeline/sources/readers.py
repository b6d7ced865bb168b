"""Tolerant readers for upstream files: a broken line becomes an error value, never an exception.

Each reader yields one item per upstream record with its location, so that adapters can turn
an unreadable record into a quarantined row (with file:line) and keep reading the rest.
Compressed inputs (.gz) are read transparently.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

# pyarrow (installed with datasets; ~0.2 s to import) is imported by the parquet readers that use it,
# not here: the download and registry stages import this module (through contrib) for its JSON and
# line helpers, and every source read by the default `dvc repro` is JSON or text.
if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq


_SURROGATE = re.compile(r"[\udc80-\udcff]")
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark, which Windows editors write at the start of a file
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".txt", ".parquet", ".tsv", ".train", ".dev", ".test", ".yml")
# The longest line a line reader holds (bytes before its LF). A record line holds one whole
# conversation, and turns over normalize.max_turn_chars (at most 16,000 characters) are quarantined
# anyway, so 64 MiB is far above any real line; a longer one is quarantined (`line_length`) without
# ever being held: one 300 MB line packs into a 300 KB .gz file.
MAX_LINE_BYTES = 64 << 20
_SKIP_CHUNK = 1 << 20  # what the rest of an over-long line is skipped in
_PREVIEW = 200  # bytes of an over-long line kept to show in quarantine


@dataclass(frozen=True)
class Record:
    """One upstream record: `value` when readable, else `check`/`reason` say why not (a CSV record
    refused for its bytes still carries its fields in `value`, to name its conversation by)."""

    line: int
    value: Any
    raw: str
    check: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.check is None


# A .gz (or a parquet file) may unpack to at most this many times its own size once past
# UNPACKED_FLOOR: chat text compresses 3 to 10 times, while 10 MB of gzip can hold 10 GB of spaces
# inside one JSON list, or of one line repeated, which reading would hold in memory.
MAX_GZIP_RATIO = 100
UNPACKED_FLOOR = 64 << 20  # a small file may unpack to this much whatever its ratio


def unpacked_limit(path: Path) -> int:
    """The most bytes a compressed file may unpack to (MAX_GZIP_RATIO, UNPACKED_FLOOR)."""
    return max(UNPACKED_FLOOR, MAX_GZIP_RATIO * path.stat().st_size)


def past_unpacked_limit(limit: int) -> str:
    """Why reading a compressed file stopped at unpacked_limit (the quarantined record's reason)."""
    return f"it unpacks to over {limit:,} bytes, more than {MAX_GZIP_RATIO} times its size, which no text file does"


class GzipBombError(EOFError):
    """A .gz that unpacks to far more than text does (MAX_GZIP_RATIO): read no further. An EOFError
    so that each reader's handling of an unusable .gz (one quarantined record naming it) applies."""


class _CappedGzip(io.RawIOBase):
    """A .gz's content that raises GzipBombError once past `limit` bytes, before they are held."""

    def __init__(self, path: Path) -> None:
        self._inner = gzip.open(path, "rb")  # noqa: SIM115 (closed by close())
        self._limit, self._read = unpacked_limit(path), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # read1: what one decompression step gives. readinto would fill the whole buffer first, and
        # a file cut short would lose what it had decompressed of that buffer with the EOFError.
        data = self._inner.read1(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._read += n
        if self._read > self._limit:
            raise GzipBombError(past_unpacked_limit(self._limit))
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


def open_binary(path: Path) -> IO[bytes]:
    """A data file's bytes; a .gz decompressed as it is read, and no further than unpacked_limit."""
    if path.suffix.lower() != ".gz":  # X.TXT.GZ too, as data_name reads it
        return open(path, "rb")
    return io.BufferedReader(_CappedGzip(path), buffer_size=1 << 20)


# What reading a damaged .gz raises, at whatever point the damage is reached: a download cut short
# (EOFError), a file that is not gzip at all (an HTML error page saved as .gz: BadGzipFile), or
# corrupt bytes inside (zlib.error).
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _tolerate_damaged_gzip(reader: Callable[..., Iterator[Record]]) -> Callable[..., Iterator[Record]]:
    """The reader's records up to the damage in a .gz file, then one record (check `gzip`) saying
    where reading stopped: what came before it is kept, and the file is named, not a traceback."""

    @functools.wraps(reader)
    def read(path: Path, *args: Any, **kwargs: Any) -> Iterator[Record]:
        last = 0
        try:
            for rec in reader(path, *args, **kwargs):
                last = rec.line
                yield rec
        except _GZIP_ERRORS as e:
            after = f"after record {last:,}" if last else "before its first record"
            reason = f"damaged gzip file, read up to there ({after}): {type(e).__name__}: {e}"
            if isinstance(e, GzipBombError):
                reason = f"gzip file {f'read up to record {last:,}' if last else 'not read'}: {e}"
            yield Record(last + 1, None, "", "gzip", reason[:300])

    return read


def data_name(path: Path) -> str:
    """The file name without a trailing .gz in any letter case (so `x.jsonl.GZ` is handled as `.jsonl`)."""
    return path.name[:-3] if path.name.lower().endswith(".gz") else path.name


def data_suffix(path: Path) -> str:
    """The data name's (data_name) last suffix in lower case: `.jsonl` for `x.JSONL.gz`."""
    return Path(data_name(path)).suffix.lower()


def has_suffix(path: Path, suffixes: str | tuple[str, ...]) -> bool:
    """Whether the file's data name (data_name) ends with one of `suffixes` (given in lower case), in
    any letter case: a suffix names a format whatever its case, and an upstream file renamed to
    TRAIN.JSONL was otherwise skipped, or read by the wrong reader, without a word."""
    return data_name(path).lower().endswith(suffixes)


def line_of(raw: bytes, offset: int) -> int:
    """1-based line number of byte `offset`."""
    return raw.count(b"\n", 0, offset) + 1


def _decode(raw: bytes, skipped: int = 0) -> tuple[str, str | None]:
    """A line's text (bad bytes as U+FFFD) and, when it is not UTF-8, the reason: the byte counted
    from the line's start (0-based), as the whole-file readers count theirs from the file's. `skipped`:
    the bytes of a byte-order mark taken off the line's start, counted as decode_whole counts the
    file's (an editor or `xxd` shows the line with them)."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        where = e.start + skipped
        return raw.decode("utf-8", errors="replace"), f"invalid UTF-8 at byte {where} of the line"


def _bounded_lines(f: IO[bytes], cap: int) -> Iterator[tuple[bytes, int | None]]:
    """(line with its ending, None) for each line of `f`; for a line of more than `cap` bytes before
    its LF, (its first bytes, that length), the rest read in 1 MiB pieces and dropped, never held."""
    while chunk := f.readline(cap + 1):
        if len(chunk) <= cap or chunk.endswith(b"\n"):
            yield chunk, None
            continue
        size, head = len(chunk), chunk[:_PREVIEW]
        del chunk  # before reading on: at most one cap-sized buffer is ever alive
        while more := f.readline(_SKIP_CHUNK):
            size += len(more)
            if more.endswith(b"\n"):
                size -= 1
                break
        yield head, size


@_tolerate_damaged_gzip
def iter_lines(path: Path, *, lone_cr: bool = False, max_bytes: int | None = None) -> Iterator[Record]:
    """Every line (1-based numbers), without its line ending; invalid UTF-8 gives check `utf8`, a
    line longer than `max_bytes` (default MAX_LINE_BYTES) check `line_length`, and reading goes on
    with the next line.

    With `lone_cr`, a CR not followed by LF ends a line too (old Mac files), as in a text editor:
    text formats whose blank lines end conversations would otherwise read such a file as one line.
    JSON lines leave it off, since a CR between JSON tokens is whitespace there. (The length limit
    applies to LF lines: an old Mac file over 64 MiB is one over-long line.)
    """
    cap = MAX_LINE_BYTES if max_bytes is None else max_bytes
    n = 0
    with open_binary(path) as f:
        for chunk, too_long in _bounded_lines(f, cap):
            skipped = len(BOM) if chunk.startswith(BOM) else 0  # the file's start, or a file joined by `cat`
            chunk = chunk[skipped:]
            if too_long is not None:
                n += 1
                reason = (
                    f"line of {too_long:,} bytes, over the limit of {cap:,} bytes a line may hold; not read"
                )
                yield Record(n, None, _decode(chunk)[0] + "…", "line_length", reason)
                continue
            # CR LF, and CR CR LF (a file converted twice), end one line as before
            chunk = chunk.rstrip(b"\n").rstrip(b"\r")
            for raw in chunk.split(b"\r") if lone_cr else [chunk]:
                n += 1
                text, err = _decode(raw, skipped)
                skipped = 0  # the mark is the first piece's only (a lone CR ends a line too)
                yield Record(n, text if err is None else None, text, "utf8" if err else None, err)


def cr_only(path: Path, probe: int = 1 << 16) -> bool:
    """Whether the file's lines end with a lone CR (an old Mac export): CRs and no LF in its head."""
    try:
        with open_binary(path) as f:
            head = f.read(probe)
    except _GZIP_ERRORS:
        return False  # the line reader meets the damage too, and quarantines it with the file's lines
    return b"\r" in head and b"\n" not in head


class RepeatedKeys(dict):
    """A JSON object in which a key is given twice: its (key, value) pairs in file order, repeats
    included, and `repeated`, the first key given again. As a dict it holds each key's first value
    (json.loads would silently keep the last one and drop the rest)."""

    def __init__(self, pairs: list[tuple[str, Any]], repeated: str) -> None:
        super().__init__()
        self.pairs = pairs
        self.repeated = repeated
        for key, value in pairs:
            self.setdefault(key, value)


class JsonDecoder:
    """json.loads that notices a key given twice in one object, which json.loads drops silently:
    `{"content": "a", "content": "b"}` reads as {"content": "b"}, and a record loses a value, or a
    whole conversation, without a word. Such an object comes back as a RepeatedKeys, and the keys
    repeated by the last `loads` are in `repeated`, so a caller looks further only when there is one.

    The check is an object_pairs_hook (a call per object). Measured on synthetic chat JSONL (about
    six objects a line): json.loads of 100 MB takes 1.3 s, 1.8 s with the hook; the openai adapter
    reads 300 MB in 6.1-6.9 s, 7.2-7.6 s with it, before normalize's 16-20 s. No cheaper sound
    check was found: re-encoding the parsed value to compare its count of ':' with the line's costs
    more than the hook (0.6 s a 100 MB)."""

    def __init__(self) -> None:
        self.repeated: list[str] = []
        self._decoder = json.JSONDecoder(object_pairs_hook=self._object)

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        self.repeated.append(key)
        return RepeatedKeys(pairs, key)

    def loads(self, text: str) -> Any:
        """json.loads(text): the same value and errors, repeats noted as the class says."""
        self.repeated.clear()
        return self._decoder.decode(text)


def first_repeat(value: Any) -> str | None:
    """The repeated key of the first RepeatedKeys inside `value` (in file order), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, RepeatedKeys):
            return item.repeated
        if isinstance(item, dict):
            stack.extend(reversed(item.values()))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return None


def repeated_key_reason(key: str) -> str:
    """The quarantine reason of a record holding an object with `key` given twice (`duplicate_key`)."""
    shown = repr(key) if len(key) <= 60 else repr(key[:60]) + "…"
    return f"key {shown} is given twice in one JSON object (a JSON reader keeps only one value); remove one"


@_tolerate_damaged_gzip
def iter_jsonl(path: Path) -> Iterator[Record]:
    """One JSON value per non-blank line; blank lines are not records. A line holding an object
    with a key given twice is quarantined (`duplicate_key`): json.loads would keep one value.

    Lines end at LF (CRLF too); a file whose lines end with a lone CR is read by CR instead. Only
    such a file: elsewhere a CR between JSON tokens is whitespace (iter_lines' `lone_cr`)."""
    decoder = JsonDecoder()
    for rec in iter_lines(path, lone_cr=cr_only(path)):
        if not rec.ok:
            yield rec
            continue
        if not rec.raw.strip():
            continue
        try:
            value = decoder.loads(rec.raw)
        except json.JSONDecodeError as e:
            yield Record(
                rec.line, None, rec.raw, "json_parse", f"broken JSON line ({e.msg} at column {e.colno})"
            )
        except (RecursionError, ValueError) as e:
            yield Record(rec.line, None, rec.raw, "json_parse", f"broken JSON line ({unreadable_json(e)})")
        else:
            if decoder.repeated:
                key = decoder.repeated[0]
                yield Record(rec.line, None, rec.raw, "duplicate_key", repeated_key_reason(key))
            else:
                yield Record(rec.line, value, rec.raw)


def unreadable_json(e: Exception) -> str:
    """Why json.loads refused valid-looking JSON: nesting deeper than Python's recursion limit
    (RecursionError), or an integer of more than 4300 digits (ValueError)."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).split(";")[0][:200]


def _stored_bytes(path: Path) -> bytes:
    """A file's bytes as stored, a .gz decompressed. A damaged .gz raises one of _GZIP_ERRORS."""
    with open_binary(path) as f:  # a .gz stops at its unpacked limit: never holds what a bomb unpacks to
        return f.read()


def _whole_bytes(path: Path) -> bytes:
    """A file's bytes (_stored_bytes), a leading byte-order mark dropped (json.loads refuses one)."""
    raw = _stored_bytes(path)
    return raw[len(BOM) :] if raw.startswith(BOM) else raw


def read_whole(path: Path) -> Record:
    """A whole data file for a format parsed in one piece (a JSON object, a YAML document):
    Record(1, its bytes as stored, a byte-order mark kept: decode them with decode_whole), or, for
    a damaged .gz, Record(1, None, "", "gzip", why), since no part of such a file is usable."""
    try:
        return Record(1, _stored_bytes(path), "")
    except GzipBombError as e:
        return Record(1, None, "", "gzip", f"gzip file not read: {e}"[:300])
    except _GZIP_ERRORS as e:
        return Record(1, None, "", "gzip", f"damaged gzip file, not read: {type(e).__name__}: {e}"[:300])


def decode_whole(raw: bytes) -> str:
    """A whole file's text (read_whole's bytes), a leading byte-order mark dropped. A
    UnicodeDecodeError's offsets count from the file's first byte, the mark's 3 included: a
    quarantine says "at byte N of the file", where an editor or `xxd` finds it."""
    skipped = len(BOM) if raw.startswith(BOM) else 0
    try:
        return raw[skipped:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnicodeDecodeError(e.encoding, raw, e.start + skipped, e.end + skipped, e.reason) from None


@_tolerate_damaged_gzip
def iter_json_records(path: Path) -> Iterator[Record]:
    """A .json file holding a list of records (or a JSONL file): record numbers stand in for lines.
    A record holding an object with a key given twice is quarantined (`duplicate_key`)."""
    if has_suffix(path, ".jsonl"):
        yield from iter_jsonl(path)
        return
    raw = _whole_bytes(path)
    # Invalid UTF-8 inside a string is held as surrogates (surrogateescape) and quarantines only
    # the record holding it (below); anywhere else it breaks the JSON, as any stray byte would.
    text = raw.decode("utf-8", errors="surrogateescape")
    decoder = JsonDecoder()
    try:
        data = decoder.loads(text)
    except json.JSONDecodeError as e:
        # A JSON file may also be JSON lines under a .json name: fall back to that.
        if e.msg == "Extra data":
            yield from iter_jsonl(path)
            return
        yield Record(e.lineno, None, text[:200], "json_parse", f"broken JSON ({e.msg} at line {e.lineno})")
        return
    except (RecursionError, ValueError) as e:
        yield Record(1, None, text[:200], "json_parse", f"broken JSON ({unreadable_json(e)})")
        return
    items = data if isinstance(data, list) else [data]
    damaged = not text.isascii() and _SURROGATE.search(text) is not None
    repeats = bool(decoder.repeated)  # else no record holds a RepeatedKeys: no walk
    # Memory: the file's bytes and text are not needed once parsed, and each record is let go once
    # yielded (its rows are then in RawRows), so the parsed file shrinks as the rows grow, where the
    # three were all held to the end (a 32 MB array: ~300 MB of Python objects besides the rows).
    del raw, text, data
    for i in range(1, len(items) + 1):
        item, items[i - 1] = items[i - 1], None
        shown = json.dumps(item, ensure_ascii=False) if damaged else ""
        key = first_repeat(item) if repeats else None
        if key is not None:  # shown as ASCII: the record may hold lone surrogates
            yield Record(i, None, json.dumps(item)[:200], "duplicate_key", repeated_key_reason(key))
        elif _SURROGATE.search(shown):
            clean = shown.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
            yield Record(i, None, clean[:200], "utf8", "invalid UTF-8 in this record")
        else:
            yield Record(i, item, "")


@dataclass
class _End:
    """What csv.reader has read of the file (_until_end): whether it asked for a line past the last,
    and `start`, once cleared, the first line holding text read since: where the record being read
    starts, as DictReader skips the blank lines before it (they are not part of it)."""

    reached: bool = False
    start: int = 0


def _until_end(lines: Iterator[str], end: _End) -> Iterator[str]:
    """`lines`, noting in `end` that csv.reader asked for more after the last. It asks only from
    inside a double-quoted field (a record ends at its line's end otherwise), and, not strict, then
    hands the field over with every line up to the end of the file in it."""
    for number, line in enumerate(lines, 1):
        if not end.start and line.strip():  # the first line holding text (_row_holds_text)
            end.start = number
        yield line
    end.reached = True


def _open_quote(start: int, lines: int) -> str:
    """The reason of a record whose double quote is never closed (iter_csv)."""
    return (
        f"a double-quoted field opened in the record at line {start:,} is never closed: the {lines:,} "
        "line(s) from there to the end of the file were read into it; close the quote; not read"
    )


def holds_text(rec: Record) -> bool:
    """Whether a line record (iter_lines) holds text: not blank; an unreadable one counts (it may
    be a header, unseen). The line-reading adapters skip such lines before a header, as iter_csv
    does (_row_holds_text)."""
    return not rec.ok or bool(rec.raw.strip())


def _row_holds_text(row: list[str]) -> bool:
    """Whether a csv row came from a line holding text: not an empty line ([]) nor one of spaces
    alone (['  ']); such lines before the header are skipped, as pandas skips them."""
    return len(row) > 1 or (len(row) == 1 and bool(row[0].strip()))


def _header_row(rows: Iterator[list[str]], end: _End) -> list[str] | None:
    """The first row holding text (_row_holds_text), with `end.start` its first line. A line such as
    `""` holds text as a line but none as a row: it is skipped, and the header starts after it."""
    for row in rows:
        if _row_holds_text(row):
            return row
        end.start = 0
    return None


def _csv_header(reader: csv.DictReader, end: _End, cap: int) -> Record | None:
    """Read the header into `reader.fieldnames`: the first line holding text, as pandas and polars
    take it (DictReader took a blank first line as an empty header, and every record then came back
    as {None: [...]}). None when it is read (or the file holds no text); else the record refusing
    the file: a header cannot be skipped as a record is, since the next record would become it."""
    try:
        header = _header_row(reader.reader, end)
    except csv.Error as e:  # a field over the limit: the header's names are unknown
        # A line of spaces alone is no text (_until_end leaves `start` unset), yet one over the limit
        # is refused here: the line csv.reader stopped on, where "line 0" was named
        end.start = end.start or reader.reader.line_num
        reason = (
            f"the CSV header (line {end.start:,}) cannot be read ({e}; the limit is {cap:,} characters "
            "a field), so no column can be named; the file is not read"
        )
        return Record(end.start, None, "", "csv_parse", reason[:300])
    if header is not None and end.reached:  # an open quote took every line after it
        return Record(
            end.start, None, "", "csv_parse", _open_quote(end.start, reader.reader.line_num - end.start + 1)
        )
    reader.fieldnames = header
    return None


class CsvRecords(Iterator[Record]):
    """iter_csv's records, one at a time, and `header_line`: the line its header was taken from (the
    first holding text; where a header that cannot be read is refused), numbered as its records'
    lines are. A caller refusing a file for its header names that line: finding it again read the
    file a second time (a .gz unpacked anew), and split its lines otherwise than csv does. None
    until the first record is asked for (the header is read then), and in a file holding no text."""

    def __init__(self, path: Path, delimiter: str) -> None:
        self.header_line: int | None = None
        self._records = _csv_records(path, delimiter, self)

    def __next__(self) -> Record:
        return next(self._records)


def iter_csv(path: Path, delimiter: str = ",") -> CsvRecords:
    """csv.DictReader rows as Records (line = the line the record ends on); bad UTF-8 -> `utf8`; a
    field longer than MAX_LINE_BYTES characters -> `csv_parse` at the line where the limit is passed.
    The header is the first line holding text; one that cannot be read (an open quote, a field over
    the limit) is one `csv_parse` record at its line, and the file is not read further.

    The csv module's default field limit (128 KiB) would abort the file on one long turn; no limit
    at all would hold a field of any size (a quoted field of 1 GB of lines packs into a 1 MB .gz,
    and takes several GB to parse), where the line readers stop at MAX_LINE_BYTES. A double quote
    never closed (its field would hold every line to the end of the file) -> `csv_parse`, the
    record's fields kept in `value` to name its conversation by. The header's line: `header_line`."""
    return CsvRecords(path, delimiter)


@_tolerate_damaged_gzip
def _csv_records(path: Path, delimiter: str, found: CsvRecords) -> Iterator[Record]:
    """iter_csv's records; `found.header_line` is set once the header is read."""
    cap = MAX_LINE_BYTES
    csv.field_size_limit(cap)
    with open_binary(path) as fb:
        text = io.TextIOWrapper(fb, encoding="utf-8-sig", errors="surrogateescape", newline="")
        end = _End()
        reader = csv.DictReader(_until_end(text, end), delimiter=delimiter)
        refused = _csv_header(reader, end, cap)
        found.header_line = end.start or None  # before the loop clears end.start; 0: no line held text
        if refused is not None:
            yield refused
            return
        while True:
            try:
                end.start = 0
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                # Over the field limit: the record is dropped and reading goes on with the next line,
                # each later line of an over-long quoted field read as a row of its own (an unbalanced
                # quote, the usual cause, would otherwise swallow the rest of the file). The line is
                # the inner reader's: DictReader.line_num moves on successful rows only.
                reason = f"unreadable CSV record ({e}; the limit is {cap:,} characters a field); not read"
                yield Record(reader.reader.line_num, None, "", "csv_parse", reason[:300])
                continue
            line = reader.line_num
            if end.reached:  # a record is handed over at the end of the file only from an open quote
                yield Record(end.start, row, "", "csv_parse", _open_quote(end.start, line - end.start + 1))
                return
            joined = delimiter.join(str(v) for v in row.values() if v is not None)
            if _SURROGATE.search(joined):
                clean = joined.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
                # the fields stay with the record (not ok: never read as data), so that an adapter
                # can still name the conversation whose utterance it lost
                yield Record(line, row, clean, "utf8", "invalid UTF-8 in this CSV record")
            else:
                yield Record(line, row, joined)


# Rows of a parquet file converted to Python at a time: memory follows a batch, not the file (a
# 600 MB ShareGPT or OASST parquet read whole held several GB as Arrow and then again as rows).
PARQUET_BATCH_ROWS = 1024


# The least a value takes once read: an offset or a slot (a null in a list too).
MIN_VALUE_BYTES = 4


def _declared_uncompressed_bytes(metadata: pq.FileMetaData) -> int:
    """What a parquet file's footer says its column chunks take once decompressed (before
    dictionary decoding, so a value repeated by a dictionary counts once), and at least
    MIN_VALUE_BYTES for each value it declares: run-length levels pack a list of millions of nulls
    into a few bytes (a 327-byte file held 1.28 billion of them, gigabytes once read)."""
    chunks = (
        metadata.row_group(g).column(c)
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    )
    return sum(max(chunk.total_uncompressed_size, MIN_VALUE_BYTES * chunk.num_values) for chunk in chunks)


def _batch_rows(metadata: pq.FileMetaData, limit: int) -> int:
    """PARQUET_BATCH_ROWS, or fewer where text columns are DELTA_BYTE_ARRAY-encoded. Each of their
    values starts with a prefix of the one before, so every row can repeat a value as long as its
    page's whole text: a 425-byte file's 1,024 rows each repeated a 4 MB value, 4 GB inside the
    reader's first batch (5.7 GB peak RSS). No such value is longer than its column chunk's declared
    size, so batches of `limit` // (those sizes, summed over the columns) rows stay under the limit
    (where a row holds one value of each; a list can hold more)."""
    longest: dict[int, int] = {}
    for g in range(metadata.num_row_groups):
        for c in range(metadata.num_columns):
            chunk = metadata.row_group(g).column(c)
            if "DELTA_BYTE_ARRAY" in chunk.encodings:
                longest[c] = max(longest.get(c, 0), chunk.total_uncompressed_size)
    if not longest:
        return PARQUET_BATCH_ROWS
    return max(1, min(PARQUET_BATCH_ROWS, limit // sum(longest.values())))


def _dense(kind: pa.DataType) -> pa.DataType:
    """`kind` with every dictionary (at any depth) replaced by its value type: what the rows hold."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _dense(kind.value_type)
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_dense(field.type)) for field in kind])
    if pa.types.is_map(kind):
        return pa.map_(
            kind.key_field.with_type(_dense(kind.key_type)), kind.item_field.with_type(_dense(kind.item_type))
        )
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(kind.value_field.with_type(_dense(kind.value_type)), kind.list_size)
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_dense(kind.value_type)))
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_dense(kind.value_type)))
    return kind


def _is_text(kind: pa.DataType) -> bool:
    """A type whose values have a length in bytes (what a dictionary can repeat at length)."""
    import pyarrow as pa

    checks = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    return any(check(kind) for check in checks)


def _dictionary_columns(parquet: pq.ParquetFile) -> list[str]:
    """The paths of the text (BYTE_ARRAY) columns with a dictionary page in some row group."""
    metadata, schema = parquet.metadata, parquet.schema
    return [
        schema.column(c).path
        for c in range(metadata.num_columns)
        if schema.column(c).physical_type == "BYTE_ARRAY"
        and any(metadata.row_group(g).column(c).has_dictionary_page for g in range(metadata.num_row_groups))
    ]


def _is_list_array(array: pa.Array) -> bool:
    """A list-typed array, whose entries `_list_entries` walks."""
    import pyarrow as pa

    # a MapArray is a ListArray too
    return isinstance(array, (pa.ListArray, pa.LargeListArray, pa.FixedSizeListArray))


def _list_entries(array: pa.ListArray | pa.LargeListArray | pa.FixedSizeListArray) -> list[pa.Array]:
    """The values a list array's rows hold (its slice only), as arrays: a map's keys and items.
    A MapArray is a ListArray to isinstance, but Arrow has no `flatten` for it (a map column made
    every parquet file holding one unreadable)."""
    import pyarrow as pa

    if isinstance(array, pa.MapArray):
        start, end = array.offsets[0].as_py(), array.offsets[-1].as_py()
        return [array.keys.slice(start, end - start), array.items.slice(start, end - start)]
    return [array.flatten()]


def _dictionaries(array: pa.Array) -> Iterator[pa.Array]:
    """The dictionaries (their values) in `array`, at any depth."""
    import pyarrow as pa

    if isinstance(array, pa.DictionaryArray):
        yield array.dictionary
    elif _is_list_array(array):
        for entries in _list_entries(array):
            yield from _dictionaries(entries)
    elif isinstance(array, pa.StructArray):
        for child in array.flatten():
            yield from _dictionaries(child)


def _expanding_columns(path: Path, parquet: pq.ParquetFile, limit: int) -> list[str]:
    """The text columns to read as Arrow dictionaries rather than expanded by the reader: those whose
    every value, were it the longest value of any dictionary page in the file, would pass `limit`.

    A dictionary page holds each value once, however many rows refer to it: a 500-byte file whose
    dictionary held one 900 kB value for 8,192 rows expanded to 900 MB inside the reader's first
    batch, before any count could stop it (to tens of GB with a longer value). Read as
    dictionaries, such columns are counted before they are expanded (_dense_nbytes). Not every
    column is read that way: a writer keeps a dictionary page only for a text column's first values
    and then falls back to plain pages, which Arrow would hash into a dictionary value by value,
    doubling the read time of ordinary text (benchmarks.parquet_read). The longest value is found by
    reading one row of each row group with the dictionaries kept (the whole page comes with it),
    and only where the footer leaves it possible: no value is longer than its chunk's declared size
    (probing a file of 20,000 small row groups took longer than reading it)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    metadata = parquet.metadata
    index = {parquet.schema.column(c).path: c for c in range(metadata.num_columns)}
    groups = range(metadata.num_row_groups)

    def values(name: str) -> int:
        return sum(metadata.row_group(g).column(index[name]).num_values for g in groups)

    def largest_chunk(name: str) -> int:
        return max(metadata.row_group(g).column(index[name]).total_uncompressed_size for g in groups)

    columns = [name for name in _dictionary_columns(parquet) if largest_chunk(name) * values(name) > limit]
    if not columns:
        return []
    probe = pq.ParquetFile(path, pre_buffer=False, read_dictionary=columns)
    longest = 0
    for group in groups:
        for batch in probe.iter_batches(batch_size=1, row_groups=[group]):
            lengths = [
                pc.max(pc.binary_length(values)).as_py() or 0
                for column in batch.columns
                for values in _dictionaries(column)
                if _is_text(values.type)
            ]
            longest = max([longest, *lengths])
            break
    return [name for name in columns if longest * values(name) > limit]


def _dense_nbytes(array: pa.Array) -> int:
    """About what `array` takes once its dictionaries are expanded, counted without expanding them:
    a dictionary's text value counts once for each row that refers to it (its length and an offset)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.DictionaryArray):
        values = array.dictionary
        if _is_text(values.type):
            referenced = pc.sum(pc.binary_length(values).take(array.indices)).as_py() or 0
            return int(referenced) + 8 * len(array)
        return _dense_nbytes(values.take(array.indices))  # numbers: no bigger than their indices
    if _is_list_array(array):
        return 8 * len(array) + sum(_dense_nbytes(entries) for entries in _list_entries(array))
    if isinstance(array, pa.StructArray):
        return sum(_dense_nbytes(child) for child in array.flatten())
    return array.nbytes


def _parquet_bomb(rows_read: int, limit: int) -> Record:
    """The record that ends a parquet file unpacking to far more than text does."""
    done = f"read up to row {rows_read:,}" if rows_read else "not read"
    return Record(
        rows_read + 1, None, "", "parquet_read", f"parquet file {done}: {past_unpacked_limit(limit)}"
    )


def iter_parquet(path: Path) -> Iterator[Record]:
    """Parquet rows as dicts (nested lists/structs become Python lists/dicts); record = row number.

    Read PARQUET_BATCH_ROWS rows at a time. Damage part-way (a download cut short) keeps the rows
    before it and ends in one `parquet_read` record saying where reading stopped, as a damaged .gz
    does. Text that unpacks to more than MAX_GZIP_RATIO times the file's size (and more than
    UNPACKED_FLOOR) is refused as a .gz is: 10 MB of zstd, or a dictionary of a few long values
    repeated by reference, can hold 10 GB of text. A footer that declares that much is refused
    unread; rows decoding to it (a dictionary expands only as it is read) stop being read there, and
    one `parquet_read` record says so, after the rows read before it. A batch is counted before its
    dictionaries are expanded, where they could expand past the limit (_expanding_columns); what
    remains is the expansion no footer or dictionary shows (a footer that understates its values,
    a list of DELTA_BYTE_ARRAY values sharing one long prefix), up to one batch of it; batches are
    smaller where DELTA_BYTE_ARRAY could repeat long values (_batch_rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering kept every row group read
        limit = unpacked_limit(path)
        declared = _declared_uncompressed_bytes(parquet.metadata)
        if declared > limit:
            yield _parquet_bomb(0, limit)
            return
        if expanding := _expanding_columns(path, parquet, limit):
            parquet = pq.ParquetFile(path, pre_buffer=False, read_dictionary=expanding)
        schema = parquet.schema_arrow
        dense = pa.schema([field.with_type(_dense(field.type)) for field in schema])
        decoded = 0
        batch_rows = _batch_rows(parquet.metadata, limit)
        # Where columns come as dictionaries, a batch per row group at most: each group has its own
        # dictionaries, and a nested column's batch that spanned two failed in Arrow ("Nested data
        # conversions not implemented for chunked array outputs"). Elsewhere batches may span
        # groups: a reader per group made a file of 20,000 small groups read 1.5 s slower.
        batches = (
            (
                batch
                for group in range(parquet.metadata.num_row_groups)
                for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group])
            )
            if expanding or dense != schema
            else parquet.iter_batches(batch_size=batch_rows)
        )
        for batch in batches:
            decoded += sum(_dense_nbytes(column) for column in batch.columns)
            if decoded > limit:  # counted before the dictionaries are expanded
                yield _parquet_bomb(row, limit)
                return
            if dense != schema:
                batch = batch.cast(dense)
            for value in batch.to_pylist():
                row += 1
                yield Record(row, value, "")
    except Exception as e:  # a truncated or foreign file: one quarantined record, not a crash
        where = f"after row {row:,}: " if row else ""
        reason = f"unreadable parquet file ({where}{type(e).__name__}: {e})"
        yield Record(row + 1, None, "", "parquet_read", reason[:300])


def iter_table_records(path: Path) -> Iterator[Record]:
    """Dispatch on the extension: .parquet, .jsonl, .json, .csv."""
    if has_suffix(path, ".parquet"):
        return iter_parquet(path)
    if has_suffix(path, ".csv"):
        return iter_csv(path)
    return iter_json_records(path)


def data_files(raw_dir: Path, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> list[Path]:
    """The data files of a raw download with these (lower-case) suffixes in any letter case (has_suffix),
    manifest and hidden files excluded, in a stable order."""
    out = []
    for p in sorted(raw_dir.rglob("*")):
        rel = p.relative_to(raw_dir)
        if not p.is_file() or rel.name == "manifest.json" or any(part.startswith(".") for part in rel.parts):
            continue
        if has_suffix(p, suffixes):
            out.append(p)
    return out


# How a JSON value that is not an object is named in a reason (JSON's words, not Python's): the
# adapters' quarantine (adapters/_records) and contrib's format hint.
_JSON_KINDS = {
    list: "list",
    str: "string",
    int: "number",
    float: "number",
    bool: "true/false",
    type(None): "null",
}


def json_kind(value: Any) -> str:
    """`a JSON list`, `a JSON number`, ...: what a record that is not an object holds."""
    return f"a JSON {_JSON_KINDS.get(type(value), type(value).__name__)}"
