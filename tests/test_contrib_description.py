"""A contributed file's sidecar `description:` travels with its terms (normalize report `by_source`
-> stats.json `parts` -> the dataset card, LICENSE.md and NOTICE.md), escaped wherever it is shown:
it is the contributor's text, and a card or a terminal must not take it for syntax or commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline import cards, datasetcard
from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig
from pipeline.sources.download import download
from pipeline.sources.normalize import normalize_source, write_outputs
from pipeline.sources.registry import load_registry
from pipeline.sources.table import render, source_rows

REGISTRY = {
    "contrib": {"kind": "contrib", "licence": "per-file", "commercial": False, "location": "data/contrib"}
}
# A sidecar's description is YAML text: its escapes give any character, ESC and bidi overrides too.
HOSTILE = "Chats by Ada | <b>bold</b> **x** [l](javascript:x)\\nnext line \\e[31mred\\e[0m \\u202eevil"


def _contribute(root: Path, stem: str, sidecar: str) -> None:
    (root / "data/contrib" / f"{stem}.txt").write_text(
        f"<human> hello from {stem} <endOfText>\n<bot> hi {stem} <endOfText>\n"
    )
    (root / "data/contrib" / f"{stem}.yaml").write_text(sidecar)


def _normalize(root: Path) -> dict:
    """download@contrib and normalize@contrib as the stages run them; the report as written."""
    spec = load_registry(root / "sources.yaml")["contrib"]
    result = normalize_source(spec, download(spec, root), {})
    paths = write_outputs(result, "contrib", root)
    return json.loads(paths["report"].read_text(encoding="utf-8"))


def _build(root: Path, variant: str = "full") -> Path:
    build_variant(root, ["contrib"], REGISTRY, BuildConfig(variant=variant, val_fraction=0.0))
    return root / "data/dataset" / variant


def test_the_sidecar_description_reaches_the_report_stats_card_and_notice(root: Path) -> None:
    """The card and NOTICE.md said only "contributed file `data/contrib/<stem>.*` (terms in its
    sidecar)", whatever the contributor wrote in `description:`."""
    _contribute(
        root, "mine", 'licence: MIT-0\ncommercial: true\ndescription: "Support chats I wrote myself"\n'
    )
    _contribute(root, "plain", "licence: MIT\ncommercial: true\n")  # no description
    report = _normalize(root)
    assert report["by_source"]["contrib/mine"]["description"] == "Support chats I wrote myself"
    assert "description" not in report["by_source"]["contrib/plain"]
    out = _build(root)
    parts = json.loads((out / "stats.json").read_text())["sources"]["contrib"]["parts"]
    assert parts["contrib/mine"]["description"] == "Support chats I wrote myself"
    assert "description" not in parts["contrib/plain"]
    mine = "Support chats I wrote myself — contributed file `data/contrib/mine.*`"
    plain = "contributed file `data/contrib/plain.*` (terms in its sidecar)"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"| contrib/mine | MIT-0 | yes | 1 / 0 | {mine} |" in card
    assert f"| contrib/plain | MIT | yes | 1 / 0 | {plain} |" in card
    # MIT-0 has no Hub id: LICENSE.md says where its terms are, in the same words
    assert f"| contrib/mine | MIT-0 | yes | {mine} |" in (out / "LICENSE.md").read_text(encoding="utf-8")
    notice = (out / "NOTICE.md").read_text(encoding="utf-8")
    assert f"- description: {mine}\n" in notice and f"- description: {plain}\n" in notice


def test_stats_from_a_report_without_descriptions_keep_the_fixed_text(root: Path) -> None:
    """A normalize report written before descriptions were recorded still builds, as before."""
    _contribute(root, "mine", 'licence: MIT\ncommercial: true\ndescription: "Support chats"\n')
    _normalize(root)
    path = root / "data/normalized/contrib.report.json"
    old = json.loads(path.read_text())
    for entry in old["by_source"].values():
        del entry["description"]
    path.write_text(json.dumps(old))
    out = _build(root)
    parts = json.loads((out / "stats.json").read_text())["sources"]["contrib"]["parts"]
    assert "description" not in parts["contrib/mine"]
    fixed = "contributed file `data/contrib/mine.*` (terms in its sidecar)"
    assert f"| contrib/mine | MIT | yes | 1 / 0 | {fixed} |" in (out / "README.md").read_text(
        encoding="utf-8"
    )


