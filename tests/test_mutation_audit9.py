"""Ninth mutation-testing audit (session 32, mut9): each test kills a deliberate mutation that the
related tests let pass; the mutation is named in the docstring.

Covered here: what a licence's name and SPDX expression say about commercial use
(pipeline.sources.licences), the listing of an archive's members (pipeline.sources.archive), what a
download depends on (pipeline.sources.fetchspec), `files:` globs matched on names
(pipeline.sources.globs) and what a disabled source leaves behind (pipeline.sources.leftovers). The
audit's table (mutations tried, killed, equivalent) is in the session notes; the survivors judged
equivalent are not tested.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import pytest

from pipeline.sources import archive, globs, licences
from pipeline.sources.fetchspec import fetch_spec
from pipeline.sources.leftovers import find_leftovers
from pipeline.sources.licences import (
    Standing,
    expression_error,
    is_expression,
    is_non_commercial,
    licence_bar,
    needs_attribution,
    operator_case_hint,
    standing,
)
from pipeline.sources.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["NCSA", "University of Illinois/NCSA Open Source License"])
def test_nc_at_the_start_of_a_word_is_not_the_nc_part(name: str) -> None:
    """Kills licencetext._NAMED_PATTERN: `(^|[^a-z])nc([^a-z]|$)` -> `(^|[^a-z])nc` (no boundary after
    "nc"): the permissive NCSA licence read as non-commercial."""
    assert not is_non_commercial(name)
    assert standing(name) == Standing.UNLISTED


def test_by_followed_by_a_word_starting_nc_is_not_by_nc() -> None:
    """Kills licencetext._NAMED_PATTERN: `by[-_ ]?nc([^a-z]|$)` -> `by[-_ ]?nc` (no boundary after "nc"):
    "by NCSA" is a maker's name, not CC's BY-NC."""
    assert not is_non_commercial("BSD-style licence as published by NCSA")


def test_no_commercial_inside_a_word_is_not_no_commercial() -> None:
    """Kills licencetext._NAMED_PATTERN: `\\bno[-_ ]commercial` -> `no[-_ ]commercial` (no boundary
    before "no"): a name ending in "no" before "Commercial" read as "no commercial"."""
    assert not is_non_commercial("Domino Commercial Licence")


def test_a_restricting_word_inside_a_longer_word_does_not_restrict() -> None:
    """Kills licencetext._RESTRICTING_PATTERN: word boundaries dropped around the restricting words:
    "interpersonal" is not "personal", so "... (attribution only)" did not restrict it."""
    assert not is_non_commercial("Interpersonal Dialogue Licence (attribution only)")


def test_only_inside_a_longer_word_is_not_only() -> None:
    """Kills licencetext._ONLY: `\\bonly\\b` -> `only`: "readonly" after a restricting word read as
    "... only"."""
    assert not is_non_commercial("Research-Commons-1.0 (readonly mirror)")


def test_commercial_inside_a_longer_word_is_not_commercial() -> None:
    """Kills licencetext._COMMERCIAL_WORD: `\\bcommercial\\b` -> `commercial`: "commercials" (adverts)
    followed by a forbidding word read as "commercial use ... prohibited"."""
    assert not is_non_commercial("TV commercials archive licence, resale prohibited")


def test_only_before_the_restricting_word_does_not_restrict() -> None:
    """Kills licencetext._name_non_commercial: `_ONLY.search(line, word.end())` -> `_ONLY.search(line)`
    (an `only` anywhere on the line, even before the restricting word)."""
    assert not is_non_commercial("Only attribution is required; research and commercial use welcome")


@pytest.mark.parametrize(
    "name",
    ["research use welcome\nonly attribution is asked for", "commercial use welcome\nresale prohibited"],
)
def test_the_rules_apply_per_line(name: str) -> None:
    """Kills licencetext._name_non_commercial: `for line in name.split("\\n")` -> `for line in [name]`:
    a restricting word and an `only` (or "commercial" and a forbidding word) on different lines
    read as one sentence."""
    assert not is_non_commercial(name)


def test_two_words_in_parentheses_are_free_text_not_an_expression() -> None:
    """Kills licenceexpr.is_expression: `if len(words) > 1: return False` -> `> 2`: "Apache-2.0
    (modified)" read as a malformed expression (unknown) instead of one unlisted name."""
    assert not is_expression("Apache-2.0 (modified)")
    assert expression_error("Apache-2.0 (modified)") is None
    assert standing("Apache-2.0 (modified)") == Standing.UNLISTED


