"""Contributed corpus files (data/contrib/, or a contrib source's `local_path:`): which files a
contrib folder holds (symbolic links refused before any byte is read), each data file's sidecar
validated (licence and commercial flag under the registry's rules, format declared or guessed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import unicodedata
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.params import safe_load, yaml_error
from pipeline.sources.errors import SourceError
from pipeline.sources.readers import cr_only, data_suffix, json_kind, open_binary
from pipeline.sources.registry import (
    SIDECAR_SUFFIXES,
    SourceSpec,
    brief,
    check_licence,
    field_names,
    local_target,
    text_field,
)

CONTRIB_FORMATS = ("nanochatgpt", "openai", "sharegpt")
# Files in data/contrib/ that are documentation, not corpus data (names compared case-insensitively;
# hidden files and Markdown/reStructuredText notes are skipped too).
CONTRIB_IGNORED = (
    "readme",
    "readme.txt",
    "license",
    "licence",
    "license.txt",
    "licence.txt",
    ".gitkeep",
    "manifest.json",
)
CONTRIB_DOC_SUFFIXES = (".md", ".rst")
SIDECAR_FIELDS = (
    "licence",
    "license",
    "commercial",
    "commercial_reason",
    "description",
    "format",
    "attribution",
)
SIDECAR_MAX_DEPTH = 8  # YAML nesting a sidecar may have (its fields are text and true/false)

# What a symbolic link among the files a source copies is refused with (see refuse_link).
LINK_RULE = "commit the file itself, not a link"


@dataclass(frozen=True)
class ContribFile:
    """A contributed corpus file and what its sidecar declares about it."""

    path: Path
    sidecar: Path
    licence: str
    commercial: bool
    format: str
    description: str = ""
    commercial_reason: str | None = None
    registry_name: str = "contrib"  # the sources.yaml entry that reads it (kind: contrib)
    # Who to credit and where the data comes from (an attribution licence's credit: creator,
    # copyright notice, link), reproduced whole by NOTICE.md and beside the licence on the card.
    attribution: str = ""

    @property
    def source(self) -> str:
        """The `source` column value of its rows: `<entry>/<file stem>`, `contrib/<stem>` for data/contrib/.
        The build takes an entry's rows only under its own name (pipeline/build.py row_checks), and
        two entries holding an a.txt each would otherwise share conversation ids."""
        return f"{self.registry_name}/{self.path.stem}"


def infer_format(path: Path) -> str | None:
    """Contributed-file format from the extension; for JSON(L), from the first record's keys."""
    # a .jsonl.gz by its inner name, as the readers and format_clash read its content
    suffix = data_suffix(path)
    if suffix == ".txt":
        return "nanochatgpt"
    if suffix not in (".jsonl", ".json"):
        return None
    head = _start(path)
    # The first record's own keys first: a key of that name deeper inside it (`"meta":
    # {"conversations": 3}` before `messages`) read an openai file as sharegpt, and every record was
    # quarantined. Where they name neither (a record cut off at the head, a header line), the first
    # such key in the text, as before.
    found = _record_formats(_first_record_keys(head))
    return found[0] if found else _json_format(head)


def _head(path: Path) -> str:
    """The first 64 KiB of a file (of its content, for a .gz) as text, bad bytes replaced: enough
    to tell its format."""
    with open_binary(path) as f:
        return f.read(65536).decode("utf-8", errors="replace")


def _start(path: Path) -> str:
    """The file's head from its first record on (past a byte-order mark and blank space)."""
    return _head(path).lstrip("\ufeff \t\r\n")


def _record_formats(keys: set[str] | None) -> list[str]:
    """The JSON formats whose conversation key is among a first record's top-level `keys` (openai
    first, as the guess takes it); none where there is no record to read."""
    return [fmt for fmt, key in _CONVERSATION_KEYS.items() if keys is not None and key in keys]


def _first_record_hint(path: Path) -> str:
    """Why a .jsonl file's format could not be guessed, from its first non-blank line: that it is
    no JSON (a broken export reads the same from every line), or the keys it holds instead; for a
    .json file, from its first record (_json_record_hint)."""
    suffix = data_suffix(path)
    if suffix not in (".jsonl", ".json") or not path.is_file():
        return ""
    if suffix == ".json":
        return _json_record_hint(_start(path))
    # Lines as the JSONL reader splits them (readers.iter_jsonl): at LF (at CR in an old Mac file,
    # by the reader's own test), after the byte-order mark. splitlines also splits at U+2028 and
    # friends, which JSON strings may hold as they are, and a BOM is no JSON: both made a valid
    # first line read as "not JSON".
    head = _head(path).removeprefix("\ufeff")
    lines = head.split("\r") if cr_only(path) else head.split("\n")
    line = next((ln for ln in lines if ln.strip()), None)
    if line is None:
        return ""
    try:
        record = json.loads(line)
    except ValueError as exc:
        return f" (its first line is not JSON: {exc})"
    except RecursionError:  # `[[[[...` a few thousand deep: json.loads recurses once per level
        return " (its first line is not JSON: nested too deeply)"
    return _record_hint(record, "first line")


