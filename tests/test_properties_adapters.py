"""Property tests: every adapter, fed malformed upstream records in its own upstream format, never
crashes with a traceback.

Each case starts from the adapter's fixture (tests/fixtures/sources/<adapter>), damages it the way
real downloads are damaged, and checks that
  - the adapter either reads the folder or raises SourceError with one line naming the file;
  - every row it emits names where it came from (`file:line` / `file:record`), and every
    quarantined or filtered row gives its check or filter reason;
  - normalize's counts reconcile: rows_read = rows_kept + rows_quarantined + sum(rows_filtered).

Two kinds of damage: structural (a JSON / YAML record with a key deleted, a value replaced by one of
the wrong type, ids duplicated, parents pointing nowhere or in cycles, a record that is a list or a
number) and byte-level (invalid UTF-8, BOM, blank lines, a truncated last line, duplicated lines),
the latter for every adapter, whatever its format.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.sources.adapters import ADAPTERS, get_adapter
from pipeline.sources.errors import SourceError
from pipeline.sources.normalize import normalize_rows
from pipeline.sources.registry import SourceSpec

FIXTURES = Path(__file__).parent / "fixtures" / "sources"

# adapter -> (fixture folder, options): the fixture folder holds that adapter's upstream format
FOLDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "arithmetic": ("arithmetic", {}),
    "babylm": ("babylm", {"max_lines": 3}),
    "chatbot_arena": ("chatbot_arena", {}),
    "chatterbot": ("chatterbot", {}),
    "chitchat": ("chitchat", {}),
    "dailydialog": ("dailydialog", {}),
    "empathetic_dialogues": ("empathetic_dialogues", {}),
    "hackernews": ("hackernews", {}),
    "nanochatgpt": ("nanochatgpt", {}),
    "oasst1": ("oasst1", {}),
    "openai": ("openai", {}),
    "personachat": ("personachat", {}),
    "sharegpt": ("sharegpt", {}),
    "twitter": ("twitter", {"pairs": True}),
    "ubuntu": ("ubuntu", {}),
}
CONTRIB_BODY = (
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
)

# Values of the wrong type (or awkward values of the right one) for any field of a record.
HUGE = "x" * 70_000  # over normalize's max_turn_chars: quarantined as too long, never a crash
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.sampled_from(["", " ", HUGE, "\ud83d cut emoji", "\u00e9t\u00e9", "\x00", "\r\n", "<human>"]),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=3)), max_size=3),
    st.dictionaries(
        st.text(max_size=3), st.one_of(st.none(), st.integers(), st.text(max_size=3)), max_size=2
    ),
)


def _spec(adapter: str, options: dict[str, Any] | None = None) -> SourceSpec:
    return SourceSpec(adapter, "hf_dataset", "x/y", adapter, "MIT", True, options=options or {})


def _setup(adapter: str, tmp: Path) -> Path:
    """A fresh copy of the adapter's fixture folder (contrib: one contributed JSONL file)."""
    folder = tmp / "raw"
    if folder.exists():
        shutil.rmtree(folder)
    if adapter == "contrib":
        folder.mkdir()
        (folder / "chat.jsonl").write_text(CONTRIB_BODY)
        (folder / "chat.yaml").write_text(
            yaml.safe_dump({"licence": "MIT", "commercial": True, "description": "t"})
        )
    else:
        shutil.copytree(FIXTURES / FOLDERS[adapter][0], folder)
    return folder


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix not in {".yaml", ".py"})