def test_a_hostile_description_stays_one_inert_row(root: Path) -> None:
    """Pipes, a line break, HTML and Markdown, ESC and a bidi override in a description: the card
    row stays one row of five cells, nothing renders as markup, no control character is written,
    and NOTICE.md's line is one line too."""
    _contribute(root, "odd", f'licence: MIT\ncommercial: true\ndescription: "{HOSTILE}"\n')
    report = _normalize(root)
    # recorded as written (the JSON escapes it)
    assert "\x1b" in report["by_source"]["contrib/odd"]["description"]
    out = _build(root)
    card = (out / "README.md").read_text(encoding="utf-8")
    notice = (out / "NOTICE.md").read_text(encoding="utf-8")
    for text in (card, notice):
        assert "\x1b" not in text and "\u202e" not in text
        assert all(c.isprintable() for c in text.replace("\n", "")), "a control character got through"
    rows = [line for line in card.splitlines() if line.startswith("| contrib/odd |")]
    assert len(rows) == 1
    assert len(re.findall(r"(?<!\\)\|", rows[0])) == 6  # the row's own pipes: 5 cells
    assert (
        "Chats by Ada \\| \\<b>bold\\</b> \\*\\*x\\*\\* \\[l\\](javascript:x) next line "
        "\\\\x1b\\[31mred\\\\x1b\\[0m \\\\u202eevil — contributed file `data/contrib/odd.*`"
    ) in rows[0]
    line = next(x for x in notice.splitlines() if x.startswith("- description: "))
    assert line.endswith("\\\\u202eevil — contributed file `data/contrib/odd.*`")
    assert "next line" in line  # the line break is a space, not the end of the list item


def test_markdown_text_keeps_one_line_and_cuts_a_long_description() -> None:
    long = "word " * 200
    shown = cards.markdown_text(long)
    assert len(shown) == cards.DESCRIPTION_MAX and shown.endswith("…")
    assert cards.markdown_text("a\r\nb\u2028c\x85d\te") == "a b c d e"
    assert cards.markdown_text("x\x00y\u200bz") == "x\\\\x00y\\\\u200bz"
    assert cards.markdown_text("a_b & c~ `d`") == "a\\_b \\& c\\~ \\`d\\`"
    # stats.json with a non-text description (hand-edited) is shown by its place alone
    assert datasetcard.contributed_file("data/contrib", "contrib/x", {"description": 3}).startswith(
        "contributed file"
    )


def test_sources_table_shows_a_description_on_one_line_without_control_characters(root: Path) -> None:
    """`nanochatgpt sources --reasons` shows a file's description as its reason: a line break in it
    split the table row, and an ESC reached the terminal."""
    _contribute(root, "odd", f'licence: MIT\ncommercial: false\ndescription: "{HOSTILE}"\n')
    rows, _ = source_rows()
    odd = next(r for r in rows if r["name"] == "contrib/odd")
    assert "\x1b" in odd["reason"]  # --json shows the text as written (JSON escapes it)
    table = render(rows, ("name", "reason"))
    assert len(table.splitlines()) == len(rows) + 1
    assert "\x1b" not in table and "\u202e" not in table
    assert "next line \\x1b[31mred\\x1b[0m \\u202eevil" in table


def test_a_description_cut_inside_an_emoji_is_written_escaped(root: Path) -> None:
    """YAML's "\\ud83d" is a lone surrogate, which UTF-8 JSON cannot hold: the report writes it as
    its escape instead of failing normalize@contrib with a UnicodeEncodeError."""
    _contribute(root, "cut", 'licence: MIT\ncommercial: true\ndescription: "Chats \\ud83d"\n')
    assert _normalize(root)["by_source"]["contrib/cut"]["description"] == "Chats \\ud83d"
    card = (_build(root) / "README.md").read_text(encoding="utf-8")
    assert "| Chats \\\\ud83d — contributed file `data/contrib/cut.*` |" in card


def test_markdown_text_keeps_the_joiners_of_a_script_or_an_emoji() -> None:
    """The zero-width (non-)joiner is part of writing: a Persian or Hindi description, or an emoji
    family, read `می\\u200cخواهم` and `👨\\u200d👩\\u200d👧` in the card, where other format
    characters (a bidi override, U+200B) are still escaped."""
    persian, family = "می\u200cخواهم", "👨\u200d👩\u200d👧"
    assert cards.markdown_text(f"{persian} {family}") == f"{persian} {family}"
    assert cards.markdown_text("a\u200bb\u202ec") == "a\\\\u200bb\\\\u202ec"


def test_markdown_text_cuts_before_a_character_it_would_split() -> None:
    """The cut at DESCRIPTION_MAX fell inside what a reader sees as one character: `é` written as
    `e` + a combining accent lost its accent, an emoji family left `👨` and a dangling joiner, a
    flag a lone regional indicator, a thumbs-up its skin tone."""
    keep = cards.DESCRIPTION_MAX - 2  # characters before the one the cut falls in
    for whole in ("e\u0301", "👨\u200d👩\u200d👧", "🇫🇷", "👍🏽"):
        assert cards.markdown_text("x" * keep + whole + "tail") == "x" * keep + "…", whole
    # two flags: the cut between them keeps the first whole
    assert cards.markdown_text("x" * (keep - 2) + "🇫🇷🇩🇪" + "tail") == "x" * (keep - 2) + "🇫🇷…"


def test_a_contributed_file_whose_name_is_markdown_is_named_as_it_is(root: Path) -> None:
    """A file stem is the contributor's too: `a*b*c` was written into the card's name column as
    is, where it renders as `a`, an italic `b` and `c`."""
    _contribute(root, "my*chat*log", "licence: MIT\ncommercial: true\ndescription: chats\n")
    _normalize(root)
    card = (_build(root) / "README.md").read_text(encoding="utf-8")
    assert "| contrib/my\\*chat\\*log | MIT | yes | 1 / 0 | chats — contributed file " in card
