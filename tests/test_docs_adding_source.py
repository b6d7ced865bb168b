"""docs/adding-a-source.md against the code: the adapter interface it cites exists with the arguments
it shows, the files and tests it names are there, and it names every test that lists each adapter,
so a newcomer following it is not stopped by a test the guide never mentioned."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import test_adapters
import yaml

from pipeline.sources import adapters as adapters_mod
from pipeline.sources import readers
from pipeline.sources.readers import Record
from pipeline.sources.rows import RawRows

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "adding-a-source.md").read_text(encoding="utf-8")


def test_readme_and_contributing_link_the_guide() -> None:
    for doc in ("README.md", "CONTRIBUTING.md"):
        assert "(docs/adding-a-source.md)" in (ROOT / doc).read_text(encoding="utf-8"), doc


def test_the_rawrows_calls_it_shows_take_those_arguments() -> None:
    """`rows.add(conv_key, text, origin, role=..., ...)`: each method and argument name is RawRows'."""
    calls = re.findall(r"`rows\.(\w+)\(([^`]*)\)`", GUIDE)
    assert {name for name, _ in calls} >= {"add", "bad", "skip"}
    for name, args in calls:
        method = getattr(RawRows, name, None)
        assert method is not None, f"RawRows has no {name}"
        params = set(inspect.signature(method).parameters)
        for arg in re.findall(r"(\w+)(?:=\.\.\.)?", args):
            assert arg in params, f"RawRows.{name} takes no argument {arg}"
    assert "rows.frame()" in GUIDE and callable(RawRows.frame)


def test_the_readers_and_record_fields_it_cites_exist() -> None:
    functions = set(re.findall(r"\b(iter_\w+|data_files|cr_only)\b", GUIDE))
    assert {"iter_lines", "data_files", "cr_only"} <= functions
    for name in functions:
        assert callable(getattr(readers, name, None)), f"pipeline/sources/readers.py has no {name}"
    for field in re.findall(r"`rec\.(\w+)`", GUIDE):
        assert hasattr(Record, field) or field in Record.__dataclass_fields__, f"Record has no {field}"


def test_the_registration_names_exist() -> None:
    assert isinstance(adapters_mod.ADAPTERS, dict) and isinstance(adapters_mod.OPTIONS, dict)
    shown = re.search(r"`Option\(([^)]*)\)`", GUIDE)
    assert shown, "the guide no longer shows Option's fields"
    fields = [f.strip() for f in shown.group(1).split(",")]
    assert fields == list(adapters_mod.Option.__dataclass_fields__)
    assert "option(spec, " in GUIDE and callable(adapters_mod.option)


def test_every_path_it_names_exists() -> None:
    paths = set(re.findall(r"`((?:pipeline|tests|docs|data)/[\w./-]+?)(?:::\w+)?`", GUIDE))
    paths |= set(re.findall(r"\b((?:pipeline|tests)/[\w/]+\.py)\b", GUIDE))
    assert "pipeline/sources/adapters/dailydialog.py" in paths
    for rel in paths:
        if "<" in rel:  # a pattern such as tests/fixtures/sources/<adapter>/
            continue
        assert (ROOT / rel.rstrip("/")).exists(), rel


def test_it_names_every_test_that_lists_each_adapter() -> None:
    """A test that reads ADAPTERS fails for a new adapter until its own table has the adapter."""
    listing = sorted(
        p.name
        for p in (ROOT / "tests").glob("test_*.py")
        if re.search(r"\bADAPTERS\b", p.read_text(encoding="utf-8")) and p.name != Path(__file__).name
    )
    assert listing, "no test reads ADAPTERS any more: the guide's test list needs a look"
    missing = [name for name in listing if f"tests/{name}" not in GUIDE]
    assert not missing, f"docs/adding-a-source.md does not name {missing}"
    for test in re.findall(r"`(test_\w+)`", GUIDE):
        assert any(f"def {test}(" in p.read_text() for p in (ROOT / "tests").glob("test_*.py")), test


def test_the_case_keys_it_lists_are_those_test_adapters_uses() -> None:
    section = GUIDE.split("A `CASES` entry", 1)[1].split("\n3. ", 1)[0]
    named: set[str] = set()
    for line in (line.strip() for line in section.splitlines()):
        if line.startswith("- optionally"):
            named |= set(re.findall(r"`(\w+)`", line))
        elif line.startswith("- `"):
            named.add(re.match(r"- `(\w+)`", line).group(1))  # the key; the rest explains it
    used = {key for case in test_adapters.CASES.values() for key in case}
    assert named == used


def test_the_dvc_dependencies_it_warns_of() -> None:
    """A new adapter re-runs every source's normalize (and editing ADAPTERS, every download)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "pipeline/sources" in stages["normalize"]["do"]["deps"]
    assert "pipeline/sources/adapters/__init__.py" in stages["download"]["do"]["deps"]


def test_the_sources_it_calls_disabled_are() -> None:
    from pipeline.sources.registry import enabled_sources, load_registry

    registry, enabled = load_registry(ROOT / "sources.yaml"), enabled_sources(ROOT / "params.yaml")
    line = re.search(r"stays out of params\.yaml's `sources:`, as (.*?) do\.", GUIDE, re.S)
    assert line, "the guide no longer names the disabled sources"
    for name in re.findall(r"`(\w+)`", line.group(1)):
        assert name in registry and name not in enabled, name


def test_the_commercial_variant_words_it_quotes() -> None:
    card = (ROOT / "pipeline" / "datasetcard.py").read_text(encoding="utf-8")
    assert "Enabled but holding nothing in this variant" in GUIDE and "Enabled but holding nothing" in card
    from pipeline.buildinputs import NOT_COMMERCIAL

    assert f"rows_filtered.{NOT_COMMERCIAL}" in GUIDE
