"""The `nanochatgpt` console script as a shell runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_a_reader_that_left_ends_sources_quietly(extra: list[str]) -> None:
    """`nanochatgpt sources | head -3` used to end in a BrokenPipeError traceback on stderr.

    The pipe's read end is closed before the command starts, so its first write fails every time
    (no race with a reader that has not left yet).
    """
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "sources", *extra],
            cwd=ROOT,
            stdout=write_fd,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_fd)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left


def test_sources_still_prints_to_a_reader() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "sources"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:3] == ["name", "kind", "licence"]


def test_a_command_run_outside_the_root_says_where_the_root_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """From data/contrib/, `check` said the registry was missing; from elsewhere, `chat` said to train
    a model that exists. Both now say where paths were read from and where the root is."""
    from pipeline import cli

    monkeypatch.delenv("NANOCHATGPT_ROOT", raising=False)
    (tmp_path / "params.yaml").write_text("train: {}\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    contrib = tmp_path / "data" / "contrib"
    contrib.mkdir(parents=True)
    (contrib / "mine.txt").write_text("<human> Hi <endOfText>\n<bot> Hello <endOfText>\n")
    monkeypatch.chdir(contrib)
    assert cli.main(["check", "mine.txt"]) == 1
    err = capsys.readouterr().err
    assert "the source registry is missing" in err
    assert err.startswith(
        f"check: paths are read from {contrib.resolve()}, not the project's root: run the command from the "
        f"project's root, {tmp_path.resolve()} ("
    )

    monkeypatch.chdir(tmp_path)  # at the root: the same error has no hint (the registry is missing there)
    assert cli.main(["check", "data/contrib/mine.txt"]) == 1
    err = capsys.readouterr().err
    assert "the source registry is missing" in err and "paths are read from" not in err

    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("hi\n"))
    assert cli.main(["chat", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint at model/ckpt" in err and f"paths are read from {elsewhere.resolve()}" in err


def test_the_root_hint_follows_where_the_missing_path_was_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A review: a typed --ckpt is read from the current directory, so NANOCHATGPT_ROOT pointing at
    the project kept the hint silent while the path was looked for elsewhere; and a wrong
    NANOCHATGPT_ROOT told a user at the root to run from the root."""
    from pipeline import cli
    from pipeline.params import outside_root_hint

    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text("train: {}\n")
    (project / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(project))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(""))
    assert cli.main(["chat", "--device", "cpu"]) == 2
    assert f"paths are read from {tmp_path.resolve()}" in capsys.readouterr().err

    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.chdir(project)
    assert "paths are read from NANOCHATGPT_ROOT" in outside_root_hint()
    assert outside_root_hint(Path.cwd()) == ""


def test_a_missing_project_checkpoint_is_told_to_restore_before_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a failed `dvc exp run` cleared model/ckpt, chat said only "run `dvc repro train`
    first", which trains again (minutes, or hours, with the experiment's params) when `dvc checkout`
    restores the model from the cache in a second."""
    from pipeline import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("hi\n"))
    assert cli.main(["chat", "--device", "cpu", "--ckpt", "model/ckpt"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint at model/ckpt: `dvc checkout model/ckpt` restores the last trained one" in err
    assert "`dvc pull train`" in err


def test_a_mistyped_checkpoint_path_is_not_told_to_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--ckpt model/nope` said "run `dvc repro train` first": a typo sent the user to retrain."""
    from pipeline import cli

    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("hi\n"))
    assert cli.main(["chat", "--device", "cpu", "--ckpt", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert f"no checkpoint at {tmp_path / 'nope'}: no such folder" in err and "dvc repro" not in err
    assert cli.main(["chat", "--device", "cpu", "--ckpt", str(tmp_path)]) == 2
    assert f"no checkpoint at {tmp_path}: the folder holds no model.safetensors" in capsys.readouterr().err


def _modules_after(argv: list[str], names: tuple[str, ...]) -> dict[str, bool]:
    """Which of `names` a fresh process has imported after `nanochatgpt <argv>` parsed its
    arguments (argv ends in --help, so no command runs)."""
    code = (
        f"import sys\nfrom pipeline import cli\ntry:\n    cli.main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(*[m in sys.modules for m in {names!r}])"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(zip(names, (v == "True" for v in proc.stdout.strip().splitlines()[-1].split()), strict=True))


@pytest.mark.parametrize(
    "argv",
    [["--help"]]
    + [[name, "--help"] for name in ("sources", "check", "quarantine", "tokens", "chat", "serve")],
)
def test_no_parser_imports_torch(argv: list[str]) -> None:
    """Building a command's parser (chat, serve, tokens... import their modules for it) never pays
    for importing torch, which only running chat, serve or `tokens --windows` needs."""
    assert _modules_after(argv, ("torch",)) == {"torch": False}


def test_a_command_imports_only_its_own_module() -> None:
    """`nanochatgpt chat` does not import `check`'s module for its parser, and so not polars and
    pandera either (about a second of every chat's start)."""
    from pipeline.cli import COMMANDS

    others = tuple(module for name, (module, _) in COMMANDS.items() if name != "chat")
    seen = _modules_after(["chat", "--help"], ("pipeline.chat", "polars", "pandera", *others))
    assert seen == {name: name == "pipeline.chat" for name in seen}


def test_every_command_is_listed_and_a_misspelt_one_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """The top-level help names every command with its help, though no command's module is
    imported for it; a misspelt command is refused with the list of those there are."""
    from pipeline import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help texts
    for name, (_, help_text) in cli.COMMANDS.items():
        assert f"{name} {help_text}" in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["chta"])
    assert exc.value.code == 2 and "invalid choice: 'chta'" in capsys.readouterr().err
