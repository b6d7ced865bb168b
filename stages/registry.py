"""registry: sources.yaml + data/contrib/ -> data/registry/<source>.json, what each download depends on.

See pipeline/sources/fetchspec.py for why the downloads depend on these files instead of sources.yaml.
"""

from __future__ import annotations

import sys

from pipeline.params import project_root
from pipeline.sources.errors import SourceError
from pipeline.sources.fetchspec import write_fetch_specs
from pipeline.sources.registry import enabled_sources, get_source, load_registry


def main() -> int:
    root = project_root()
    try:
        registry = load_registry(root / "sources.yaml")
        specs = [get_source(name, registry) for name in enabled_sources(root / "params.yaml")]
    except SourceError as e:
        print(f"registry: {e}", file=sys.stderr)
        return 1
    written = write_fetch_specs(specs, root, root / "data" / "registry")
    print(f"registry: {len(written)} sources -> data/registry/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
