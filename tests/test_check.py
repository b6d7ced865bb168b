"""`nanochatgpt check`: contributed files through the real download + normalize code, reported per file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parents[1]
GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n\n"
BROKEN = "<human> never closed\n<bot> ok <endOfText>\n\n<human> <endOfText>\n<bot> x <endOfText>\n"


@pytest.fixture(autouse=True)
def project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))  # its sources.yaml and params.yaml


def put(folder: Path, name: str, text: str, licence: str = "CC-BY-4.0", commercial: bool = True) -> Path:
    (folder / name).write_text(text)
    (folder / f"{Path(name).stem}.yaml").write_text(
        f"licence: {licence}\ncommercial: {str(commercial).lower()}\ndescription: test\n"
    )
    return folder / name


def test_each_file_is_accounted_for_row_by_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.check import check_files

    good = put(tmp_path, "good.txt", GOOD * 3)
    mixed = put(tmp_path, "mixed.txt", GOOD + BROKEN, licence="CC-BY-NC-4.0", commercial=False)
    summaries, quarantine = check_files([good, mixed], ROOT)
    by_file = {Path(s["file"]).name: s for s in summaries}
    assert by_file["good.txt"]["rows_kept"] == 6 and by_file["good.txt"]["rows_quarantined"] == 0
    m = by_file["mixed.txt"]
    assert m["rows_read"] == m["rows_kept"] + m["rows_filtered"] + m["rows_quarantined"] == 6
    assert m["by_check"] == {
        "conversation_broken": 1,
        "first_turn_human": 1,
        "text_present": 1,
        "turn_unclosed": 1,
    }
    assert m["examples"][0] == (
        "mixed.txt:4",
        "turn_unclosed",
        "<human> turn not closed by <endOfText> before the <bot> marker on line 5",
    )
    assert sorted(check for _, check, _ in m["examples"]) == sorted(m["by_check"])  # one per rule
    assert by_file["good.txt"]["commercial"] is True and m["commercial"] is False
    assert quarantine.height == 4
    assert cli.main(["check", str(good), str(mixed)]) == 0
    out = capsys.readouterr().out
    assert (
        "mixed.txt (nanochatgpt, CC-BY-NC-4.0; commercial variant: no, its sidecar says commercial: false)"
        in out
    )
    assert "mixed.txt:4  turn_unclosed" in out
    assert cli.main(["check", "--strict", str(mixed)]) == 1  # a contributor's CI can insist on zero
    assert cli.main(["check", "--strict", str(good)]) == 0
    capsys.readouterr()
    unknown = put(tmp_path, "unknown.txt", GOOD, licence="unknown", commercial=True)
    (tmp_path / "unknown.yaml").write_text(
        "licence: unknown\ncommercial: true\ncommercial_reason: I wrote it\ndescription: test\n"
    )
    assert cli.main(["check", str(unknown)]) == 0
    assert "commercial variant: no, licence unknown: name its SPDX id" in capsys.readouterr().out


def test_a_file_the_pipeline_would_refuse_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lonely = tmp_path / "lonely.txt"
    lonely.write_text(GOOD)
    assert cli.main(["check", str(lonely)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("check: ") and "lonely.txt: no sidecar" in err and "\n" not in err
    assert "nanochatgpt-check-" not in err  # the contributor's path, not the scratch copy
    assert cli.main(["check", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt: no such file" in capsys.readouterr().err


def test_a_link_named_on_the_command_line_is_refused_like_one_in_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check chat.txt` with chat.txt a link (to a secret, say) copied the target into the check;
    a link in data/contrib/ was already refused. Its sidecar as a link too."""
    secret = tmp_path / "secret.txt"
    secret.write_text(GOOD)
    folder = tmp_path / "pr"
    folder.mkdir()
    (folder / "chat.txt").symlink_to(secret)
    (folder / "chat.yaml").write_text("licence: CC0-1.0\ncommercial: true\ndescription: test\n")
    assert cli.main(["check", str(folder / "chat.txt")]) == 1
    err = capsys.readouterr().err
    assert "chat.txt: a symbolic link" in err and "commit the file itself" in err
    good = put(folder, "good.txt", GOOD)
    (folder / "good.yaml").rename(tmp_path / "good.yaml")
    (folder / "good.yaml").symlink_to(tmp_path / "good.yaml")
    assert cli.main(["check", str(good)]) == 1
    assert "good.yaml: a symbolic link" in capsys.readouterr().err


