"""Mutation audit 24: tests that kill mutants which survived the existing suite in pipeline/optim.py,
pipeline/paramcheck.py, pipeline/trainmetrics.py, pipeline/sources/fetchspec.py, pipeline/sources/globs.py
and pipeline/modelcard.py (pipeline/lr.py's mutants all died or were equivalent). Each test's docstring
names the mutation it kills."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline import modelcard, paramcheck
from pipeline.cards import NOTICE_FILE, CardSource
from pipeline.model import GPT, GPTConfig
from pipeline.optim import param_groups
from pipeline.sources import globs
from pipeline.sources.fetchspec import FETCH_FIELDS, fetch_spec, write_fetch_specs
from pipeline.sources.registry import load_registry
from pipeline.trainmetrics import Interval, summarize

ROOT = Path(__file__).resolve().parents[1]


def _tiny() -> GPT:
    return GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=8))


def test_weight_decay_falls_on_matrices_and_embeddings_only() -> None:
    """Kills optim.param_groups: `p.dim() >= 2` -> `> 2` (the matrices were in no group, so never
    trained), `"weight_decay": 0.0` -> `weight_decay` (biases and LayerNorm gains decayed towards 0),
    and the decay group's `weight_decay` -> 0.0. Every trainable tensor is in exactly one group."""
    model = _tiny()
    groups = param_groups(model, weight_decay=0.1)  # what make_optimizer hands AdamW
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["params"] and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["params"] and all(p.dim() == 1 for p in no_decay["params"])
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    assert any(p is model.transformer.wte.weight for p in decay["params"])  # the tied embedding


def test_integer_refuses_bools_fractions_and_out_of_range_values() -> None:
    """Kills paramcheck.number: `isinstance(value, bool) or` dropped (`seed: true` read as 1);
    paramcheck.integer: `.is_integer()` dropped (1.5 read as 1), `n < minimum` -> `<=` (the minimum
    itself refused) and `n >= maximum` -> `>` (the excluded maximum accepted)."""
    for bad in (True, False, 1.5, -1, "-1", 2**64, None, "x"):
        with pytest.raises(ValueError, match=r"^params\.yaml k: expected an integer "):
            paramcheck.integer("k", bad, maximum=2**64)
    assert paramcheck.integer("k", 0, maximum=2**64) == 0
    assert paramcheck.integer("k", 2**64 - 1, maximum=2**64) == 2**64 - 1
    assert paramcheck.integer("k", 3, minimum=3) == 3 and paramcheck.integer("k", "1e6") == 10**6


def test_integer_reads_a_big_numeric_string_exactly() -> None:
    """Kills paramcheck.number: `int(text)` -> `float(text)` (a numeric string above 2**53, a seed
    passed by `dvc exp run -S`, came back rounded to the nearest float)."""
    assert paramcheck.integer("seed", "9007199254740993") == 9007199254740993
    assert paramcheck.integer("n", " 16_777_217 ") == 16_777_217


@pytest.mark.parametrize(
    ("maximum", "shown"),
    [(None, ">= 0"), (1 << 16, "in [0, 65536)"), (2**64, "in [0, 2**64)"), (10**6, "in [0, 1000000)")],
)
def test_integer_message_names_its_bounds(maximum: int | None, shown: str) -> None:
    """Kills paramcheck.integer: `>= {minimum}` -> `> {minimum}`; paramcheck._bound: `bit_length() - 1`
    -> `bit_length()` (2**64 shown as 2**65), `n & (n - 1) == 0` dropped (10**6 shown as a power of 2)
    and `n > 1 << 16` -> `>=` (65536 is written out)."""
    with pytest.raises(ValueError) as e:
        paramcheck.integer("k", -1, maximum=maximum)
    assert str(e.value) == f"params.yaml k: expected an integer {shown}, got -1"


