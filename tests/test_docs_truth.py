"""The facts README.md, CONTRIBUTING.md, docs/contracts.md and docs/shards.md state that could drift
from the code unnoticed: every field, setting, output key, environment variable and benchmark option
a user meets is named where the docs say it is, with the defaults the code has.

Each test reads the code's own list (a dataclass, a constant, an argparse parser, a committed
output) rather than a copy of it, so a new field or key fails here until the docs name it."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
from pathlib import Path

import pytest
import yaml
from test_readme_walkthrough import benchmark_parser

from pipeline import chat
from pipeline.buildinputs import BUILD_KEYS
from pipeline.sources.contrib import SIDECAR_FIELDS
from pipeline.sources.normalize import NORMALIZE_KEYS
from pipeline.sources.registry import SourceSpec
from pipeline.trainconfig import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
CONTRACTS = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
SHARDS = (ROOT / "docs" / "shards.md").read_text(encoding="utf-8")
PARAMS_TEXT = (ROOT / "params.yaml").read_text(encoding="utf-8")


def _section(doc: str, heading: str) -> str:
    """The text of a `## heading...` section, up to the next `## `."""
    start = doc.index(f"\n## {heading}")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else None]


def _unnamed(names: object, text: str) -> list[str]:
    """Those of `names` that `text` never writes as code (`name`, or `section.name`)."""
    return sorted(n for n in names if not re.search(rf"`(?:[\w.]+\.)?{re.escape(n)}[`\s(:=]", text))


def test_every_registry_field_is_named_in_the_registry_contract() -> None:
    """contracts.md's Source registry listed sixteen of a sources.yaml entry's seventeen fields:
    `options` (an adapter's own settings, oasst1's `language`; an unknown key is a load error)
    appeared only later, as a key of the registry stage's JSON."""
    fields = {f.name for f in dataclasses.fields(SourceSpec)} - {"name"}
    missing = _unnamed(fields, _section(CONTRACTS, "Source registry"))
    assert not missing, f"docs/contracts.md Source registry does not name the sources.yaml fields {missing}"


def test_every_data_stage_setting_is_named_in_the_contracts() -> None:
    """params.yaml's `normalize.min_turns` (a conversation of fewer turns is quarantined, check
    `min_turns`) was named in no doc; normalize, build and tokenize refuse any other key."""
    tokenize_keys = yaml.safe_load(PARAMS_TEXT)["tokenize"]
    settings = {*NORMALIZE_KEYS, *BUILD_KEYS, *tokenize_keys}
    missing = _unnamed(settings, CONTRACTS + SHARDS)
    assert not missing, f"params.yaml settings named in neither contracts.md nor shards.md: {missing}"


def test_every_training_setting_is_in_params_yaml() -> None:
    """params.yaml says it holds every knob: each TrainConfig field is a key there or named in its
    comment of optional profile settings (a field that is neither is found only by reading code)."""
    missing = [
        f.name for f in dataclasses.fields(TrainConfig) if not re.search(rf"\b{f.name}\b", PARAMS_TEXT)
    ]
    assert not missing, f"training settings params.yaml never names: {missing}"


def test_the_sidecar_fields_are_the_six_contributing_shows() -> None:
    """CONTRIBUTING's sidecar example shows every field a sidecar may hold ("the six above"; `license`
    is read as `licence`), so the list cannot grow or shrink without the example."""
    example = re.search(r"```yaml\n(.*?)```", CONTRIBUTING, re.S)
    assert example, "CONTRIBUTING.md: no sidecar example"
    shown = set(re.findall(r"^\s*#?\s*(\w+):", example.group(1), re.M))
    accepted = set(SIDECAR_FIELDS) - {"license"}
    assert shown == accepted
    assert "Sidecar fields are the six above" in CONTRIBUTING and len(accepted) == 6


@pytest.mark.parametrize(
    ("path", "also"),
    [("model/metrics.json", {"mfu"}), ("model/eval/metrics.json", set())],
)
def test_every_model_metric_is_named_in_the_model_contract(path: str, also: set[str]) -> None:
    """contracts.md's Model section named model/metrics.json but none of its fields, and left out
    model/eval/metrics.json's `replies` (how many replies the rates are over). `mfu` is written on
    CUDA only, so the committed CPU run lacks it."""
    keys = set(json.loads((ROOT / path).read_text(encoding="utf-8"))) | also
    missing = _unnamed(keys, _section(CONTRACTS, "Model"))
    assert not missing, f"{path}: keys docs/contracts.md's Model section does not name: {missing}"


def test_every_project_environment_variable_is_documented() -> None:
    """NANOCHATGPT_DOWNLOAD_CACHE (where url downloads wait and archives are kept) and
    NANOCHATGPT_ROOT (where the commands read params.yaml and data/) were in no doc."""
    code = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "pipeline").rglob("*.py"))
    names = set(re.findall(r"environ\.get\(\"(NANOCHATGPT_\w+)\"", code))
    assert names, "no NANOCHATGPT_* variable found: the pattern no longer matches the code"
    missing = sorted(n for n in names if f"`{n}`" not in README + CONTRIBUTING)
    assert not missing, f"environment variables README.md and CONTRIBUTING.md never name: {missing}"