def _check(adapter: str, folder: Path) -> None:
    """The adapter reads the folder (or refuses it in one line naming a file), and what it read is
    accounted for row by row."""
    options = FOLDERS[adapter][1] if adapter in FOLDERS else {}
    spec = (
        SourceSpec("contrib", "contrib", "data/contrib", "contrib", "per-file", False)
        if adapter == "contrib"
        else _spec(adapter, options)
    )
    try:
        raw = get_adapter(adapter)(folder, spec, {})
    except SourceError as e:
        message = str(e)
        assert "\n" not in message, message
        assert any(p.name in message for p in _data_files(folder)), message
        return
    names = {p.relative_to(folder).as_posix() for p in _data_files(folder)} | {
        p.name for p in _data_files(folder)
    }
    # every row names its file and its line / record (`file:12`, `file:12/messages[0]`, `file:c2/0`)
    for origin in raw.get_column("origin").to_list():
        assert origin is not None
        assert any(origin.startswith(f"{name}:") and origin[len(name) + 1 :] for name in names), origin
    assert raw.filter(pl.col("check").is_not_null() & pl.col("reason").is_null()).is_empty()
    result = normalize_rows(raw)
    report = result.report
    assert report["rows_read"] == raw.height
    assert report["rows_read"] == report["rows_kept"] + report["rows_quarantined"] + sum(
        report["rows_filtered"].values()
    ), report
    q = result.quarantine
    assert q.height == report["rows_quarantined"]
    assert q.filter(pl.col("check").is_null() | pl.col("reason").is_null()).is_empty()


# --- structural damage: JSON and YAML records ---------------------------------------------------------

JSON_ADAPTERS = sorted(
    a for a in FOLDERS if all(p.suffix in {".json", ".jsonl"} for p in _data_files(FIXTURES / a))
) + ["contrib"]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys / indices) into a JSON value, the value itself included."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(value: Any, path: tuple, op: str, new: Any) -> Any:
    """`value` with the item at `path` deleted (`op` "delete") or replaced by `new`."""
    if not path:
        return new
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "rename" and isinstance(parent, dict):
        parent[f"\u00fc{last}\u2603"] = parent.pop(last)  # unicode in a key: an unknown key now
    else:
        parent[last] = new
    return value


class Broken(str):
    """A line of the fixture that is already broken JSON: written back as it was."""