def test_fraction_is_half_open_and_boolean_takes_only_bools() -> None:
    """Kills paramcheck.fraction: `< 1.0` -> `<= 1.0` (val_frac 1 leaves no training data) and
    `0.0 <=` -> `0.0 <` (0 refused); paramcheck.boolean: `not isinstance(value, bool)` ->
    `isinstance(value, str)` (`1` or `0` accepted as a flag)."""
    assert paramcheck.fraction("f", 0) == 0.0 and paramcheck.fraction("f", "0.5") == 0.5
    for bad in (1, 1.0, "1", -0.1, True, None):
        with pytest.raises(ValueError, match=r"^params\.yaml f: expected a number in \[0, 1\), got "):
            paramcheck.fraction("f", bad)
    assert paramcheck.boolean("b", False) is False
    for bad in (0, 1, "false", None):
        with pytest.raises(ValueError, match=r"^params\.yaml b: expected true or false, got "):
            paramcheck.boolean("b", bad)


def test_known_keys_names_an_unknown_setting() -> None:
    """Kills paramcheck.known_keys: `isinstance(values, dict)` -> `isinstance(values, list)` (no key
    was ever checked, so a typo left the default in force)."""

    class StageError(ValueError):
        pass

    paramcheck.known_keys("build", {"val_frac": 0.1}, ("val_frac", "seed"))
    paramcheck.known_keys("build", None, ("val_frac",))  # an empty section
    with pytest.raises(StageError) as e:
        paramcheck.known_keys("build", {"val_fracton": 0.1}, ("val_frac", "seed"), StageError)
    assert str(e.value) == "params.yaml build.val_fracton: unknown setting (known: val_frac, seed)"


_FETCH_CHANGES = {
    "kind": "hub",
    "location": "elsewhere/repo",
    "revision": "0" * 40,
    "sha256": "0" * 64,
    "files": ("a/*.csv",),
    "local_path": "data/elsewhere",
    "gated": True,
    "token_env": "OTHER_TOKEN",
    "adapter": "contrib",
    "options": {"min_turns": 3},
    "licence": "CC0-1.0",
}


def test_every_field_that_decides_a_download_is_in_its_registry_json(tmp_path: Path) -> None:
    """Kills fetchspec.FETCH_FIELDS: any one of revision, sha256, files, local_path, gated, token_env,
    adapter, options or licence dropped (a changed pin, glob or adapter option left the download's
    JSON, so DVC kept the stale raw or normalized data)."""
    spec = load_registry(ROOT / "sources.yaml")["chatterbot"]
    before = fetch_spec(spec, tmp_path)
    for name, value in _FETCH_CHANGES.items():
        assert getattr(spec, name) != value, name
        after = fetch_spec(dataclasses.replace(spec, **{name: value}), tmp_path)
        assert after[name] == (list(value) if isinstance(value, tuple) else value), name
        assert after != before, name
    assert set(_FETCH_CHANGES) == set(FETCH_FIELDS)  # a new fetch field: give it a changed value too


def _summary(train_seconds: float, flops_per_token: float | None, **progress: object) -> dict:
    """trainmetrics.summarize over stand-ins carrying only the fields it reads, each a distinct value."""
    fields = dict(
        train_tokens=1000, train_seconds=train_seconds, recent_train_losses=[3.0, 1.0],
        last_val_loss=2.5, best_val_loss=2.25, initial_val_loss=10.123456, step=7, origin=None,
        data_changed=True,
    )  # fmt: skip
    cfg = SimpleNamespace(tokens_per_iter=64, block_size=8, init_from="resume", variant="commercial")
    rt = SimpleNamespace(device=SimpleNamespace(type="cpu"), dist=SimpleNamespace(world_size=2))
    state = SimpleNamespace(**{**fields, **progress})
    return summarize(state, cfg, rt, 123, flops_per_token, 1000.0, 3.25)  # type: ignore[arg-type]


