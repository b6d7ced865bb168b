"""`nanochatgpt check FILE` as a contributor types it: the files the pipeline pairs with FILE by
its stem come along, so the check says what `dvc repro` will say."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parents[1]
GOOD = "<human> hi there <endOfText>\n<bot> hello! <endOfText>\n\n"
SIDECAR = "licence: CC-BY-4.0\ncommercial: true\ndescription: test\n"


@pytest.fixture(autouse=True)
def project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(ROOT))  # its sources.yaml and params.yaml


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
