"""The tokenize stage's pool workers: how each one starts.

Kept apart from pipeline.encode, which imports polars and pyarrow: a spawned worker imports the
module of its initializer, and with the initializer in encode.py every worker loaded both (+32 MB
of RSS each and +28% of the stage's CPU seconds, as a review measured; the tokenize benchmark's
peak RSS went from 323 to 440 MB) to run code that needs only numpy and tiktoken
(pipeline.tokenizer.encode_conversations).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

from pipeline.tokenizer import get_encoding

_PR_SET_PDEATHSIG = 1


def start_worker() -> None:
    """A pool worker's start: it dies with the stage (a kill -9, the OOM killer, a CI timeout that
    kills one pid would leave it running for ever, holding the stage's output pipe open), then
    loads the encoding."""
    die_with_parent()
    get_encoding()


def die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux prctl PR_SET_PDEATHSIG);
    elsewhere, a daemon thread that exits it once the parent is gone."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()
