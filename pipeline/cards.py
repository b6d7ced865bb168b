"""Cards: the README.md that a Hugging Face dataset or model repository shows, written beside the files.

A built dataset or an exported model travels: a team copies `data/dataset/commercial/` to its own
storage or uploads it with `hf upload`. The card goes with it and answers what a receiver asks first:
what is in here, under which terms, how was it made, how do I load it. Its YAML header is the Hub's
metadata, and its `configs:` list names the files of each split, so that
`datasets.load_dataset("data/dataset/<variant>")` and the Hub's viewer read train and validation
from the card, not from a guess based on file names. (Locally, that form is cached by folder name,
not content, so the card's own recipe names the parquet files instead.)

Everything in a card comes from the stage's own figures (stats.json, the token counts): a card
never states a number the files do not back.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from pipeline.sources import licences

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
SPLIT_FILES = {"train": "train.parquet", "validation": "val.parquet"}
# Where `license_link` points when a licence is `other` for the Hub (one of the two file names the
# Hub's card spec accepts for a file inside the repository).
LICENCE_FILE = "LICENSE.md"
# The notices passing a variant on requires, written beside its card (pipeline/notices.py).
NOTICE_FILE = "NOTICE.md"
_SPLIT_KEYS = (("train", "train"), ("validation", "val"))  # Hub split name, stats.json key


@dataclass(frozen=True)
class CardSource:
    """One row of a card's source table: where the data came from and under which terms."""

    name: str
    licence: str
    commercial: bool
    kind: str = ""
    location: str = ""
    description: str = ""


def hub_licence(licence: str) -> str:
    """The Hub's id for an SPDX licence: `unknown` stays unknown, an id the Hub lacks is `other`."""
    if licences.is_unknown(licence):
        return "unknown"
    key = licence.strip().lower()
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


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for n rows (its whole ladder: a value off it is invalid)."""
    bounds = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    value = 1_000
    for i, label in enumerate(bounds):
        if n < value:
            return "n<1K" if i == 0 else f"{bounds[i - 1]}<n<{label}"
        value *= 10
    return "n>1T"


def _front_matter(meta: Mapping[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=True) + "---\n"


def _cell(text: Any) -> str:
    """Markdown table cell: pipes and line ends (LF, CR, CRLF) would break the row."""
    return " ".join(str(text).replace("|", "\\|").splitlines())


def _code(text: str) -> str:
    """Markdown code span of any text: the fence is longer than any run of backticks inside it."""
    run = max((len(r) for r in re.findall(r"`+", text)), default=0)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{'`' * (run + 1)}{pad}{text}{pad}{'`' * (run + 1)}"


def dataset_sources(stats: Mapping[str, Any], registry: Mapping[str, CardSource]) -> list[CardSource]:
    """The card rows: each enabled source with data in the variant; contributed files one by one
    (each carries its own licence); registry terms from `registry` (by source name)."""
    rows: list[CardSource] = []
    for name, entry in stats["sources"].items():
        spec = registry.get(name) or CardSource(name=name, licence=entry["licence"], commercial=False)
        if "parts" in entry:  # contrib: one row per contributed file, with its sidecar's terms
            for part, terms in entry["parts"].items():
                files = f"{spec.location}/{part.split('/', 1)[-1]}.*"
                rows.append(
                    CardSource(
                        name=part,
                        licence=terms["licence"],
                        commercial=bool(terms["commercial"]),
                        kind="contrib",
                        description=f"contributed file {_code(files)} (terms in its sidecar)",
                    )
                )
            continue
        rows.append(spec)
    return rows


def _counts(stats: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    entry = stats["sources"].get(name)
    if entry is not None:
        return entry
    for top in stats["sources"].values():  # a contributed file
        if name in top.get("parts", {}):
            return top["parts"][name]
    return None


def _split_key(stats: Mapping[str, Any]) -> str:
    """What the split hashes (pipeline.split), in the card's words, for the floor the build used."""
    floor = int((stats.get("params") or {}).get("split_opening_chars") or 0)
    if floor <= 0:
        return "the deduplicated text (copies found this way never sit in both)"
    return (
        f"each conversation's opening (its first turn, or first exchange, once that holds {floor:,} "
        "characters, else all of it: copies, and conversations that open alike, never sit in both)"
    )


