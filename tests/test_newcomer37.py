"""Session 37's new-user walk through README and CONTRIBUTING: what `--help` and `check` told a newcomer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.sources.contrib import parse_sidecar
from pipeline.sources.errors import SourceError

ROOT = Path(__file__).resolve().parents[1]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width


def test_the_top_level_help_says_what_the_tool_does_and_where_to_run_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help(["--help"], capsys)
    assert "console script" not in text and "dispatch" not in text  # was the module's docstring
    assert "Run it from the project's root (the folder holding params.yaml)" in text
    assert "`nanochatgpt COMMAND --help`" in text


def test_a_command_help_says_what_the_command_does(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["check", "--help"], capsys)
    assert "check contributed files (data/contrib/) now" in text  # was the usage and options only


def test_chat_help_names_the_commands_inside_the_chat(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(["chat", "--help"], capsys)
    assert "In the chat: /reset clears the conversation (the persona stays), /exit or /quit" in text
    assert "/help lists these" in text


@pytest.mark.parametrize(
    ("sidecar", "found"), [("- licence: MIT\n", "a list"), ("MIT\n", "the single value 'MIT'")]
)
def test_a_sidecar_that_is_no_mapping_says_what_it_is_and_that_description_is_optional(
    tmp_path: Path, sidecar: str, found: str
) -> None:
    (tmp_path / "chats.yaml").write_text(sidecar)
    with pytest.raises(SourceError) as e:
        parse_sidecar(tmp_path / "chats.txt", tmp_path / "chats.yaml")
    message = str(e.value)
    assert "`description:` optional" in message and message.endswith(f"not {found}"), message
    assert "`key: value`" in message


def test_an_unknown_licence_is_not_echoed_twice(tmp_path: Path) -> None:
    (tmp_path / "chats.yaml").write_text("licence: unknown\ncommercial: true\n")
    with pytest.raises(SourceError) as e:
        parse_sidecar(tmp_path / "chats.txt", tmp_path / "chats.yaml")
    assert "licence is unknown but commercial is true; name the licence you established" in str(e.value)
    (tmp_path / "chats.yaml").write_text("licence: N/A\ncommercial: true\n")  # a placeholder: read as
    with pytest.raises(SourceError) as e:  # unknown, which the message still says
        parse_sidecar(tmp_path / "chats.txt", tmp_path / "chats.yaml")
    assert "licence is 'N/A' (unknown) but commercial is true" in str(e.value)


def test_check_names_a_subfolder_of_contrib_that_repro_will_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corpus put in data/contrib/<folder>/ was passed over in silence by `nanochatgpt check` (and
    by `dvc repro`): the contributor read the other files' accounts as all being well."""
    for name in ("sources.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    contrib = tmp_path / "data" / "contrib"
    (contrib / "mine").mkdir(parents=True)
    (contrib / "mine" / "chats.jsonl").write_text("{}\n")
    (contrib / "mine" / "chats.yaml").write_text("licence: MIT\ncommercial: true\n")
    (contrib / ".cache").mkdir()  # hidden, and a subfolder of only hidden files: nothing to say
    (contrib / ".cache" / "x").write_text("x")
    (contrib / "empty").mkdir()
    (contrib / "empty" / ".gitkeep").write_text("")
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check"]) == 0  # a note, not a refusal: CONTRIBUTING lets subfolders sit there
    err = capsys.readouterr().err
    assert "check: note: data/contrib/mine/ holds 2 files that `dvc repro` will not read" in err, err
    assert ".cache" not in err and "empty/" not in err
