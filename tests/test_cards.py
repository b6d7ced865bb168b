"""Dataset and model cards (pipeline/cards.py, datasetcard.py, modelcard.py): Hub metadata that parses,
tables that do not break."""

from __future__ import annotations

import re

import pytest
import yaml

from pipeline import cards, datasetcard, modelcard


@pytest.mark.parametrize(
    ("licence", "hub"),
    [
        ("MIT", "mit"),
        ("BSD-3-Clause", "bsd-3-clause"),
        (" CC-BY-NC-4.0 ", "cc-by-nc-4.0"),
        ("ODC-By-1.0", "odc-by"),
        ("unknown", "unknown"),
        ("NOASSERTION", "unknown"),
        ("Custom-Research-Terms", "other"),
        ("CC-BY-SA-2.0", "other"),  # a Creative Commons version the Hub has no id for
        # Hub ids that once fell to `other`
        ("GPL-2.0", "gpl-2.0"),
        ("LGPL-2.1", "lgpl-2.1"),
        ("CC-BY-ND-4.0", "cc-by-nd-4.0"),
        ("CC-BY-NC-SA-2.0", "cc-by-nc-sa-2.0"),
        ("Zlib", "zlib"),
        ("EPL-2.0", "epl-2.0"),
        ("BSL-1.0", "bsl-1.0"),
        ("OFL-1.1", "ofl-1.1"),
        ("BSD-3-Clause-Clear", "bsd-3-clause-clear"),
        ("llama3.1", "llama3.1"),
        # SPDX's GNU suffixes name the version the Hub knows
        ("GPL-3.0-only", "gpl-3.0"),
        ("GPL-2.0-or-later", "gpl-2.0"),
        ("GPL-2.0+", "gpl-2.0"),
        ("LGPL-2.1-or-later", "lgpl-2.1"),
        ("AGPL-3.0-only", "agpl-3.0"),
        # a GNU version the Hub lacks takes its family's id
        ("LGPL-2.0-only", "lgpl"),
        ("GPL-1.0-or-later", "gpl"),
        ("GFDL-1.3-no-invariants-only", "gfdl"),
        # a listed licence by its spelled-out name is its id, not `other`
        ("MIT License", "mit"),
        ("Apache License, Version 2.0", "apache-2.0"),
        ("CC BY 4.0", "cc-by-4.0"),
        ("Creative Commons Attribution-ShareAlike 4.0 International", "cc-by-sa-4.0"),
    ],
)
def test_hub_licence_ids(licence, hub):
    assert cards.hub_licence(licence) == hub


@pytest.mark.parametrize(
    ("n", "bucket"),
    [
        (0, "n<1K"),
        (999, "n<1K"),
        (1_000, "1K<n<10K"),
        (250_000, "100K<n<1M"),
        (10**7, "10M<n<100M"),  # the Hub has no "n>10M": its ladder goes on to n>1T
        (10**8, "100M<n<1B"),
        (10**12, "n>1T"),
    ],
)
def test_size_categories(n, bucket):
    assert datasetcard.size_category(n) == bucket


def test_source_links():
    assert (
        cards.source_link("hf_dataset", "OpenAssistant/oasst1")
        == "https://huggingface.co/datasets/OpenAssistant/oasst1"
    )
    assert cards.source_link("package", "chitchat_dataset") == "https://pypi.org/project/chitchat-dataset/"
    assert cards.source_link("url", "https://example.org/a.zip") == "https://example.org/a.zip"


def test_table_cells_survive_any_text():
    """A sidecar's licence or a registry description is free text: CR line ends (Markdown ends a
    line at a lone CR too, and CRLF left a CR) must not split the row, nor may a pipe."""
    for text in ("a\r\nb", "a\rb", "a\r", "a|b", "a\\|b"):
        cell = cards.cell(text)
        assert "\r" not in cell and "\n" not in cell, (text, cell)
        assert all(cell[i - 1] == "\\" for i, ch in enumerate(cell) if ch == "|"), (text, cell)