def _json_record_hint(head: str) -> str:
    """The .json half of _first_record_hint: a list with no record (CONTRIBUTING's `[]`, which the
    refusal sent to `format:`, only for the next run to say the file was empty), or the keys or kind
    of its first record (another tool's columns were named for a .jsonl, never for a .json list).
    Nothing where the head holds no whole record: the reader says what is wrong with it."""
    at = 1 if head.startswith("[") else 0
    at = len(head) - len(head[at:].lstrip(" \t\r\n"))
    if head.startswith("[") and head[at:].startswith("]"):
        return " (it is an empty list: no record to guess the format from)"
    try:
        record, _ = json.JSONDecoder().raw_decode(head, at)
    except (ValueError, RecursionError):  # not JSON, or cut off at the 64 KiB head
        return ""
    return _record_hint(record, "first record")


def _record_hint(record: object, what: str) -> str:
    """The keys a first record holds where no format's conversation key is among them, or what it is
    where it is no object (in JSON's words, as the quarantine names such a record)."""
    if isinstance(record, dict):
        keys = ", ".join(map(brief, list(record)[:8])) or "none"
        return f" (its first record's keys: {keys}; no `messages` or `conversations`)"
    return f" (its {what} is {json_kind(record)}, not an object)"


def _json_format(head: str) -> str | None:
    """openai or sharegpt by the first key that names a conversation (`messages`, `conversations`)."""
    m = re.search(r'"(messages|conversations)"\s*:', head)
    if m is None:
        return None
    return "openai" if m.group(1) == "messages" else "sharegpt"


_MARKER = re.compile(r"<(human|bot)>", re.IGNORECASE)
_CONVERSATION_KEYS = {"openai": "messages", "sharegpt": "conversations"}
_JSON_LINE = re.compile(r"^[ \t]*[\[{]", re.MULTILINE)


def format_clash(path: Path, declared: str) -> str | None:
    """Why a sidecar's `format:` cannot be what `path` holds, or None. A wrong declaration sent every
    line to quarantine as broken JSON (or every record as missing a field) and the file was lost to
    the dataset with nothing failing: a copied template's `format: openai` beside a .txt file did.

    Only plain evidence counts, since `format:` is how a user overrides a guess: turn markers and no
    JSON conversation key (a nanochatgpt file), or the other format's key and not the declared one
    among the first record's own top-level keys. A header line, a bad byte or a record too big to
    read here is left to the reader, which quarantines just that line."""
    if path.name.lower().endswith(".parquet"):
        return None
    try:
        text = _start(path)
    except (OSError, EOFError, zlib.error):  # unreadable or a damaged .gz: the reader names that
        return None
    keys = _first_record_keys(text)
    found = _record_formats(keys)
    if declared == "nanochatgpt":
        if found and not _MARKER.search(text):
            return f"it holds JSON records with `{_CONVERSATION_KEYS[found[0]]}`, which is {found[0]}"
        return None
    if keys is None:
        if _json_format(text) is not None:
            return None
        if _MARKER.search(text):
            return "it holds `<human>`/`<bot>` turns and no JSON records, which is nanochatgpt"
        if not _JSON_LINE.search(text):  # a CSV, say: every line would be quarantined as broken JSON
            return f"no line of its start is a JSON record ({declared} is one JSON record per line, or a .json list)"
        return None
    if found and declared not in found:
        other = found[0]
        return f"its first record has `{_CONVERSATION_KEYS[other]}` and no `{_CONVERSATION_KEYS[declared]}`, which is {other}"
    return None


