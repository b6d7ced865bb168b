"""download@<source>: fetch one registry source into data/raw/<source>/ (see pipeline/sources/download.py)."""

from __future__ import annotations

import sys

from pipeline.errortext import run_stage
from pipeline.sources.download import download, unpinned_notice
from pipeline.sources.errors import SourceError
from pipeline.sources.registry import get_source
from pipeline.terminal import printable


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m stages.download <source>", file=sys.stderr)
        return 2
    try:
        spec = get_source(argv[0])
        folder = download(spec)
    except SourceError as e:
        print(f"download: {printable(str(e))}", file=sys.stderr)  # contrib names: one line, inert
        return 1
    print(f"download {argv[0]}: {folder}")
    if notice := unpinned_notice(spec, folder):
        print(f"download: warning: {notice}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("download", main))