def test_a_contributed_file_name_with_backticks_keeps_its_code_span():
    parts = {"contrib/a`b": {"licence": "MIT", "commercial": True, "conversations": {"train": 1, "val": 0}}}
    stats = stats_of(contrib=("per-file", 1, 0, parts))
    registry = {"contrib": cards.CardSource("contrib", "per-file", False, "contrib", "data/contrib")}
    card = datasetcard.dataset_card("full", stats, datasetcard.dataset_sources(stats, registry))
    assert "``data/contrib/a`b.*``" in card


def stats_of(**sources) -> dict:
    entries = {}
    for name, (licence, train, val, parts) in sources.items():
        entry = {"licence": licence, "conversations": {"train": train, "val": val}}
        if parts:
            entry["parts"] = parts
        entries[name] = entry
    return {
        "params": {"seed": 7, "val_fraction": 0.1, "caps": {}},
        "sources": entries,
        "totals": {"conversations": {"train": 12, "val": 2}, "turns": {"train": 30, "val": 4}},
    }


def test_card_header_parses_and_lists_each_held_licence_once():
    parts = {
        "contrib/notes": {"licence": "CC-BY-4.0", "commercial": True, "conversations": {"train": 2, "val": 0}}
    }
    stats = stats_of(
        a=("MIT", 10, 2, None),
        b=("MIT", 0, 0, None),
        nc=("CC-BY-NC-4.0", 0, 0, None),
        contrib=("per-file", 2, 0, parts),
    )
    registry = {
        "a": cards.CardSource("a", "MIT", True, "package", "a_pkg", "A | corpus\nwith lines"),
        "b": cards.CardSource("b", "MIT", True),
        "nc": cards.CardSource("nc", "CC-BY-NC-4.0", False, "hf_dataset", "org/nc"),
        "contrib": cards.CardSource("contrib", "per-file", False, "contrib", "data/contrib"),
    }
    card = datasetcard.dataset_card("commercial", stats, datasetcard.dataset_sources(stats, registry))
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["license"] == ["cc-by-4.0", "mit"]
    assert header["configs"][0]["data_files"] == [
        {"split": "train", "path": "train.parquet"},
        {"split": "validation", "path": "val.parquet"},
    ]
    rows = [line for line in card.splitlines() if line.startswith("| a |")]
    assert len(rows) == 1 and rows[0].count(" | ") == 4  # the pipe in the description is escaped
    assert "A \\| corpus with lines (https://pypi.org/project/a-pkg/)" in rows[0]
    assert "| contrib/notes | CC-BY-4.0 | yes | 2 / 0 |" in card
    assert (
        "holding nothing in this variant: b (MIT; no conversation kept (its counts are in `stats.json`)), "
        "nc (CC-BY-NC-4.0; its licence forbids commercial use)"
    ) in card


def test_the_left_out_line_says_why_each_source_holds_nothing():
    """A BSD source flagged `commercial: false` in sources.yaml read "bot (BSD-3-Clause)" in the
    commercial card, as if its licence kept it out; the flag, the licence, unknown terms or no row
    kept are now told apart (a walkthrough's finding)."""
    stats = stats_of(
        a=("MIT", 10, 2, None),
        bot=("BSD-3-Clause", 0, 0, None),
        odd=("unknown", 0, 0, None),
    )
    registry = {
        "a": cards.CardSource("a", "MIT", True),
        "bot": cards.CardSource("bot", "BSD-3-Clause", False),
        "odd": cards.CardSource("odd", "unknown", False),
    }
    card = datasetcard.dataset_card("commercial", stats, datasetcard.dataset_sources(stats, registry))
    assert "bot (BSD-3-Clause; flagged `commercial: false`)" in card
    assert "odd (unknown; the licence is unknown)" in card
    full = datasetcard.dataset_card("full", stats, datasetcard.dataset_sources(stats, registry))
    assert "bot (BSD-3-Clause; no conversation kept (its counts are in `stats.json`))" in full


