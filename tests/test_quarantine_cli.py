"""`nanochatgpt quarantine`: each source's quarantine by rule, as its report counts it, and the rows
themselves; a quarantine that is not the report's (missing, replaced) is named, never read as it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline import cli
from pipeline.params import load_params
from pipeline.sources.download import download
from pipeline.sources.normalize import normalize_source, output_paths, write_outputs
from pipeline.sources.registry import get_source, load_registry

ROOT = Path(__file__).resolve().parents[1]
GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n\n"
BROKEN = "<human> never closed\n<bot> ok <endOfText>\n\n<human> <endOfText>\n<bot> x <endOfText>\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return contrib_project(tmp_path, monkeypatch)


def contrib_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose contrib source went through the real download and normalize, as the stages do."""
    for name in ("sources.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    contrib = tmp_path / "data" / "contrib"
    contrib.mkdir(parents=True)
    (contrib / "mixed.txt").write_text(GOOD * 2 + BROKEN)
    (contrib / "mixed.yaml").write_text("licence: CC0-1.0\ncommercial: true\ndescription: test\n")
    _normalize(tmp_path)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    return tmp_path


def _normalize(root: Path) -> None:
    """download@contrib and normalize@contrib, as the stages run them."""
    spec = get_source("contrib", load_registry(root / "sources.yaml"))
    raw = download(spec, root=root)
    result = normalize_source(spec, raw, load_params(root / "params.yaml").get("normalize") or {})
    write_outputs(result, "contrib", root)


def _report(project: Path) -> dict:
    return json.loads(output_paths("contrib", project)["report"].read_text())


def test_the_account_is_the_reports_with_the_first_row_of_each_rule(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report(project)
    assert cli.main(["quarantine", "contrib"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"contrib: {report['rows_quarantined']} of {report['rows_read']} rows read quarantined "
        "(data/quarantine/contrib.parquet)\n"
    )
    counted = {}
    for line in out.splitlines()[1:]:
        rule, n, rest = line.split(maxsplit=2)
        counted[rule] = int(n)
        assert rest.startswith("first: mixed.txt:")  # where the contributor's file went wrong
    assert counted == report["quarantined_by_check"] and sum(counted.values()) == 4
    assert "turn_unclosed" in out and "mixed.txt:7: <human> turn not closed by <endOfText>" in out


def test_rows_of_one_rule_come_with_their_text(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["quarantine", "contrib", "--check", "text_present"]) == 0
    out = capsys.readouterr().out
    assert "turn_unclosed" not in out  # only the rule asked for
    lines = out.splitlines()
    assert lines[2].strip().startswith("mixed.txt:") and "text_present:" in lines[2]
    assert lines[3].strip().startswith("text: ")


def test_rows_without_a_rule_are_the_first_of_each_rule_under_its_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: README promised `--rows N` without `--check` for every rule, but it listed the
    file's first N rows, for chitchat all five one rule. Now up to N of each rule, grouped by rule."""
    table = pl.read_parquet(output_paths("contrib", project)["quarantine"])
    assert table["check"].n_unique() > 1  # the file's first row is of one rule only
    assert cli.main(["quarantine", "contrib", "--json", "--rows", "1"]) == 0
    (account,) = json.loads(capsys.readouterr().out)
    assert [r["check"] for r in account["rows"]] == list(account["by_check"])  # one of each, in order
    columns = ["check", "reason", "origin", "text"]
    for row in account["rows"]:  # the rule's first row, in file order
        assert row == table.filter(pl.col("check") == row["check"]).select(columns).row(0, named=True)
    assert cli.main(["quarantine", "contrib", "--rows", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    rule = None
    for line in lines:  # each row sits under its rule's line
        if not line.startswith("    "):
            rule = line.split()[0]
        elif not line.strip().startswith("text: "):
            assert f"  {rule}: " in line
    listed = sum(1 for line in lines if line.strip().startswith("text: "))
    assert listed == sum(min(2, n) for n in table["check"].value_counts()["count"])


def test_a_rule_that_caught_nothing_is_said(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["quarantine", "contrib", "--check", "text-present"]) == 1  # misspelt: the names shown
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        "`text-present` is not a rule (rules that caught rows in contrib: "
        "conversation_broken, first_turn_human, text_present, turn_unclosed; all rules: "
    ) in captured.err
    # --json leaves out a source whose quarantine lacks the rule, as the text does
    assert cli.main(["quarantine", "contrib", "--check", "text-present", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == []


def test_an_upstream_id_holding_terminal_escapes_is_shown_inert(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Origins and reasons quote the contributed file (a record's id, a bad value): printed raw, an ESC
    there would act on the terminal (here move the cursor up over the rows above); --json keeps them."""
    record = {
        "id": "x\x1b[1A\x1b]0;title\x07\u202e",
        "messages": [
            {"role": "user", "content": "hi"},
            {"content": "no role"},
            {"role": "assistant", "content": "b"},
        ],
    }
    (project / "data" / "contrib" / "evil.jsonl").write_text(json.dumps(record) + "\n")
    (project / "data" / "contrib" / "evil.yaml").write_text(
        "licence: CC0-1.0\ncommercial: true\nformat: openai\n"
    )
    _normalize(project)
    assert cli.main(["quarantine", "contrib", "--check", "conversation_broken"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\u202e")
    assert "of conversation contrib/evil:x\\x1b[1A\\x1b]0;title\\x07\\u202e was quarantined" in out
    assert len(out.splitlines()) == 2 + 2 * 3  # the header, the rule, and two lines for each of its rows
    assert cli.main(["quarantine", "contrib", "--json", "--check", "conversation_broken"]) == 0
    (account,) = json.loads(capsys.readouterr().out)
    assert any(record["id"] in row["reason"] for row in account["rows"])


@pytest.mark.parametrize("damage", ["replaced", "missing"])
def test_a_quarantine_that_is_not_the_reports_is_named(
    project: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = output_paths("contrib", project)["quarantine"]
    if damage == "missing":
        path.unlink()
    else:  # one row fewer: a file from another run, or copied in by hand
        pl.read_parquet(path).head(3).write_parquet(path)
    assert cli.main(["quarantine", "contrib"]) == 1
    err = capsys.readouterr().err
    assert "data/quarantine/contrib.parquet" in err and "dvc repro normalize@contrib" in err
    assert ("is missing" in err) == (damage == "missing")


def test_a_report_without_its_record_is_still_checked_by_count(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report written before it recorded its outputs (or by hand) is trusted only as far as its count."""
    report_path = output_paths("contrib", project)["report"]
    report = _report(project)
    del report["outputs"]
    report_path.write_text(json.dumps(report))
    assert cli.main(["quarantine", "contrib"]) == 0
    report_path.write_text(json.dumps({**report, "outputs": "edited by hand"}))
    assert cli.main(["quarantine", "contrib"]) == 0
    report["rows_quarantined"] += 1
    report_path.write_text(json.dumps(report))
    assert cli.main(["quarantine", "contrib"]) == 1
    assert "holds 4 rows, but data/normalized/contrib.report.json counts 5" in capsys.readouterr().err
    report_path.write_text("{")
    assert cli.main(["quarantine", "contrib"]) == 1
    assert "contrib.report.json: unreadable normalize report" in capsys.readouterr().err


def test_one_contributed_file_is_named_as_sources_names_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nanochatgpt sources` and `tokens --source` name a contributed file contrib/<file stem>; the
    quarantine takes that name too, and shows that file's rows only, counted as its report counts it."""
    (project / "data" / "contrib" / "clean.txt").write_text(GOOD)
    (project / "data" / "contrib" / "clean.yaml").write_text("licence: MIT\ncommercial: true\n")
    _normalize(project)
    per_file = _report(project)["by_source"]
    assert cli.main(["quarantine", "contrib/mixed", "--rows", "50", "--json"]) == 0
    [mixed] = json.loads(capsys.readouterr().out)
    assert mixed["source"] == "contrib/mixed"
    assert mixed["rows_read"] == per_file["contrib/mixed"]["rows_read"]
    assert mixed["rows_quarantined"] == per_file["contrib/mixed"]["rows_quarantined"] == len(mixed["rows"])
    assert cli.main(["quarantine", "contrib/clean"]) == 0
    assert capsys.readouterr().out == (
        f"contrib/clean: 0 of {per_file['contrib/clean']['rows_read']} rows read quarantined "
        "(data/quarantine/contrib.parquet)\n"
    )
    assert cli.main(["quarantine", "contrib/typo"]) == 1
    err = capsys.readouterr().err
    assert "contrib/typo: not a source of data/normalized/contrib.report.json" in err
    assert "(its sources: contrib/clean, contrib/mixed)" in err


def test_listed_rows_are_the_first_of_that_file_and_rule_in_file_order(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rows reads the text of the rows it lists only (a lazy scan): still the first N of the file and
    rule asked for, in the quarantine's order, with their text."""
    (project / "data" / "contrib" / "other.txt").write_text(BROKEN * 3)
    (project / "data" / "contrib" / "other.yaml").write_text("licence: MIT\ncommercial: true\n")
    _normalize(project)
    table = pl.read_parquet(output_paths("contrib", project)["quarantine"])
    want = table.filter((pl.col("source") == "contrib/other") & (pl.col("check") == "text_present"))
    assert want.height >= 3 and table.filter(pl.col("check") == "text_present").height > want.height
    assert cli.main(["quarantine", "contrib/other", "--check", "text_present", "--rows", "2", "--json"]) == 0
    [account] = json.loads(capsys.readouterr().out)
    assert account["rows"] == want.head(2).select("check", "reason", "origin", "text").to_dicts()


def test_unknown_and_unnormalized_sources_are_one_line_each(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["quarantine", "oasst"]) == 1
    assert "oasst: not in sources.yaml (known: chitchat," in capsys.readouterr().err
    assert cli.main(["quarantine", "oasst1", "contrib"]) == 1  # the one it can read is still shown
    captured = capsys.readouterr()
    assert captured.out.startswith("contrib: 4 of")
    assert "oasst1: not normalized (no data/normalized/oasst1.report.json): it is not enabled" in captured.err
    assert cli.main(["quarantine", "contrib", "--rows", "-1"]) == 2
    assert cli.main(["quarantine"]) == 1  # every enabled source: chitchat and chatterbot are not here
    captured = capsys.readouterr()
    assert captured.out.startswith("contrib: 4 of")
    assert "chitchat: not normalized yet" in captured.err and "chatterbot: not normalized yet" in captured.err


@pytest.mark.parametrize("damage", ["cut", "no_origin"])
def test_an_unreadable_quarantine_beside_a_report_without_its_record_is_one_line(
    project: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no `outputs` record nothing vouches for the file: a cut one (or one without the columns
    shown) ended in polars' traceback, and the other sources named went unlisted."""
    report_path = output_paths("contrib", project)["report"]
    report = _report(project)
    del report["outputs"]
    report_path.write_text(json.dumps(report))
    path = output_paths("contrib", project)["quarantine"]
    if damage == "cut":
        path.write_bytes(path.read_bytes()[:40])
    else:
        pl.read_parquet(path).drop("origin").write_parquet(path)
    assert cli.main(["quarantine", "contrib"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("quarantine: contrib: data/quarantine/contrib.parquet is unreadable (")
    assert err.rstrip().endswith("run `dvc repro normalize@contrib`") and err.count("\n") == 1


def test_a_source_params_yaml_does_not_enable_is_told_to_enable_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: `quarantine oasst1` (in sources.yaml, not in params.yaml `sources:`) said to run
    `dvc repro normalize@oasst1`, which DVC refuses: the stage exists only for the enabled sources."""
    assert cli.main(["quarantine", "oasst1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("quarantine: oasst1: not normalized (no data/normalized/oasst1.report.json): ")
    assert "add it to params.yaml `sources:`, then `dvc repro` (that creates normalize@oasst1" in err
    assert "`dvc repro normalize@oasst1`" not in err and "dvc pull" not in err
    assert cli.main(["quarantine", "chitchat"]) == 1  # enabled, not yet run: its stage is there
    assert "run `dvc repro normalize@chitchat`, or `dvc pull`" in capsys.readouterr().err
    # contrib's report left in git after it was taken out of `sources:`, its table gone
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("  - contrib\n", ""))
    output_paths("contrib", project)["quarantine"].unlink()
    assert cli.main(["quarantine", "contrib"]) == 1
    err = capsys.readouterr().err
    assert "contrib: data/quarantine/contrib.parquet is missing: it is not enabled: add it" in err
    params.write_text("sources: [\n")  # unreadable: naming a source does not need it; the stage's advice
    assert cli.main(["quarantine", "oasst1"]) == 1
    assert "run `dvc repro normalize@oasst1`, or `dvc pull`" in capsys.readouterr().err


def _hand_made(project: Path, table: pl.DataFrame) -> None:
    """`table` as contrib's quarantine, beside a report without its record that counts its rows."""
    report_path = output_paths("contrib", project)["report"]
    report = _report(project)
    del report["outputs"]
    report_path.write_text(json.dumps({**report, "rows_quarantined": table.height}))
    table.write_parquet(output_paths("contrib", project)["quarantine"])


@pytest.mark.parametrize(
    ("table", "said"),
    [
        (
            pl.DataFrame({"check": [1], "reason": ["r"], "origin": ["o"], "text": ["t"]}),
            "column 'check' must be text, found Int64",
        ),
        (
            pl.DataFrame(
                {"check": ["a", None], "reason": ["r", "r"], "origin": ["o", "o"], "text": ["t", "t"]}
            ),
            "row 1 names no rule in column 'check'",
        ),
    ],
)
def test_a_hand_made_quarantine_of_other_types_is_one_line(
    project: Path, table: pl.DataFrame, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug hunt: nothing vouches for a quarantine beside a report without its record, and an
    integer or null rule was a TypeError traceback (len() of the rule's name)."""
    _hand_made(project, table)
    for argv in ([], ["--rows", "1"], ["--check", "a"]):
        assert cli.main(["quarantine", "contrib", *argv]) == 1
        err = capsys.readouterr().err
        assert (
            err == f"quarantine: contrib: data/quarantine/contrib.parquet: {said}: "
            "run `dvc repro normalize@contrib`\n"
        )


def test_a_hand_made_rule_and_text_are_shown_inert_and_json_escapes_c1_and_bidi(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug hunt: a rule's name was printed raw (ESC [2J cleared the screen), a missing origin was a
    traceback with --rows, and --json wrote a text's C1 CSI (U+009B) and RLO raw."""
    evil = "t\x1b[31m\x9b2J\u202e"
    _hand_made(
        project,
        pl.DataFrame(
            {"check": ["rule\x1b[2J"], "reason": ["r"], "origin": [None], "text": [evil]},
            schema={"check": pl.String, "reason": pl.String, "origin": pl.String, "text": pl.String},
        ),
    )
    assert cli.main(["quarantine", "contrib", "--rows", "1"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    assert "  rule\\x1b[2J          1  first: : r\n" in out and "      rule\\x1b[2J: r\n" in out
    assert cli.main(["quarantine", "contrib", "--check", "nope"]) == 1
    assert "(rules that caught rows in contrib: rule\\x1b[2J; all rules: " in capsys.readouterr().err
    assert cli.main(["quarantine", "contrib", "--rows", "1", "--json"]) == 0
    text = capsys.readouterr().out
    assert "\x9b" not in text and "\u202e" not in text
    assert json.loads(text)[0]["rows"][0]["text"] == evil
