"""The source registry (sources.yaml), validated on load.

A registry entry says where a corpus comes from (kind + location + pinned revision or sha256),
which adapter reads it, and under which licence it may be used. Licence rules are enforced
here, at load time, so that no later stage can mix in data of unclear status by accident:
an entry (or a sidecar) may claim `commercial: true` only under a licence that allows it: never
under a non-commercial one (CC-BY-NC-*), and under `unknown` or a licence not on the list of
pipeline/sources/licencetables.py only with a `commercial_reason` saying why the user believes that is
allowed. (The sidecars of contributed files are read by pipeline/sources/contrib.py, which applies
the same check_licence.)
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipeline.params import load_params, not_utf8, project_root, root_first, safe_load, yaml_error
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import (
    expression_error,
    is_known_commercial,
    is_non_commercial,
    is_unknown,
    operator_case_hint,
)

REGISTRY_FILE = "sources.yaml"
# Where the registry stage writes each enabled source's fetch spec, <name>.json (fetchspec.py).
FETCH_SPECS = "data/registry"
KINDS = ("package", "contrib", "hf_dataset", "url")
# A contributed file's sidecar (pipeline/sources/contrib.py reads it). Here, not there: the build
# tells a recorded sidecar from a data file by it (pipeline/notices.py) and runs no contrib code.
SIDECAR_SUFFIXES = (".yaml", ".yml")
# The largest `licence_text:` file taken: pipeline/notices.py reproduces a recorded text whole up to
# its TEXT_MAX characters, and the longest common licence (GPL-3.0) is about 35,000 bytes.
LICENCE_TEXT_MAX = 65_536

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*(?<!/)$")
# `token_env:` names: upper-case words joined by '_', one of them naming Hugging Face and one TOKEN
# (TOKEN2 too). GITHUB_TOKEN, AWS_SESSION_TOKEN and DOCKER_HUB_TOKEN are not taken: HUB alone names
# other hubs too (HUGGING_FACE_HUB_TOKEN has HUGGING).
_ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_HF_WORDS = frozenset({"HF", "HUGGING", "HUGGINGFACE"})
_TOKEN_WORD_RE = re.compile(r"TOKEN[0-9]*")


def fetch_spec_file(folder: Path, source: str) -> Path:
    """`source`'s fetch spec in `folder`: the registry stage writes it (into a temporary copy of
    FETCH_SPECS), and the download compares its licence text with the one it records."""
    return folder / f"{source}.json"


def _hf_token_name(name: str) -> bool:
    """`name` is an upper-case variable name with a Hugging Face word and a TOKEN word."""
    words = name.split("_")
    return (
        _ENV_NAME_RE.fullmatch(name) is not None
        and not _HF_WORDS.isdisjoint(words)
        and any(_TOKEN_WORD_RE.fullmatch(w) for w in words)
    )


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
    licence_text: str | None = None  # a committed licence text, repo-relative (check_licence_text)
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


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


def field_names(keys: Any) -> list[str]:
    """Mapping keys for an error message, sorted, each cut by `_plain`."""
    return sorted(_plain(k) for k in map(str, keys))


def text_field(where: str, key: str, value: Any) -> str | None:
    """A free-text field (description, revision): a YAML scalar read as text, None when absent;
    a list or mapping is refused rather than turned into (possibly enormous) text."""
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        raise SourceError(f"{where}: `{key}:` must be text, not {brief(value)}")
    return str(value)


# Words YAML 1.1 (PyYAML) reads as true / false when they are not quoted, and the one to write.
_YAML_BOOLS = {"true": "true", "yes": "true", "on": "true", "false": "false", "no": "false", "off": "false"}


def _quoted_bool(value: Any) -> str:
    """The hint for text that spells a boolean (`commercial: "true"`): "must be true or false, not
    'true'" alone reads as a contradiction; the quotes are what made it text."""
    word = _YAML_BOOLS.get(value.strip().lower()) if isinstance(value, str) else None
    return f" (text: YAML reads a value in quotes as text; write {word} without quotes)" if word else ""


