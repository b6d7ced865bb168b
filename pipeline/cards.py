"""What the dataset card (pipeline/datasetcard.py) and the model card (pipeline/modelcard.py) share:
a source's terms as a card row, the Hub's licence ids, where a reader finds a source, the files a card
names beside it, and the Markdown both are written in.

A card is the README.md that a Hugging Face dataset or model repository shows, written beside the
files. A built dataset or an exported model travels: a team copies `data/dataset/commercial/` to its
own storage or uploads it with `hf upload`. The card goes with it and answers what a receiver asks
first: what is in here, under which terms, how was it made, how do I load it.

Everything in a card comes from the stage's own figures (stats.json, the token counts): a card
never states a number the files do not back.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regex
import yaml

from pipeline.sources import licences
from pipeline.terminal import printable

# The Hub's `license:` ids (https://huggingface.co/docs/hub/repositories-licenses), less `unknown`
# and `other`, which hub_licence chooses itself. Mostly lower-case SPDX ids; a few are the Hub's own.
HUB_LICENCES = frozenset(
    {
        "apache-2.0",
        "mit",
        "openrail",
        "bigscience-openrail-m",
        "creativeml-openrail-m",
        "bigscience-bloom-rail-1.0",
        "bigcode-openrail-m",
        "afl-3.0",
        "artistic-2.0",
        "bsl-1.0",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "c-uda",
        "cc",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "cc-by-nc-2.0",
        "cc-by-nc-3.0",
        "cc-by-nc-4.0",
        "cc-by-nd-4.0",
        "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0",
        "cc-by-nc-sa-2.0",
        "cc-by-nc-sa-3.0",
        "cc-by-nc-sa-4.0",
        "cdla-sharing-1.0",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "wtfpl",
        "ecl-2.0",
        "epl-1.0",
        "epl-2.0",
        "etalab-2.0",
        "eupl-1.1",
        "eupl-1.2",
        "agpl-3.0",
        "gfdl",
        "gpl",
        "gpl-2.0",
        "gpl-3.0",
        "lgpl",
        "lgpl-2.1",
        "lgpl-3.0",
        "isc",
        "h-research",
        "intel-research",
        "lppl-1.3c",
        "ms-pl",
        "apple-ascl",
        "apple-amlr",
        "mpl-2.0",
        "odc-by",
        "odbl",
        "openmdw-1.0",
        "openrail++",
        "osl-3.0",
        "postgresql",
        "ofl-1.1",
        "ncsa",
        "unlicense",
        "zlib",
        "pddl",
        "lgpl-lr",
        "deepfloyd-if-license",
        "fair-noncommercial-research-license",
        "llama2",
        "llama3",
        "llama3.1",
        "llama3.2",
        "llama3.3",
        "llama4",
        "gemma",
    }
)
# SPDX spellings whose Hub id differs.
_HUB_ALIASES = {"odc-by-1.0": "odc-by", "odbl-1.0": "odbl", "pddl-1.0": "pddl"}
# SPDX's GNU suffixes (GPL-3.0-only, LGPL-2.1-or-later, the deprecated GPL-2.0+): the Hub's id is the
# version alone. A GNU version the Hub has no id for (GPL-1.0, LGPL-2.0, GFDL-1.3) takes the family's
# id (`gpl`, `lgpl`, `gfdl`; GFDL's invariant-sections variants too).
_SPDX_SUFFIX = re.compile(r"(-only|-or-later|\+)$")
_GNU_FAMILY = re.compile(r"(gpl|lgpl|gfdl)-\d+(\.\d+)*(-no-invariants|-invariants)?")
# Where `license_link` points when a licence is `other` for the Hub (one of the two file names the
# Hub's card spec accepts for a file inside the repository).
LICENCE_FILE = "LICENSE.md"
# The notices passing a variant on requires, written beside its card (pipeline/notices.py).
NOTICE_FILE = "NOTICE.md"
# How much of a contributor's description a card shows: enough to say what the file is (NOTICE.md
# reproduces the whole sidecar), not a table cell of a thousand words.
DESCRIPTION_MAX = 200
# The ASCII punctuation that opens Markdown or HTML inline syntax: escapes and code, emphasis,
# links and images, tags and autolinks, entities, strikethrough. A backslash before any ASCII
# punctuation is Markdown's escape; `|` is `cell`'s, as it matters in a table only.
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]<&~])")
# Zero-width non-joiner and joiner: Python counts them unprintable (format characters), but they
# are part of writing (Persian, Hindi and other scripts; emoji sequences such as 👨‍👩‍👧), so a card
# shows them as they are. The other format characters (bidi overrides, U+200B) are still escaped.
_JOINERS = frozenset("\u200c\u200d")
# An escaped underscore inside a word (`chatbot\_arena`): there it opens no emphasis, so a name can
# keep it as typed.
_INTRAWORD_UNDERSCORE = re.compile(r"(?<=[^\W_])\\_(?=[^\W_])")
# One character as a reader sees it (Unicode extended grapheme clusters, which `re` cannot match).
_GRAPHEME = regex.compile(r"\X")


@dataclass(frozen=True)
class CardSource:
    """One row of a card's source table: where the data came from and under which terms."""

    name: str
    licence: str
    commercial: bool
    kind: str = ""
    location: str = ""
    description: str = ""
    # a contributed file's sidecar `attribution:` (who to credit, where from), as written
    attribution: str = ""