def _percent(share: float) -> str:
    # A share that rounds to 0.00% is still a leak the reader must not read as none.
    if share <= 0:
        return "0%"
    return "under 0.01%" if share < 0.0001 else f"{share:.2%}"


def _leak_audit(stats: Mapping[str, Any]) -> list[str]:
    """The card's statement of the build's leak audit (pipeline.split.LeakAudit), when the stats have
    one and the variant has a validation split."""
    audit = (stats.get("totals") or {}).get("leak_audit")
    if not audit or not int((stats["totals"].get("conversations") or {}).get("val", 0)):
        return []
    floor = int(audit["min_chars"])
    which = "with any text" if floor <= 1 else f"of at least {floor:,} characters"
    return [
        f"Leak check: {int(audit['val_turns_in_train']):,} of {int(audit['val_turns_checked']):,} "
        f"validation turns {which} (as deduplication folds text) also occur as a turn in train "
        f"({_percent(float(audit['val_turns_in_train_share']))} of those turns, "
        f"{_percent(float(audit['val_characters_in_train_share']))} of their characters; "
        "`stats.json` `totals.leak_audit`). Shorter turns are not counted: greetings and one-word "
        "replies recur in any corpus.",
        "",
    ]


def dataset_card(variant: str, stats: Mapping[str, Any], sources: Sequence[CardSource]) -> str:
    """The README.md of data/dataset/<variant>/ (from its stats.json and the registry terms)."""
    totals = stats["totals"]
    conv = totals.get("conversations", {})
    n_conv = int(conv.get("train", 0)) + int(conv.get("val", 0))
    held = [s for s in sources if is_held(stats, s.name)]
    left_out = [s for s in sources if not is_held(stats, s.name)]
    hub_ids = sorted({hub_licence(s.licence) for s in held}) or ["unknown"]
    # Only splits that hold rows: `datasets.load_dataset(<dir>)` refuses the whole dataset when a
    # listed split is empty ('Instruction "validation" corresponds to no data'), which
    # `val_fraction: 0` or an empty commercial variant would otherwise cause.
    splits = [split for split, key in _SPLIT_KEYS if int(conv.get(key, 0)) > 0] or ["train"]
    meta = {
        "pretty_name": f"nanoChatGPT dialogues ({variant})",
        "language": ["en"],
        "license": hub_ids if len(hub_ids) > 1 else hub_ids[0],
        # A licence the Hub does not know needs a name and a link (else the Hub flags the card):
        # the link is LICENSE.md, written beside the card (see dataset_licence_file).
        **(
            {"license_name": licence_name([s.licence for s in _other(held)]), "license_link": LICENCE_FILE}
            if "other" in hub_ids
            else {}
        ),
        "task_categories": ["text-generation"],
        "tags": ["conversational", "dialogue", "nanochatgpt"],
        "size_categories": [size_category(n_conv)],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": SPLIT_FILES[split]} for split in splits],
            }
        ],
    }
    scope = (
        "only sources whose licence allows training a commercial model (the build refuses to write "
        "anything else)"
        if variant == "commercial"
        else "every enabled source, commercial or not"
    )
    lines = [
        _front_matter(meta),
        f"# nanoChatGPT dialogues: the `{variant}` variant",
        "",
        f"Multi-turn `<human>`/`<bot>` conversations for chat fine-tuning, holding {scope}. Built by "
        "`dvc repro build@" + variant + "` from each source's validated turn table: "
        "deduplicated across sources (copies that differ only in letter case, spacing, runs of "
        "punctuation, a turn's final punctuation mark, typographic quotes, invisible characters or "
        "Unicode compatibility forms count as one; a conversation that continues another still counts "
        "as different), split into "
        f"train and validation by a seeded hash of {_split_key(stats)}, with rejected rows kept in "
        "`quarantine.parquet` beside their reason.",
        "",
        *_leak_audit(stats),
    ]
    barred = [s for s in held if not s.commercial]
    if barred:  # the one restriction a reader must not miss (the table's `no` cells are easy to skim)
        names = ", ".join(f"{s.name} ({s.licence})" for s in barred)
        lines += [
            f"**Not for commercial use as a whole.** Part of it is under terms that do not allow training "
            f"a commercial model, or under unknown terms: {names}. The `commercial` variant leaves "
            "those sources out.",
            "",
        ]
    if not n_conv:
        lines += [
            "**This variant holds no conversations**: no enabled source has rows it may hold (see "
            "below and `stats.json`), so `datasets.load_dataset` finds no data here.",
            "",
        ]
    lines += [
        "| split | conversations | turns | characters |",
        "|---|---:|---:|---:|",
    ]
    for split, key in _SPLIT_KEYS:
        lines.append(
            f"| {split} | {conv.get(key, 0):,} | {totals.get('turns', {}).get(key, 0):,} | "
            f"{totals.get('characters', {}).get(key, 0):,} |"
        )
    lines += [
        "",
        "## Sources and licences",
        "",
        "Each row's `licence` column names the terms of the source it came from, and `commercial` says "
        "whether those terms allow training a commercial model. Passing these files on means meeting "
        f"each licence below: keep `{NOTICE_FILE}`, beside this card, with them (it holds each source's "
        "licence and copyright text as the source shipped it, or says that it shipped none) and credit "
        "the authors as each licence asks.",
        "",
        "| source | licence | commercial | conversations (train / val) | from |",
        "|---|---|---|---:|---|",
    ]
    for s in held:
        counts = _counts(stats, s.name) or {}
        c = counts.get("conversations", {})
        link = source_link(s.kind, s.location)
        what = f"{s.description} ({link})" if s.description and link else (s.description or link)
        lines.append(
            f"| {_cell(s.name)} | {_cell(s.licence)} | {'yes' if s.commercial else 'no'} | "
            f"{c.get('train', 0):,} / {c.get('val', 0):,} | {_cell(what)} |"
        )
    if left_out:
        names = ", ".join(f"{s.name} ({s.licence})" for s in left_out)
        lines += ["", f"Enabled but holding nothing in this variant: {names}."]
    lines += [
        "",
        "## Files and columns",
        "",
        "- `train.parquet`, `val.parquet`: one conversation per row. `conversation_id` (string), "
        "`messages` (list of `{role: human|bot, content}`), `context` (persona text or null), `source`, "
        "`licence`, `commercial`.",
        "- `text/`: the same conversations in nanoChatGPT's text format (one `<human> ... <endOfText>` "
        "line per turn).",
        "- `quarantine.parquet`: rows the build rejected, with the rule they broke.",
        f"- `{NOTICE_FILE}`: the licence and copyright notices of every source above.",
        "- `stats.json`: per-source counts that reconcile rows read with rows kept, filtered, "
        "quarantined and removed as duplicates.",
        "",
        "```python",
        "import datasets",
        "ds = datasets.load_dataset(",
        '    "parquet",',
        "    data_files={"
        + ", ".join(f'"{split}": "data/dataset/{variant}/{SPLIT_FILES[split]}"' for split in splits)
        + "},",
        ")",
        "```",
        "",
        f'`datasets.load_dataset("data/dataset/{variant}")` reads the same splits through this card\'s '
        "`configs`, but `datasets` caches that form by folder name, not by content: after a rebuild it "
        "can return the old rows (the `parquet` form above is cached by the files' dates).",
        "",
        f"Build settings: seed {stats['params'].get('seed')}, validation fraction "
        f"{stats['params'].get('val_fraction')}, caps {stats['params'].get('caps') or 'none'}.",
        "",
    ]
    return "\n".join(lines)