def test_a_full_card_holding_non_commercial_data_says_so_up_front():
    """The model card says "not allowed" in bold; the dataset card only had a `no` in a table cell."""
    stats = stats_of(a=("MIT", 10, 2, None), nc=("CC-BY-NC-4.0", 5, 1, None))
    registry = {
        "a": cards.CardSource("a", "MIT", True, "package", "a_pkg"),
        "nc": cards.CardSource("nc", "CC-BY-NC-4.0", False, "hf_dataset", "org/nc"),
    }
    card = datasetcard.dataset_card("full", stats, datasetcard.dataset_sources(stats, registry))
    intro = card.split("| split |")[0]  # before the first table
    assert "**Not for commercial use as a whole.**" in intro and "nc (CC-BY-NC-4.0)" in intro
    assert "a (MIT)" not in intro
    commercial = stats_of(a=("MIT", 10, 2, None))
    clean = datasetcard.dataset_card(
        "commercial", commercial, datasetcard.dataset_sources(commercial, registry)
    )
    assert "Not for commercial use" not in clean


def facts_of(**changes) -> modelcard.ModelFacts:
    base = dict(
        n_layer=4,
        n_head=4,
        n_embd=128,
        block_size=128,
        params=7_232_256,
        variant="commercial",
        init_from="scratch",
        iters=800,
        tokens_per_iter=1536,
        initial_val_loss=10.85281,
        val_loss=5.99262,
    )
    return modelcard.ModelFacts(**{**base, **changes})


def token_row(source: str, tokens: int = 100, loss_tokens: int = 40, conversations: int = 3) -> dict:
    """A row of data/tokens/<variant>/sources.csv as csv.DictReader gives it (strings)."""
    return {
        "source": source,
        "tokens": str(tokens),
        "loss_tokens": str(loss_tokens),
        "conversations": str(conversations),
    }


