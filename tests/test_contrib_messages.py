"""What a contributor is told about a file: precise reasons and hints, every file's result in one run.

From a user review: a broken nanochatgpt turn did not say what cut it, `<bot>: reply` went in
silently with its colon, `commercial: "true"` was refused with a message that read as a
contradiction, and `nanochatgpt check` over a folder stopped at the first refused file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import cli
from pipeline.sources.adapters import nanochatgpt
from pipeline.sources.contrib import scan_contrib
from pipeline.sources.errors import SourceError
from pipeline.sources.rows import RawRows

ROOT = Path(__file__).resolve().parents[1]
GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n"
SIDECAR = "licence: CC-BY-4.0\ncommercial: true\ndescription: test\n"


@pytest.fixture(autouse=True)
def project(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))  # its sources.yaml and params.yaml
    monkeypatch.chdir(tmp_path)  # messages name files as typed, relative to here


def put(folder: Path, name: str, text: str, sidecar: str | None = SIDECAR) -> Path:
    (folder / name).write_bytes(text.encode())
    if sidecar is not None:
        (folder / f"{Path(name).stem}.yaml").write_text(sidecar)
    return folder / name


def rows_of(path: Path) -> list[tuple[str, str | None, str | None]]:
    """(origin, check, reason) of every row the nanochatgpt reader makes of `path`."""
    rows = RawRows("contrib/x", "MIT", True)
    nanochatgpt.read_file(path, path.name, rows)
    frame = rows.frame()
    return list(zip(frame["origin"], frame["check"], frame["reason"], strict=True))


# 1. A broken turn's reason says what came before its <endOfText>, and where.

BLANK = (
    "before the blank line at line 3 (a blank line ends a conversation, so a turn cannot hold one: "
    "use the openai format for text with blank lines)"
)


@pytest.mark.parametrize(
    ("text", "origin", "cause"),
    [
        (
            "<human> hi <endOfText>\n<bot> First paragraph.\n\nSecond paragraph. <endOfText>\n",
            "p.txt:2",
            BLANK,
        ),
        ("<human> hi\n<bot> yo <endOfText>\n", "p.txt:1", "before the <bot> marker on line 2"),
        ("<human> hi <Bot> yo <endOfText>\n", "p.txt:1", "before the <bot> marker on line 1"),
        (
            "<human> hi <endOfText>\n<bot> yo <|endoftext|>\n",
            "p.txt:2",
            "before the <|endoftext|> separator on line 2",
        ),
        ("<human> hi <endOfText>\n<bot> yo\nmore", "p.txt:2", "at the end of the file"),
    ],
)
def test_a_broken_turn_says_what_cut_it(tmp_path: Path, text: str, origin: str, cause: str) -> None:
    """The reason was "<bot> turn not closed by <endOfText>" whatever cut the turn: a blank line
    between two paragraphs of a reply read as a missing marker. The rule and the rows stay."""
    rows = rows_of(put(tmp_path, "p.txt", text, sidecar=None))
    unclosed = [(o, r) for o, check, r in rows if check == "turn_unclosed"]
    role = "human" if origin == "p.txt:1" else "bot"
    assert unclosed == [(origin, f"<{role}> turn not closed by <endOfText> {cause}")]


def test_the_reported_blank_line_case_keeps_and_quarantines_the_same_rows(tmp_path: Path) -> None:
    """Only the message is more precise: the rows, their rules and the other reasons are as before."""
    text = "<human> hi <endOfText>\n<bot> First paragraph.\n\nSecond paragraph. <endOfText>\n"
    rows = rows_of(put(tmp_path, "p.txt", text, sidecar=None))
    assert [(o, c) for o, c, _ in rows] == [
        ("p.txt:1", None),
        ("p.txt:2", "turn_unclosed"),
        ("p.txt:4", "format"),
    ]
    cut = tmp_path / "cut.txt"
    cut.write_bytes(b"<human> a\n\xff\n<bot> b <endOfText>\n")  # an unreadable line cuts it: as before
    reasons = {o: r for o, c, r in rows_of(cut) if c == "turn_unclosed"}
    assert reasons == {"cut.txt:1": "<human> turn cut by line 2, which is unreadable (utf8)"}


# 2. Turns written `<bot>: reply` are kept, and `check` warns about them.


def test_check_warns_about_turns_that_start_with_a_colon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`<human>: colon style` was kept silently as ": colon style", and the model learns to begin
    its replies with ": ". Now a warning counts them and names the first; the rows are unchanged."""
    from pipeline.check import check_files

    colons = put(
        tmp_path,
        "colons.txt",
        GOOD + "\n<human>: colon style <endOfText>\n<bot>:reply <endOfText>\n<human> : and <endOfText>\n",
    )
    (summary,), _ = check_files([colons], ROOT)
    assert summary["rows_kept"] == 5 and summary["rows_quarantined"] == 0  # kept as they are
    assert cli.main(["check", "--strict", str(colons)]) == 0  # a warning, not a failure
    out = capsys.readouterr().out
    assert "  warning: 3 turns start with ':' right after the marker (first: colons.txt:4);" in out
    assert "remove it (`<bot> reply`, not `<bot>: reply`)" in out
    one = put(tmp_path, "one.txt", "<human> hi <endOfText>\n<bot>: yo <endOfText>\n")
    assert cli.main(["check", str(one)]) == 0
    assert (
        "warning: 1 turn starts with ':' right after the marker (first: one.txt:2)" in capsys.readouterr().out
    )