def hub_licence(licence: str) -> str:
    """The Hub's id for an SPDX licence: `unknown` stays unknown, an id the Hub lacks is `other`."""
    if licences.is_unknown(licence):
        return "unknown"
    key = licences.listed_id(licence)  # "MIT License" is `mit`, as "odc-by" is `odc-by`
    key = _HUB_ALIASES.get(key, key)
    if key in HUB_LICENCES:
        return key
    base = _SPDX_SUFFIX.sub("", key)
    if base in HUB_LICENCES:
        return base
    family = _GNU_FAMILY.fullmatch(base)
    return family[1] if family else "other"


def licence_name(licences_: Sequence[str]) -> str:
    """The Hub's `license_name` for licences it does not know: an id like `my-license-1.0` (lower
    case, letters, digits, dots and dashes), one per licence, joined by `-and-`. Accented letters
    keep their base letter ("Études" -> "etudes", not "tudes"); other non-ASCII text is dropped."""
    ascii_ = (unicodedata.normalize("NFKD", n).encode("ascii", "ignore").decode() for n in licences_)
    slugs = {re.sub(r"[^a-z0-9.]+", "-", name.strip().lower()).strip("-.") for name in ascii_}
    return "-and-".join(sorted(s for s in slugs if s)) or "other"


def source_link(kind: str, location: str) -> str:
    """Where a reader finds the upstream corpus (and its authors, for attribution)."""
    if kind == "hf_dataset":
        return f"https://huggingface.co/datasets/{location}"
    if kind == "package":
        return f"https://pypi.org/project/{location.replace('_', '-')}/"
    if kind == "url":
        return location
    return f"`{location}`" if location else ""


def front_matter(meta: Mapping[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True) + "---\n"


def cell(text: Any) -> str:
    """Markdown table cell: pipes and line ends (LF, CR, CRLF) would break the row."""
    return " ".join(str(text).replace("|", "\\|").splitlines())


def markdown_text(text: Any, limit: int = DESCRIPTION_MAX) -> str:
    """Free text someone else wrote (a contributor's sidecar `description:`) as inert Markdown on
    one line: each run of whitespace (line breaks, tabs, U+2028) one space; cut at `limit`
    characters (never inside a letter with its accents, an emoji sequence or a flag), with an
    ellipsis; every other character that is not printable (ESC and the other C0 and C1 controls, a
    bidi override, a zero-width space) written as its escape (`\\x1b`, `\\u202e`), so a reader sees
    it instead of it acting on a terminal or the text around it, but for the zero-width joiner and
    non-joiner, which are part of writing; and Markdown's syntax characters escaped, so `<b>`, `**`
    or `[x](y)` read as typed."""
    one = " ".join(str(text).split())
    if len(one) > limit:
        one = one[: _cut_at(one, limit - 1)].rstrip() + "…"
    inert = "".join(c if c in _JOINERS else printable(c) for c in one)
    return _MARKDOWN_SYNTAX.sub(r"\\\1", inert)


def credit_text(text: str) -> str:
    """A contributor's `attribution:` as inert Markdown on one line (markdown_text), never cut: an
    attribution licence asks for the credit as given, and the sidecar keeps it to one line."""
    return markdown_text(text, limit=max(len(text), 1))


def inline_name(text: Any) -> str:
    """A source name or licence id in running text or a heading (NOTICE.md's `## <source>`, the
    cards' lists of left-out and non-commercial sources): a contributed file's name is its file
    stem and its licence its sidecar's text, so either may hold a line break, `<img ...>`, `**` or a
    link. markdown_text makes it inert on one line; an underscore inside a word stays as typed
    (`chatbot_arena`), since it opens no emphasis there."""
    return _INTRAWORD_UNDERSCORE.sub("_", markdown_text(text))


def _cut_at(text: str, at: int) -> int:
    """`at`, moved back to the start of the character (what a reader sees as one: a Unicode extended
    grapheme cluster, `regex`'s `\\X`) it falls in: a cut inside a letter with its accents, an emoji
    sequence or a flag would leave half of it (`e` for `é`, a lone `🇫`, a dangling joiner)."""
    for grapheme in _GRAPHEME.finditer(text):
        if grapheme.end() > at:
            return grapheme.start()
    return at