def test_the_shipped_contrib_folder_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--strict"]) == 0
    assert "nanochatgpt-sample.txt (nanochatgpt, CC0-1.0; commercial variant: yes)" in capsys.readouterr().out


def test_files_from_several_folders_are_each_checked_and_named_where_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same-named files in two folders each get their own account (one scratch copy would keep only
    the last, reported under the first's name), and a directory checks its files."""
    from pipeline.check import check_files

    monkeypatch.chdir(tmp_path)
    for sub in ("a", "b", "sp ace"):
        (tmp_path / sub).mkdir()
    a = put(tmp_path / "a", "x.txt", GOOD)
    b = put(tmp_path / "b", "x.txt", GOOD * 2 + BROKEN, licence="CC-BY-NC-4.0", commercial=False)
    spaced = put(tmp_path / "sp ace", "my file.txt", GOOD)
    summaries, quarantine = check_files([a, b, Path("sp ace") / "my file.txt"], ROOT)
    got = {s["file"]: (s["licence"], s["rows_kept"], s["rows_quarantined"]) for s in summaries}
    assert got == {
        "a/x.txt": ("CC-BY-4.0", 2, 0),
        "b/x.txt": ("CC-BY-NC-4.0", 4, 4),
        "sp ace/my file.txt": ("CC-BY-4.0", 2, 0),
    }
    assert quarantine.height == 4
    summaries, _ = check_files([Path("b"), spaced.resolve()], ROOT)  # a folder: every file in it
    assert [s["file"] for s in summaries] == ["b/x.txt", "sp ace/my file.txt"]
    assert cli.main(["check", "--strict", "a", "b"]) == 1
    assert (
        "b/x.txt (nanochatgpt, CC-BY-NC-4.0; commercial variant: no, its sidecar says"
        in capsys.readouterr().out
    )


def test_every_rule_gets_an_example_however_many_rows_one_rule_caught(tmp_path: Path) -> None:
    from pipeline.check import check_files

    unclosed = "<human> hi\n<bot> ok <endOfText>\n\n" * 7  # seven rows of one rule first
    empty = "<human> <endOfText>\n<bot> ok <endOfText>\n\n"  # then another rule
    (s,), _ = check_files([put(tmp_path, "many.txt", unclosed + empty)], ROOT)
    rules = [check for _, check, _ in s["examples"]]
    assert sorted(rules) == sorted(s["by_check"]) and "text_present" in rules
    assert len(rules) == len(set(rules))  # the first row of each, not seven of the first


def test_an_unknown_role_is_named_as_the_file_spelled_it(tmp_path: Path) -> None:
    from pipeline.check import check_files

    record = '{"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "poof"}]}\n'
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    f = put(tmp_path, "roles.jsonl", good + record)
    (summary,), quarantine = check_files([f], ROOT)
    assert summary["by_check"]["role_valid"] == 1
    reasons = quarantine.filter(quarantine["check"] == "role_valid")["reason"].to_list()
    assert reasons == ["role 'wizard' is not one this format maps to human or bot"]


def test_the_turn_tables_own_role_names_are_unknown_roles_in_a_message_format(tmp_path: Path) -> None:
    """`bot` and `human` are no openai roles (CONTRIBUTING.md: `user` is the human, `assistant` the
    bot): they were kept as turns, because the adapter passed an unmapped role on as spelled and
    those two spellings are the turn table's own, while `Bot` or `gpt` were quarantined."""
    from pipeline.check import check_files

    record = '{"messages": [{"role": "human", "content": "hi"}, {"role": "bot", "content": "poof"}]}\n'
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    f = put(tmp_path, "roles.jsonl", good + record)
    (summary,), quarantine = check_files([f], ROOT)
    assert summary["rows_kept"] == 2 and summary["by_check"] == {"role_valid": 2}
    reasons = quarantine.filter(quarantine["check"] == "role_valid")["reason"].to_list()
    assert reasons == [f"role '{r}' is not one this format maps to human or bot" for r in ("human", "bot")]
    # ShareGPT exports do write `bot` for the model: that format maps it, so it stays a turn there.
    share = '{"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "poof"}]}\n'
    (summary,), _ = check_files([put(tmp_path, "share.jsonl", share)], ROOT)
    assert summary["rows_kept"] == 2 and summary["by_check"] == {}


def test_files_in_data_contrib_that_dvc_repro_skips_are_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` on a file in a subfolder of data/contrib/ (or a hidden one) used to say it goes in,
    while download@contrib copies the top level only: now it says `dvc repro` will not read it."""
    for name in ("sources.yaml", "params.yaml"):
        shutil.copyfile(ROOT / name, tmp_path / name)
    contrib = tmp_path / "data" / "contrib"
    (contrib / "more").mkdir(parents=True)
    top = put(contrib, "top.txt", GOOD)
    put(contrib / "more", "extra.txt", GOOD)
    put(contrib, ".hidden.txt", GOOD)
    draft = put(tmp_path, "draft.txt", GOOD)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (contrib / "README.md").write_text("How to contribute\n")
    (contrib / ".gitkeep").write_text("")
    assert cli.main(["check", str(top)]) == 0
    # the folder itself: what both skip there (README, .gitkeep, a subfolder) is no slip of the user's
    assert cli.main(["check", "data/contrib/"]) == 0
    assert cli.main(["check", str(draft)]) == 0  # checked before it is copied in: nothing to say
    assert "will not read" not in capsys.readouterr().err
    for named in ("data/contrib/more/extra.txt", "data/contrib/more"):
        assert cli.main(["check", named]) == 1
        out = capsys.readouterr()
        assert "check: data/contrib/more/extra.txt: `dvc repro` will not read it" in out.err
        assert "extra.txt (nanochatgpt, CC-BY-4.0" in out.out  # what it holds is still checked
    assert cli.main(["check", "data/contrib/.hidden.txt"]) == 1
    out = capsys.readouterr()
    assert "data/contrib/.hidden.txt: `dvc repro` will not read it" in out.err
    assert "no contributed files" not in out.out


def test_a_sidecar_beside_a_note_says_the_note_is_skipped(tmp_path: Path) -> None:
    from pipeline.sources.contrib import scan_contrib
    from pipeline.sources.errors import SourceError

    put(tmp_path, "notes.md", GOOD)
    with pytest.raises(SourceError, match=r"notes\.yaml: sidecar without a data file named notes\.<ext> "):
        scan_contrib(tmp_path)
    with pytest.raises(SourceError, match=r"notes\.md is read as a note and skipped"):
        scan_contrib(tmp_path)


def test_a_file_that_keeps_no_row_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A new-user walkthrough: a file whose every row was quarantined was lost to the dataset, and
    `check` (without --strict) exited 0, which a contributor's CI reads as "it goes in"."""
    lost = put(tmp_path, "lost.txt", "<bot> a bot turn first <endOfText>\nnot a turn at all\n")
    good = put(tmp_path, "good.txt", GOOD)
    assert cli.main(["check", str(good)]) == 0
    assert cli.main(["check", str(good), str(lost)]) == 1
    captured = capsys.readouterr()
    assert "rows read 2: 0 kept" in captured.out
    assert captured.err.strip().endswith("lost.txt: no row kept, so nothing from it reaches the dataset")


# `check FILE` as a contributor types it: the files the pipeline pairs with FILE by its stem come
# along, so the check says what `dvc repro` will say.
SIDECAR = "licence: CC-BY-4.0\ncommercial: true\ndescription: test\n"


def test_naming_the_sidecar_checks_its_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check chats.yaml` said "sidecar without a data file named chats.<ext>" with chats.txt beside it."""
    (tmp_path / "chats.txt").write_text(GOOD)
    (tmp_path / "chats.yaml").write_text(SIDECAR)
    assert cli.main(["check", str(tmp_path / "chats.yaml")]) == 0
    captured = capsys.readouterr()
    assert "sidecar without a data file" not in captured.err
    assert "chats.txt (nanochatgpt, CC-BY-4.0; commercial variant: yes)" in captured.out
    assert "rows read 2: 2 kept (1 conversation)" in captured.out


def test_a_sidecar_alone_is_still_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "chats.yaml").write_text(SIDECAR)
    (tmp_path / "chats.md").write_text("notes: a note is not a data file\n")
    assert cli.main(["check", str(tmp_path / "chats.yaml")]) == 1
    assert "sidecar without a data file named chats.<ext>" in capsys.readouterr().err


def test_a_data_file_sharing_its_stem_fails_the_check_as_it_fails_the_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check chats.jsonl` beside chats.txt said it goes in; `dvc repro` refuses the pair."""
    (tmp_path / "chats.txt").write_text(GOOD)
    (tmp_path / "chats.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
    )
    (tmp_path / "chats.yaml").write_text(SIDECAR)
    assert cli.main(["check", str(tmp_path / "chats.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "chats.jsonl, chats.txt share the stem 'chats'" in err, err
    # a hidden file or a note of that stem is not a data file, for the check as for the pipeline
    (tmp_path / "chats.jsonl").rename(tmp_path / ".chats.jsonl")
    assert cli.main(["check", str(tmp_path / "chats.txt")]) == 0


def test_the_closing_line_counts_and_names_both_files_of_a_stem_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """a.jsonl and a.txt beside one sidecar, and a good b.txt: the last line said "1 of 2 files
    refused: a.jsonl", as if a.txt were checked and fine, and three data files were two."""
    put(tmp_path, "a.txt", GOOD)
    (tmp_path / "a.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
    )
    put(tmp_path, "b.txt", GOOD)
    assert cli.main(["check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert f"{tmp_path}/b.txt (nanochatgpt" in out
    assert err.splitlines()[-1] == f"check: 2 of 3 files refused: {tmp_path}/a.jsonl, {tmp_path}/a.txt", err


def test_the_description_is_shown_as_the_card_will_describe_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sidecar's description, on one line and inert at the terminal, or a hint when there is none:
    it is what the dataset card and NOTICE.md describe the file by."""
    said = put(tmp_path, "said.txt", GOOD)
    (tmp_path / "said.yaml").write_text(
        'licence: MIT\ncommercial: true\ndescription: "Chats \\e[31mI wrote\\nmyself"\n'
    )
    bare = put(tmp_path, "bare.txt", GOOD)
    (tmp_path / "bare.yaml").write_text("licence: MIT\ncommercial: true\n")
    assert cli.main(["check", str(said), str(bare)]) == 0
    out = capsys.readouterr().out
    assert "  described as: Chats \\x1b[31mI wrote myself\n" in out and "\x1b" not in out
    assert "  no description: the dataset card will name the file only" in out


def test_a_file_name_holding_terminal_escapes_is_shown_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug hunt: a contributed file's name is quoted by its header, its origins (file:line), its
    reasons and its errors, and an ESC in it (here: erase the line, set the window title) reached
    the terminal raw, while its description was already shown inert."""
    evil = "chats\x1b[2K\x1b]0;title\x07"
    lost = put(tmp_path, f"{evil}.txt", "<bot> a bot turn first <endOfText>\nnot a turn at all\n")
    lonely = tmp_path / f"{evil}-alone.txt"
    lonely.write_text(GOOD)
    assert cli.main(["check", str(lost), str(lonely), str(tmp_path / f"{evil}-missing.txt")]) == 1
    captured = capsys.readouterr()
    shown = "chats\\x1b[2K\\x1b]0;title\\x07"
    assert "\x1b" not in captured.out + captured.err and "\x07" not in captured.out + captured.err
    assert f"{shown}.txt (nanochatgpt" in captured.out and f"    {shown}.txt:1  " in captured.out
    assert f"{shown}-alone.txt: no sidecar" in captured.err
    assert f"{shown}-missing.txt: no such file" in captured.err
    assert f"{shown}.txt: no row kept" in captured.err


def test_why_a_flagged_file_is_kept_out_names_its_licence_bar() -> None:
    """`check` said "licence unknown: name its SPDX id" for every flagged file the commercial variant
    leaves out, also one whose licence forbids commercial use (naming an SPDX id would not help)."""
    from pipeline.check import _why_not_commercial

    assert _why_not_commercial(True, "CC-BY-NC-4.0") == (
        "the licence CC-BY-NC-4.0 forbids commercial use: set commercial: false in the sidecar"
    )
    assert _why_not_commercial(True, "unknown") == "licence unknown: name its SPDX id in the sidecar"
    assert _why_not_commercial(True, "MIT") is None