def header_of(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def test_model_card_states_the_run_and_the_data_without_timings():
    rows = [token_row("chitchat", 2994064, 1385517, 3783), token_row("contrib/a|b", 234, 138, 3)]
    terms = {
        "chitchat": cards.CardSource("chitchat", "MIT", True),
        "contrib/a|b": cards.CardSource("contrib/a|b", "MIT", True),
    }
    card = modelcard.model_card(facts_of(), rows, terms)
    header = header_of(card)
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "text-generation"
    assert "7.2M parameters: 4 layers, 4 heads, width 128, context 128 tokens" in card
    assert "trained from random weights on the `commercial` dataset variant" in card
    assert "| 800 | 1,228,800 | 10.8528 | 5.9926 |" in card
    # whose val loss: the trainer's sample of the split, not evaluate's whole-split figure (they
    # differ by the sample's noise, and the card travels without model/eval beside it)
    assert "samples evenly from the val split" in card and "`model/eval/metrics.json`" in card
    assert "| chitchat | MIT | yes | 2,994,064 | 1,385,517 | 3,783 |" in card
    assert "| contrib/a\\|b | MIT | yes | 234 | 138 | 3 |" in card
    assert "tokens/s" not in card and "seconds" not in card


def full_stats() -> dict:
    """stats.json of a `full` variant: an MIT source, a CC-BY-NC one, and contributed files."""
    parts = {
        "contrib/mine": {"licence": "CC0-1.0", "commercial": True, "conversations": {"train": 2, "val": 0}},
        "contrib/lab": {"licence": "Lab Terms", "commercial": False, "conversations": {"train": 1, "val": 0}},
    }
    stats = stats_of(
        chitchat=("MIT", 10, 1, None), nc=("CC-BY-NC-4.0", 5, 1, None), contrib=("per-file", 3, 0, parts)
    )
    stats["sources"]["chitchat"].update(commercial=True, kind="package")
    stats["sources"]["nc"].update(commercial=False, kind="hf_dataset")
    stats["sources"]["contrib"].update(commercial=False, kind="contrib")
    return stats


def test_a_model_trained_on_non_commercial_data_says_so():
    """The card travels alone (`hf upload` of model/hf): it must carry the training data's licences
    and say plainly that a model trained on CC-BY-NC data is not for commercial use. It once had no
    `license:`, no licence column, and pointed at a dataset card that does not travel with it."""
    terms = datasetcard.stats_terms(full_stats())
    rows = [token_row("chitchat"), token_row("nc"), token_row("contrib/mine"), token_row("contrib/lab")]
    card = modelcard.model_card(facts_of(variant="full"), rows, terms)
    header = header_of(card)
    assert header["license"] == "other"
    assert header["license_name"] == "cc-by-nc-4.0-and-cc0-1.0-and-lab-terms-and-mit"
    assert header["license_link"] == "LICENSE.md"
    assert "| source | licence | commercial | tokens |" in card
    assert "| chitchat | MIT | yes | 100 |" in card
    assert "| nc | CC-BY-NC-4.0 | no | 100 |" in card
    assert "| contrib/mine | CC0-1.0 | yes | 100 |" in card
    assert "| contrib/lab | Lab Terms | no | 100 |" in card
    assert "**Commercial use: not allowed.**" in card and "Do not use these weights commercially" in card
    assert "nc (CC-BY-NC-4.0), contrib/lab (Lab Terms)" in card
    assert "may be used commercially" not in card
    text = modelcard.model_licence_file(rows, terms)
    assert "| nc | CC-BY-NC-4.0 | no |" in text and "**Commercial use: not allowed.**" in text


def test_a_model_of_commercial_sources_under_one_licence_names_it():
    stats = stats_of(a=("MIT", 10, 1, None), b=("MIT", 4, 0, None))
    for entry in stats["sources"].values():
        entry["commercial"] = True
    terms = datasetcard.stats_terms(stats)
    rows = [token_row("a"), token_row("b")]
    card = modelcard.model_card(facts_of(), rows, terms)
    header = header_of(card)
    assert header["license"] == "mit" and "license_name" not in header
    assert "**Commercial use: allowed.**" in card and "may be used commercially" in card
    assert modelcard.model_licence_file(rows, terms) is None  # the Hub id says it all


def test_commercial_in_the_model_card_is_what_the_build_counts():
    """A registry flag does not make data commercial under an unknown or non-commercial licence;
    a source the stats do not record is `unknown` and not commercial."""
    stats = stats_of(flag=("unknown", 3, 0, None), nc=("CC-BY-NC-SA-4.0", 3, 0, None), ok=("MIT", 3, 0, None))
    for entry in stats["sources"].values():
        entry["commercial"] = True
    terms = datasetcard.stats_terms(stats)
    assert {n: t.commercial for n, t in terms.items()} == {"flag": False, "nc": False, "ok": True}
    card = modelcard.model_card(facts_of(), [token_row("ok"), token_row("ghost")], terms)
    assert "| ghost | unknown | no | 100 |" in card
    assert header_of(card)["license"] == "other" and "**Commercial use: not allowed.**" in card
    only_unknown = modelcard.model_card(facts_of(), [token_row("ghost")], {})
    assert header_of(only_unknown)["license"] == "unknown"
    none = modelcard.model_card(facts_of(), [], terms)
    assert header_of(none)["license"] == "unknown" and "**Commercial use: unknown.**" in none


def test_base_model_names_the_hub_model_the_run_started_from():
    terms = {"a": cards.CardSource("a", "MIT", True)}
    card = modelcard.model_card(
        facts_of(init_from="gpt2", base_model="openai-community/gpt2"), [token_row("a")], terms
    )
    assert header_of(card)["base_model"] == "openai-community/gpt2"
    assert (
        "trained from `gpt2` ([openai-community/gpt2](https://huggingface.co/openai-community/gpt2))" in card
    )
    assert "its own licence applies to them too" in card
    scratch = modelcard.model_card(facts_of(), [token_row("a")], terms)
    assert "base_model" not in header_of(scratch) and "its own licence" not in scratch


def test_a_model_started_from_a_local_checkpoint_does_not_claim_commercial_use():
    """Its terms were never recorded: commercial data alone cannot make the weights commercial."""
    terms = {"a": cards.CardSource("a", "MIT", True)}
    facts = facts_of(init_from="/models/someones-gpt2")
    card = modelcard.model_card(facts, [token_row("a")], terms)
    assert header_of(card)["license"] == "unknown"
    assert "**Commercial use: depends on the base model.**" in card and "`/models/someones-gpt2`" in card
    assert "may be used commercially" not in card
    text = modelcard.model_licence_file(
        [token_row("a"), token_row("b")],
        {**terms, "b": cards.CardSource("b", "CC0-1.0", True)},
        modelcard.unrecorded_base(facts),
    )
    assert "depends on the base model" in text
    # non-commercial data still says "not allowed", whatever the base
    barred = modelcard.model_card(
        facts, [token_row("nc")], {"nc": cards.CardSource("nc", "CC-BY-NC-4.0", False)}
    )
    assert "**Commercial use: not allowed.**" in barred
    # a Hub GPT-2 (MIT) is a recorded base: the data decide
    hub = modelcard.model_card(
        facts_of(init_from="gpt2", base_model="openai-community/gpt2"), [token_row("a")], terms
    )
    assert "**Commercial use: allowed.**" in hub and header_of(hub)["license"] == "mit"


def test_model_card_says_the_tokenizer_reads_nfc_and_shows_the_safe_recipe():
    """The exported tokenizer reads text as NFC, as serve does (tests/test_hf.py): the card says so
    and asks for no normalisation of its own. The safe recipe shown is the one tests/test_hf.py
    checks against render()."""
    card = modelcard.model_card(facts_of(), [], {})
    assert "renders exactly this:" in card and "reads text as Unicode NFC" in card
    assert 'unicodedata.normalize("NFC", m["content"])' not in card  # the usage example's, no longer needed
    assert modelcard.SAFE_ENCODING in card
    assert "split_special_tokens=True" in modelcard.SAFE_ENCODING


def test_a_licence_the_hub_lacks_gets_a_name_and_a_licence_file():
    """The Hub wants `license_name` and `license_link` beside `license: other`; the link names the
    LICENSE.md written beside the card, which says where each such source's terms are."""
    parts = {
        "contrib/forum": {
            "licence": "Forum Terms 1.0",
            "commercial": False,
            "conversations": {"train": 3, "val": 1},
        },
        "contrib/mine": {"licence": "MIT", "commercial": True, "conversations": {"train": 2, "val": 0}},
    }
    stats = stats_of(
        a=("Custom Research Terms v2", 5, 1, None),
        gone=("Other-Terms", 0, 0, None),  # enabled but holding nothing: not in the header or the file
        contrib=("per-file", 5, 1, parts),
    )
    registry = {
        "a": cards.CardSource("a", "Custom Research Terms v2", False, "url", "https://example.org/a.zip"),
        "gone": cards.CardSource("gone", "Other-Terms", False, "url", "https://example.org/gone.zip"),
        "contrib": cards.CardSource("contrib", "per-file", False, "contrib", "data/contrib"),
    }
    rows = datasetcard.dataset_sources(stats, registry)
    header = yaml.safe_load(datasetcard.dataset_card("full", stats, rows).split("---\n")[1])
    assert header["license"] == ["mit", "other"]
    assert header["license_name"] == "custom-research-terms-v2-and-forum-terms-1.0"
    assert header["license_link"] == cards.LICENCE_FILE == "LICENSE.md"
    text = datasetcard.dataset_licence_file(stats, rows)
    assert "| a | Custom Research Terms v2 | no | https://example.org/a.zip |" in text
    assert "| contrib/forum | Forum Terms 1.0 | no | contributed file `data/contrib/forum.*`" in text
    assert "mine" not in text and "gone" not in text


def test_known_licences_need_no_licence_file():
    stats = stats_of(a=("MIT", 5, 1, None), b=("CC-BY-4.0", 2, 0, None))
    registry = {"a": cards.CardSource("a", "MIT", True), "b": cards.CardSource("b", "CC-BY-4.0", True)}
    rows = datasetcard.dataset_sources(stats, registry)
    header = yaml.safe_load(datasetcard.dataset_card("full", stats, rows).split("---\n")[1])
    assert "license_name" not in header and "license_link" not in header
    assert datasetcard.dataset_licence_file(stats, rows) is None


def test_licence_names_keep_the_letters_of_accented_names():
    """`license_name` is an ASCII id: an accented letter keeps its base letter instead of vanishing
    ("Études" once became "tudes"); names with nothing ASCII left fall back to `other`."""
    assert cards.licence_name(["Licence d'Études (ÉTALAB 2.0)"]) == "licence-d-etudes-etalab-2.0"
    assert cards.licence_name(["Ünïcode Lizenz", "LGPL-2.1"]) == "lgpl-2.1-and-unicode-lizenz"
    assert cards.licence_name(["利用規約"]) == cards.licence_name(["???"]) == "other"


def test_one_licence_the_hub_lacks_still_gets_a_name_and_link() -> None:
    got = modelcard.model_licence([cards.CardSource("forum", "Forum Terms 1.0", False)])
    assert got == {"license": "other", "license_name": "forum-terms-1.0", "license_link": "LICENSE.md"}


def _stats(sources, train, val):
    return {
        "params": {"seed": 7, "val_fraction": 0.0, "caps": {}},
        "sources": sources,
        "totals": {"conversations": {"train": train, "val": val}},
    }


def test_an_empty_validation_split_is_not_a_config_split() -> None:
    import yaml

    stats = _stats({"a": {"licence": "MIT", "conversations": {"train": 5, "val": 0}}}, 5, 0)
    card = datasetcard.dataset_card("full", stats, [cards.CardSource("a", "MIT", True)])
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "train.parquet"}]


