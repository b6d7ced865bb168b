"""NOTICE.md: the licence and copyright notices that passing a dataset variant on requires.

The dataset card says which licence each source is under; a receiver who ships the data must also
keep each source's copyright and licence text (MIT, BSD and Apache all ask for it) and credit its
authors. NOTICE.md, written beside the card, holds for every source the variant includes (a
contributed file on its own) the source's name, licence id, origin, and the licence text the
source itself shipped, or an honest line where it shipped none.

The text comes from the bytes the download recorded (data/raw/<source>/, each file with its sha256
in manifest.json, pipeline/sources/download.py), never from this machine's site-packages or the
network: the build stays reproducible from DVC-tracked inputs, and a recorded file whose bytes no
longer match its manifest stops the build. What each kind records:

- package: the licence files of its .dist-info (`.licence/...`) and its metadata (author, project
  URLs, licence fields and classifiers) in the manifest's `upstream`;
- contrib: the contributor's sidecar, reproduced as written (it is the only terms record a
  contributed file has), its `attribution:` (the credit) also given on its own line;
- hf_dataset: the LICENSE*/LICENCE*/COPYING*/NOTICE*/AUTHORS* files at the repo's root and its
  dataset card (README.md), at the pinned commit (`.licence/...`). The licence and notice files are
  reproduced whole; of the card only its terms: the front matter's `license*` keys (and a gated
  repo's `extra_gated_prompt`), verbatim, and its sections whose heading names a licence, citation,
  copyright or terms, verbatim and cut at CARD_MAX characters. Extracting just these is reliable:
  the front matter is YAML between `---` lines at the top (the Hub's own format) and a section is
  the Markdown from its heading to the next heading of its level (fenced code skipped, so a `#` in
  a BibTeX or shell block starts none); the rest of a card (often 10-100 KB of description and
  schema) states no terms, and the whole card stays recorded beside the data;
- url: with `archive: true`, the members its `licence_files:` selects; a single file, nothing;
- a `local_path:` folder: the licence and notice files at its top (a hub copy's card too, and in an
  unpacked archive the files `licence_files:` selects); a single file, nothing;
- any kind but contrib, besides: the licence text committed to this repository that the entry's
  `licence_text:` names (for a source whose own distribution carries none, such as the chatterbot
  wheel), as `.licence/repository/<name>` with `licence_text` in the manifest. It comes first, is
  said to be the repository's copy (naming the file), and stands in for the "no licence text" line.

Where nothing was recorded the notice says where the terms are to be read. A recorded text is cut
at TEXT_MAX characters (with a line saying so): a licence is far shorter, anything longer is not
one a reader needs inline.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.buildinputs import BuildError, read_json_object
from pipeline.cards import NOTICE_FILE, CardSource, credit_text, inline_name, source_link
from pipeline.datasetcard import is_held
from pipeline.sources.registry import LICENCE_TEXT_MAX, SIDECAR_SUFFIXES

MANIFEST = (
    "manifest.json"  # pipeline.sources.download.MANIFEST (not imported: the build runs no download code)
)
# The longest common licence texts (GPL-3.0, AGPL-3.0) are about 35,000 characters: each is whole.
# The registry's cap on a `licence_text:` file, so that such a text is always reproduced whole.
TEXT_MAX = LICENCE_TEXT_MAX
# What is reproduced of a dataset card's licence and citation sections, all together.
CARD_MAX = 12_000
_CARD_KEY = re.compile(r"^(license\w*|extra_gated_prompt)\s*:")  # front matter keys stating terms
_TOP_KEY = re.compile(r"^[^\s#-][^:]*:")  # a top-level front matter key (not indented, not a list item)
_TERMS_HEADING = re.compile(r"licen[cs]|citation|\bcite\b|copyright|\bterms\b", re.IGNORECASE)
# Greedy `(.*)` and the title stripped after (_terms_sections): a lazy `(.*?)` before `[ \t]*$` tried
# the trailing-space run at every character of a line (quadratic: a card line of a million spaces
# took an hour).
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
NO_LICENCE_FILE = "LICENSE, LICENCE, COPYING or NOTICE file"


@dataclass(frozen=True)
class Text:
    """One verbatim text: what it is (a Markdown line), the fence's language, the text itself."""

    caption: str
    language: str
    body: str