def test_one_level_past_the_nesting_limit_is_refused() -> None:
    """Kills licenceexpr._Parser._term: `self.depth > MAX_NESTING` -> `> MAX_NESTING + 1`."""
    depth = licences.MAX_NESTING + 1
    nested = "(" * depth + "MIT" + ")" * depth
    assert expression_error(nested) == f"parentheses nest deeper than {licences.MAX_NESTING} levels"


def test_nesting_depth_counts_open_parentheses_not_groups_seen() -> None:
    """Kills licenceexpr._Parser._term: `self.depth -= 1` dropped after a group closes: many groups side
    by side (no deeper than one) were refused as too deeply nested."""
    flat = " AND ".join(["(MIT OR Apache-2.0)"] * (licences.MAX_NESTING + 5))
    assert expression_error(flat) is None
    assert standing(flat) == Standing.KNOWN


@pytest.mark.parametrize("value", ["MIT WITH AND", "MIT WITH OR Apache-2.0", "MIT WITH WITH"])
def test_an_operator_is_not_an_exception_id(value: str) -> None:
    """Kills licenceexpr._Parser._term: the check that the token after WITH is not an operator
    dropped: `MIT WITH AND` parsed as MIT with an exception named "AND"."""
    assert expression_error(value) == f"expected an exception id after 'WITH', found {value.split()[2]!r}"
    assert standing(value) == Standing.UNKNOWN


def test_a_malformed_expression_naming_an_attribution_licence_asks_for_attribution() -> None:
    """Kills licences.needs_attribution: the malformed-expression branch
    `_ATTRIBUTION.search(licence) is not None` -> `False`."""
    assert needs_attribution("MIT AND CC-BY-4.0 AND")
    assert not needs_attribution("MIT AND Apache-2.0 AND")


def test_a_malformed_expression_with_a_non_commercial_name_is_non_commercial() -> None:
    """Kills licences.is_non_commercial: `except ExpressionError: pass` -> `return False`: a
    malformed expression is read whole, as a name, and CC-BY-NC in it forbids commercial use."""
    assert is_non_commercial("CC-BY-NC-4.0 AND")
    assert not is_non_commercial("MIT AND")


def test_culprits_name_only_the_parts_of_the_worst_standing() -> None:
    """Kills licences._culprits: `_leaf_standing(leaf) == worst` -> `<= worst`: an OR whose best
    alternative is unknown named its non-commercial alternative as a culprit too."""
    bar = licence_bar("CC-BY-NC-4.0 OR unknown")
    assert bar is not None and bar.unknown
    assert bar.words == "the licence CC-BY-NC-4.0 OR unknown is unknown in part (through unknown)"


def test_no_case_hint_when_the_upper_case_form_is_malformed() -> None:
    """Kills licenceexpr.operator_case_hint: the `expression_error(upper) is not None` check dropped: a
    hint offered an upper-case form (`MIT AND`) that is itself refused."""
    assert operator_case_hint("MIT and") == ""
    assert operator_case_hint("MIT and Apache-2.0") != ""


@pytest.mark.parametrize("name", ["CCBytes-1.0", "ODC-Bylaws-1.0", "ODbLite-1.0"])
def test_attribution_names_end_at_the_family_name(name: str) -> None:
    """Kills licences._ATTRIBUTION: the `(?![a-z])` lookaheads dropped (after cc-by, odc-by, odbl): a
    name that merely begins with those letters asked for attribution."""
    assert not needs_attribution(name)


def test_a_tar_listing_stops_one_member_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills archive._listing: `if len(listed) > MAX_MEMBERS: break` dropped: the refusal came all
    the same, but only after every header was read into memory (10 million members: gigabytes)."""
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(10):
            info = tarfile.TarInfo(f"f{i}.txt")
            tar.addfile(info, io.BytesIO(b""))
    monkeypatch.setattr(archive, "MAX_MEMBERS", 3)
    with archive._listing(path, "tar") as (members, _):
        assert len(members) == 4


@pytest.mark.parametrize(("field", "value"), [("revision", "0123abcd"), ("token_env", "OTHER_HF_TOKEN")])
def test_the_pin_and_the_token_variable_are_part_of_a_download(
    field: str, value: str, tmp_path: Path
) -> None:
    """Kills fetchspec.FETCH_FIELDS: "revision" (or "token_env") dropped from it: a changed pin left the
    source's JSON as it was, so DVC kept the raw bytes of the old revision."""
    spec = load_registry(ROOT / "sources.yaml")["chatterbot"]
    changed = fetch_spec(dataclasses.replace(spec, **{field: value}), tmp_path)
    assert changed[field] == value
    assert changed != fetch_spec(spec, tmp_path)


