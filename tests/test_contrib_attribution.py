"""A contributed file's sidecar `attribution:` (who to credit, where the data comes from): an
attribution licence (CC-BY-*, CC-BY-SA-*) asks for that credit wherever the data goes, and the
card showed only the first 200 characters of a description. It travels as the description does
(normalize report `by_source` -> stats.json `parts`) to NOTICE.md, whole, and to the card beside
the licence; `nanochatgpt check` warns when such a licence has none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.build import build_variant
from pipeline.buildinputs import BuildConfig
from pipeline.sources.contrib import parse_sidecar
from pipeline.sources.download import download
from pipeline.sources.errors import SourceError
from pipeline.sources.licences import needs_attribution
from pipeline.sources.normalize import normalize_source, write_outputs
from pipeline.sources.registry import load_registry
from pipeline.sources.table import source_rows

REGISTRY = {
    "contrib": {"kind": "contrib", "licence": "per-file", "commercial": False, "location": "data/contrib"}
}
GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n"
# longer than the 200 characters a card shows of a description: an attribution is never cut
CREDIT = "© 2025 Jane Doe (chats_team), https://example.org/chats " + "and friends " * 20
BY = 'licence: CC-BY-4.0\ncommercial: true\ndescription: "Support chats"\n'


def _sidecar(tmp_path: Path, text: str) -> Path:
    (tmp_path / "a.txt").write_text(GOOD)
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "a.yaml"


def test_a_sidecar_attribution_is_read_as_one_stripped_line(tmp_path: Path) -> None:
    sidecar = _sidecar(tmp_path, BY + f'attribution: "  {CREDIT}  "\n')
    assert parse_sidecar(tmp_path / "a.txt", sidecar).attribution == CREDIT.strip()
    # folded YAML reads as one line; none at all is ""
    _sidecar(tmp_path, BY + "attribution: >\n  Jane Doe,\n  https://example.org\n")
    assert parse_sidecar(tmp_path / "a.txt", sidecar).attribution == "Jane Doe, https://example.org"
    _sidecar(tmp_path, BY)
    assert parse_sidecar(tmp_path / "a.txt", sidecar).attribution == ""


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("[Jane, Joe]", "`attribution:` must be text, not ['Jane', 'Joe']"),
        ("{by: Jane}", "`attribution:` must be text, not {'by': 'Jane'}"),
        ('"Jane\\nDoe"', "character 5 is U+000A: remove it"),
        ("|\n  Jane\n  Doe\n", "character 5 is U+000A: remove it"),
        ('"Jane \\e[31mDoe"', "character 6 is U+001B: remove it"),
        ('"Jane\\tDoe"', "character 5 is U+0009: remove it"),
        ('"Jane \\u202eeoD"', "character 6 is U+202E (RIGHT-TO-LEFT OVERRIDE): remove it"),
        ('"Jane \\x85Doe"', "character 6 is U+0085: remove it"),
    ],
)
def test_an_attribution_that_is_not_one_line_of_text_is_refused_naming_the_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, rule: str
) -> None:
    monkeypatch.chdir(tmp_path)
    sidecar = _sidecar(tmp_path, BY + f"attribution: {value}\n")
    with pytest.raises(SourceError) as e:
        parse_sidecar(tmp_path / "a.txt", sidecar)
    assert str(e.value).startswith("a.yaml: `attribution:` must be ")
    assert rule in str(e.value)
    if "U+" in rule:
        assert "must be one line of plain text, without control characters" in str(e.value)


def test_attribution_licences_are_the_cc_by_family_and_odc_by_odbl() -> None:
    for licence in (
        "CC-BY-4.0",
        "CC-BY-SA-4.0",
        "cc-by-nc-4.0",
        "CC-BY-NC-SA-4.0",
        "CC BY 4.0",
        "ODC-By-1.0",
    ):
        assert needs_attribution(licence), licence
    for licence in ("CC0-1.0", "MIT", "unknown", "Apache-2.0", "PDDL-1.0", "CC-BYX"):
        assert not needs_attribution(licence), licence


def _contribute(root: Path, stem: str, sidecar: str) -> None:
    (root / "data/contrib" / f"{stem}.txt").write_text(
        f"<human> hello from {stem} <endOfText>\n<bot> hi {stem} <endOfText>\n"
    )
    (root / "data/contrib" / f"{stem}.yaml").write_text(sidecar, encoding="utf-8")


def test_the_attribution_reaches_the_report_stats_notice_and_card_whole(root: Path) -> None:
    _contribute(root, "by", BY + f'attribution: "{CREDIT}"\n')
    _contribute(root, "zero", "licence: CC0-1.0\ncommercial: true\n")  # no attribution
    spec = load_registry(root / "sources.yaml")["contrib"]
    paths = write_outputs(normalize_source(spec, download(spec, root), {}), "contrib", root)
    report = json.loads(paths["report"].read_text(encoding="utf-8"))["by_source"]
    assert report["contrib/by"]["attribution"] == CREDIT.strip()
    assert "attribution" not in report["contrib/zero"]  # a report without it stays as it was
    build_variant(root, ["contrib"], REGISTRY, BuildConfig(variant="full", val_fraction=0.0))
    out = root / "data/dataset/full"
    parts = json.loads((out / "stats.json").read_text())["sources"]["contrib"]["parts"]
    assert parts["contrib/by"]["attribution"] == CREDIT.strip()
    assert "attribution" not in parts["contrib/zero"]
    shown = CREDIT.strip().replace("_", "\\_")  # Markdown-escaped, whole (no "…")
    notice = (out / "NOTICE.md").read_text(encoding="utf-8")
    by_entry = notice[notice.index("## contrib/by") : notice.index("## contrib/zero")]
    assert f"- licence: `CC-BY-4.0` (its sidecar)\n- attribution: {shown}\n" in by_entry
    zero_entry = notice[notice.index("## contrib/zero") :]
    assert "- attribution:" not in zero_entry
    card = (out / "README.md").read_text(encoding="utf-8")
    assert re.search(
        rf"^\| contrib/by \| CC-BY-4\.0 \(credit: {re.escape(shown)}\) \| yes \| 1 / 0 \|", card, re.M
    )
    assert re.search(r"^\| contrib/zero \| CC0-1\.0 \| yes \| 1 / 0 \|", card, re.M)
    # `nanochatgpt sources --json` lists it per contributed file
    rows = {r["name"]: r for r in source_rows(root)[0]}
    assert rows["contrib/by"]["attribution"] == CREDIT.strip()
    assert rows["contrib/zero"]["attribution"] == ""


def test_check_warns_about_an_attribution_licence_without_attribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(Path(__file__).resolve().parents[1]))
    monkeypatch.chdir(tmp_path)

    def check(stem: str, sidecar: str) -> str:
        (tmp_path / f"{stem}.txt").write_text(GOOD)
        (tmp_path / f"{stem}.yaml").write_text(sidecar, encoding="utf-8")
        assert cli.main(["check", "--strict", f"{stem}.txt"]) == 0  # a warning, not a failure
        return capsys.readouterr().out

    warning = (
        "warning: the licence {} asks for a credit wherever the data goes, and the sidecar has no "
        "`attribution:`"
    )
    out = check("bare", BY)
    assert warning.format("CC-BY-4.0") in out
    out = check("sa", "licence: CC-BY-SA-4.0\ncommercial: false\n")
    assert warning.format("CC-BY-SA-4.0") in out
    out = check("credited", BY + 'attribution: "Jane Doe, https://example.org/chats"\n')
    assert "warning" not in out
    assert "  credited as: Jane Doe, https://example.org/chats\n" in out
    assert "warning" not in check("zero", "licence: CC0-1.0\ncommercial: true\n")