def check_licence(where: str, licence: Any, commercial: Any, reason: Any) -> None:
    if licence is None or (isinstance(licence, str) and not licence.strip()):
        raise SourceError(f"{where}: `licence:` is missing (an SPDX id such as CC-BY-4.0, or `unknown`)")
    if not isinstance(licence, str):
        raise SourceError(
            f"{where}: `licence:` must be text such as CC-BY-4.0 (quote it), not {brief(licence)}"
        )
    error = expression_error(licence)
    if error is not None:  # whatever the flag: a misread licence would misstate its attribution too
        raise SourceError(
            f"{where}: licence {brief(licence.strip())} is not a valid SPDX expression: {error} (upper-case "
            "AND, OR and WITH join licence ids, as in `MIT AND CC-BY-4.0` or `(MIT OR Apache-2.0) AND "
            "CC-BY-4.0`; free text takes none of them)"
        )
    if commercial is None:
        raise SourceError(
            f"{where}: `commercial:` is missing (true or false: may a commercial model train on it?)"
        )
    if not isinstance(commercial, bool):
        raise SourceError(
            f"{where}: `commercial:` must be true or false, not {brief(commercial)}{_quoted_bool(commercial)}"
        )
    if reason is not None and not isinstance(reason, str):
        raise SourceError(f"{where}: `commercial_reason:` must be a string")
    if not commercial:
        return
    name = licence.strip()
    if is_non_commercial(name):
        shown = brief(name) if any(c.isspace() for c in name) else _plain(name)  # free text: quoted
        raise SourceError(
            f"{where}: licence {shown} does not allow commercial use, but commercial is true; set "
            "`commercial: false` (or, where a separate licence grants commercial use, name that one)"
        )
    if is_unknown(name) and not (reason or "").strip():
        # (a reason alone would not do: the build keeps data of an unknown licence out of the
        # commercial variant whatever it says; a pointer such as "see LICENSE" can be long text)
        # `licence: unknown` itself is not echoed back as "'unknown' (unknown)"
        said = "unknown" if name.casefold() == "unknown" else f"{brief(name) if name else 'empty'} (unknown)"
        raise SourceError(
            f"{where}: licence is {said} but commercial is true; name "
            "the licence you established (an SPDX id) with a `commercial_reason:` saying why it allows "
            "commercial use, or set `commercial: false`"
        )
    if not is_known_commercial(name) and not (reason or "").strip():
        raise SourceError(
            f"{where}: licence {brief(name)} is not one this project knows to allow commercial use "
            "(its list: COMMERCIAL_OK in pipeline/sources/licencetables.py); check it and add "
            f"`commercial_reason:` saying why it does, or set `commercial: false`{operator_case_hint(name)}"
        )


def parse_entry(name: str, raw: Any, where: str = REGISTRY_FILE) -> SourceSpec:
    """Validate one registry entry; raise SourceError (one line) naming the entry and the rule."""
    at = f"{where}: {_plain(name)}"
    # The checks run in this order, so an entry with several faults is told of the same one first.
    _check_shape(at, name, raw)
    check_licence(at, raw.get("licence"), raw.get("commercial"), raw.get("commercial_reason"))
    files = _globs_field(at, "files", raw.get("files"))
    sha = _sha256_field(at, raw.get("sha256"))
    _check_kind_needs(at, raw, files)
    options = _options_field(at, raw["adapter"], raw.get("options"))
    gated = _flag_field(at, "gated", raw.get("gated"))
    archive = _archive_field(at, raw["kind"], raw.get("archive"))
    licence_files = _licence_files_field(at, raw["kind"], archive, raw.get("licence_files"))
    local_path = _local_path_field(at, raw.get("local_path"))
    token_env = _token_env_field(at, raw.get("token_env"))
    revision = _revision_field(at, raw.get("revision"))
    description = text_field(at, "description", raw.get("description"))
    # its form only: the file is checked by what reads it (check_licence_text), the registry stage
    # and the download, so that a copy of sources.yaml without data/licences/ still lists sources
    licence_text = _licence_text_field(at, raw["kind"], raw.get("licence_text"))
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
        licence_text=licence_text,
        options=dict(options),
    )


def _check_shape(at: str, name: str, raw: Any) -> None:
    """The entry's name, that it is a mapping of known fields, and its kind, location and adapter:
    what every other check reads."""
    from pipeline.sources.adapters import ADAPTERS  # local: keeps `import registry` light

    if not _NAME_RE.match(name):
        raise SourceError(f"{at}: source names are lower-case letters, digits, '_' and '-'")
    if not isinstance(raw, dict):
        raise SourceError(f"{at}: expected a mapping of fields")
    known = set(SourceSpec.__dataclass_fields__) - {"name"}
    unknown = field_names(k for k in raw if k not in known)
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