def test_a_smiley_or_a_colon_later_in_the_turn_is_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # credited, so its CC-BY licence asks for nothing more (test_contrib_attribution.py)
    credited = SIDECAR + 'attribution: "Test author"\n'
    fine = put(tmp_path, "fine.txt", "<human> :) thanks <endOfText>\n<bot> Note: yes <endOfText>\n", credited)
    assert cli.main(["check", str(fine)]) == 0
    assert "warning" not in capsys.readouterr().out


# 3. A quoted boolean in a sidecar: the message says the quotes are the problem.


@pytest.mark.parametrize(
    ("value", "word"), [('"true"', "true"), ("'false'", "false"), ('"yes"', "true"), ('"TRUE"', "true")]
)
def test_a_quoted_boolean_is_told_to_lose_its_quotes(tmp_path: Path, value: str, word: str) -> None:
    """`commercial: "true"` got "must be true or false, not 'true'", which reads as a contradiction."""
    put(tmp_path, "a.txt", GOOD, sidecar=f"licence: MIT\ncommercial: {value}\n")
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    assert str(err.value).endswith(
        f"(text: YAML reads a value in quotes as text; write {word} without quotes)"
    )


def test_other_text_gets_no_quotes_hint(tmp_path: Path) -> None:
    put(tmp_path, "a.txt", GOOD, sidecar="licence: MIT\ncommercial: maybe\n")
    with pytest.raises(SourceError) as err:
        scan_contrib(tmp_path)
    assert str(err.value).endswith("`commercial:` must be true or false, not 'maybe'")


# 4. `check` over several files checks them all: every refused file's error, every other's account.


def test_check_reports_every_file_of_a_folder_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` stopped at the first file the pipeline refuses, so problems came one per run."""
    from pipeline.check import check_files

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    put(inbox, "a_good.txt", GOOD)
    put(inbox, "b_nosidecar.txt", GOOD, sidecar=None)
    put(inbox, "c_quoted.txt", GOOD, sidecar='licence: MIT\ncommercial: "true"\n')
    put(inbox, "d_twin.txt", GOOD)
    (inbox / "d_twin.jsonl").write_text('{"messages": []}\n')
    (inbox / "e_orphan.yaml").write_text(SIDECAR)
    put(inbox, "f_good.txt", GOOD + "\n" + GOOD)
    summaries, quarantine = check_files([Path("inbox")], ROOT)
    assert [(s["file"], "error" in s) for s in summaries] == [
        ("inbox/a_good.txt", False),
        ("inbox/b_nosidecar.txt", True),
        ("inbox/c_quoted.txt", True),
        ("inbox/d_twin.jsonl", True),
        ("inbox/e_orphan.yaml", True),
        ("inbox/f_good.txt", False),
    ]
    assert [s["rows_kept"] for s in summaries if "error" not in s] == [2, 4]
    assert quarantine.height == 0
    errors = [s["error"] for s in summaries if "error" in s]
    assert errors[0].startswith("inbox/b_nosidecar.txt: no sidecar; add inbox/b_nosidecar.yaml")
    assert errors[1].startswith("inbox/c_quoted.yaml: `commercial:` must be true or false, not 'true'")
    assert "d_twin.jsonl, d_twin.txt share the stem 'd_twin'" in errors[2]
    assert errors[3].startswith("inbox/e_orphan.yaml: sidecar without a data file named e_orphan.<ext>")
    assert all("nanochatgpt-check-" not in e for e in errors)  # the contributor's paths

    assert cli.main(["check", "inbox", "missing.txt"]) == 1
    out, err = capsys.readouterr()
    assert "inbox/a_good.txt (nanochatgpt, CC-BY-4.0" in out and "inbox/f_good.txt (nanochatgpt" in out
    lines = err.splitlines()
    assert lines[0] == "check: missing.txt: no such file"
    assert [line.split(":")[1].strip() for line in lines[1:5]] == [
        "inbox/b_nosidecar.txt",
        "inbox/c_quoted.yaml",
        "contrib",  # the stem clash names the folder, as download@contrib does
        "inbox/e_orphan.yaml",
    ]
    assert lines[-1] == (
        "check: 6 of 8 files refused: missing.txt, inbox/b_nosidecar.txt, inbox/c_quoted.txt, "
        "inbox/d_twin.jsonl, inbox/d_twin.txt, inbox/e_orphan.yaml"
    )


def test_a_folder_that_checks_clean_is_still_one_pass_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    put(inbox, "a.txt", GOOD)
    put(inbox, "b.txt", GOOD)
    assert cli.main(["check", "--strict", "inbox"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.count("rows read 2: 2 kept") == 2