def _parse_line(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return Broken(line)


def _load_records(path: Path) -> tuple[list[Any], bool]:
    """(records, is_jsonl)."""
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if path.suffix == ".jsonl":
        return [_parse_line(line) for line in text.splitlines() if line.strip()], True
    data = _parse_line(text)
    if isinstance(data, Broken):
        return [], False
    if not isinstance(data, list):  # chitchat: one object keyed by conversation id
        return [data], False
    return data, False


def _dump_records(path: Path, records: list[Any], jsonl: bool, single: bool) -> None:
    if jsonl:
        lines = (r if isinstance(r, Broken) else json.dumps(r) for r in records)
        path.write_text("".join(line + "\n" for line in lines), errors="surrogateescape")
    else:
        path.write_text(json.dumps(records[0] if single else records))


@st.composite
def json_damage(draw: st.DrawFn) -> list[tuple]:
    """A few edits: (file index, record index, path choice, op, new value)."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        edits.append(
            (
                draw(st.integers(0, 10)),
                draw(st.integers(0, 100)),
                draw(st.integers(0, 10_000)),
                draw(st.sampled_from(["delete", "replace", "replace", "rename", "copy_id", "dangle"])),
                draw(ODD_VALUES),
            )
        )
    return edits


def _apply_json(folder: Path, edits: list[tuple]) -> None:
    files = _data_files(folder)
    for file_i, rec_i, path_i, op, new in edits:
        path = files[file_i % len(files)]
        records, jsonl = _load_records(path)
        single = not jsonl and path.read_text(errors="replace").lstrip().startswith("{")
        i = rec_i % max(len(records), 1)
        if not records or isinstance(records[i], Broken):
            continue
        if op in {"copy_id", "dangle"}:
            # duplicated ids, and parents that point nowhere or at each other (oasst1, hackernews)
            rec, other = records[i], records[(i + 1) % len(records)]
            if isinstance(rec, dict) and isinstance(other, dict):
                for key in ("id", "message_id", "parent_id", "parent", "message_tree_id", "conversation_id"):
                    if key in rec and key in other:
                        rec[key] = other[key] if op == "copy_id" else "nowhere"
                if op == "copy_id" and "message_id" in rec and "parent_id" in other:
                    other["parent_id"] = rec["message_id"]  # a cycle once rec copied other's id
                if op == "copy_id" and "id" in rec and "kids" in other:
                    other["kids"] = [rec["id"], other.get("id")]
        else:
            paths = _paths(records[i])
            chosen = paths[path_i % len(paths)]
            if op in {"delete", "rename"} and not chosen:
                op = "replace"
            records[i] = _mutate(records[i], chosen, op, new)
        _dump_records(path, records, jsonl, single)


@pytest.mark.parametrize("adapter", JSON_ADAPTERS)
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_json_records_never_crash(adapter: str, data: st.DataObject, tmp_path: Path) -> None:
    folder = _setup(adapter, tmp_path)
    _apply_json(folder, data.draw(json_damage()))
    _check(adapter, folder)


@settings(max_examples=25)
@given(data=st.data())
def test_damaged_chatterbot_yaml_never_crashes(data: st.DataObject, tmp_path_factory: Any) -> None:
    folder = _setup("chatterbot", tmp_path_factory.mktemp("yml"))
    path = folder / "data" / "english" / "fixture.yml"
    doc = yaml.safe_load(path.read_text())
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        chosen = paths[data.draw(st.integers(0, len(paths) - 1))]
        op = data.draw(st.sampled_from(["delete", "replace", "rename"])) if chosen else "replace"
        try:
            doc = _mutate(doc, chosen, op, data.draw(ODD_VALUES))
        except (KeyError, IndexError, TypeError):
            break  # an earlier edit removed or replaced this path
    path.write_text(yaml.safe_dump(doc, allow_unicode=False))
    _check("chatterbot", folder)


# --- byte-level damage: every adapter ------------------------------------------------------------------

BYTE_OPS = ["invalid_utf8", "bom", "blank_lines", "truncate", "duplicate_line", "top_level", "drop_line"]


def _damage_bytes(raw: bytes, op: str, at: int, suffix: str) -> bytes:
    lines = raw.split(b"\n")
    i = at % max(len(lines), 1)
    if op == "invalid_utf8":
        pos = at % max(len(raw), 1)
        return raw[:pos] + b"\xff\xc3(" + raw[pos:]
    if op == "bom":
        return b"\xef\xbb\xbf" + raw
    if op == "blank_lines":
        return b"\n".join([*lines[:i], b"", b"  ", *lines[i:]])
    if op == "truncate":
        body = raw.rstrip(b"\n")
        return body[: len(body) - 1 - at % max(min(len(body) // 3, 40), 1)]
    if op == "duplicate_line":
        return b"\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    if op == "drop_line":
        return b"\n".join(lines[:i] + lines[i + 1 :])
    # valid JSON, but a list or a number where a record object should be
    extra = b"[1, 2]" if at % 2 else b"42"
    return extra if suffix == ".json" and at % 3 == 0 else b"\n".join([*lines[:i], extra, *lines[i:]])


@pytest.mark.parametrize("adapter", [*sorted(FOLDERS), "contrib"])
@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(BYTE_OPS), st.integers(0, 10_000), st.integers(0, 10)),
        min_size=1,
        max_size=3,
    )
)
def test_damaged_bytes_never_crash(adapter: str, ops: list[tuple[str, int, int]], tmp_path: Path) -> None:
    folder = _setup(adapter, tmp_path)
    files = [p for p in _data_files(folder) if p.suffix != ".parquet"]
    for op, at, file_i in ops:
        path = files[file_i % len(files)]
        path.write_bytes(_damage_bytes(path.read_bytes(), op, at, path.suffix))
    _check(adapter, folder)


def test_every_adapter_is_fuzzed() -> None:
    assert set(ADAPTERS) == set(FOLDERS) | {"contrib"}


# --- trees: ids, parents and kids of any type, duplicated, dangling or in cycles ------------------------

IDS = st.sampled_from(["a", "b", "c", "d"])
ODD_ID = st.one_of(st.none(), IDS, st.just("nowhere"), ODD_VALUES)


@st.composite
def oasst_messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Flat oasst1 message records: parents anywhere (self, each other, nowhere, a list...)."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        msg = {
            "message_id": draw(st.one_of(IDS, ODD_VALUES)),
            "parent_id": draw(ODD_ID),
            "message_tree_id": draw(st.one_of(st.just("t"), ODD_VALUES)),
            "role": draw(st.sampled_from(["prompter", "assistant", "moderator"])),
            "text": draw(st.sampled_from(["hi", "", "ok"])),
            "rank": draw(st.one_of(st.none(), st.integers(0, 3), ODD_VALUES)),
        }
        out.append({k: v for k, v in msg.items() if draw(st.booleans()) or k == "message_id"})
    return out


@settings(max_examples=60)
@given(messages=oasst_messages())
# Regression cases: each raised a TypeError out of the adapter before oasst1.py checked the field
# (a list parent_id is unhashable; a list tree id does not fit conv_key; text and number ranks
# do not compare).
@example(
    messages=[{"message_id": "a", "parent_id": [], "message_tree_id": "t", "role": "prompter", "text": "hi"}]
)
@example(
    messages=[
        {"message_id": "a", "parent_id": "nowhere", "message_tree_id": [], "role": "prompter", "text": "hi"}
    ]
)
@example(
    messages=[
        {"message_id": "a", "parent_id": None, "message_tree_id": "t", "role": "prompter", "text": "q"},
        {
            "message_id": "b",
            "parent_id": "a",
            "message_tree_id": "t",
            "role": "assistant",
            "text": "x",
            "rank": 1,
        },
        {
            "message_id": "c",
            "parent_id": "a",
            "message_tree_id": "t",
            "role": "assistant",
            "text": "y",
            "rank": "0",
        },
    ]
)
def test_oasst1_any_tree_never_crashes(messages: list[dict[str, Any]], tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("oasst1")
    (folder / "x.messages.jsonl").write_text("".join(json.dumps(m) + "\n" for m in messages))
    _check("oasst1", folder)


@st.composite
def hn_items(draw: st.DrawFn) -> list[dict[str, Any]]:
    """HN items whose parent / kids point anywhere: themselves, each other, nowhere, or are not ids."""
    ids = st.integers(1, 5)
    out = []
    for _ in range(draw(st.integers(1, 6))):
        item = {
            "id": draw(st.one_of(ids, ODD_VALUES)),
            "type": draw(st.one_of(st.sampled_from(["story", "comment", "comment", "poll"]), ODD_VALUES)),
            "by": draw(st.one_of(st.sampled_from(["u", "v"]), ODD_VALUES)),
            "text": draw(st.one_of(st.just("hi <p>there"), ODD_VALUES)),
            "parent": draw(st.one_of(ids, ODD_VALUES)),
            "kids": draw(st.one_of(st.lists(st.one_of(ids, ODD_VALUES), max_size=3), ODD_VALUES)),
            "title": draw(st.one_of(st.just("t"), ODD_VALUES)),
            "deleted": draw(st.one_of(st.none(), st.booleans(), ODD_VALUES)),
        }
        out.append({k: v for k, v in item.items() if draw(st.booleans()) or k == "id"})
    return out


@settings(max_examples=60)
@given(items=hn_items())
@example(items=[{"id": 1, "type": "comment", "parent": 1, "kids": [1], "by": "u", "text": "loop"}])
def test_hackernews_any_tree_never_crashes(items: list[dict[str, Any]], tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("hn")
    (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    _check("hackernews", folder)


@settings(max_examples=30)
@given(ids=st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=5))
# Regression: JSON keeps a repeated key's last value only, so chitchat read one of two conversations
# stored under one id and counted nothing for the other (rows_read fell short of the file).
@example(ids=["a", "a"])
def test_chitchat_repeated_conversation_id_is_counted(ids: list[str], tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("chitchat")
    conv = '{"messages": [[{"sender": "s1", "text": "hi"}], [{"sender": "s2", "text": "hello"}]]}'
    body = ", ".join(f"{json.dumps(i)}: {conv}" for i in ids)
    (folder / "dataset.json").write_text("{" + body + "}")
    raw = get_adapter("chitchat")(folder, _spec("chitchat"), {})
    first = len(set(ids))
    assert raw.height == 2 * first + (len(ids) - first)  # two utterances each, one row per repeat
    assert raw.filter(pl.col("check") == "duplicate_id").height == len(ids) - first
    _check("chitchat", folder)
    # an empty id is no conversation id: normalize quarantines that one (counted, as _check saw)
    assert normalize_rows(raw).report["rows_kept"] == 2 * len(set(ids) - {""})