def _other(sources: Sequence[CardSource]) -> list[CardSource]:
    return [s for s in sources if hub_licence(s.licence) == "other"]


def dataset_licence_file(stats: Mapping[str, Any], sources: Sequence[CardSource]) -> str | None:
    """LICENSE.md for a variant holding data under a licence the Hub does not know (the card's
    `license_link` points here), else None: each such source with its licence and where to read it."""
    other = _other([s for s in sources if is_held(stats, s.name)])
    if not other:
        return None
    lines = [
        "# Licences of this dataset",
        "",
        "The conversations here come from several sources, each under its own terms; the `licence` "
        "column of every row names the terms of the source it came from. README.md lists every "
        "source. These sources are under licences that the Hugging Face Hub has no id for:",
        "",
        "| source | licence | commercial | where to read the terms |",
        "|---|---|---|---|",
    ]
    for s in other:
        where = source_link(s.kind, s.location) or s.description or "ask the contributor"
        lines.append(
            f"| {_cell(s.name)} | {_cell(s.licence)} | {'yes' if s.commercial else 'no'} | {_cell(where)} |"
        )
    return "\n".join([*lines, ""])


def is_held(stats: Mapping[str, Any], name: str) -> bool:
    """Whether source (or contributed file) `name` has conversations in the variant: what its card
    lists as held and its NOTICE.md (pipeline/notices.py) includes."""
    counts = _counts(stats, name) or {}
    c = counts.get("conversations", {})
    return int(c.get("train", 0)) + int(c.get("val", 0)) > 0