def test_metrics_summary_reports_each_figure_from_its_own_field() -> None:
    """Kills trainmetrics.summarize: `val_loss` from best_val_loss, `init_from` ignoring
    progress.origin, `data_changed` dropped (the model card then claimed commercial use for weights
    that also learned an earlier build), `tokens_per_iter` from another field, `train_seconds > 0` ->
    `>= 0` (a run with no timed step crashed on 0/0), `flops_per_token is not None` dropped (an MFU
    from None)."""
    assert _summary(2.0, 10.0, origin="gpt2") == {
        "train_loss": 2.0,
        "val_loss": 2.5,
        "best_val_loss": 2.25,
        "initial_val_loss": 10.1235,
        "tokens_per_sec": 500.0,
        "params": 123,
        "iters": 7,
        "tokens_per_iter": 64,
        "wall_time_s": 3.2,
        "device": "cpu",
        "processes": 2,
        "init_from": "gpt2",
        "variant": "commercial",
        "data_changed": True,
        "mfu": 2.5,
    }
    untimed = _summary(0.0, None)  # no timed step (a run of one log interval), no head figure
    assert untimed["tokens_per_sec"] is None and "mfu" not in untimed
    assert untimed["init_from"] == "resume"  # no origin recorded (older state): the config's


def test_interval_adds_rates_and_resets() -> None:
    """Kills trainmetrics.Interval.add: `loss_tokens` not added (the gathered head's share read as 0);
    Interval.rate: `seconds > 0` -> `>= 0` (an empty interval crashed); Interval.reset: `warm` left
    False (every interval after the first was still taken for warm-up and left out of the totals)."""
    timer = Interval()
    assert not timer.warm and math.isnan(timer.rate())
    timer.add(100, 0.5, 40.0)
    timer.add(300, 1.5, 60.0)
    assert (timer.tokens, timer.seconds, timer.loss_tokens, timer.rate()) == (400, 2.0, 100.0, 200.0)
    timer.reset()
    assert (timer.tokens, timer.seconds, timer.loss_tokens, timer.warm) == (0, 0.0, 0.0, True)


def test_select_sorts_skips_hidden_parts_and_takes_everything_without_patterns() -> None:
    """Kills globs.select: `sorted(` -> `list(` (a set's order), `or EVERYTHING` dropped (no `files:`
    selected nothing) and `not hidden(p)` dropped; globs.hidden: only the file name checked (a file
    under a hidden folder, `.git/x.csv`, taken)."""
    paths = ["b.csv", "sub/c.csv", "a.csv", ".git/x.csv", "sub/.d.csv", "z/y/w.csv"]
    assert globs.select(paths, []) == ["a.csv", "b.csv", "sub/c.csv", "z/y/w.csv"]
    assert globs.select(paths, ["**/*.csv"]) == ["a.csv", "b.csv", "sub/c.csv", "z/y/w.csv"]


def test_matches_follows_pathlib_on_anchors_folders_and_recursion() -> None:
    """Kills globs._match_parts: `.match(` -> `.search(` (`a.csv` took `xa.csv`), the trailing-`**`
    `return False` -> `True`, `range(len(names))` -> `range(1, ...)` (`**/` then needed a folder);
    globs._parts: the trailing '' of `a/` dropped (a folder-only pattern took a file) and the check
    of a `**` inside a part dropped (pathlib refuses `a**`)."""
    assert not globs.matches("xa.csv", "a.csv") and globs.matches("a.csv", "a.csv")
    assert not globs.matches("a", "a/") and not globs.matches("a/b.csv", "a/**")
    assert globs.matches("b.csv", "**/*.csv") and globs.matches("a/b/c.csv", "a/**/*.csv")
    with pytest.raises(ValueError, match="'\\*\\*' can only be an entire path component"):
        globs.matches("ab/c", "a**/c")


def test_unmatched_reads_a_generator_of_paths_once_for_every_pattern() -> None:
    """Kills globs.unmatched: `chosen = list(paths)` -> `chosen = paths`. download._select passes a
    generator: the first pattern used it up, so every later pattern, however right, was reported as
    matching nothing."""
    found = (p for p in ["a/b.csv", "c.jsonl"])
    assert globs.unmatched(found, ["x/*.csv", "a/*.csv", "*.jsonl"]) == ["x/*.csv"]


