"""OpenAssistant oasst1: message trees -> linear threads.

Upstream: flat message records (the hub's data/*.parquet, or *.messages.jsonl[.gz]) with
message_id, parent_id, message_tree_id, role (prompter | assistant), text, lang, rank, deleted,
review_result, created_date; nested *.trees.jsonl[.gz] records ({"prompt": {..., "replies": [...]}})
are flattened to the same records first (a `replies` that is not a list, or an entry of it that
is not an object, is quarantined as `missing_field`, named by its path in the tree).

Each tree becomes one thread: from the root prompt, at every step the best usable reply (lowest
`rank`; unranked replies last, then oldest). Every other message is counted as filtered with its
reason: oasst_deleted, oasst_review_failed, oasst_lang (sources.yaml `options: {language: en}`; no
`language`, or null, keeps every language), oasst_parent_dropped (below a dropped message), oasst_not_selected (a lower-ranked
branch). A message whose parent is not in the data is quarantined (`parent_missing`), and so is
one whose parent chain loops and never reaches a root prompt (`parent_cycle`: a message that is its
own parent, two that are each other's, and every message below them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.sources.adapters import option
from pipeline.sources.adapters._records import readable
from pipeline.sources.readers import Record, data_files, iter_table_records
from pipeline.sources.registry import SourceSpec
from pipeline.sources.rows import RawRows

ROLES = {"prompter": "human", "assistant": "bot"}
REQUIRED = ("message_id", "role", "text")


def _flatten(rec: Record) -> list[tuple[str, Any, str | None]]:
    """(suffix, message, why it is unreadable or None): a tree record yields all its messages, a
    flat record itself. A `replies` that is not a list, or an entry of it that is not an object, is
    named by its path in the tree (`prompt.replies[0].replies`) rather than followed."""
    value = rec.value
    if isinstance(value, dict) and isinstance(value.get("prompt"), dict):
        out: list[tuple[str, Any, str | None]] = []
        stack: list[tuple[Any, Any, str]] = [(value["prompt"], None, "prompt")]
        while stack:
            msg, parent, path = stack.pop()
            if not isinstance(msg, dict):
                out.append((path, msg, f"{path} is {_type_name(msg)}, not a message object"))
                continue
            replies = msg.get("replies")
            flat = {k: v for k, v in msg.items() if k != "replies"}
            flat.setdefault("parent_id", parent)
            flat.setdefault("message_tree_id", value.get("message_tree_id"))
            out.append((path, flat, None))
            if replies is not None and not isinstance(replies, list):
                out.append((f"{path}.replies", None, f"{path}.replies is {_type_name(replies)}, not a list"))
                continue
            stack.extend(
                (r, msg.get("message_id"), f"{path}.replies[{i}]")
                for i, r in reversed(list(enumerate(replies or [])))
            )
        return out
    return [("", value, None)]


def _tree_id(msg: Any) -> str | None:
    """The message's tree id as a conversation key: text, or None when absent or not text (a
    number or list there would not fit the conv_key column)."""
    tree = msg.get("message_tree_id") if isinstance(msg, dict) else None
    return tree if isinstance(tree, str) else None


def _type_name(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _drop_reason(msg: dict[str, Any], lang: str | None) -> str | None:
    if msg.get("deleted") is True:
        return "oasst_deleted"
    if msg.get("review_result") is False:
        return "oasst_review_failed"
    if lang and msg.get("lang") not in (None, lang):
        return "oasst_lang"
    return None


def _rank_key(msg: dict[str, Any]) -> tuple:
    rank = msg.get("rank")
    # text or a list would not compare with a number, and NaN (a pandas-written null) compares
    # false both ways, so `min` kept whichever came first: an unranked reply beat the best one
    if not isinstance(rank, (int, float)) or rank != rank:
        rank = None
    return (
        rank is None,
        rank if rank is not None else 0,
        str(msg.get("created_date") or ""),
        msg["message_id"],
    )


def read(raw_dir: Path, spec: SourceSpec, params: dict[str, Any]) -> pl.DataFrame:
    rows = RawRows(spec.name, spec.licence, spec.commercial)
    lang = option(spec, "language") or None
    messages: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    order: list[str] = []
    # Unusable messages, quarantined after the threads: written first under their tree's key, one
    # on any branch (an unranked reply without text, say) cut the tree's good thread away.
    late: list[tuple[str, str, str, str | None]] = []  # (origin, check, reason, tree)
    for path in data_files(raw_dir, (".parquet", ".jsonl", ".json")):
        rel = path.relative_to(raw_dir).as_posix()
        for origin, rec in readable(iter_table_records(path), rel, rows):
            for suffix, msg, problem in _flatten(rec):
                where = f"{origin}{'/' + suffix if suffix else ''}"
                if problem is not None:
                    # no conv_key: written before the threads, a row of the tree's conversation would
                    # cut its good thread away (see the orphans in _threads)
                    rows.bad(where, "missing_field", problem)
                    continue
                tree = _tree_id(msg)
                if not isinstance(msg, dict) or any(not isinstance(msg.get(k), str) for k in REQUIRED):
                    late.append((where, "missing_field", f"message needs {', '.join(REQUIRED)}", tree))
                    continue
                if not isinstance(msg.get("parent_id"), (str, type(None))):
                    # a list or object cannot be looked up as a message id (it is unhashable)
                    late.append((where, "missing_field", "parent_id must be a message id or null", tree))
                    continue
                if msg["message_id"] in messages:
                    late.append(
                        (where, "duplicate_id", f"message_id {msg['message_id']} appears twice", tree)
                    )
                    continue
                messages[msg["message_id"]] = msg
                origins[msg["message_id"]] = where
                order.append(msg["message_id"])
    _threads(rows, messages, origins, order, lang)
    for where, check, reason, tree in late:
        rows.bad(where, check, reason, conv_key=tree)
    return rows.frame()


def _threads(
    rows: RawRows,
    messages: dict[str, dict[str, Any]],
    origins: dict[str, str],
    order: list[str],
    lang: str | None,
) -> None:
    children: dict[str, list[str]] = {}
    roots, orphans = [], []
    for mid in order:
        parent = messages[mid].get("parent_id")
        if parent is None:
            roots.append(mid)
        elif parent in messages:
            children.setdefault(parent, []).append(mid)
        else:
            orphans.append(mid)
    seen: set[str] = set()  # every message given a row; what is left at the end is in a cycle
    for root in roots:
        seen.add(root)
        key = str(messages[root].get("message_tree_id") or root)
        thread, cur = [], root
        if _drop_reason(messages[root], lang) is None:
            thread.append(root)
            while usable := [c for c in children.get(cur, []) if _drop_reason(messages[c], lang) is None]:
                cur = min(usable, key=lambda c: _rank_key(messages[c]))
                thread.append(cur)
        for mid in thread:
            msg = messages[mid]
            rows.add(key, msg["text"], origins[mid], role=ROLES.get(msg["role"], msg["role"]))
        # Everything else in the tree is filtered, with the reason nearest to it.
        status: dict[str, str | None] = {root: None if thread else _drop_reason(messages[root], lang)}
        on_thread = set(thread)  # `in thread` (a list) made a thread of n messages take n² steps
        for mid, parent in _walk(root, children):
            seen.add(mid)
            if mid in on_thread:
                status[mid] = None
                continue
            own = _drop_reason(messages[mid], lang)
            above = status[parent]
            inherited = (
                "oasst_not_selected" if above in (None, "oasst_not_selected") else "oasst_parent_dropped"
            )
            status[mid] = own or inherited
            rows.skip(origins[mid], status[mid], conv_key=key)
        if not thread:
            rows.skip(origins[root], status[root] or "oasst_deleted", conv_key=key)
    # After the threads: a bad row cuts its conversation short from where it stands, and an orphan
    # shares its tree's key, so written first it would cut that tree's good thread away.
    for mid in orphans:
        msg = messages[mid]
        tree = _tree_id(msg)
        rows.bad(
            origins[mid],
            "parent_missing",
            f"parent message {msg['parent_id']} is not in the data",
            conv_key=tree,
            text=msg["text"],
        )
        seen.add(mid)
        for sub, _ in _walk(mid, children):
            rows.skip(origins[sub], "oasst_parent_dropped", conv_key=tree)
            seen.add(sub)
    # Neither a root nor below one, nor below an orphan: its parent chain loops (a message that is
    # its own parent, or two that are each other's), so no thread can reach it. Counted, not lost.
    for mid in order:
        if mid not in seen:
            msg = messages[mid]
            rows.bad(
                origins[mid],
                "parent_cycle",
                f"message {mid}: its parent chain (parent {msg['parent_id']}) loops and never reaches "
                "a root prompt",
                conv_key=_tree_id(msg),
                text=msg["text"],
            )


def _walk(mid: str, children: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(descendant, its parent) pairs below `mid`, parents before children."""
    out, stack = [], [(c, mid) for c in reversed(children.get(mid, []))]
    while stack:
        cur, parent = stack.pop()
        out.append((cur, parent))
        stack.extend((c, cur) for c in reversed(children.get(cur, [])))
    return out
