"""The one error type a stage turns into a single line on stderr (and exit status 1)."""

from __future__ import annotations


class SourceError(Exception):
    """A problem the user can fix (missing file, no network, bad registry entry).

    The message is one line that names the source, what is missing and how to fix it;
    stages print it without a traceback.
    """
