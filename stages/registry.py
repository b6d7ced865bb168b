"""registry: sources.yaml + data/contrib/ -> data/registry/<source>.json, what each download depends on.

See pipeline/sources/fetchspec.py for why the downloads depend on these files instead of sources.yaml.
It also removes what a source taken out of params.yaml `sources:` left under data/
(pipeline/sources/leftovers.py): the builds hash those folders whole. And, as the stage every repro
runs first, it refuses an unknown train.variant or train.profile before DVC reaches (and clears) the
train stage (pipeline/trainchoice.py).
"""

from __future__ import annotations

import sys

from pipeline.errortext import run_stage
from pipeline.params import DEFAULT_PARAMS, load_params, project_root
from pipeline.sources.errors import SourceError
from pipeline.sources.fetchspec import write_fetch_specs
from pipeline.sources.leftovers import find_leftovers, remove_leftovers
from pipeline.sources.registry import FETCH_SPECS, enabled_specs
from pipeline.terminal import printable
from pipeline.trainchoice import check_train_choice


def main() -> int:
    root = project_root()
    try:
        check_train_choice(load_params(root / DEFAULT_PARAMS))
        specs, registry = enabled_specs(root)
    except (SourceError, ValueError) as e:
        print(f"registry: {printable(str(e))}", file=sys.stderr)  # contrib names: one line, inert
        return 1
    written = write_fetch_specs(specs, root, root / FETCH_SPECS)
    print(f"registry: {len(written)} sources -> {FETCH_SPECS}/")
    for name, paths in find_leftovers(root, {s.name for s in specs}, registry.values()).items():
        remove_leftovers(paths)
        shown = ", ".join(p.relative_to(root).as_posix() for p in paths)
        print(
            f"registry: {name} is no longer in params.yaml `sources:`: removed {shown} (the builds hash "
            "data/raw and data/normalized whole; enabled again, DVC restores or remakes them)"
        )
    return 0


if __name__ == "__main__":
    # Its specs are swapped in whole, but a disabled source's folders are removed after them: an
    # interrupt there leaves part of one, and dvc.lock unwritten (the next repro runs this again).
    sys.exit(
        run_stage(
            "registry", main, "`dvc repro` runs it again (a disabled source's folders may be half removed)"
        )
    )