def stats_terms(stats: Mapping[str, Any]) -> dict[str, CardSource]:
    """Each source's terms as a variant's stats.json records them (the build's own figures, so a
    model card needs no registry): contributed files one by one, as in the dataset card. A source
    counts as commercial only as the build counts it: flagged so, under a known licence, and not
    under a licence whose name forbids commercial use."""

    def commercial(flag: Any, licence: str) -> bool:
        return licences.commercial_eligible(flag is True, licence) and not licences.is_non_commercial(licence)

    registry = {  # the flags as recorded; the rule is applied once, below, to every row
        name: CardSource(
            name=name,
            licence=str(entry.get("licence") or "unknown"),
            commercial=entry.get("commercial") is True,
            kind=str(entry.get("kind") or ""),
        )
        for name, entry in stats["sources"].items()
    }
    rows = dataset_sources(stats, registry)
    return {s.name: CardSource(s.name, s.licence, commercial(s.commercial, s.licence), s.kind) for s in rows}


@dataclass(frozen=True)
class ModelFacts:
    """What a model card states about one trained model (no timings: the card must not change
    when the same run is repeated on a busier machine)."""

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    params: int
    variant: str
    init_from: str
    iters: int
    tokens_per_iter: int
    initial_val_loss: float | None
    val_loss: float | None
    base_model: str | None = None  # the Hub repository init_from named (openai-community/gpt2, ...)


