"""Every stage entry point reads params.yaml the same way: a params.yaml that is no YAML (or no
mapping), or a stage's section that is no mapping, stops the stage with one line naming the file or
the section, before any work; never a traceback and never a silent run on the defaults
(params.settings)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.params import settings
from stages import build as build_stage
from stages import evaluate as evaluate_stage
from stages import export as export_stage
from stages import normalize as normalize_stage

NOT_YAML = "train: [\n  a: 1\n"  # an unclosed flow list
NOT_A_MAPPING = "- chitchat\n"


@pytest.mark.parametrize("value", [None, {}])
def test_an_absent_or_empty_section_is_the_defaults(value: object) -> None:
    assert settings({"build": value}, "build") == {}
    assert settings({}, "build") == {}


@pytest.mark.parametrize("value", [0, False, [], "", [1], "x"])
def test_a_section_that_is_no_mapping_is_refused(value: object) -> None:
    """`or {}` took the falsy ones (`build: 0`, `normalize: []`) for an empty section."""
    with pytest.raises(ValueError, match=r"^params\.yaml build: expected a mapping of settings, got "):
        settings({"build": value}, "build")


STAGES: dict[str, tuple[Callable[[], int], str]] = {
    "normalize": (lambda: normalize_stage.main(["chitchat"]), "normalize: "),
    "build": (lambda: build_stage.main(["full"]), "build@full: "),
    "export": (export_stage.main, "export: "),
    "evaluate": (evaluate_stage.main, "evaluate: "),
}


def _run(
    stage: str,
    params: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run `stage` in a project holding only `params` as params.yaml; its stderr, checked to be one line
    (a traceback fails the test by propagating)."""
    (tmp_path / "params.yaml").write_text(params, encoding="utf-8")
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    main, prefix = STAGES[stage]
    assert main() == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(prefix) and "\n" not in err, err
    return err


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize(
    ("params", "says"),
    [
        (NOT_YAML, "params.yaml:3: not valid YAML"),
        (NOT_A_MAPPING, "params.yaml: expected a mapping at the top level"),
    ],
    ids=["no-yaml", "no-mapping"],
)
def test_an_unreadable_params_yaml_is_one_line(
    stage: str,
    params: str,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert says in _run(stage, params, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize(
    ("stage", "params", "section"),
    [
        ("normalize", "normalize: 0\n", "normalize"),
        ("normalize", "normalize: []\n", "normalize"),
        ("build", "build: false\n", "build"),
        ("build", "build: {}\nnormalize: []\n", "normalize"),
    ],
)
def test_a_section_that_is_no_mapping_stops_the_stage(
    stage: str,
    params: str,
    section: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before the fix these ran on the defaults (normalize) or went on to the build's inputs."""
    err = _run(stage, params, tmp_path, monkeypatch, capsys)
    assert f"params.yaml {section}: expected a mapping of settings" in err


@pytest.mark.parametrize("train", ["[full]", "{profile: cpu-tiny}", "{variant: ../x}"])
def test_export_names_train_variant(
    train: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `train:` that is a list was an AttributeError traceback; no variant read data/tokens/None."""
    err = _run("export", f"train: {train}\n", tmp_path, monkeypatch, capsys)
    assert err.startswith("export: params.yaml train.variant: expected a dataset variant name")


def test_evaluate_names_train_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate: device 'gpu': expected ...` named no setting."""
    err = _run("evaluate", "train: {variant: full, device: gpu}\n", tmp_path, monkeypatch, capsys)
    assert err.startswith("evaluate: params.yaml train.device: ")