def _sha256_field(at: str, value: Any) -> str | None:
    """`sha256:`: 64 lower-case hex digits (the download's pin), or None when absent."""
    if value is not None and (not isinstance(value, str) or not _SHA256_RE.match(value)):
        raise SourceError(f"{at}: `sha256:` must be 64 lower-case hex digits")
    return value


def _check_kind_needs(at: str, raw: dict[str, Any], files: list[str]) -> None:
    """What a kind cannot do without: a package copies only the files it lists, and a hub dataset
    is pinned to a commit (a branch moves, and the data with it)."""
    if raw["kind"] == "package" and not files:
        raise SourceError(f"{at}: a package source lists the data files it copies in `files:`")
    if raw["kind"] == "hf_dataset" and not raw.get("revision"):
        raise SourceError(f"{at}: a hf_dataset source needs a pinned `revision:` (a commit sha)")


def _options_field(at: str, adapter: str, value: Any) -> dict[Any, Any]:
    """`options:`: a mapping (none when absent) of settings the adapter takes, each checked by it."""
    from pipeline.sources.adapters import option_error  # local: keeps `import registry` light

    options = value or {}
    if not isinstance(options, dict):
        raise SourceError(f"{at}: `options:` must be a mapping")
    for key, setting in options.items():
        error = option_error(adapter, key, setting)
        if error is not None:
            raise SourceError(f"{at}: {error}")
    return options


def _flag_field(at: str, key: str, value: Any) -> bool:
    """A true/false field, false when absent; text such as "false" is refused, never coerced
    (bool("false") is True)."""
    flag = False if value is None else value
    if not isinstance(flag, bool):
        raise SourceError(f"{at}: `{key}:` must be true or false, not {brief(flag)}")
    return flag


def _archive_field(at: str, kind: str, value: Any) -> bool:
    """`archive:`: only a url download is an archive whose members `files:` selects."""
    archive = _flag_field(at, "archive", value)
    if archive and kind != "url":
        raise SourceError(
            f"{at}: `archive: true` is for url sources (a .tar/.tar.gz/.tgz/.zip download whose members "
            "`files:` selects); remove it"
        )
    return archive


def _licence_files_field(at: str, kind: str, archive: bool, value: Any) -> list[str]:
    """`licence_files:`: globs of an archive's members holding its licence and notices."""
    licence_files = _globs_field(at, "licence_files", value)
    if licence_files and not (kind == "url" and archive):
        # a hub download records the repo's root LICENSE/NOTICE files and card by itself; a plain
        # url file or a package has no members to choose from
        raise SourceError(
            f"{at}: `licence_files:` selects the members of a downloaded archive that hold its licence "
            "and notices, so it is for url sources with `archive: true`; remove it"
        )
    return licence_files


def _local_path_field(at: str, value: Any) -> str | None:
    """`local_path:`: a file or folder to read instead of downloading, or None when absent."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise SourceError(f"{at}: `local_path:` must be a path to a file or folder, not {brief(value)}")
    return value


def _token_env_field(at: str, value: Any) -> str | None:
    """`token_env:`: the variable holding a Hugging Face token, or None when absent."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise SourceError(
            f"{at}: `token_env:` must be the name of an environment variable, not {brief(value)}"
        )
    if value is not None and not _hf_token_name(value):
        # its value is sent to the Hub as the bearer token: `token_env: AWS_SECRET_ACCESS_KEY` in an
        # edited sources.yaml would hand that secret to huggingface.co (or whatever HF_ENDPOINT says)
        raise SourceError(
            f"{at}: `token_env:` {brief(value)} must name a Hugging Face token variable: upper-case "
            "letters, digits and '_', with an HF, HUGGING or HUGGINGFACE part and a TOKEN part (HF_TOKEN, "
            "HUGGING_FACE_HUB_TOKEN); any other variable's value would be sent to the Hub"
        )
    return value


def _revision_field(at: str, value: Any) -> str | None:
    """`revision:`: a commit sha, branch or tag name, or None when absent."""
    revision = text_field(at, "revision", value)
    if revision is not None and not _safe_revision(revision):
        # huggingface_hub joins a branch or tag name into its cache paths (refs/<revision>) as it is
        raise SourceError(
            f"{at}: `revision:` {brief(revision)} is not a commit sha, branch or tag name (letters, "
            "digits, '.', '_', '-' and '/', no '..')"
        )
    return revision


