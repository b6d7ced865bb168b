"""Hacker News items (the Firebase API's item objects, as JSON lines, a JSON list, or parquet).

Item fields: id, type (story | comment | job | poll | pollopt), by, text (HTML), parent, kids
(reply ids in ranked display order), title, deleted, dead. Comments link into reply chains by
parent/kids. Each top-level comment starts a conversation that follows, at every step, the first
live reply in `kids` order (HN's ranking; by id when `kids` is absent), like oasst1's best branch.
The story's title becomes the conversation context ("Hacker News: <title>"). Text: <p>/<br> become
newlines, other tags are stripped, HTML entities unescaped. Filtered reasons: hn_story (stories
are context, not turns), hn_unsupported_type, hn_deleted (deleted or dead), hn_parent_deleted,
hn_not_on_thread.
Authors are the speakers: the top comment's author is the human.

Memory: every item is held until its threads are built (a reply may come anywhere in the input),
with only the fields used here: about 750 bytes per item of a ~200-character comment (measured:
200,000 items -> ~143 MiB peak). The whole OpenPipe/hacker-news dump is 41.8M items (~30 GiB held),
which is why sources.yaml takes its first parquet shard only (~1.2M items, ~1 GiB); list more
shards in `files:` only on a machine with that much memory per shard.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters._records import objects
from pipeline.sources.readers import data_files, iter_table_records
from pipeline.sources.registry import SourceSpec, brief
from pipeline.sources.rows import RawRows

# `\s*(?:/\s*)?>`, not `\s*/?\s*>`: two runs of spaces side by side split a long run every way
# before failing (quadratic: `<p` and a million spaces took an hour). The same tags match.
_PARAGRAPH = re.compile(r"<\s*(p|br)\s*(?:/\s*)?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
STORY_TYPES = ("story", "ask", "show")
# The item fields this adapter reads; the dump's others (time, url, score, descendants, ...) are dropped
# as each item is read, since every item stays in memory until its threads are built.
FIELDS = ("id", "type", "by", "text", "parent", "kids", "title", "deleted", "dead")


def html_to_text(value: str) -> str:
    """HN comment HTML -> plain text (paragraphs on their own lines, links by their text)."""
    text = _PARAGRAPH.sub("\n", value)
    # No tag ends after the last `>`: a run of `<` there was scanned to the end from each `<` in
    # turn (quadratic: a million `<` took minutes). Before it, each `<` matches up to the next `>`.
    end = text.rfind(">") + 1
    return html.unescape(_TAG.sub("", text[:end]) + text[end:])


def _item_id(value: Any) -> int | None:
    """An item id as an int: an int, or a whole-number float (parquet exports store `parent` as
    float64); None for anything else (a bool, a list, text...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _slim(item: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the fields of FIELDS the item has, None), or (None, why) when `parent` or `kids` cannot name
    items. An absent field stays absent (`type` defaults to comment); `parent` and `kids` hold ints
    only, since both are looked up as item ids (a list there is unhashable)."""
    out = {k: item[k] for k in FIELDS if k in item}
    if isinstance(out.get("parent"), float) and math.isnan(out["parent"]):  # a pandas-written null
        del out["parent"]
    if out.get("parent") is not None:
        parent = _item_id(out["parent"])
        if parent is None:
            return None, f"item {item['id']}: `parent` must be an item id, not {brief(out['parent'])}"
        out["parent"] = parent
    if out.get("kids") is not None:
        kids = out["kids"]
        # a null entry is a gap in a parquet list column: it names nothing, so it is left out
        ids = [_item_id(k) for k in kids if k is not None] if isinstance(kids, list) else [None]
        if None in ids:
            return None, f"item {item['id']}: `kids` must be a list of item ids, not {brief(kids)}"
        out["kids"] = ids
    return out, None


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    items: dict[int, dict[str, Any]] = {}
    origins: dict[int, str] = {}
    for path in data_files(raw_dir, (".parquet", ".jsonl", ".json")):
        rel = path.relative_to(raw_dir).as_posix()
        for origin, _, item in objects(iter_table_records(path), rel, rows):
            if not isinstance(item.get("id"), int) or isinstance(item.get("id"), bool):
                rows.bad(origin, "missing_field", "item has no integer `id`")
                continue
            if item["id"] in items:
                rows.bad(origin, "duplicate_id", f"item {item['id']} appears twice")
                continue
            slim, problem = _slim(item)
            if slim is None:
                rows.bad(origin, "missing_field", problem or "", text=_text_of(item))
                continue
            items[item["id"]] = slim
            origins[item["id"]] = origin
    _threads(rows, items, origins)
    return rows.frame()


def _text_of(item: dict[str, Any]) -> str | None:
    """The item's own text, shown in quarantine (so the comment can be found and fixed)."""
    text = item.get("text")
    return text if isinstance(text, str) else None


def _live(item: dict[str, Any]) -> bool:
    return not item.get("deleted") and not item.get("dead")


def _replies(iid: int, items: dict[int, dict[str, Any]], by_parent: dict[int, list[int]]) -> list[int]:
    kids = items[iid].get("kids")
    if isinstance(kids, list) and kids:
        return [k for k in kids if k in items]
    return sorted(by_parent.get(iid, []))


def _threads(rows: RawRows, items: dict[int, dict[str, Any]], origins: dict[int, str]) -> None:
    by_parent: dict[int, list[int]] = {}
    for iid, item in items.items():
        if isinstance(item.get("parent"), int):
            by_parent.setdefault(item["parent"], []).append(iid)
    used: set[int] = set()
    for iid, item in items.items():
        kind = item.get("type", "comment")
        if kind in STORY_TYPES:
            rows.skip(origins[iid], "hn_story")
            used.add(iid)
        elif kind != "comment":
            rows.skip(origins[iid], "hn_unsupported_type")
            used.add(iid)
    for iid, item in items.items():
        if iid in used or item.get("type", "comment") != "comment":
            continue
        parent = items.get(item.get("parent"))  # type: ignore[arg-type]
        if parent is not None and parent.get("type", "comment") == "comment":
            continue  # not a top-level comment: reached from its thread's start
        title = parent.get("title") if parent else None
        context = f"Hacker News: {html.unescape(title)}" if isinstance(title, str) and title.strip() else None
        _chain(rows, iid, items, origins, by_parent, used, context)
    found: dict[int, str] = {}  # a live item's reason is its chain's: shared by every reply below it
    for iid in items:  # deleted items, replies below them, replies off the chosen chain
        if iid not in used:
            rows.skip(origins[iid], _unused_reason(iid, items, found))


def _unused_reason(iid: int, items: dict[int, dict[str, Any]], found: dict[int, str]) -> str:
    """Why `iid` is on no conversation: deleted, below a deleted item, or off the chosen chain.
    `found` holds the reason of each live item walked before, so that a reply stops at its parent's
    answer: walked to its root for every reply, a chain of 20,000 replies off the chosen one (a
    1 MB file) took 75 s, growing with the square of its length."""
    if not _live(items[iid]):
        return "hn_deleted"
    path, seen, parent = [iid], {iid}, items[iid].get("parent")
    reason = "hn_not_on_thread"
    while parent in items and parent not in seen:
        if parent in found:
            reason = found[parent]
            break
        if not _live(items[parent]):
            reason = "hn_parent_deleted"
            break
        path.append(parent)
        seen.add(parent)
        parent = items[parent].get("parent")
    for live in path:  # each item on the path has the same ancestors above it, so the same reason
        found[live] = reason
    return reason


def _chain(
    rows: RawRows,
    start: int,
    items: dict[int, dict[str, Any]],
    origins: dict[int, str],
    by_parent: dict[int, list[int]],
    used: set[int],
    context: str | None,
) -> None:
    key = str(start)
    cur: int | None = start
    while cur is not None:
        item = items[cur]
        used.add(cur)
        if not _live(item):
            rows.skip(origins[cur], "hn_deleted", conv_key=key)
            return
        if not isinstance(item.get("text"), str) or not item.get("by"):
            # quarantined; the replies below it still follow, as `conversation_broken`
            rows.bad(origins[cur], "missing_field", "comment needs `by` and `text`", conv_key=key)
        else:
            rows.add(key, html_to_text(item["text"]), origins[cur], speaker=str(item["by"]), context=context)
        cur = next((k for k in _replies(cur, items, by_parent) if _live(items[k]) and k not in used), None)