def test_a_non_commercial_source_that_holds_nothing_adds_no_warning() -> None:
    stats = _stats(
        {
            "a": {"licence": "MIT", "conversations": {"train": 5, "val": 1}},
            "nc": {"licence": "CC-BY-NC-4.0", "conversations": {"train": 0, "val": 0}},
        },
        5,
        1,
    )
    rows = [cards.CardSource("a", "MIT", True), cards.CardSource("nc", "CC-BY-NC-4.0", False)]
    card = datasetcard.dataset_card("commercial", stats, rows)
    assert "Not for commercial use" not in card


def test_size_category_counts_both_splits() -> None:
    import yaml

    stats = _stats({"a": {"licence": "MIT", "conversations": {"train": 900, "val": 200}}}, 900, 200)
    header = yaml.safe_load(
        datasetcard.dataset_card("full", stats, [cards.CardSource("a", "MIT", True)]).split("---\n")[1]
    )
    assert header["size_categories"] == ["1K<n<10K"]


@pytest.mark.parametrize(
    ("floor", "says"), [(100, "once that holds 100 characters"), (0, "the deduplicated text")]
)
def test_the_card_says_what_the_split_is_keyed_on(floor: int, says: str) -> None:
    stats = _stats({"a": {"licence": "MIT", "conversations": {"train": 5, "val": 1}}}, 5, 1)
    stats["params"]["split_opening_chars"] = floor
    assert says in datasetcard.dataset_card("full", stats, [cards.CardSource("a", "MIT", True)])