def test_readme_states_chats_sampling_defaults() -> None:
    """README listed chat's sampling options without their defaults (0.8, 50, 0.95), which only
    --help showed."""
    parser = argparse.ArgumentParser()
    chat.add_arguments(parser)
    defaults = {a.option_strings[0]: a.default for a in parser._actions if a.option_strings}
    for option in ("--temperature", "--top-k", "--top-p"):
        said = rf"`{re.escape(option)}`\s+\(default {re.escape(format(defaults[option], 'g'))}[;)]"
        assert re.search(said, README), f"README.md: `{option}` without its default {defaults[option]}"


def _readme_benchmark_options() -> dict[str, set[str]]:
    """benchmark module -> the options README writes after `python -m benchmarks.<module>`."""
    uses: dict[str, set[str]] = {}
    for m in re.finditer(r"`(?:python -m )?benchmarks\.(\w+)((?: [^`]*)?)`", README):
        uses.setdefault(m.group(1), set()).update(re.findall(r"--[a-z][a-z0-9-]*", m.group(2)))
    return uses


@pytest.mark.parametrize("module", sorted(_readme_benchmark_options()))
def test_readme_benchmark_options_exist(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each option README's Benchmarks tables give a benchmark (`--size-mb`, `--repeats`, ...) is
    one its parser takes: a renamed option would leave a recipe that stops on a usage error."""
    parser = benchmark_parser(importlib.import_module(f"benchmarks.{module}").main, monkeypatch)
    taken = {o for action in parser._actions for o in action.option_strings}
    unknown = sorted(_readme_benchmark_options()[module] - taken)
    assert not unknown, f"README.md gives benchmarks.{module} options it does not take: {unknown}"


def _constant_phrases() -> list[tuple[str, str]]:
    """(doc, phrase) pairs: each limit the docs state, written from the constant that enforces it."""
    from pipeline import cards, chattemplate, encode, notices, serve, trainsetup
    from pipeline.sources import readers, registry
    from pipeline.trainconfig import TrainConfig as Config

    medium = yaml.safe_load(PARAMS_TEXT)["train_profiles"]["gpt2-medium"]
    _, flops = trainsetup.training_flops(Config(**medium, init_from="gpt2-medium"))
    return [
        ("docs/shards.md", f"at most {encode.READ_ROWS:,} rows"),
        ("docs/shards.md", f"`{encode.LENGTH_BOUNDS[-2] + 1}-{encode.LENGTH_BOUNDS[-1]}`"),
        ("docs/shards.md", f"`{encode.LENGTH_BOUNDS[-1] + 1}+`"),
        ("CONTRIBUTING.md", f"a line over {readers.MAX_LINE_BYTES >> 20} MiB"),
        ("CONTRIBUTING.md", f"its first {cards.DESCRIPTION_MAX} characters"),
        ("CONTRIBUTING.md", f"over {registry.LICENCE_TEXT_MAX >> 10} KiB"),
        ("docs/contracts.md", f"over {registry.LICENCE_TEXT_MAX >> 10} KiB"),
        ("docs/contracts.md", f"each cut at {notices.TEXT_MAX:,} characters"),
        ("docs/contracts.md", f"({notices.CARD_MAX:,} characters at\n  most)"),
        ("docs/contracts.md", f"{len(chattemplate.INVISIBLE_RANGES)} code point ranges"),
        ("README.md", f"(gpt2-medium: about {flops:.0e} FLOPs)".replace("e+", "e")),
        ("README.md", f"at most {serve.STOP_SECONDS:g} s: past that"),
    ]


@pytest.mark.parametrize(("doc", "phrase"), _constant_phrases())
def test_each_stated_limit_is_the_constant_that_enforces_it(doc: str, phrase: str) -> None:
    """A limit the docs give in words (rows read at a time, a line's bytes, a description's length,
    a licence text's size, ...) is the code's: a changed constant fails here until the docs follow."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert phrase in text, f"{doc} does not say {phrase!r}"


def test_readmes_stage_table_names_every_stage_and_its_outputs() -> None:
    """README's "What `dvc repro` builds" block names each dvc.yaml stage (a new stage, or a renamed
    one, would leave it describing another graph) and, per stage, the top folder of each output."""
    block = README.split("## What `dvc repro` builds", 1)[1].split("```", 2)[1]
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    missing = [name for name in stages if not re.search(rf"^{re.escape(name)}\b", block, re.M)]
    assert not missing, f"README.md's stage table lacks the stages {missing}"
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind) or []:
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                top = "/".join(path.split("/")[:2])  # data/tokens, model/eval, ...
                assert top in block, f"README.md's stage table does not name {name}'s output {path}"


def test_every_make_target_is_documented() -> None:
    """The Makefile's `.PHONY` targets are the commands a user runs; `make lint` (the only one that
    checks `ruff format`) and `make clean-venv` were named in no doc."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony, "Makefile: no .PHONY line"
    missing = [t for t in phony.group(1).split() if not re.search(rf"`make {t}\b", README + CONTRIBUTING)]
    assert not missing, f"make targets README.md and CONTRIBUTING.md never name: {missing}"
