"""An error's message, cut to the line a one-line report can carry.

Library errors (polars, torch, numpy, huggingface_hub) run to several lines: the first says what
went wrong, the rest is context or a traceback of their own. Every one-line error of this project
quotes them through here, so an empty message (a bare `KeyError()`) still says something.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


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


def run_stage(stage: str, main: Callable[[], int], after: str = "its outputs are unchanged") -> int:
    """A stage's `main()`, its exit status; Ctrl-C (SIGINT) is one line and status 130 (128 + SIGINT,
    as a shell reports it), not a traceback. A stage that writes its outputs atomically (whole, or
    not at all) leaves those of its last run as they were, the line's default `after`; one that
    does not says what stands instead.
    The line names `stage` and its item (the first argument): build@full; `after` says what stands."""
    name = "@".join([stage, *sys.argv[1:2]])
    from pipeline.params import project_root  # pipeline.params imports this module
    from pipeline.streamencoding import unopenable_root

    unopenable = unopenable_root(project_root())
    if unopenable is not None:
        print(f"{name}: {unopenable}", file=sys.stderr)
        return 1
    try:
        return main()
    except KeyboardInterrupt:
        # on a terminal, off the line the ^C echo (or a progress bar) holds
        sys.stderr.write(("\n" if sys.stderr.isatty() else "") + f"{name}: interrupted; {after}\n")
        return 130
