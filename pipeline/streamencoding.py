"""A locale whose encoding is not UTF-8: an ASCII one without Python's UTF-8 mode (`LC_ALL=C
PYTHONUTF8=0`), a Latin-1 one, or PYTHONIOENCODING=ascii: output to such a terminal, and file names.

Not in pipeline/terminal.py: that module is a dependency of most stages in dvc.yaml, and how the
CLI prints changes none of their outputs.
"""

from __future__ import annotations

import codecs
import os
import sys
from pathlib import Path
from typing import TextIO


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
            reconfigure(errors="backslashreplace")


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
    shown = os.fsencode(name).decode("utf-8", "backslashreplace")  # the folder as the shell names it
    return (
        f"the project's path {ascii(shown)[1:-1]} is not ASCII, and this locale decodes file names as "
        f"{sys.getfilesystemencoding()}: polars takes them as UTF-8 and can open none of its files; "
        "run with PYTHONUTF8=1 (Python's UTF-8 mode) or a UTF-8 locale (LC_ALL=C.UTF-8)"
    )
