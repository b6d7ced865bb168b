"""SPDX license expressions in a `licence:` (`MIT AND CC-BY-4.0`, `MIT OR CC-BY-NC-4.0`,
`GPL-2.0-or-later WITH Classpath-exception-2.0`): read part by part (pipeline.sources.licences),
the same in the row-wise polars form (schema.commercial_ok), malformed ones refused where licences
are validated (sources.yaml, sidecars). A value that is not an expression (one id, free text, the
placeholders) reads whole, as before."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import cli
from pipeline.schema import commercial_ok
from pipeline.sources import licences
from pipeline.sources.contrib import parse_sidecar
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import (
    Standing,
    commercial_eligible,
    expression_error,
    is_known_commercial,
    is_non_commercial,
    licence_bar,
    needs_attribution,
    standing,
)
from pipeline.sources.registry import parse_entry

GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n"


def test_the_known_wrong_results_of_single_name_reading() -> None:
    """Read as one name, `MIT AND CC-BY-4.0` asked for no credit and was "not known" (both parts
    are on COMMERCIAL_OK), and `MIT OR CC-BY-NC-4.0` (the recipient may choose MIT) was barred."""
    assert needs_attribution("MIT AND CC-BY-4.0")
    assert is_known_commercial("MIT AND CC-BY-4.0")
    assert commercial_eligible(True, "MIT OR CC-BY-NC-4.0")
    assert licence_bar("MIT OR CC-BY-NC-4.0") is None
    assert not is_non_commercial("MIT OR CC-BY-NC-4.0")


@pytest.mark.parametrize(
    ("licence", "expected", "attribution"),
    [
        # AND: every part's terms apply
        ("MIT AND CC-BY-4.0", Standing.KNOWN, True),
        ("MIT AND CC-BY-NC-4.0", Standing.NON_COMMERCIAL, True),
        ("MIT AND unknown", Standing.UNKNOWN, False),
        ("MIT AND LicenseRef-foo", Standing.UNLISTED, False),
        ("CC-BY-NC-4.0 AND NOASSERTION", Standing.NON_COMMERCIAL, True),
        # OR: the recipient chooses; attribution if any alternative asks for it
        ("MIT OR CC-BY-NC-4.0", Standing.KNOWN, True),
        ("CC-BY-NC-4.0 OR CC-BY-NC-SA-4.0", Standing.NON_COMMERCIAL, True),
        ("CC-BY-NC-4.0 OR unknown", Standing.UNKNOWN, True),
        ("LicenseRef-foo OR CC-BY-NC-4.0", Standing.UNLISTED, True),
        ("MIT OR Apache-2.0", Standing.KNOWN, False),
        # precedence: AND binds tighter than OR; parentheses group
        ("MIT OR CC-BY-NC-4.0 AND unknown", Standing.KNOWN, True),
        ("(MIT OR CC-BY-NC-4.0) AND unknown", Standing.UNKNOWN, True),
        ("CC-BY-NC-4.0 AND MIT OR Apache-2.0", Standing.KNOWN, True),
        ("(Apache-2.0 OR MIT) AND CC-BY-SA-4.0", Standing.KNOWN, True),
        ("((MIT))", Standing.KNOWN, False),
        ("(MIT)", Standing.KNOWN, False),
        # WITH and `+`: the licence part decides
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", Standing.UNLISTED, False),
        ("Apache-2.0 WITH LLVM-exception", Standing.KNOWN, False),
        ("CC-BY-NC-4.0 WITH LicenseRef-nc-free", Standing.NON_COMMERCIAL, True),
        # ... unless the exception may take something away (read as the licence part, each was known)
        ("MIT WITH no-commercial-use", Standing.NON_COMMERCIAL, False),
        ("CC-BY-4.0 WITH LicenseRef-Non-Commercial", Standing.NON_COMMERCIAL, True),
        ("Apache-2.0 WITH Commons-Clause", Standing.UNLISTED, False),
        ("MIT OR Apache-2.0 WITH LicenseRef-research-only", Standing.KNOWN, False),
        ("MIT+", Standing.KNOWN, False),
        ("CC-BY-4.0+ AND MIT", Standing.KNOWN, True),
        # ids in any case; DocumentRef
        ("mit AND cc-by-4.0", Standing.KNOWN, True),
        ("DocumentRef-spdx-tool-1.2:LicenseRef-MIT-Style-2 OR MIT", Standing.KNOWN, False),
    ],
)
def test_an_expression_is_read_part_by_part(licence: str, expected: Standing, attribution: bool) -> None:
    assert expression_error(licence) is None
    assert standing(licence) == expected
    assert is_known_commercial(licence) == (expected == Standing.KNOWN)
    assert is_non_commercial(licence) == (expected == Standing.NON_COMMERCIAL)
    assert commercial_eligible(True, licence) == (expected >= Standing.UNLISTED)
    bar = licence_bar(licence)
    assert (bar is None) == (expected >= Standing.UNLISTED)
    if bar is not None:
        assert bar.unknown == (expected == Standing.UNKNOWN)
    assert needs_attribution(licence) == attribution


def test_a_bar_names_the_parts_that_bar_it() -> None:
    assert licence_bar("MIT AND CC-BY-NC-4.0") == licences.LicenceBar(
        unknown=False, words="the licence MIT AND CC-BY-NC-4.0 forbids commercial use (through CC-BY-NC-4.0)"
    )
    assert licence_bar("MIT AND unknown") == licences.LicenceBar(
        unknown=True, words="the licence MIT AND unknown is unknown in part (through unknown)"
    )


@pytest.mark.parametrize(
    ("licence", "standing_of", "attribution"),
    [
        # not expressions: read whole, as before (lower-case operators are words, per SPDX)
        ("research use only", Standing.NON_COMMERCIAL, False),
        ("Non-Commercial use", Standing.NON_COMMERCIAL, False),
        # CC-BY-4.0 as people write it (licencetables._SPELLED_OUT; it read as unlisted before, a name
        # unknown to the list): not an expression, read whole
        ("CC BY 4.0", Standing.KNOWN, True),
        ("CC BY 4.0 (attribution)", Standing.UNLISTED, True),
        ("Research only (non-commercial)", Standing.NON_COMMERCIAL, False),
        ("mit and cc-by-4.0", Standing.UNLISTED, False),
        ("MIT or later", Standing.UNLISTED, False),
        ("unknown", Standing.UNKNOWN, False),
        ("N/A", Standing.UNKNOWN, False),
        ("  ", Standing.UNKNOWN, False),
        ("MIT", Standing.KNOWN, False),
        (" cc-by-sa-4.0 ", Standing.KNOWN, True),
        ("CC-BY-NC-4.0", Standing.NON_COMMERCIAL, True),
        ("GPL-3.0-only", Standing.UNLISTED, False),
        ("C++", Standing.UNLISTED, False),
    ],
)
def test_a_value_that_is_not_an_expression_reads_whole_as_before(
    licence: str, standing_of: Standing, attribution: bool
) -> None:
    assert licences.expression(licence) is None
    assert standing(licence) == standing_of
    assert needs_attribution(licence) == attribution


MALFORMED = {
    "MIT AND": "expected a licence id after 'AND', found the end",
    "(MIT": "'(' is not closed: expected ')' after 'MIT', found the end",
    "AND": "expected a licence id after the start, found 'AND'",
    "MIT)": "expected AND, OR or the end after 'MIT', found ')'",
    "MIT OR OR Apache-2.0": "expected a licence id after 'OR', found 'OR'",
    "MIT AND CC BY 4.0": "expected AND, OR or the end after 'CC', found 'BY'",
    "MIT WITH": "expected an exception id after 'WITH', found the end",
    "(MIT OR Apache-2.0) WITH LLVM-exception": "expected AND, OR or the end after ')', found 'WITH'",
    "MIT OR n/a": "'n/a' is not an SPDX licence id",
    "()": "expected a licence id after '(', found ')'",
}


@pytest.mark.parametrize(("licence", "why"), MALFORMED.items())
def test_a_malformed_expression_is_named_and_reads_as_unknown(licence: str, why: str) -> None:
    """Outside the registry and sidecar checks (a turn table written by hand), a malformed
    expression keeps its data out of the commercial variant, and says why."""
    assert why in (expression_error(licence) or "")
    assert standing(licence) == Standing.UNKNOWN
    assert not commercial_eligible(True, licence)
    bar = licence_bar(licence)
    assert bar is not None and bar.unknown
    assert bar.words.startswith(f"the licence {licence} is not a valid SPDX expression (")


@pytest.mark.parametrize("commercial", [True, False])
@pytest.mark.parametrize("licence", list(MALFORMED))
def test_sources_yaml_refuses_a_malformed_expression_naming_the_entry_and_rule(
    licence: str, commercial: bool
) -> None:
    raw = {
        "kind": "url",
        "location": "https://x",
        "adapter": "openai",
        "licence": licence,
        "commercial": commercial,
    }
    with pytest.raises(SourceError) as e:
        parse_entry("web", raw)
    message = str(e.value)
    assert message.startswith("sources.yaml: web: licence ")
    assert "is not a valid SPDX expression: " in message
    assert MALFORMED[licence] in message
    assert "upper-case AND, OR and WITH join licence ids" in message


def test_a_sidecar_with_a_malformed_expression_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(Path(__file__).resolve().parents[1]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(GOOD)
    (tmp_path / "a.yaml").write_text("licence: MIT AND\ncommercial: false\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"^a\.yaml: licence 'MIT AND' is not a valid SPDX expression: "):
        parse_sidecar(tmp_path / "a.txt", tmp_path / "a.yaml")
    assert cli.main(["check", "a.txt"]) != 0
    out = capsys.readouterr()
    assert "a.yaml: licence 'MIT AND' is not a valid SPDX expression" in out.out + out.err


def _entry(licence: str, commercial: bool = True, reason: str | None = None) -> dict[str, object]:
    raw: dict[str, object] = {
        "kind": "url",
        "location": "https://x",
        "adapter": "openai",
        "licence": licence,
        "commercial": commercial,
    }
    if reason is not None:
        raw["commercial_reason"] = reason
    return raw


def test_sources_yaml_judges_a_commercial_claim_by_the_whole_expression() -> None:
    for ok in ("MIT AND CC-BY-4.0", "MIT OR CC-BY-NC-4.0", "(Apache-2.0 OR MIT) AND CC-BY-SA-4.0"):
        assert parse_entry("web", _entry(ok)).licence == ok  # known: no reason needed
    with pytest.raises(SourceError, match="does not allow commercial use, but commercial is true"):
        parse_entry("web", _entry("MIT AND CC-BY-NC-4.0"))
    with pytest.raises(SourceError, match="is not one this project knows"):
        parse_entry("web", _entry("GPL-2.0-or-later WITH Classpath-exception-2.0"))
    stated = parse_entry("web", _entry("GPL-2.0-or-later WITH Classpath-exception-2.0", reason="read it"))
    assert stated.commercial_reason == "read it"
    with pytest.raises(SourceError, match="is not one this project knows") as e:
        parse_entry("web", _entry("LicenseRef-foo"))
    assert "upper case" not in str(e.value)
    # lower-case operators are words (SPDX's case rule): the value is one unlisted name, and says so
    with pytest.raises(SourceError) as e:
        parse_entry("web", _entry("mit and cc-by-4.0"))
    assert str(e.value).endswith(
        "set `commercial: false` (SPDX operators are upper case: `mit AND cc-by-4.0` is read part by "
        "part, as an expression)"
    )


def test_an_exception_that_restricts_the_licence_is_not_read_as_the_licence_alone() -> None:
    """SPDX exceptions add permissions, but an exception written into a licence value can restrict it
    (`Apache-2.0 WITH Commons-Clause`): read as the licence part, these took no reason to flag."""
    with pytest.raises(SourceError, match="does not allow commercial use, but commercial is true"):
        parse_entry("web", _entry("MIT WITH no-commercial-use", reason="read it"))
    with pytest.raises(SourceError, match="is not one this project knows"):
        parse_entry("web", _entry("Apache-2.0 WITH Commons-Clause"))
    assert licence_bar("MIT AND CC-BY-4.0 WITH LicenseRef-NC") == licences.LicenceBar(
        unknown=False,
        words="the licence MIT AND CC-BY-4.0 WITH LicenseRef-NC forbids commercial use "
        "(through CC-BY-4.0 WITH LicenseRef-NC)",
    )


def test_check_asks_for_a_credit_under_an_expression_with_an_attribution_licence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(Path(__file__).resolve().parents[1]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(GOOD)
    (tmp_path / "a.yaml").write_text(
        'licence: MIT AND CC-BY-4.0\ncommercial: true\ndescription: "chats"\n', encoding="utf-8"
    )
    assert cli.main(["check", "a.txt"]) == 0
    out = capsys.readouterr().out
    assert "the licence MIT AND CC-BY-4.0 asks for a credit wherever the data goes" in out


# Values for the two-forms comparison: ids of every standing, placeholders, free text, operators in
# both cases, parentheses, `+`, and characters the two strips could treat differently.
_WORDS = st.sampled_from(
    [
        "MIT",
        "mit",
        "CC-BY-4.0",
        "CC-BY-NC-4.0",
        "cc-by-nc-sa-4.0",
        "Apache-2.0",
        "GPL-3.0-only",
        "LicenseRef-foo",
        "unknown",
        "NOASSERTION",
        "n/a",
        "?",
        "research",
        "use",
        "only",
        "non-commercial",
        "CC",
        "BY",
        "4.0",
        "MIT+",
        "AND",
        "OR",
        "WITH",
        "and",
        "or",
        "Classpath-exception-2.0",
        "(",
        ")",
        "(MIT",
        "MIT)",
        "",
    ]
)
_GAPS = st.sampled_from([" ", "  ", "\t", "\n", "\x1c", "\u00a0", ""])
_LICENCES = st.one_of(
    st.lists(st.tuples(_GAPS, _WORDS), max_size=7).map(lambda parts: "".join(g + w for g, w in parts)),
    st.text(max_size=12),
    st.none(),
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(st.booleans(), st.none()), _LICENCES), min_size=1, max_size=20))
def test_the_row_wise_form_agrees_with_the_python_form_on_every_value(
    rows: list[tuple[bool | None, str | None]],
) -> None:
    df = pl.DataFrame(rows, schema={"commercial": pl.Boolean(), "licence": pl.String()}, orient="row")
    got = df.select(commercial_ok().alias("ok"))["ok"].to_list()
    want = [flag is True and lic is not None and commercial_eligible(True, lic) for flag, lic in rows]
    assert got == want
    # and in a lazy filter, as the build uses it
    assert df.lazy().filter(commercial_ok()).collect().height == sum(want)


def test_the_row_wise_form_reads_expressions() -> None:
    licence = [
        "MIT OR CC-BY-NC-4.0",
        "MIT AND CC-BY-NC-4.0",
        "MIT AND CC-BY-4.0",
        "MIT AND",
        "MIT AND unknown",
    ]
    df = pl.DataFrame({"commercial": [True] * len(licence), "licence": licence})
    assert df.select(commercial_ok())["commercial"].to_list() == [True, False, True, False, False]


def test_the_build_warning_tells_an_unknown_part_from_a_forbidding_one() -> None:
    """build._kept_out chose its words by is_unknown, which is about the whole value: `MIT AND
    unknown` was said to forbid commercial use. It follows licence_bar now."""
    from pipeline.build import _kept_out

    assert "is not known" in _kept_out("web", "MIT AND unknown", contributed=False)
    assert "forbids commercial use" in _kept_out("web", "MIT AND CC-BY-NC-4.0", contributed=False)
    assert "licence unknown" in _kept_out("contrib/a", "MIT AND", contributed=True)


def test_deep_parentheses_are_refused_in_one_line_not_a_recursion_error() -> None:
    deep = "(" * 100_000 + "MIT" + ")" * 100_000
    assert expression_error(deep) == f"parentheses nest deeper than {licences.MAX_NESTING} levels"
    assert standing(deep) == Standing.UNKNOWN
    nested = "(" * licences.MAX_NESTING + "MIT" + ")" * licences.MAX_NESTING
    assert standing(nested) == Standing.KNOWN


def test_a_long_or_control_character_token_is_cut_short_and_escaped_in_the_message() -> None:
    error = expression_error("MIT AND " + "x" * 1_000_000 + "/")
    assert error is not None and len(error) < 200
    assert expression_error("MIT AND \x1b[31m") == "'\\x1b[31m' is not an SPDX licence id" + (
        " (letters, digits, '-' and '.'; LicenseRef-... for others)"
    )