@dataclass(frozen=True)
class SourceNotice:
    """What NOTICE.md says about one source (or contributed file) of a variant."""

    source: CardSource
    facts: list[str] = field(default_factory=list)  # Markdown list items: origin, author, pin
    texts: list[Text] = field(default_factory=list)
    missing: str = ""  # the honest line when no licence text was recorded
    # what a reader must know of the texts that were recorded; unlike `missing`, it stays beside a
    # repository copy (`_with_repository_copy`)
    caveat: str = ""


def _code(text: str) -> str:
    """A Markdown code span of any one-line text (a fence longer than any backtick run in it)."""
    text = " ".join(str(text).split())
    run = max((len(r) for r in re.findall(r"`+", text)), default=0)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{'`' * (run + 1)}{pad}{text}{pad}{'`' * (run + 1)}"


def _link(url: str) -> str:
    """A plain http(s) URL as it is (Markdown viewers link it), anything else as a code span."""
    return url if re.fullmatch(r"https?://[^\s<>`()\[\]]+", url) else _code(url)


def _fence(text: Text) -> list[str]:
    """A fenced block holding `text.body` unchanged: its fence is longer than any backtick run in it."""
    run = max((len(r) for r in re.findall(r"`+", text.body)), default=0)
    fence = "`" * max(3, run + 1)
    return [f"{fence}{text.language}", text.body.rstrip("\n"), fence]


class _Manifest(dict[str, Any]):
    """A download manifest with its `files` indexed once: data/contrib/'s manifest lists every
    contributed file, and NOTICE.md reads it for each of them (re-read and re-scanned per file, 2,000
    files took a build 60 s, time quadratic in the files)."""

    @cached_property
    def listed(self) -> dict[Any, Any]:
        """sha256 by path, as recorded."""
        return {f.get("path"): f.get("sha256") for f in self.get("files") or [] if isinstance(f, dict)}

    @cached_property
    def sidecars(self) -> dict[str, list[str]]:
        """Top-level sidecars by stem."""
        found: dict[str, list[str]] = defaultdict(list)
        for f in self.get("files") or []:
            rel = PurePosixPath(str(f.get("path"))) if isinstance(f, dict) else None
            if rel is not None and "/" not in str(rel) and rel.suffix.lower() in SIDECAR_SUFFIXES:
                found[rel.stem].append(str(rel))
        return found


def _manifest(raw: Path) -> _Manifest | None:
    path = raw / MANIFEST
    return _Manifest(read_json_object(path, "download manifest")) if path.is_file() else None


