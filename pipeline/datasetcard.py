"""The dataset card: the README.md (and, for a licence the Hub has no id for, the LICENSE.md) of
data/dataset/<variant>/, from the variant's stats.json and each source's registry terms.

Its YAML header is the Hub's metadata, and its `configs:` list names the files of each split, so
that `datasets.load_dataset("data/dataset/<variant>")` and the Hub's viewer read train and
validation from the card, not from a guess based on file names. (Locally, that form is cached by
folder name, not content, so the card's own recipe names the parquet files instead.) The pieces it
shares with the model card (licence ids, source rows, Markdown) are in pipeline/cards.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.cards import (
    LICENCE_FILE,
    NOTICE_FILE,
    CardSource,
    cell,
    credit_text,
    front_matter,
    hub_licence,
    inline_name,
    licence_name,
    markdown_text,
    source_link,
)
from pipeline.sources import licences

SPLIT_FILES = {"train": "train.parquet", "validation": "val.parquet"}
_SPLIT_KEYS = (("train", "train"), ("validation", "val"))  # Hub split name, stats.json key


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for n rows (its whole ladder: a value off it is invalid)."""
    bounds = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    value = 1_000
    for i, label in enumerate(bounds):
        if n < value:
            return "n<1K" if i == 0 else f"{bounds[i - 1]}<n<{label}"
        value *= 10
    return "n>1T"


def _code(text: str) -> str:
    """Markdown code span of any text: the fence is longer than any run of backticks inside it."""
    run = max((len(r) for r in re.findall(r"`+", text)), default=0)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{'`' * (run + 1)}{pad}{text}{pad}{'`' * (run + 1)}"


def contributed_file(location: str, part: str, terms: Mapping[str, Any]) -> str:
    """How the card, its LICENSE.md and NOTICE.md describe contributed file `part` (`<entry>/<stem>`):
    its sidecar's description (stats.json `parts`, escaped as Markdown on one line) and where the
    file is; a part without one (no `description:`, or stats from before it was recorded) by its
    place alone."""
    files = f"{location}/{part.split('/', 1)[-1]}.*"
    where = f"contributed file {_code(files)}"
    said = terms.get("description")
    if isinstance(said, str) and said.strip():
        return f"{markdown_text(said)} — {where}"
    return f"{where} (terms in its sidecar)"


