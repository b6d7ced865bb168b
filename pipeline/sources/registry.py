"""The source registry (sources.yaml) and contributed-file sidecars, validated on load.

A registry entry says where a corpus comes from (kind + location + pinned revision or sha256),
which adapter reads it, and under which licence it may be used. Licence rules are enforced
here, at load time, so that no later stage can mix in data of unclear status by accident:
an entry (or a sidecar) may claim `commercial: true` only under a licence that allows it: never
under a non-commercial one (CC-BY-NC-*), and under `unknown` or a licence not on the list of
pipeline/sources/licences.py only with a `commercial_reason` saying why the user believes that is
allowed.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipeline.params import load_params, outside_root_hint, project_root, safe_load, yaml_error
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import is_known_commercial, is_non_commercial, is_unknown
from pipeline.sources.readers import open_binary

REGISTRY_FILE = "sources.yaml"
KINDS = ("package", "contrib", "hf_dataset", "url")
CONTRIB_FORMATS = ("nanochatgpt", "openai", "sharegpt")
SIDECAR_SUFFIXES = (".yaml", ".yml")
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
SIDECAR_FIELDS = ("licence", "license", "commercial", "commercial_reason", "description", "format")
SIDECAR_MAX_DEPTH = 8  # YAML nesting a sidecar may have (its fields are text and true/false)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*(?<!/)$")
# `token_env:` names: upper-case words joined by '_', one of them naming Hugging Face and one TOKEN
# (TOKEN2 too). GITHUB_TOKEN, AWS_SESSION_TOKEN and DOCKER_HUB_TOKEN are not taken: HUB alone names
# other hubs too (HUGGING_FACE_HUB_TOKEN has HUGGING).
_ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_HF_WORDS = frozenset({"HF", "HUGGING", "HUGGINGFACE"})
_TOKEN_WORD_RE = re.compile(r"TOKEN[0-9]*")


def _hf_token_name(name: str) -> bool:
    """`name` is an upper-case variable name with a Hugging Face word and a TOKEN word."""
    words = name.split("_")
    return (
        _ENV_NAME_RE.fullmatch(name) is not None
        and not _HF_WORDS.isdisjoint(words)
        and any(_TOKEN_WORD_RE.fullmatch(w) for w in words)
    )


# What a symbolic link among the files a source copies is refused with (see refuse_link).
LINK_RULE = "commit the file itself, not a link"


@dataclass(frozen=True)
class SourceSpec:
    """One registry entry (see the header of sources.yaml for what each field means)."""

    name: str
    kind: str
    location: str
    adapter: str
    licence: str
    commercial: bool
    commercial_reason: str | None = None
    description: str = ""
    revision: str | None = None
    sha256: str | None = None
    files: tuple[str, ...] = ()
    local_path: str | None = None
    gated: bool = False
    token_env: str = "HF_TOKEN"
    archive: bool = False
    licence_files: tuple[str, ...] = ()  # url + archive: members holding its licence/notice texts
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


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

    @property
    def source(self) -> str:
        """The `source` column value of its rows: `contrib/<file stem>`."""
        return f"contrib/{self.path.stem}"


def brief(value: Any, limit: int = 60) -> str:
    """`value` for an error message: its repr, cut to about `limit` characters and a few items.
    A YAML value can be huge (aliases expand a 322-byte sidecar into a 58 MB list), and a message
    stays one short line whatever the file holds."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlevel, short.maxlist, short.maxdict = 2, 4, 4
    text = short.repr(value)
    return text if len(text) <= 2 * limit else text[: 2 * limit] + "..."


def _plain(text: str, limit: int = 40) -> str:
    """A name for an error message as it is, or (when long or holding a line break) cut by `brief`."""
    return text if len(text) <= limit and text.isprintable() else brief(text, limit)


def _field_names(keys: Any) -> list[str]:
    """Mapping keys for an error message, sorted, each cut by `_plain`."""
    return sorted(_plain(k) for k in map(str, keys))


def _text_field(where: str, key: str, value: Any) -> str | None:
    """A free-text field (description, revision): a YAML scalar read as text, None when absent;
    a list or mapping is refused rather than turned into (possibly enormous) text."""
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        raise SourceError(f"{where}: `{key}:` must be text, not {brief(value)}")
    return str(value)