def _recorded(raw: Path, manifest: _Manifest, rel: str, name: str) -> str:
    """The text of data/raw/<name>/<rel>, checked against the sha256 the manifest recorded for it."""
    listed = manifest.listed
    path = raw / rel
    fix = f"re-run `dvc repro download@{name}`"
    if rel not in listed or not path.is_file():
        raise BuildError(
            f"{path}: named by {raw / MANIFEST} but {'missing' if rel in listed else 'not listed'}; {fix}"
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != listed[rel]:
        raise BuildError(f"{path}: its bytes are not the ones {raw / MANIFEST} recorded (sha256); {fix}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # older licence files are often Latin-1 (a © sign): every byte is one
        return data.decode("latin-1")


def _cut(body: str, limit: int, recorded: str) -> tuple[str, str]:
    """(`body` cut at `limit` characters, a caption note saying so, or "" when it is whole)."""
    if len(body) <= limit:
        return body, ""
    note = f" (its first {limit:,} of {len(body):,} characters; the rest is in {_code(recorded)})"
    return body[:limit], note


def _recorded_text(caption: str, raw: Path, manifest: _Manifest, rel: str, name: str) -> Text:
    """The recorded file `rel` as a Text: `caption` names it, and ends in ':' (a cut one says so)."""
    recorded = f"data/raw/{name}/{rel}"
    body, note = _cut(_recorded(raw, manifest, rel, name), TEXT_MAX, recorded)
    return Text(f"{caption.removesuffix(':')}{note}:", "text", body)


def _licence_texts(name: str, raw: Path, manifest: _Manifest, describe: Callable[[str], str]) -> list[Text]:
    """The licence files the download recorded (the manifest's `licence_files`) as Texts, each
    captioned `describe(rel)` and where it is recorded."""
    return [
        _recorded_text(
            f"{describe(rel)} (recorded as {_code(f'data/raw/{name}/{rel}')}):", raw, manifest, rel, name
        )
        for rel in manifest.get("licence_files") or []
    ]


def _member(rel: str) -> str:
    """A recorded licence file's path as it was in the archive or folder (below `.licence/`)."""
    return _code(PurePosixPath(rel).relative_to(".licence").as_posix())


def _front_matter_terms(card: str) -> str:
    """The lines of the card's YAML front matter (between `---` lines at its top) that state terms:
    the `license*` keys and `extra_gated_prompt`, each with its indented or list lines, verbatim."""
    lines = card.splitlines()
    if not lines or lines[0].rstrip() != "---":
        return ""
    kept: list[str] = []
    keep = False
    for line in lines[1:]:
        if line.rstrip() in ("---", "..."):
            break
        if _TOP_KEY.match(line):
            keep = bool(_CARD_KEY.match(line))
        if keep:
            kept.append(line)
    return "\n".join(kept).strip("\n")


def _terms_sections(card: str) -> list[str]:
    """The card's Markdown sections whose heading names a licence, citation, copyright or terms,
    each from its heading to the next heading of its level or above (headings inside fenced code,
    a BibTeX `#` say, are not headings); a section inside one already taken is not repeated."""
    lines = card.splitlines()
    headings: list[tuple[int, int, str]] = []  # (line, level, title)
    fence = ""
    for i, line in enumerate(lines):
        opened = _FENCE.match(line)
        if fence:
            closing = opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence)
            if closing and not line.strip().strip(fence[0]):
                fence = ""
            continue
        if opened:
            fence = opened.group(1)
            continue
        heading = _HEADING.match(line)
        if heading:
            headings.append(
                (i, len(heading.group(1)), (heading.group(2) or "").rstrip(" \t").rstrip("#").strip())
            )
    sections: list[str] = []
    taken = -1
    for n, (i, level, title) in enumerate(headings):
        if i < taken or not _TERMS_HEADING.search(title):
            continue
        taken = next((j for j, lv, _ in headings[n + 1 :] if lv <= level), len(lines))
        sections.append("\n".join(lines[i:taken]).strip("\n"))
    return sections


def _card(raw: Path, manifest: _Manifest, name: str) -> tuple[list[str], list[Text]]:
    """(facts, texts) of the recorded dataset card: what it states of the terms, verbatim."""
    rel = manifest.get("card")
    if not rel:
        return [], []
    recorded = f"data/raw/{name}/{rel}"
    card = _recorded(raw, manifest, str(rel), name)
    texts = []
    front = _front_matter_terms(card)
    if front:
        body, note = _cut(front, TEXT_MAX, recorded)
        texts.append(Text(f"The dataset card's front matter states{note}:", "yaml", body))
    sections = _terms_sections(card)
    if sections:
        body, note = _cut("\n\n".join(sections), CARD_MAX, recorded)
        texts.append(Text(f"The dataset card's licence and citation sections{note}:", "markdown", body))
    none = "; it states no licence (no `license:` in its front matter, no licence or citation section)"
    said = "" if texts else none
    return [f"dataset card: recorded as {_code(recorded)}{said}"], texts


def _hub(source: CardSource, raw: Path, manifest: _Manifest) -> SourceNotice:
    pin = manifest.get("revision")
    facts = [f"pinned at {_code(pin)}"] if pin else []
    if "licence_files" not in manifest:  # downloaded before the repo's licence files were recorded
        return SourceNotice(
            source,
            facts,
            missing="No licence text was recorded with this download; re-run "
            f"`dvc repro download@{source.name}` to record the repository's licence files and card.",
        )
    texts = _licence_texts(
        source.name,
        raw,
        manifest,
        lambda rel: f"{_code(PurePosixPath(rel).name)}, as the repository holds it at that commit",
    )
    card_facts, card_texts = _card(raw, manifest, source.name)
    missing = ""
    # Read from the cache alone, the snapshot holds what earlier downloads fetched into it: what it
    # lacks says nothing of the repository, whether it held some licence files or none.
    cache_only = (
        "the download read only the local Hub cache (HF_HUB_OFFLINE, or the Hub out of reach), and "
        f"the cached copy of that commit holds {'no other' if texts else 'no'} {NO_LICENCE_FILE} at its "
        f"root{'' if manifest.get('card') else ' and no dataset card'}. The repository may still hold "
        f"{'more' if texts else 'one'} that was never fetched into the cache: re-run "
        f"`dvc repro download@{source.name}` with network access to record "
        f"{'them' if texts else 'it'}."
    )
    caveat = ""
    if texts and manifest.get("read_offline"):
        caveat = f"**Perhaps not every licence file:** {cache_only}"
    elif manifest.get("read_offline"):
        missing = (
            f"**No licence text recorded:** {cache_only} Until then the licence id above is the one "
            "sources.yaml records; include the text of that licence when you pass the data on."
        )
    elif not texts:
        missing = (
            f"**No licence text:** the repository holds no {NO_LICENCE_FILE} at its root at that commit, so "
            f"none is reproduced here: the licence id above is the one sources.yaml records"
            f"{', and what the dataset card states of its terms is below' if card_texts else ''}. Include the "
            "text of that licence when you pass the data on, and keep any notice or citation its authors ask for."
        )
    return SourceNotice(source, facts + card_facts, texts + card_texts, missing, caveat=caveat)


def _url(source: CardSource, raw: Path, manifest: _Manifest) -> SourceNotice:
    pin = manifest.get("revision")
    facts = [f"sha256 of the download: {_code(pin)}"] if pin else []
    texts = _licence_texts(
        source.name,
        raw,
        manifest,
        lambda rel: f"The archive member {_member(rel)}, as the pinned download holds it",
    )
    why = (
        "the archive's members holding its licence are chosen by `licence_files:` in sources.yaml, and none "
        "is set for this source"
        if manifest.get("archive")
        else "the download is one data file, which carries none"
    )
    missing = (
        ""
        if texts
        else f"No licence text was recorded with the download ({why}): read the terms at the link above, "
        "and keep any notice they ask for."
    )
    return SourceNotice(source, facts, texts, missing)


def _local(source: CardSource, raw: Path, manifest: _Manifest) -> SourceNotice:
    where = f"`local_path:` {_code(manifest['local_path'])}"
    texts = _licence_texts(
        source.name, raw, manifest, lambda rel: f"{_member(rel)}, as the local copy holds it"
    )
    card_facts, card_texts = _card(raw, manifest, source.name)
    facts = [f"read from a local copy ({where})", *card_facts]
    missing = ""
    if not texts:
        if "licence_files" not in manifest:
            held = "no licence file was recorded"
        elif manifest.get("archive"):  # the archive itself: its licence members are chosen by name
            held = "no `licence_files:` in sources.yaml selects the archive's licence members"
        else:
            held = (
                f"the local copy holds no {NO_LICENCE_FILE} at the top of its folder (a `local_path:` "
                "naming one file has none)"
            )
        missing = (
            f"No licence text: {held}, so none is reproduced here; read the terms where the source came "
            "from, and keep any notice they ask for."
        )
    return SourceNotice(source, facts, texts + card_texts, missing)


def _package(source: CardSource, raw: Path, manifest: _Manifest) -> SourceNotice:
    up = manifest.get("upstream")
    if not isinstance(up, dict):
        return SourceNotice(
            source,
            missing=f"No licence text was recorded with this download; re-run `dvc repro download@{source.name}`.",
        )
    name, version = up.get("distribution"), up.get("version")
    facts = [f"distribution: {_code(f'{name}=={version}')} (as installed when downloaded)"]
    author = str(up.get("author") or "")
    if up.get("author_email"):
        author = f"{author} <{up['author_email']}>" if author else str(up["author_email"])
    if author:
        facts.append(f"author: {_code(author)}")
    urls = [f"Home-page, {up['home_page']}"] if up.get("home_page") else []
    for entry in urls + [str(u) for u in up.get("project_urls") or []]:
        label, _, url = entry.rpartition(", ")  # a Project-URL is `label, url`
        facts.append(f"{(label or 'project').lower()}: {_link(url)}")
    declared = [up.get("license_expression"), up.get("license"), *(up.get("license_classifiers") or [])]
    declared = [str(d) for d in declared if d]
    if declared:
        facts.append("licence in the package metadata: " + "; ".join(_code(d) for d in declared))
    texts = _licence_texts(
        source.name,
        raw,
        manifest,
        lambda rel: f"{_code(PurePosixPath(rel).name)}, as the {name} {version} distribution ships it",
    )
    missing = ""
    if not texts:
        missing = (
            f"**No licence text:** the {name} {version} distribution shipped no licence file (its .dist-info holds "
            f"none). The licence id above is the one sources.yaml records; the author and project named "
            "above are the package metadata's. No copyright line is given here because the package gives "
            "none: take the licence text from the project before passing the data on."
        )
    return SourceNotice(source, facts, texts, missing)


def _contrib(source: CardSource, raw: Path, manifest: _Manifest) -> SourceNotice:
    stem = source.name.split("/", 1)[-1]
    sidecars = manifest.sidecars.get(stem, [])
    texts = [
        Text(
            f"The sidecar {_code(rel)}, as contributed (recorded as {_code(f'data/raw/{raw.name}/{rel}')}):",
            "yaml",
            _recorded(raw, manifest, rel, raw.name),
        )
        for rel in sidecars
    ]
    return SourceNotice(
        source,
        [],
        texts,
        "The contributor's sidecar, below, is this file's only record of its terms: a contributed file "
        "carries no licence text of its own, so credit and notices are as the sidecar's licence asks.",
    )


def _repository_copy(raw: Path, manifest: _Manifest, name: str) -> Text | None:
    """The licence text committed to this repository that the download recorded for the source
    (sources.yaml `licence_text:`, manifest `licence_text`), or None when there is none."""
    entry = manifest.get("licence_text")
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry.get("from"):
        raise BuildError(
            f"{raw / MANIFEST}: `licence_text` must be {{path, from}}, not {entry!r:.80}; "
            f"re-run `dvc repro download@{name}`"
        )
    rel, origin = entry["path"], str(entry["from"])
    caption = (
        f"{_code(PurePosixPath(origin).name)}, this repository's copy of the source's licence text "
        f"({_code(origin)}, named by `licence_text:` in sources.yaml; recorded as "
        f"{_code(f'data/raw/{name}/{rel}')}):"
    )
    return _recorded_text(caption, raw, manifest, rel, name)


def _with_repository_copy(notice: SourceNotice, copy: Text | None) -> SourceNotice:
    """`notice` with the repository's copy first among its texts; it replaces the line saying that no
    licence text was recorded (a caveat on the recorded ones stays)."""
    if copy is None:
        return notice
    return SourceNotice(notice.source, notice.facts, [copy, *notice.texts], caveat=notice.caveat)


def source_notice(
    root: Path, source: CardSource, manifests: dict[Path, _Manifest | None] | None = None
) -> SourceNotice:
    """What NOTICE.md says about `source` (a registry source, or a contributed file `<entry>/<stem>`),
    from data/raw/<source>/ under `root`. `manifests` keeps each folder's manifest read once, for
    the contributed files that share one."""
    top = source.name.split("/", 1)[0] if source.kind == "contrib" else source.name
    raw = root / "data" / "raw" / top
    manifests = {} if manifests is None else manifests
    if raw not in manifests:
        manifests[raw] = _manifest(raw)
    manifest = manifests[raw]
    if manifest is None:
        print(
            f"build: {source.name}: no {raw / MANIFEST}, so NOTICE.md holds no licence text for it",
            file=sys.stderr,
        )
        return SourceNotice(
            source,
            missing=f"No download record (`data/raw/{top}/{MANIFEST}`) was there when this variant was built, "
            "so no licence text could be included; read the terms where the source came from.",
        )
    if source.kind == "contrib":
        return _contrib(source, raw, manifest)
    if manifest.get("local_path"):
        found = _local(source, raw, manifest)
    elif source.kind == "package":
        found = _package(source, raw, manifest)
    elif source.kind == "url":
        found = _url(source, raw, manifest)
    else:
        found = _hub(source, raw, manifest)
    return _with_repository_copy(found, _repository_copy(raw, manifest, top))


def notice(variant: str, notices: Sequence[SourceNotice]) -> str:
    """The NOTICE.md of data/dataset/<variant>/."""
    lines = [
        f"# Notices: the `{variant}` dataset variant",
        "",
        # true in the dataset folder and in model/hf, where the export copies this file
        "The conversations of this dataset variant come from the sources below, each under its own "
        "licence. For each one this file gives its licence, where it came from, and the licence and "
        "copyright text it shipped, reproduced as recorded when it was downloaded (`data/raw/<source>/`, "
        "each file's sha256 in `manifest.json`), or says plainly that it shipped none. Keep this file "
        "with the data, and with a model trained on it, when you pass either on, and credit the authors "
        "as each licence asks.",
        "",
    ]
    if not notices:
        lines += ["This variant holds no conversations, so no source's terms apply.", ""]
    for n in notices:
        s = n.source
        link = source_link(s.kind, s.location) if s.kind != "contrib" else ""
        lines += [
            f"## {inline_name(s.name)}",  # a contributed file's stem may hold a line break or HTML
            "",
            f"- licence: {_code(s.licence)} ({'its sidecar' if s.kind == 'contrib' else 'sources.yaml'})",
            # the credit an attribution licence asks for, whole, as the sidecar's `attribution:` gives it
            *([f"- attribution: {credit_text(s.attribution)}"] if s.attribution else []),
            f"- commercial use: {'yes' if s.commercial else 'no'}",
            *([f"- from: {link}"] if link else []),
            *([f"- description: {' '.join(s.description.split())}"] if s.description else []),
            *(f"- {fact}" for fact in n.facts),
            "",
        ]
        lines += [line for text in (n.missing, n.caveat) if text for line in (text, "")]
        for t in n.texts:
            lines += [t.caption, "", *_fence(t), ""]
    return "\n".join(lines)


def write_notice(
    out: Path, root: Path, variant: str, stats: Mapping[str, Any], rows: Sequence[CardSource]
) -> None:
    """NOTICE.md into `out`: every source (and contributed file) that holds data in the variant."""
    included = [s for s in rows if is_held(stats, s.name)]
    manifests: dict[Path, _Manifest | None] = {}
    (out / NOTICE_FILE).write_text(
        notice(variant, [source_notice(root, s, manifests) for s in included]), encoding="utf-8"
    )