def _loss(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _trained_terms(
    source_tokens: Sequence[Mapping[str, Any]], terms: Mapping[str, CardSource]
) -> list[CardSource]:
    """The terms of each source the model was trained on; a source with no recorded terms is
    `unknown` and not commercial (a card never claims more than the build's figures back)."""
    return [
        terms.get(str(row["source"])) or CardSource(str(row["source"]), "unknown", False)
        for row in source_tokens
    ]


def model_licence(trained: Sequence[CardSource]) -> dict[str, Any]:
    """The card's licence fields: the Hub id all training sources share, else `other` with a name
    for the mix and a link to LICENSE.md (model_licence_file), which lists each source's terms."""
    ids = {hub_licence(s.licence) for s in trained}
    if not trained:
        return {"license": "unknown"}
    if len(ids) == 1 and "other" not in ids:
        return {"license": ids.pop()}
    return {
        "license": "other",
        "license_name": licence_name(sorted({s.licence for s in trained})),
        "license_link": LICENCE_FILE,
    }


def unrecorded_base(facts: ModelFacts) -> str | None:
    """The local checkpoint the weights started from (not scratch, not a Hub GPT-2), whose terms
    nothing recorded; None otherwise."""
    return facts.init_from if facts.init_from != "scratch" and not facts.base_model else None


def commercial_statement(trained: Sequence[CardSource], unknown_base: str | None = None) -> str:
    """One plain sentence: may the weights be used commercially (only if every source allows it,
    and the weights did not start from `unknown_base`, a local checkpoint of unrecorded terms)."""
    if not trained:
        return (
            "**Commercial use: unknown.** No record of the training data's sources came with this "
            "model: do not use it commercially until you know them."
        )
    barred = [s for s in trained if not s.commercial]
    if not barred and unknown_base:
        return (
            "**Commercial use: depends on the base model.** Every source of the training data allows "
            f"training a commercial model, but the weights start from `{unknown_base}`, a local "
            "checkpoint whose terms nanoChatGPT has no record of: its licence decides."
        )
    if not barred:
        return (
            "**Commercial use: allowed.** Every source of the training data allows training a commercial "
            "model, so these weights may be used commercially, under the terms of each source's licence "
            "(keep the copyright notices of MIT / BSD / Apache sources and credit CC-BY sources)."
        )
    names = ", ".join(f"{s.name} ({s.licence})" for s in barred)
    return (
        "**Commercial use: not allowed.** Part of the training data is under terms that do not allow "
        f"commercial use, or under unknown terms: {names}. Do not use these weights commercially."
    )


# How to encode untrusted message text for this model with a transformers tokenizer, shown in the
# model card and run by the tests (tests/test_hf.py), which check its ids against render()'s.
SAFE_ENCODING = """\
import unicodedata

def encode(text):  # cleaned as nanoChatGPT does (LF line ends, NFC, stripped); markers stay text
    text = unicodedata.normalize("NFC", text.replace("\\r\\n", "\\n").replace("\\r", "\\n")).strip()
    return tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

def chat_ids(persona, turns):  # turns: [("user" or "assistant", text), ...], the user's last
    ids = [50256] + encode(persona or "")  # <|endoftext|>, then the persona as plain text
    for role, text in turns:  # <human> or <bot>, the text, <endOfText>
        ids += [50257 if role == "user" else 50258] + encode(text) + [50259]
    return ids + [50258]  # <bot>: the model's reply comes next
"""


def model_card(
    facts: ModelFacts,
    source_tokens: Sequence[Mapping[str, Any]],
    terms: Mapping[str, CardSource] | None = None,
    notice: bool = False,
) -> str:
    """The README.md of model/hf/: architecture, training run, data make-up and licences, chat
    format, usage. `notice`: NOTICE.md (the training data's licence texts) sits beside it.

    `source_tokens` are the rows of data/tokens/<variant>/sources.csv (source, tokens,
    loss_tokens, conversations), the training split's make-up; `terms` each source's licence and
    commercial flag (stats_terms of data/dataset/<variant>/stats.json). The card travels alone
    (`hf upload` of model/hf), so it states the licences itself rather than point at the dataset.
    """
    trained = _trained_terms(source_tokens, terms or {})
    unknown_base = unrecorded_base(facts)
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "language": ["en"],
        **(model_licence(trained) if not unknown_base else {"license": "unknown"}),
        **({"base_model": facts.base_model} if facts.base_model else {}),
        "tags": ["gpt2", "conversational", "nanochatgpt"],
    }
    if facts.init_from == "scratch":
        start = "random weights"
    elif facts.base_model:
        start = f"`{facts.init_from}` ([{facts.base_model}](https://huggingface.co/{facts.base_model}))"
    else:
        start = f"`{facts.init_from}`"
    lines = [
        _front_matter(meta),
        "# nanoChatGPT chat model",
        "",
        f"A GPT-2 architecture chat model ({facts.params / 1e6:.1f}M parameters: {facts.n_layer} layers, "
        f"{facts.n_head} heads, width {facts.n_embd}, context {facts.block_size} tokens), trained from "
        f"{start} on the `{facts.variant}` dataset variant by nanoChatGPT's `train` stage. The loss counts "
        "only what the bot says (and the marker that ends its turn), not the human turns.",
        "",
        "| steps | tokens seen | val loss at start | val loss at end |",
        "|---:|---:|---:|---:|",
        f"| {facts.iters:,} | {facts.iters * facts.tokens_per_iter:,} | {_loss(facts.initial_val_loss)} | "
        f"{_loss(facts.val_loss)} |",
        "",
        "## Training data and licences (train split)",
        "",
        commercial_statement(trained, unknown_base),
        "",
        *(
            [
                f"`{NOTICE_FILE}`, beside this card, holds the licence and copyright text each source of "
                "the training variant shipped (or says that it shipped none): keep it with the weights.",
                "",
            ]
            if notice
            else []
        ),
        *(
            [f"The weights start from `{facts.init_from}`: its own licence applies to them too.", ""]
            if facts.init_from != "scratch"
            else []
        ),
        "Each row's `licence` names the terms of that source's data, and `commercial` says whether "
        "those terms allow training a commercial model.",
        "",
        "| source | licence | commercial | tokens | bot tokens (in the loss) | conversations |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row, t in zip(source_tokens, trained, strict=True):
        lines.append(
            f"| {_cell(row['source'])} | {_cell(t.licence)} | {'yes' if t.commercial else 'no'} | "
            f"{int(row['tokens']):,} | {int(row['loss_tokens']):,} | {int(row['conversations']):,} |"
        )
    lines += [
        "",
        "## Chat format",
        "",
        "`<|endoftext|>[persona]<human>text<endOfText><bot>text<endOfText>...`: the markers are "
        "special tokens (ids 50257-50259), the persona is plain text before the first turn, and a "
        "reply ends with `<endOfText>` (generation_config.json lists it as an end token). The "
        "tokenizer's chat template renders exactly this for NFC text: `system` messages are the "
        "persona, `user` turns are `<human>`, `assistant` turns are `<bot>`. `nanochatgpt serve` "
        "normalises each message to Unicode NFC first and the template cannot, so normalise the "
        'contents (`unicodedata.normalize("NFC", ...)`) to get the ids serve uses.',
        "",
        "```python",
        "import unicodedata",
        "",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'tok = AutoTokenizer.from_pretrained("model/hf")',
        'model = AutoModelForCausalLM.from_pretrained("model/hf")',
        "messages = [",
        '    {"role": "system", "content": "You are a cheerful librarian."},',
        '    {"role": "user", "content": "Hi! What do you do?"},',
        "]",
        'messages = [{**m, "content": unicodedata.normalize("NFC", m["content"])} for m in messages]',
        'ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", '
        "return_dict=True)",
        "out = model.generate(**ids, max_new_tokens=48, do_sample=True, top_k=50)",
        'print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
        'For a batch of conversations, pad on the left (`tok.padding_side = "left"`, then '
        "`padding=True`): each prompt must end where its reply begins. The tokenizer pads on the right "
        "by default, which a plain forward pass (training, scoring) needs.",
        "",
        "### Untrusted text",
        "",
        "A Hugging Face tokenizer turns marker text inside a message into the marker itself (a typed "
        "`<bot>` becomes id 50258), in `apply_chat_template` as in `tok(text)`, so untrusted text "
        "could forge a turn there. nanoChatGPT's own engine (`nanochatgpt chat`, `nanochatgpt serve`) "
        "encodes message text as ordinary text and never does. To do the same with transformers, "
        "encode each message on its own with `split_special_tokens=True` and put the markers in as "
        "ids (this gives the ids nanoChatGPT's engine renders):",
        "",
        "```python",
        "import torch",
        SAFE_ENCODING.rstrip("\n"),
        "",
        'ids = torch.tensor([chat_ids("You are a cheerful librarian.", [("user", "What does <bot> do?")])])',
        "out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=48, do_sample=True)",
        "print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))",
        "```",
        "",
    ]
    return "\n".join(lines)


def model_licence_file(
    source_tokens: Sequence[Mapping[str, Any]],
    terms: Mapping[str, CardSource],
    unknown_base: str | None = None,
) -> str | None:
    """LICENSE.md for a model whose training sources share no single licence the Hub knows (the
    card's `license_link` points here), else None: each source's terms and the commercial verdict."""
    trained = _trained_terms(source_tokens, terms)
    if not trained or model_licence(trained)["license"] != "other":
        return None
    lines = [
        "# Licences of this model's training data",
        "",
        "The model was trained on conversations from several sources, each under its own terms:",
        "",
        "| source | licence | commercial |",
        "|---|---|---|",
        *(f"| {_cell(s.name)} | {_cell(s.licence)} | {'yes' if s.commercial else 'no'} |" for s in trained),
        "",
        commercial_statement(trained, unknown_base),
        "",
    ]
    return "\n".join(lines)