def _check_licence(where: str, licence: Any, commercial: Any, reason: Any) -> None:
    if licence is None or (isinstance(licence, str) and not licence.strip()):
        raise SourceError(f"{where}: `licence:` is missing (an SPDX id such as CC-BY-4.0, or `unknown`)")
    if not isinstance(licence, str):
        raise SourceError(
            f"{where}: `licence:` must be text such as CC-BY-4.0 (quote it), not {brief(licence)}"
        )
    if commercial is None:
        raise SourceError(
            f"{where}: `commercial:` is missing (true or false: may a commercial model train on it?)"
        )
    if not isinstance(commercial, bool):
        raise SourceError(f"{where}: `commercial:` must be true or false, not {brief(commercial)}")
    if reason is not None and not isinstance(reason, str):
        raise SourceError(f"{where}: `commercial_reason:` must be a string")
    if not commercial:
        return
    name = licence.strip()
    if is_non_commercial(name):
        raise SourceError(
            f"{where}: licence {_plain(name)} does not allow commercial use, but commercial is true; "
            "set `commercial: false`"
        )
    if is_unknown(name) and not (reason or "").strip():
        raise SourceError(
            f"{where}: licence is {name or 'empty'} but commercial is true; add `commercial_reason:` saying why "
            "commercial use is allowed, or set `commercial: false`"
        )
    if not is_known_commercial(name) and not (reason or "").strip():
        raise SourceError(
            f"{where}: licence {brief(name)} is not one this project knows to allow commercial use "
            "(pipeline/sources/licences.py); check it and add `commercial_reason:` saying why it does, "
            "or set `commercial: false`"
        )


def parse_entry(name: str, raw: Any, where: str = REGISTRY_FILE) -> SourceSpec:
    """Validate one registry entry; raise SourceError (one line) naming the entry and the rule."""
    from pipeline.sources.adapters import ADAPTERS, option_error  # local: keeps `import registry` light

    at = f"{where}: {_plain(name)}"
    if not _NAME_RE.match(name):
        raise SourceError(f"{at}: source names are lower-case letters, digits, '_' and '-'")
    if not isinstance(raw, dict):
        raise SourceError(f"{at}: expected a mapping of fields")
    known = set(SourceSpec.__dataclass_fields__) - {"name"}
    unknown = _field_names(k for k in raw if k not in known)
    if unknown:
        raise SourceError(f"{at}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("kind", "location", "adapter"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise SourceError(f"{at}: `{key}:` is missing")
    if raw["kind"] not in KINDS:
        raise SourceError(f"{at}: kind must be one of {', '.join(KINDS)}, not {brief(raw['kind'])}")
    if raw["adapter"] not in ADAPTERS:
        raise SourceError(
            f"{at}: unknown adapter {brief(raw['adapter'])} (known: {', '.join(sorted(ADAPTERS))})"
        )
    _check_licence(at, raw.get("licence"), raw.get("commercial"), raw.get("commercial_reason"))
    files = _globs_field(at, "files", raw.get("files"))
    sha = raw.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256_RE.match(sha)):
        raise SourceError(f"{at}: `sha256:` must be 64 lower-case hex digits")
    if raw["kind"] == "package" and not files:
        raise SourceError(f"{at}: a package source lists the data files it copies in `files:`")
    if raw["kind"] == "hf_dataset" and not raw.get("revision"):
        raise SourceError(f"{at}: a hf_dataset source needs a pinned `revision:` (a commit sha)")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise SourceError(f"{at}: `options:` must be a mapping")
    for key, value in options.items():
        error = option_error(raw["adapter"], key, value)
        if error is not None:
            raise SourceError(f"{at}: {error}")
    gated = False if raw.get("gated") is None else raw["gated"]
    if not isinstance(gated, bool):  # bool("false") is True: never coerce
        raise SourceError(f"{at}: `gated:` must be true or false, not {brief(gated)}")
    archive = False if raw.get("archive") is None else raw["archive"]
    if not isinstance(archive, bool):
        raise SourceError(f"{at}: `archive:` must be true or false, not {brief(archive)}")
    if archive and raw["kind"] != "url":
        raise SourceError(
            f"{at}: `archive: true` is for url sources (a .tar/.tar.gz/.tgz/.zip download whose members "
            "`files:` selects); remove it"
        )
    licence_files = _globs_field(at, "licence_files", raw.get("licence_files"))
    if licence_files and not (raw["kind"] == "url" and archive):
        # a hub download records the repo's root LICENSE/NOTICE files and card by itself; a plain
        # url file or a package has no members to choose from
        raise SourceError(
            f"{at}: `licence_files:` selects the members of a downloaded archive that hold its licence "
            "and notices, so it is for url sources with `archive: true`; remove it"
        )
    local_path = raw.get("local_path")
    if local_path is not None and (not isinstance(local_path, str) or not local_path.strip()):
        raise SourceError(f"{at}: `local_path:` must be a path to a file or folder, not {brief(local_path)}")
    token_env = raw.get("token_env")
    if token_env is not None and (not isinstance(token_env, str) or not token_env.strip()):
        raise SourceError(
            f"{at}: `token_env:` must be the name of an environment variable, not {brief(token_env)}"
        )
    if token_env is not None and not _hf_token_name(token_env):
        # its value is sent to the Hub as the bearer token: `token_env: AWS_SECRET_ACCESS_KEY` in an
        # edited sources.yaml would hand that secret to huggingface.co (or whatever HF_ENDPOINT says)
        raise SourceError(
            f"{at}: `token_env:` {brief(token_env)} must name a Hugging Face token variable: upper-case "
            "letters, digits and '_', with an HF, HUGGING or HUGGINGFACE part and a TOKEN part (HF_TOKEN, "
            "HUGGING_FACE_HUB_TOKEN); any other variable's value would be sent to the Hub"
        )
    revision = _text_field(at, "revision", raw.get("revision"))
    if revision is not None and not _safe_revision(revision):
        # huggingface_hub joins a branch or tag name into its cache paths (refs/<revision>) as it is
        raise SourceError(
            f"{at}: `revision:` {brief(revision)} is not a commit sha, branch or tag name (letters, "
            "digits, '.', '_', '-' and '/', no '..')"
        )
    description = _text_field(at, "description", raw.get("description"))
    return SourceSpec(
        name=name,
        kind=raw["kind"],
        location=raw["location"],
        adapter=raw["adapter"],
        licence=raw["licence"].strip(),
        commercial=raw["commercial"],
        commercial_reason=raw.get("commercial_reason"),
        description=description or "",
        revision=revision,
        sha256=sha,
        files=tuple(files),
        local_path=local_path,
        gated=gated,
        token_env=token_env or "HF_TOKEN",
        archive=archive,
        licence_files=tuple(licence_files),
        options=dict(options),
    )