def test_a_package_read_from_a_local_path_records_no_dist_info(tmp_path: Path) -> None:
    """Kills fetchspec.fetch_spec: `spec.kind == "package" and not spec.local_path` -> `spec.kind ==
    "package"`: a package copied from `local_path:` (whose download reads no .dist-info) got a
    `recorded` key, so a package upgrade re-ran a download it does not change."""
    spec = load_registry(ROOT / "sources.yaml")["chatterbot"]
    assert spec.kind == "package"
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "a.yml").write_text("categories: [x]\nconversations: [[hi, hello]]\n")
    local = dataclasses.replace(spec, local_path="copy")
    assert "recorded" not in fetch_spec(local, tmp_path)
    assert "recorded" in fetch_spec(spec, tmp_path)


def _on_disk(tmp_path: Path, paths: list[str], pattern: str) -> list[str]:
    """What pathlib's glob picks (files only) from a folder holding `paths`: the rule globs copies."""
    for rel in paths:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(pattern) if p.is_file())


@pytest.mark.parametrize("pattern", ["*.csv", "a/", "a/*.csv/"])
def test_name_globs_take_what_pathlib_takes(pattern: str, tmp_path: Path) -> None:
    """Kills globs._match_parts: `return len(names) == 1` -> `return True` (the pattern's last part
    matched a folder, taking every file below it), and globs._parts: the trailing '' of a pattern
    ending in '/' dropped (such a pattern selects folders, never a file)."""
    paths = ["top.csv", "a/b.csv", "a/b.csv.d/c.csv", "a.csv/x.txt"]
    assert globs.select(paths, [pattern]) == _on_disk(tmp_path, paths, pattern)


def test_unmatched_names_the_patterns_that_select_nothing() -> None:
    """Kills globs.unmatched: its result replaced by []: a misspelt `files:` glob beside one that
    matches would drop its files without a word."""
    assert globs.unmatched(["a/b.csv"], ["a/*.csv", "a/*.cvs"]) == ["a/*.cvs"]


def test_hub_patterns_skip_patterns_that_select_folders_only() -> None:
    """Kills globs.hub_patterns: `parts[-1] in (RECURSIVE, "")` dropped from the skip: a trailing `**`
    or `/` (folders only) asked the Hub for `a/**`, every file below a/."""
    assert globs.hub_patterns(["a/**", "b/", "**/*.csv"]) == ["**/*.csv", "*.csv"]


def _raw_download(root: Path, name: str, manifest: object) -> Path:
    folder = root / "data" / "raw" / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_linked_raw_folder_is_not_a_leftover(tmp_path: Path) -> None:
    """Kills leftovers.find_leftovers: `not raw.is_symlink()` dropped: a data/raw/<name> that is a
    link (to a folder of the user's, holding a download's manifest) was offered for removal."""
    elsewhere = _raw_download(tmp_path / "mine", "old", {"source": "old"})
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "old").symlink_to(elsewhere, target_is_directory=True)
    assert find_leftovers(tmp_path, [], []) == {}


def test_a_normalized_file_linked_into_the_cache_is_a_leftover(tmp_path: Path) -> None:
    """Kills leftovers.find_leftovers: `p.is_file() or p.is_symlink()` -> `p.is_file()`: a dangling
    link (DVC's cache.type symlink, its cache entry gone) stayed behind."""
    normalized = tmp_path / "data" / "normalized"
    normalized.mkdir(parents=True)
    (normalized / "old.parquet").symlink_to(tmp_path / "cache" / "gone")
    assert find_leftovers(tmp_path, [], []) == {"old": [normalized / "old.parquet"]}


def test_a_manifest_that_is_not_an_object_is_not_ours(tmp_path: Path) -> None:
    """Kills leftovers._recorded_source: the `isinstance(data, dict)` check dropped: a manifest.json
    holding a list raised AttributeError instead of marking the folder as not the pipeline's."""
    _raw_download(tmp_path, "old", ["old"])
    assert find_leftovers(tmp_path, [], []) == {}


def test_a_raw_folder_holding_a_local_path_stays(tmp_path: Path) -> None:
    """Kills leftovers._protected: `target.is_relative_to(path)` dropped: a disabled source's
    data/raw/<name>/ holding another source's `local_path:` was offered for removal."""
    folder = _raw_download(tmp_path, "old", {"source": "old"})
    (folder / "kept").mkdir()
    spec = load_registry(ROOT / "sources.yaml")["chatterbot"]
    local = dataclasses.replace(spec, local_path="data/raw/old/kept")
    assert find_leftovers(tmp_path, [], [local]) == {}
    assert find_leftovers(tmp_path, [], []) == {"old": [folder]}