def test_a_contributed_files_odd_name_and_licence_stay_inert_in_the_model_card() -> None:
    """A contributed file's name is its stem and its licence its sidecar's text: the model card's
    table and its commercial verdict once wrote them raw, so `<img ...>` was HTML on the Hub and
    `**x**` bold, where the dataset card and LICENSE.md showed them as typed."""
    name, licence = "contrib/nc_<img src=x onerror=alert(1)>", "Own <b>terms</b> **x**"
    rows = [token_row("chatbot_arena"), token_row(name)]
    terms = {
        "chatbot_arena": cards.CardSource("chatbot_arena", "MIT", True),
        name: cards.CardSource(name, licence, False),
    }
    card = modelcard.model_card(facts_of(variant="full"), rows, terms)
    body = card.split("---\n", 2)[2]
    assert not re.search(r"(?<!\\)<(img|b)\b", body)
    assert (
        "| contrib/nc\\_\\<img src=x onerror=alert(1)> | Own \\<b>terms\\</b> \\*\\*x\\*\\* | no | 100 |"
        in card
    )
    assert "contrib/nc\\_\\<img src=x onerror=alert(1)> (Own \\<b>terms\\</b> \\*\\*x\\*\\*)" in card
    assert "| chatbot_arena | MIT | yes |" in card  # an underscore inside a word reads as typed