def _globs_field(at: str, key: str, value: Any) -> list[str]:
    """`files:` or `licence_files:`: a glob or a list of them, each a path inside the source."""
    globs = value or []
    if isinstance(globs, str):
        globs = [globs]
    if not isinstance(globs, list) or not all(isinstance(g, str) and g for g in globs):
        raise SourceError(f"{at}: `{key}:` must be a list of file names or globs, not {brief(value)}")
    for g in globs:
        # a url source's file name is where it is written (data/raw/<name>/<file>); a glob of a
        # folder source or an archive is matched under that folder: neither may reach outside it
        if PurePosixPath(g).is_absolute() or ".." in PurePosixPath(g).parts:
            raise SourceError(
                f"{at}: `{key}:` entry {brief(g)} must be a path inside the source "
                "(no leading '/', no '..' parts)"
            )
        if any("**" in part and part != "**" for part in PurePosixPath(g).parts):
            raise SourceError(f"{at}: `{key}:` entry {brief(g)}: '**' can only be a whole path part (a/**/b)")
    return globs


def _safe_revision(revision: str) -> bool:
    """A commit sha, branch or tag name (`main`, `v1.0`, `refs/convert/parquet`) that stays one
    path below huggingface_hub's refs/ folder."""
    return bool(_REVISION_RE.match(revision)) and ".." not in revision and "//" not in revision


def load_registry(path: str | Path | None = None) -> dict[str, SourceSpec]:
    """All entries of sources.yaml (in file order), each validated."""
    path = Path(path) if path else project_root() / REGISTRY_FILE
    try:
        with open(path, encoding="utf-8") as f:
            data = safe_load(f) or {}
    except FileNotFoundError:
        raise SourceError(f"{path}: the source registry is missing{outside_root_hint()}") from None
    except yaml.YAMLError as e:
        raise SourceError(yaml_error(e, str(path))) from None
    except RecursionError:
        raise SourceError(f"{path}: not valid YAML (nested too deeply)") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a mapping of source name -> entry")
    return {str(name): parse_entry(str(name), entry, str(path)) for name, entry in data.items()}


def enabled_sources(params_path: str | Path | None = None) -> list[str]:
    """params.yaml `sources`: the names that get download/normalize stages."""
    names = load_params(params_path).get("sources") or []
    if not isinstance(names, list):
        raise SourceError("params.yaml: `sources:` must be a list of registry names")
    return [str(n) for n in names]


def get_source(name: str, registry: dict[str, SourceSpec] | None = None) -> SourceSpec:
    registry = load_registry() if registry is None else registry
    if name not in registry:
        raise SourceError(f"{name}: not in {REGISTRY_FILE} (known: {', '.join(registry)})")
    return registry[name]