def _first_record_keys(text: str) -> set[str] | None:
    """The top-level keys of the first JSON object in `text` (a JSONL line, or a .json list's first
    item), or None where `text` does not start with one that can be read whole."""
    at = 1 if text.startswith("[") else 0
    at = len(text) - len(text[at:].lstrip(" \t\r\n"))
    try:
        record, _ = json.JSONDecoder().raw_decode(text, at)
    except (ValueError, RecursionError):  # not JSON, or cut off at the 64 KiB head: no evidence
        return None
    return set(record) if isinstance(record, dict) else None


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the current directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def shown_link(path: Path) -> str:
    """`shown` for a symbolic link: the link's own path (shown() resolves it to its target). Its
    folder is resolved as shown() resolves, so both agree under a linked working directory."""
    absolute = Path(os.path.abspath(path))
    canonical = absolute.parent.resolve() / absolute.name
    try:
        return str(canonical.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def _by_stem(paths: Iterable[Path]) -> dict[str, list[Path]]:
    """`paths` grouped by stem, each group sorted: built once per scan, so pairing every data file
    with its sidecar is a lookup (a scan of every sidecar per data file took 5,000 files ~25 million
    stem comparisons, minutes, in each of the registry, download, normalize and check)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(paths):
        groups[p.stem].append(p)
    return groups


def _sidecar_for(data_file: Path, sidecars: dict[str, list[Path]]) -> Path | None:
    """The sidecar of `data_file` among `sidecars` (by stem, as _by_stem groups them; `.yaml`/`.yml` in
    any case), or None; two of them (a.yaml and a.yml) could disagree, so that is refused rather than
    one picked."""
    found = sidecars.get(data_file.stem, [])
    if len(found) > 1:
        raise SourceError(
            f"{shown(data_file)}: two sidecars ({', '.join(p.name for p in found)}); keep one of them"
        )
    return found[0] if found else None


def _is_empty(path: Path) -> bool:
    """True when the file holds nothing but whitespace (and perhaps a byte-order mark)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        if head.startswith(b"\xef\xbb\xbf"):
            head = head[3:]
        while not head.strip():
            more = f.read(1 << 20)
            if not more:
                return True
            head = more
    return False


# Byte-order marks of the encodings a text editor may save in ("Unicode" in Windows Notepad is
# UTF-16 LE). UTF-32's come first: UTF-32 LE's mark starts with UTF-16 LE's.
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _wide_encoding(path: Path) -> str | None:
    """ "UTF-16" / "UTF-32" (and how it shows) for a text file in one of them, else None. Read as
    UTF-8, such a file is mostly valid (ASCII with a NUL beside each letter), so it would come out
    as a row of format errors with wrong line numbers, not as the one problem it has."""
    with open(path, "rb") as f:
        head = f.read(4096)
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return f"{name} (it starts with a {name} byte-order mark)"
    # Without a mark: NUL bytes, which UTF-8 text never holds, on every other byte of the head.
    # (Binary formats hold NULs too; only the text ones are asked, and gzip is compressed.)
    if path.name.lower().endswith((".gz", ".parquet")) or len(head) < 4:
        return None
    if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
        return "UTF-16 or UTF-32 (every other byte is a NUL, with no byte-order mark)"
    return None


def contrib_folder(spec: SourceSpec, root: Path) -> Path:
    """Where a `kind: contrib` source's files and sidecars live: its `local_path:` or `location`.

    The committed folder (`location`, data/contrib) is refused when it is a symbolic link:
    `data/contrib -> /home/me/.config/tool` committed in a pull request reads another folder of this
    machine just as a linked file reads another file. A `local_path:` may be a link: whoever sets
    it names a folder of this machine anyway (and a link is how a folder on another disk is kept)."""
    local = local_target(spec, root)
    if local is not None:
        return local
    folder = root / spec.location
    refuse_link(folder, "folder")  # a link to nowhere is a link too, not a missing folder
    return folder


def refuse_link(path: Path, what: str = "file") -> None:
    """Refuse a contributed file (or folder: `what`) that is a symbolic link, with one line naming
    it and its target.

    A link committed to data/contrib/ (in a pull request, say) can point at any file of the machine
    that runs the pipeline: `chat.txt -> /proc/self/environ` would copy the maintainer's environment,
    tokens included, into data/raw/contrib (pushed with DVC) and the quarantine. Every reader of a
    contrib folder (download, the registry stage's hashes, `nanochatgpt check` and `sources`) lists
    it through contrib_entries, which calls this before any byte is read."""
    if not path.is_symlink():
        return
    try:
        target = brief(os.readlink(path), 150)
    except OSError:
        target = "?"
    rule = LINK_RULE if what == "file" else f"commit the {what} itself, not a link"
    raise SourceError(f"{shown_link(path)}: a symbolic link (to {target}); {rule}")


def is_contrib_entry(path: Path) -> bool:
    """Whether download@contrib takes `path` from its folder by name: not hidden, not a note."""
    return (
        not path.name.startswith(".")
        and path.name.lower() not in CONTRIB_IGNORED
        and path.suffix.lower() not in CONTRIB_DOC_SUFFIXES
    )


def contrib_entries(folder: Path) -> list[Path]:
    """The files of data/contrib/ that are corpus data or sidecars, sorted: top level only, no
    hidden files, no documentation. What the contrib download copies and its stage depends on.
    A symbolic link among them is refused (refuse_link); one among the skipped notes is never read.
    (The folder itself, when it is the committed one, is refused as a link by contrib_folder.)"""
    if not folder.is_dir():
        return []
    entries = sorted(p for p in folder.iterdir() if is_contrib_entry(p))
    for p in entries:
        refuse_link(p)
    return [p for p in entries if p.is_file()]


def scan_contrib(
    folder: str | Path, name: str = "contrib", entries: list[Path] | None = None
) -> list[ContribFile]:
    """Every contributed data file of `folder` with its validated sidecar, sorted by name; `name` is
    the sources.yaml entry reading the folder (each file's rows are the source `<name>/<stem>`).

    A data file without a sidecar (or a sidecar without licence/commercial) is refused with
    one line saying what to add; so is a sidecar whose data file is missing.

    `entries`: some of the folder's contrib_entries, all those of a stem, scanned as if they were
    the folder's only files (`nanochatgpt check` asks which of a folder's files the pipeline would
    refuse, by the same rules and words, without a copy of the folder for each). Every rule is one
    of a stem's files, so a folder passes when each of its stems passes alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"contrib: folder {shown(folder)} is missing")
    entries = contrib_entries(folder) if entries is None else entries
    sidecars = {p for p in entries if p.suffix.lower() in SIDECAR_SUFFIXES}
    data_files = [p for p in entries if p not in sidecars]
    stems = Counter(p.stem for p in data_files)  # counted once: list.count per stem was quadratic
    for stem in sorted(s for s, n in stems.items() if n > 1):
        clash = ", ".join(p.name for p in data_files if p.stem == stem)
        raise SourceError(
            f"contrib: {shown(folder)}: {clash} share the stem {stem!r} (one sidecar names one data"
            " file); give each its own name"
        )
    for path in data_files:
        # The stem is the part of a conversation id before its first ':' (contrib/<stem>:<id>): with
        # a ':' in it, a.jsonl's record `"id": "b:1"` and line 1 of a:b.txt were one conversation
        # of two files (normalize stopped on the turn schema's check with a traceback).
        if ":" in path.stem:
            raise SourceError(
                f"{shown(path)}: a ':' in a data file's name is not allowed (it ends the file's part "
                "of each conversation id, contrib/<name>:<id>); rename the file and its sidecar"
            )
    for sidecar in sorted(sidecars):
        if sidecar.stem not in stems:
            notes = sorted(
                p.name
                for p in folder.iterdir()
                if p.stem == sidecar.stem and p.suffix.lower() in CONTRIB_DOC_SUFFIXES
            )
            hint = (
                f" ({notes[0]} is read as a note and skipped: give the data a data suffix, .txt or .jsonl say)"
                if notes
                else ""
            )
            raise SourceError(
                f"{shown(sidecar)}: sidecar without a data file named {sidecar.stem}.<ext>{hint}"
            )
    files = []
    by_stem = _by_stem(sidecars)
    for path in data_files:
        sidecar = _sidecar_for(path, by_stem)
        if sidecar is None:
            raise SourceError(
                f"{shown(path)}: no sidecar; add {shown(path.with_suffix('.yaml'))} with `licence:` (SPDX id or unknown), "
                "`commercial:` (true/false) and `description:` (see CONTRIBUTING.md)"
            )
        if _is_empty(path):
            raise SourceError(f"{shown(path)}: the file is empty; add conversations to it or remove it")
        wide = _wide_encoding(path)
        if wide:
            raise SourceError(f"{shown(path)}: the file is {wide}; save it as UTF-8 (the only encoding read)")
        files.append(dataclasses.replace(parse_sidecar(path, sidecar), registry_name=name))
    return files


def _check_sidecar_yaml(text: str, sidecar: Path) -> None:
    """A sidecar is a few plain fields. YAML aliases (`*name`) have no use there, and a handful of
    them nest into millions of values (a "billion laughs" file), so they are refused outright; so
    is nesting deeper than SIDECAR_MAX_DEPTH, which PyYAML would take a minute to build from
    100 KB of `[` before failing on Python's recursion limit. Reads the event stream only as far
    as the first offence."""
    depth = 0
    name = shown(sidecar)  # once: it resolves the path, and a sidecar is a dozen events or more
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = f"{name}:{event.start_mark.line + 1}"
        if isinstance(event, yaml.AliasEvent):
            raise SourceError(
                f"{line}: YAML aliases (*{str(event.anchor)[:30]}) are not allowed in a sidecar; "
                "write the value out"
            )
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > SIDECAR_MAX_DEPTH:
                raise SourceError(
                    f"{line}: nested more than {SIDECAR_MAX_DEPTH} levels deep; a sidecar holds plain "
                    "fields (licence, commercial, description, ...)"
                )
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def parse_sidecar(path: Path, sidecar: Path) -> ContribFile:
    try:
        text = sidecar.read_text(encoding="utf-8")
        _check_sidecar_yaml(text, sidecar)
        meta = safe_load(text) or {}
    except yaml.YAMLError as e:
        raise SourceError(yaml_error(e, shown(sidecar))) from None
    except UnicodeDecodeError as e:
        raise SourceError(f"{shown(sidecar)}: not valid UTF-8 (byte {e.start}); save it as UTF-8") from None
    except RecursionError:
        raise SourceError(f"{shown(sidecar)}: not valid YAML (nested too deeply)") from None
    if not isinstance(meta, dict):
        # (description is optional; saying what was found points at a stray "- " or a bare value)
        found = "a list" if isinstance(meta, list) else f"the single value {brief(meta)}"
        raise SourceError(
            f"{shown(sidecar)}: expected fields written `key: value`, one a line (`licence:` and "
            f"`commercial:`, `description:` optional; CONTRIBUTING.md shows a sidecar), not {found}"
        )
    unknown = field_names(k for k in meta if k not in SIDECAR_FIELDS)
    if unknown:
        raise SourceError(
            f"{shown(sidecar)}: unknown field(s) {', '.join(unknown)} (known: {', '.join(SIDECAR_FIELDS[:1] + SIDECAR_FIELDS[2:])})"
        )
    if "licence" in meta and "license" in meta:  # they could disagree (MIT vs CC-BY-NC-4.0)
        raise SourceError(f"{shown(sidecar)}: both `licence:` and `license:` are set; keep one of them")
    if "license" in meta:
        meta["licence"] = meta.pop("license")  # accept the US spelling
    check_licence(shown(sidecar), meta.get("licence"), meta.get("commercial"), meta.get("commercial_reason"))
    declared = meta.get("format")
    if declared is not None and (not isinstance(declared, str) or declared not in CONTRIB_FORMATS):
        raise SourceError(
            f"{shown(sidecar)}: format {brief(declared)} is not supported; use one of {' | '.join(CONTRIB_FORMATS)} "
            "(CONTRIBUTING.md shows each)"
        )
    description = text_field(shown(sidecar), "description", meta.get("description"))
    attribution = one_line_text(shown(sidecar), "attribution", meta.get("attribution"))
    clash = format_clash(path, declared) if declared is not None and path.is_file() else None
    if clash:
        raise SourceError(
            f"{shown(sidecar)}: `format: {declared}` does not fit {shown(path)}: {clash}; "
            "correct it, or remove the line to have the format guessed"
        )
    fmt = declared or infer_format(path)
    if fmt not in CONTRIB_FORMATS:
        raise SourceError(
            f"{shown(path)}: cannot tell its format{_first_record_hint(path)}; if it holds one of {' | '.join(CONTRIB_FORMATS)}, "
            f"say which with `format:` in {shown(sidecar)}; anything else (CSV, say) must be converted "
            "to one of them first (CONTRIBUTING.md shows each)"
        )
    return ContribFile(
        path=path,
        sidecar=sidecar,
        licence=str(meta["licence"]).strip(),
        commercial=meta["commercial"],
        format=fmt,
        description=description or "",
        commercial_reason=meta.get("commercial_reason"),
        attribution=attribution,
    )


# Bidi embeddings, overrides and isolates: they reorder the text around them as shown, so a credit
# could read as another name than the one it holds.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def one_line_text(where: str, key: str, value: Any) -> str:
    """A sidecar's one-line text field (`attribution:`), stripped; "" when absent. A list or mapping
    is refused (text_field), and so is a character that is no part of a one-line credit: a line
    break or other control character (C0, DEL, C1), a line or paragraph separator, a bidi control,
    or a lone surrogate (from a YAML escape). NOTICE.md reproduces the text whole, so it is refused
    here, named, rather than shown escaped there."""
    text = (text_field(where, key, value) or "").strip()
    for at, char in enumerate(text, 1):
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp", "Cs") or char in _BIDI_CONTROLS:
            raise SourceError(
                f"{where}: `{key}:` must be one line of plain text, without control characters; "
                f"character {at} is {_char_name(char)}: remove it"
            )
    return text


def _char_name(char: str) -> str:
    """A character for an error message: its code point and, where Unicode has one, its name."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")
