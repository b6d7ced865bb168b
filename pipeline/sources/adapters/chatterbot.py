"""chatterbot-corpus (PyPI `chatterbot_corpus/data/<language>/*.yml`).

Upstream: {"categories": [...], "conversations": [[utterance, reply, utterance, ...], ...]}.
Positions alternate human / bot; an empty conversation (`- []`) is quarantined as one row, and so is
a second `conversations:` list in one file (`duplicate_key`; the first is read). The
YAML is read as a node tree, not as Python values, so an answer written `Yes` or `42` keeps its
exact upstream text (PyYAML would turn it into a bool or an int) and every row knows its line number.

Some upstream files use a list differently: a statement followed by alternative replies to it, not
a dialogue (the maintainer on english/computers.yml, gunthercox/chatterbot-corpus#80: "those
represent different possible answers to the same question"; english/emotion.yml is written the
same way). Read as a dialogue, the second reply would be a human turn and the third the bot's
answer to it ("Which is better Windows or macOS?" / "It depends..." / human: "I'd prefer to not
hurt your feelings." / bot: "Linux, always Linux!"). The files named in `options.answer_variants`
(paths inside the source's folder) are read as such: a list [s, r1, r2, ...] of three or more
becomes one conversation [s, rk] per reply, keyed `<file>:<i>/<k>`, the statement's row repeated
in each (so rows_read counts it once per reply); a list of two is one conversation as ever.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import yaml

from pipeline.errortext import first_line
from pipeline.sources.adapters import option
from pipeline.sources.adapters._records import key_stems
from pipeline.sources.errors import SourceError
from pipeline.sources.readers import data_files, decode_whole, line_of, read_whole
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    variants = set(option(spec, "answer_variants"))
    paths = {path.relative_to(raw_dir).as_posix(): path for path in data_files(raw_dir, (".yml", ".yaml"))}
    missing = sorted(variants - paths.keys())
    if missing:  # a misspelt path would leave that file read as dialogues, silently
        raise SourceError(
            f"{spec.name}: `options:` answer_variants names {', '.join(missing)}, which is not a data file "
            f"of the source (its files: {', '.join(sorted(paths)) or 'none'}) in sources.yaml"
        )
    for rel, stem in key_stems(list(paths)).items():
        read_file(paths[rel], rel, rows, key_prefix=stem, answer_variants=rel in variants)
    return rows.frame()


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses YAML aliases (`*name`): upstream files have none (none of the 237 in
    chatterbot-corpus 1.3.3), and each alias re-reads its anchor's whole node, so 5 KB of aliased
    lists unpacked to 90,000 rows (growing with the square of the file's size)."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases are not read (*{str(event.anchor)[:30]})", event.start_mark
            )
        return super().compose_node(parent, index)


def _mapping_get(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _repeated_keys(node: yaml.Node | None, key: str) -> list[yaml.Node]:
    """The key nodes of `key` in mapping `node` after its first (a repeated key)."""
    if not isinstance(node, yaml.MappingNode):
        return []
    found = [k for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    return found[1:]


def read_file(path: Path, rel: str, rows: RawRows, key_prefix: str, *, answer_variants: bool = False) -> None:
    whole = read_whole(path)  # a .gz decompressed (data_files selects x.yml.gz)
    if not whole.ok:
        rows.bad(f"{rel}:{whole.line}", whole.check, whole.reason)
        return
    raw = whole.value
    try:
        root = yaml.compose(decode_whole(raw), Loader=_NoAliasLoader)
    except UnicodeDecodeError as e:
        rows.bad(f"{rel}:{line_of(raw, e.start)}", "utf8", f"invalid UTF-8 at byte {e.start} of the file")
        return
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        rows.bad(f"{rel}:{line}", "yaml_parse", f"not valid YAML ({first_line(e)})")
        return
    except RecursionError:  # the composer recurses once per nesting level
        rows.bad(f"{rel}:1", "yaml_parse", "not valid YAML (nested too deeply)")
        return
    convs = _mapping_get(root, "conversations") if root is not None else None
    for again in _repeated_keys(root, "conversations"):  # else silently left out: count each one
        rows.bad(
            f"{rel}:{again.start_mark.line + 1}",
            "duplicate_key",
            "key 'conversations' is given twice in the file (a YAML reader keeps only one list); the "
            "first is read: join the lists into one",
        )
    if not isinstance(convs, yaml.SequenceNode):
        rows.bad(f"{rel}:1", "missing_field", "no `conversations:` list")
        return
    for i, conv in enumerate(convs.value):
        key = f"{key_prefix}:{i}"
        if not isinstance(conv, yaml.SequenceNode):
            rows.bad(
                f"{rel}:{conv.start_mark.line + 1}",
                "missing_field",
                "conversation is not a list",
                conv_key=key,
            )
            continue
        if not conv.value:  # a conversation that holds nothing is still one read: count it, never drop it
            rows.bad(
                f"{rel}:{conv.start_mark.line + 1}", "missing_field", "conversation is empty", conv_key=key
            )
            continue
        if answer_variants and len(conv.value) > 2:  # a statement and its alternative replies
            statement, *replies = conv.value
            for k, reply in enumerate(replies, 1):
                _add_conversation(rows, rel, f"{key}/{k}", [statement, reply])
        else:
            _add_conversation(rows, rel, key, conv.value)


def _add_conversation(rows: RawRows, rel: str, key: str, nodes: list[yaml.Node]) -> None:
    """One row per utterance node; positions alternate human / bot."""
    for j, node in enumerate(nodes):
        origin = f"{rel}:{node.start_mark.line + 1}"
        role = "human" if j % 2 == 0 else "bot"
        if not isinstance(node, yaml.ScalarNode):
            rows.bad(origin, "missing_field", "utterance is not a plain string", conv_key=key, role=role)
            continue
        rows.add(key, node.value, origin, role=role)