def infer_format(path: Path) -> str | None:
    """Contributed-file format from the extension; for JSON(L), from the first record's keys."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "nanochatgpt"
    if suffix not in (".jsonl", ".json"):
        return None
    return _json_format(_head(path))


def _head(path: Path) -> str:
    """The first 64 KiB of a file (of its content, for a .gz) as text, bad bytes replaced: enough
    to tell its format."""
    with open_binary(path) as f:
        return f.read(65536).decode("utf-8", errors="replace")


def _first_record_hint(path: Path) -> str:
    """Why a .jsonl file's format could not be guessed, from its first non-blank line: that it is
    no JSON (a broken export reads the same from every line), or the keys it holds instead."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return ""
    line = next((ln for ln in _head(path).splitlines() if ln.strip()), None)
    if line is None:
        return ""
    try:
        record = json.loads(line)
    except ValueError as exc:
        return f" (its first line is not JSON: {exc})"
    if isinstance(record, dict):
        keys = ", ".join(map(brief, list(record)[:8])) or "none"
        return f" (its first record's keys: {keys}; no `messages` or `conversations`)"
    return f" (its first line is a JSON {type(record).__name__}, not an object)"


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
        text = _head(path).lstrip("\ufeff \t\r\n")
    except (OSError, EOFError, zlib.error):  # unreadable or a damaged .gz: the reader names that
        return None
    keys = _first_record_keys(text)
    # The JSON formats whose conversation key the first record has (openai first, as the guess).
    found = [fmt for fmt, key in _CONVERSATION_KEYS.items() if keys is not None and key in keys]
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


def _sidecar_for(data_file: Path, sidecars: set[Path]) -> Path | None:
    """The sidecar of `data_file` among `sidecars` (same stem; `.yaml`/`.yml` in any case), or None;
    two of them (a.yaml and a.yml) could disagree, so that is refused rather than one picked."""
    found = sorted(p for p in sidecars if p.stem == data_file.stem)
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


def local_target(spec: SourceSpec, root: Path) -> Path | None:
    """The file or folder `local_path:` names (relative to the repository root), or None."""
    if not spec.local_path:
        return None
    path = Path(spec.local_path).expanduser()
    return path if path.is_absolute() else root / path


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


def scan_contrib(folder: str | Path) -> list[ContribFile]:
    """Every contributed data file of `folder` with its validated sidecar, sorted by name.

    A data file without a sidecar (or a sidecar without licence/commercial) is refused with
    one line saying what to add; so is a sidecar whose data file is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"contrib: folder {shown(folder)} is missing")
    entries = contrib_entries(folder)
    sidecars = {p for p in entries if p.suffix.lower() in SIDECAR_SUFFIXES}
    data_files = [p for p in entries if p not in sidecars]
    stems = [p.stem for p in data_files]
    for stem in sorted({s for s in stems if stems.count(s) > 1}):
        clash = ", ".join(p.name for p in data_files if p.stem == stem)
        raise SourceError(
            f"contrib: {shown(folder)}: {clash} share the stem {stem!r} (one sidecar names one data"
            " file); give each its own name"
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
    for path in data_files:
        sidecar = _sidecar_for(path, sidecars)
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
        files.append(parse_sidecar(path, sidecar))
    return files


def _check_sidecar_yaml(text: str, sidecar: Path) -> None:
    """A sidecar is a few plain fields. YAML aliases (`*name`) have no use there, and a handful of
    them nest into millions of values (a "billion laughs" file), so they are refused outright; so
    is nesting deeper than SIDECAR_MAX_DEPTH, which PyYAML would take a minute to build from
    100 KB of `[` before failing on Python's recursion limit. Reads the event stream only as far
    as the first offence."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = f"{shown(sidecar)}:{event.start_mark.line + 1}"
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
        raise SourceError(f"{shown(sidecar)}: expected `licence:`, `commercial:` and `description:` fields")
    unknown = _field_names(k for k in meta if k not in SIDECAR_FIELDS)
    if unknown:
        raise SourceError(
            f"{shown(sidecar)}: unknown field(s) {', '.join(unknown)} (known: {', '.join(SIDECAR_FIELDS[:1] + SIDECAR_FIELDS[2:])})"
        )
    if "licence" in meta and "license" in meta:  # they could disagree (MIT vs CC-BY-NC-4.0)
        raise SourceError(f"{shown(sidecar)}: both `licence:` and `license:` are set; keep one of them")
    if "license" in meta:
        meta["licence"] = meta.pop("license")  # accept the US spelling
    _check_licence(shown(sidecar), meta.get("licence"), meta.get("commercial"), meta.get("commercial_reason"))
    declared = meta.get("format")
    if declared is not None and (not isinstance(declared, str) or declared not in CONTRIB_FORMATS):
        raise SourceError(
            f"{shown(sidecar)}: format {brief(declared)} is not supported; use one of {' | '.join(CONTRIB_FORMATS)} "
            "(CONTRIBUTING.md shows each)"
        )
    description = _text_field(shown(sidecar), "description", meta.get("description"))
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
    )