def dataset_sources(stats: Mapping[str, Any], registry: Mapping[str, CardSource]) -> list[CardSource]:
    """The card rows: each enabled source with data in the variant; contributed files one by one
    (each carries its own licence and description); registry terms from `registry` (by source name)."""
    rows: list[CardSource] = []
    for name, entry in stats["sources"].items():
        spec = registry.get(name) or CardSource(name=name, licence=entry["licence"], commercial=False)
        if "parts" in entry:  # contrib: one row per contributed file, with its sidecar's terms
            for part, terms in entry["parts"].items():
                rows.append(
                    CardSource(
                        name=part,
                        licence=terms["licence"],
                        commercial=bool(terms["commercial"]),
                        kind="contrib",
                        description=contributed_file(spec.location, part, terms),
                        attribution=str(terms.get("attribution") or "").strip(),
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
        "characters; else, for a prompt and its answer alone, the prompt; else all of it: copies, "
        "conversations that open alike and short answers to one short prompt never sit in both)"
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
    turns, chars = (
        # From the counts, not stats.json's shares: those have 6 decimals, and a leak under 5e-7 of
        # a huge val split (1 turn of 3M) rounds to 0.0 there, which the card would call "0%".
        int(audit[f"val_{what}_in_train"]) / max(int(audit[f"val_{what}_checked"]), 1)
        for what in ("turns", "characters")
    )
    return [
        f"Leak check: {int(audit['val_turns_in_train']):,} of {int(audit['val_turns_checked']):,} "
        f"validation turns {which} (as deduplication folds text) also occur as a turn in train "
        f"({_percent(turns)} of those turns, {_percent(chars)} of their characters; "
        "`stats.json` `totals.leak_audit`). Shorter turns are not counted: greetings and one-word "
        "replies recur in any corpus.",
        "",
    ]


def _why_left_out(variant: str, source: CardSource) -> str:
    """Why an enabled source holds nothing here. A BSD source flagged `commercial: false` read
    "chatterbot (BSD-3-Clause)" in the commercial card: its licence allows commercial use, so a
    reader could not tell that the flag, not the licence, kept it out."""
    if variant == "commercial" and not source.commercial:
        bar = licences.licence_bar(source.licence)
        if bar is None:
            return "flagged `commercial: false`"
        # The line names the licence just before: "nc (CC-BY-NC-4.0; the licence CC-BY-NC-4.0
        # forbids commercial use)" said it twice
        named = f"the licence {source.licence.strip()} "
        return f"its licence {bar.words.removeprefix(named)}" if bar.words.startswith(named) else bar.words
    return "no conversation kept (its counts are in `stats.json`)"


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
        front_matter(meta),
        f"# nanoChatGPT dialogues: the `{variant}` variant",
        "",
        f"Multi-turn `<human>`/`<bot>` conversations for chat fine-tuning, holding {scope}. Built by "
        "`dvc repro build@" + variant + "` from each source's validated turn table: "
        "deduplicated across sources (copies that differ only in letter case, spacing, runs of "
        "punctuation, a turn's final punctuation mark, typographic quotes or dashes, invisible "
        "characters or Unicode compatibility forms count as one; a conversation that continues another still counts "
        "as different), split into "
        f"train and validation by a seeded hash of {_split_key(stats)}, with rejected rows kept in "
        "`quarantine.parquet` beside their reason.",
        "",
        *_leak_audit(stats),
    ]
    barred = [s for s in held if not s.commercial]
    if barred:  # the one restriction a reader must not miss (the table's `no` cells are easy to skim)
        names = ", ".join(f"{inline_name(s.name)} ({inline_name(s.licence)})" for s in barred)
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
        "licence and copyright text as the source shipped it, or this repository's copy of it where the "
        "source shipped none, or says that there is none) and credit "
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
        commercial = "yes" if s.commercial else "no"
        lines.append(
            f"| {cell(markdown_text(s.name))} | {cell(_licence_cell(s))} | {commercial} | "
            f"{c.get('train', 0):,} / {c.get('val', 0):,} | {cell(what)} |"
        )
    if left_out:
        names = ", ".join(
            f"{inline_name(s.name)} ({inline_name(s.licence)}; {_why_left_out(variant, s)})" for s in left_out
        )
        lines += ["", f"Enabled but holding nothing in this variant: {names}."]
    lines += [
        "",
        "## Files and columns",
        "",
        "- `train.parquet`, `val.parquet`: one conversation per row. `conversation_id` (string), "
        "`messages` (list of `{role: human|bot, content}`), `context` (persona text or null), `source`, "
        "`licence`, `commercial`. nanoChatGPT's model's chat template takes OpenAI's roles (it refuses "
        "`human`): given `human` as `user`, `bot` as `assistant` and `context` as a `system` message "
        "before them (when it is not null), it renders a row to the ids nanoChatGPT trains on.",
        # the card travels alone (hf upload): a reader of text/ has no docs/contracts.md to say
        # which of a line's backslashes are escapes and that an escaped marker is typed text
        "- `text/`: the same conversations in nanoChatGPT's text format: one `<human> ... <endOfText>` "
        "or `<bot> ... <endOfText>` line per turn, a persona as a plain first line, a blank line after "
        "each conversation. In a line's text a newline is written `\\n`, a backslash `\\\\` and "
        "marker text `<\\bot>` (so that no reader finds a turn boundary inside text); nanoChatGPT's "
        "`pipeline.datasetformat.parse_text` reads it back exactly.",
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


def _licence_cell(source: CardSource) -> str:
    """The card's licence cell: the licence id, and beside it the credit its sidecar's
    `attribution:` gives (whole: an attribution licence asks for it as given; NOTICE.md has it too)."""
    licence = markdown_text(source.licence)
    return f"{licence} (credit: {credit_text(source.attribution)})" if source.attribution else licence


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
            f"| {cell(markdown_text(s.name))} | {cell(markdown_text(s.licence))} | {'yes' if s.commercial else 'no'} | {cell(where)} |"
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
    counts as commercial only as the build counts it (licences.commercial_eligible): flagged so,
    under a known licence that does not forbid commercial use."""

    def commercial(flag: Any, licence: str) -> bool:
        return licences.commercial_eligible(flag is True, licence)

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