def test_hub_patterns_list_each_way_to_drop_recursive_parts_once() -> None:
    """Kills globs.hub_patterns: `product((False, True), ...)` -> `product((False,), ...)` (`**/*.csv`
    never sent the top-level `*.csv`), `if variant not in out` dropped (duplicates) and
    `or EVERYTHING` dropped (no `files:` asked the Hub for nothing)."""
    assert globs.hub_patterns(["**/**/*.csv"]) == ["**/**/*.csv", "**/*.csv", "*.csv"]
    assert globs.hub_patterns([]) == ["**/*", "*"]


def test_earlier_data_outranks_an_unrecorded_base_in_the_commercial_verdict() -> None:
    """Kills modelcard.commercial_statement: the `earlier_data` branch moved behind `unknown_base`.
    Weights extended from a local checkpoint after their data changed must still say that an earlier
    build, of which no record exists, is in them: "depends on the base model" alone hides it."""
    trained = [CardSource("a", "MIT", True)]
    both = modelcard.commercial_statement(trained, unknown_base="out/old", earlier_data=True)
    assert both.startswith("**Commercial use: not established.**") and "earlier build" in both
    base_only = modelcard.commercial_statement(trained, unknown_base="out/old")
    assert base_only.startswith("**Commercial use: depends on the base model.**")


def test_package_source_read_from_a_local_path_records_no_installed_files(tmp_path: Path) -> None:
    """Kills fetchspec.fetch_spec: `and not spec.local_path` dropped. A `kind: package` source given
    `local_path:` copies that folder, not the installed package: hashing the package's .dist-info too
    would re-run its download on every upgrade of a package it never reads."""
    spec = load_registry(ROOT / "sources.yaml")["chitchat"]
    assert "recorded" in fetch_spec(spec, tmp_path)  # the installed package: its .dist-info counts
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "dataset.json").write_text("{}")
    local = fetch_spec(dataclasses.replace(spec, local_path="copy"), tmp_path)
    assert "recorded" not in local and [c["path"] for c in local["contents"]] == ["dataset.json"]


def test_model_card_mentions_notice_only_when_it_ships() -> None:
    """Kills modelcard.model_card: `if notice` -> `if True` (a card without NOTICE.md beside it told
    the reader to keep a file that is not there)."""
    facts = modelcard.ModelFacts(
        n_layer=1, n_head=1, n_embd=8, block_size=8, params=100, variant="full", init_from="scratch",
        iters=1, tokens_per_iter=8, initial_val_loss=None, val_loss=None,
    )  # fmt: skip
    rows = [{"source": "a", "tokens": "10", "loss_tokens": "4", "conversations": "1"}]
    terms = {"a": CardSource("a", "MIT", True)}
    assert NOTICE_FILE not in modelcard.model_card(facts, rows, terms)
    assert f"`{NOTICE_FILE}`, beside this card" in modelcard.model_card(facts, rows, terms, notice=True)


def test_model_licence_file_keeps_a_pipe_in_a_name_inside_its_cell() -> None:
    """Kills modelcard.model_licence_file: `cell(markdown_text(...))` -> `markdown_text(...)` (a
    contributed file's name or a licence holding `|` split its row into extra columns)."""
    rows = [{"source": s, "tokens": "1", "loss_tokens": "1", "conversations": "1"} for s in ("c/a|b", "x")]
    terms = {"c/a|b": CardSource("c/a|b", "MIT", True), "x": CardSource("x", "Odd | terms", False)}
    text = modelcard.model_licence_file(rows, terms)
    assert text is not None
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert [len(re.split(r"(?<!\\)\|", line)) for line in table] == [5, 5, 5]  # 3 cells each
    assert "| c/a\\|b | MIT | yes |" in table and "| x | Odd \\| terms | no |" in table


def test_write_fetch_specs_returns_the_path_of_every_json_it_wrote(tmp_path: Path) -> None:
    """Kills fetchspec.write_fetch_specs: the returned list cut short (the registry stage prints how many
    sources it wrote from its length)."""
    specs = list(load_registry(ROOT / "sources.yaml").values())[:3]
    written = write_fetch_specs(specs, tmp_path, tmp_path / "registry")
    assert [p.name for p in written] == [f"{s.name}.json" for s in specs]
    assert sorted(written) == sorted((tmp_path / "registry").iterdir())
