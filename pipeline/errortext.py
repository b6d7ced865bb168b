"""An error's message, cut to the line a one-line report can carry.

Library errors (polars, torch, numpy, huggingface_hub) run to several lines: the first says what
went wrong, the rest is context or a traceback of their own. Every one-line error of this project
quotes them through here, so an empty message (a bare `KeyError()`) still says something.
"""

from __future__ import annotations


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The message's first line (the error's type name when the message is empty), at most `limit`
    characters where a foreign message could make the report line unreadable."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else ""
    return (text or type(e).__name__)[:limit]


def gist(e: BaseException, limit: int = 300) -> str:
    """`Type: first line`, enough to tell a full disk from a read-only folder (the type alone when
    the message is empty)."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip()[:limit] if lines else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
