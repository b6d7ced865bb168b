"""Source corpora: the registry (sources.yaml), pinned downloads, and one adapter per upstream format.

registry.py   SourceSpec + load/validate sources.yaml
contrib.py    data/contrib/: its files (links refused) and their validated sidecars
download.py   fetch one source into data/raw/<name>/ (exact bytes + manifest.json)
hub.py        Hugging Face dataset snapshots (huggingface_hub), offline-cache aware
http.py       resumable HTTP download checked against a pinned sha256
archive.py    safe extraction of the members `files:` selects from a downloaded .tar/.zip
globs.py      `files:` globs on names (repo listings, archive members), as pathlib matches them
rows.py       RawRows: what every adapter emits (one row per upstream turn/utterance)
readers.py    line / JSONL / CSV readers that turn broken input into quarantined rows
adapters/     upstream format -> RawRows
normalize.py  RawRows -> turn table + quarantine + report (the rules of pipeline.schema)
table.py      `nanochatgpt sources`
"""

from pipeline.sources.errors import SourceError

__all__ = ["SourceError"]