def _licence_text_field(at: str, kind: str, value: Any) -> str | None:
    """`licence_text:`: a repository-relative path (POSIX, no '..'), or None when absent."""
    if value is None:
        return None
    if kind == "contrib":  # each contributed file's terms are its own sidecar's
        raise SourceError(
            f"{at}: `licence_text:` is not for a contrib source (each contributed file's sidecar states "
            "its terms); remove it"
        )
    if not isinstance(value, str) or not value.strip():
        raise SourceError(
            f"{at}: `licence_text:` must be the path of a licence file committed to this repository "
            f"(data/licences/...), not {brief(value)}"
        )
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        # the file travels with the commit: a path outside the checkout is not in anyone else's
        raise SourceError(
            f"{at}: `licence_text:` {brief(value)} is outside the repository; give a path relative to "
            "its root (no leading '/', no '..' parts), e.g. data/licences/<name>/LICENSE"
        )
    return value


def check_licence_text(at: str, value: str, root: Path) -> bytes:
    """The bytes of the file `licence_text:` names under `root` (the repository), read once for its
    checks and its callers (the fetch spec hashes them, the download records them): it must exist
    there (a link may not lead out of it), be a regular file of at most LICENCE_TEXT_MAX bytes, and
    hold UTF-8 text. SourceError (`at`: `licence_text:` <path> <rule>; the fix) otherwise."""
    path = root / value
    if not path.exists():
        raise SourceError(
            f"{at}: `licence_text:` {brief(value)} does not exist in the repository ({path}); commit the "
            "licence text there or fix the path"
        )
    if not path.resolve().is_relative_to(root.resolve()):
        raise SourceError(
            f"{at}: `licence_text:` {brief(value)} is a link to {brief(str(path.resolve()), 150)}, outside "
            "the repository; commit the text itself"
        )
    if not path.is_file():
        raise SourceError(f"{at}: `licence_text:` {brief(value)} is not a file; name the licence file itself")
    size = path.stat().st_size
    if size > LICENCE_TEXT_MAX:
        raise SourceError(
            f"{at}: `licence_text:` {brief(value)} is {size:,} bytes, more than the {LICENCE_TEXT_MAX:,} a "
            "licence text is taken at (NOTICE.md reproduces it whole); name the licence text alone"
        )
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(
            f"{at}: `licence_text:` {brief(value)} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None
    return data


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
        raise SourceError(root_first(f"{path}: the source registry is missing")) from None
    except yaml.YAMLError as e:
        raise SourceError(yaml_error(e, str(path))) from None
    except RecursionError:
        raise SourceError(f"{path}: not valid YAML (nested too deeply)") from None
    except UnicodeDecodeError as e:  # `nanochatgpt sources` printed it as a traceback
        raise SourceError(not_utf8(path, e)) from None
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


def listed_twice(names: list[str]) -> list[str]:
    """The names a `sources:` list holds more than once (DVC would make one stage of both)."""
    return sorted({n for n in names if names.count(n) > 1})


def enabled_specs(root: Path) -> tuple[list[SourceSpec], dict[str, SourceSpec]]:
    """params.yaml `sources:`, each name looked up in sources.yaml (and the whole registry)."""
    registry = load_registry(root / REGISTRY_FILE)
    names = enabled_sources(root / "params.yaml")
    if not names:
        # checked before anything is removed: an emptied list would take every source's files
        raise SourceError("params.yaml: `sources:` is empty; enable at least one source")
    if twice := listed_twice(names):  # the build would refuse the list later
        raise SourceError(f"params.yaml `sources:` lists {', '.join(twice)} more than once")
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise SourceError(
            f"params.yaml `sources:` lists {', '.join(unknown)}, which is not in {REGISTRY_FILE} "
            f"(known: {', '.join(registry)}); add its entry there, or fix the name (a source is renamed "
            "in both files)"
        )
    return [registry[n] for n in names], registry


def local_target(spec: SourceSpec, root: Path) -> Path | None:
    """The file or folder `local_path:` names (relative to the repository root), or None."""
    if not spec.local_path:
        return None
    path = Path(spec.local_path).expanduser()
    return path if path.is_absolute() else root / path
