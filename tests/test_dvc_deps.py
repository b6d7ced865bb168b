"""dvc.yaml lists, for every stage, the code it runs: else editing a module leaves stale outputs
that `dvc repro` calls up to date. The code a stage runs is found by reading imports (including
those inside functions) from its `python -m stages.<name>` module onwards."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

# Plumbing: how files are written, where params.yaml is, how a message reads. A change there
# cannot change a stage's outputs, and listing it would re-run the whole graph (training too).
PLUMBING = {
    "pipeline/__init__.py",
    "pipeline/atomic.py",
    "pipeline/params.py",
    "pipeline/errortext.py",
    "pipeline/streamencoding.py",  # refuses a locale whose file names polars cannot open
    "pipeline/cli.py",
    "pipeline/sources/errors.py",
    "pipeline/sources/__init__.py",  # re-exports SourceError
    "stages/__init__.py",
}
# Imported, but by code the stage does not run; each with the reason.
NOT_RUN = {
    # registry.py runs it only to check each sources.yaml entry's adapter name and options (the entry
    # loads or is refused): nothing the build writes comes from it
    "build": {"pipeline/sources/adapters/__init__.py"},
}


def _module_file(module: str) -> Path | None:
    for path in (ROOT / f"{module.replace('.', '/')}.py", ROOT / module.replace(".", "/") / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path) -> set[str]:
    """Every module (and `from m import name` as m.name: it may be a submodule) `path` imports."""
    package = path.relative_to(ROOT).parent.as_posix().replace("/", ".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("pipeline", "stages")}


def code_run_by(module: str) -> set[str]:
    """Repository-relative paths of `module` and every project module it imports, transitively,
    with the packages (__init__.py) on the way."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b runs a
        path = _module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path))
    return {p.relative_to(ROOT).as_posix() for p in seen}


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_depends_on_the_code_it_runs(stage: str) -> None:
    body = STAGES[stage].get("do", STAGES[stage])
    module = re.fullmatch(r"python -m (\S+)(?: \S+)?", body["cmd"])
    assert module, f"{stage}: cmd {body['cmd']!r} is not `python -m stages.<name> [item]`"
    deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])]
    expected = code_run_by(module.group(1)) - PLUMBING - NOT_RUN.get(stage, set())
    missing = sorted(p for p in expected if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage}: add to deps {missing}"


def test_the_import_reader_sees_lazy_imports() -> None:
    """evaluate runs chat sessions through an import inside a function: it must be found."""
    assert "pipeline/chatsession.py" in code_run_by("pipeline.evaluate")
    assert "pipeline/sources/registry.py" in code_run_by("stages.registry")
    assert "pipeline/model.py" not in code_run_by("pipeline.sources.registry")


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pipeline/sources/__pycache__/download.cpython-311.pyc", True),  # written by any import
        ("pipeline/__pycache__/model.cpython-312.pyc", True),
        ("data/tokens/full/.train.c1z_rlud.tmp/mask-00000.bin", True),  # a killed tokenize's shards
        ("data/normalized/.chitchat.parquet.odp4wu7f.tmp", True),  # a killed normalize's table
        ("data/dataset/.full.old/train.parquet", True),  # atomic_dir's previous copy
        ("pipeline/sources/download.py", False),
        ("data/tokens/full/train/tokens-00000.bin", False),
        ("data/contrib/nanochatgpt-sample.txt", False),
    ],
)
def test_dvc_hashes_neither_bytecode_nor_a_killed_writes_leftovers(path: str, ignored: bool) -> None:
    """A folder dep's hash must not move when Python writes bytecode beside the code (every
    download and normalize re-ran) or when a stage restored from the run-cache keeps a killed run's
    temporary copy (train re-ran on unchanged shards)."""
    import os

    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        assert repo.dvcignore.is_ignored(repo.fs, str(ROOT / path)) is ignored


def test_train_is_never_saved_to_the_run_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `train.init_from: resume` extension's weights depend on model/run (the run it extends),
    which is no dep: DVC's run-cache, keyed on deps and params, handed one extension's weights to
    another (same max_iters, other run) without training. DVC saves no run-cache entry for a stage
    with an uncached output that is no metric or plot (dvc.stage.Stage.run); model/ckpt stays an
    ordinary output, which DVC clears before the stage runs (train tells a run that died finishing
    by its absence)."""
    from dvc.repo import Repo

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    with Repo(str(ROOT)) as repo:
        stages = {s.addressing: s for s in repo.index.stages}

        def uncached_plain_outs(name: str) -> list[str]:
            return [o.def_path for o in stages[name].outs if not (o.use_cache or o.is_metric or o.is_plot)]

        # dvclive's curves too: dvc.yaml's top-level `plots:` draws them, from a plain output
        assert uncached_plain_outs("train") == ["model/live/metrics.json", "model/live/plots/metrics"]
        assert not any(o.persist for o in stages["train"].outs)
        assert uncached_plain_outs("tokenize@full") == []  # data stages still come back from the cache


def test_an_adapter_edit_does_not_re_download() -> None:
    """download@* depended on all of pipeline/sources: editing one adapter re-ran every download, and
    a url source (its file moved out of the download cache) needed the network again."""
    deps = STAGES["download"]["do"]["deps"]
    adapters = sorted((ROOT / "pipeline/sources/adapters").glob("[!_]*.py"))
    assert adapters
    for adapter in adapters:
        assert not _covered(adapter.relative_to(ROOT).as_posix(), deps), adapter.name
    normalize = STAGES["normalize"]["do"]["deps"]
    assert all(_covered(a.relative_to(ROOT).as_posix(), normalize) for a in adapters)
