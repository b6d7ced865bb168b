"""A new user's walk through README.md's Quick start, "What `dvc repro` builds", Benchmarks and
Layout: what the README and `make repro`'s closing report say can be found and run as written, and
the benchmarks answer a mistyped size with a usage line, not a traceback."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import build as bench_build
from benchmarks import decode as bench_decode
from benchmarks import tokenize_throughput as bench_tokenize
from benchmarks import train_throughput as bench_train
from pipeline import report

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = {
    "build": bench_build,
    "decode": bench_decode,
    "tokenize_throughput": bench_tokenize,
    "train_throughput": bench_train,
}


def _layout_entry(name: str) -> str:
    """The text of one folder's entry in README's Layout block (`pipeline/   ...` up to the next)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    entry = re.search(rf"^{re.escape(name)}\s+(.*?)(?=^\S)", block, re.S | re.M)
    assert entry, f"README.md Layout: no entry for {name}"
    return entry.group(1)


def test_layout_names_every_pipeline_module() -> None:
    """Layout listed 39 of pipeline's 50 modules: notices (NOTICE.md), checkpoint, params, report and
    sources/' hub, http, archive, ... were nowhere, so a reader looking for them found no pointer."""
    entry = _layout_entry("pipeline/")
    modules = [p.stem for p in (ROOT / "pipeline").glob("*.py") if p.stem != "__init__"]
    modules += [p.stem for p in (ROOT / "pipeline" / "sources").glob("*.py") if p.stem != "__init__"]
    missing = sorted(m for m in modules if not re.search(rf"\b{m}\b", entry))
    assert not missing, f"README.md Layout's pipeline/ entry does not name: {missing}"


def test_the_closing_report_suggests_commands_that_run_without_activating(tmp_path, monkeypatch, capsys):
    """`make repro` puts .venv/bin on its own PATH only; its report ended with a bare `nanochatgpt
    quarantine` and `dvc metrics show`: "command not found" in the shell the user is left in."""
    monkeypatch.chdir(tmp_path)  # no artifacts: the missing-transcripts hint is printed too
    report.main()
    out = capsys.readouterr().out
    commands = re.findall(r"(\S*?)\b(nanochatgpt|dvc) [a-z]", out)
    assert len(commands) >= 6, out
    bare = [f"{prefix}{tool}" for prefix, tool in commands if not prefix.endswith(".venv/bin/")]
    assert not bare, f"commands a fresh shell cannot find: {bare}\n{out}"


@pytest.mark.parametrize(
    ("benchmark", "argv", "option"),
    [
        ("build", ["--size-mb", "0"], "--size-mb"),
        ("tokenize_throughput", ["--sizes", "0", "1"], "--sizes"),
        ("tokenize_throughput", ["--workers", "0"], "--workers"),
        ("decode", ["--batch-sizes", "0"], "--batch-sizes"),
        ("decode", ["--batch-sizes", ","], "--batch-sizes"),
        ("decode", ["--new-tokens", "0"], "--new-tokens"),
        ("train_throughput", ["--steps", "0"], "--steps"),
    ],
)
def test_a_size_below_one_is_a_usage_error(benchmark: str, argv: list[str], option: str, capsys) -> None:
    """`--size-mb 0` died in a child with polars' "Cannot infer NDJSON types on empty reader",
    `--batch-sizes 0` with a StopIteration from the engine, `--sizes 0 1` with the tokenize stage's
    missing-column error, and `--steps 0` ran the default number of steps."""
    with pytest.raises(SystemExit) as stop:
        BENCHMARKS[benchmark].main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and option in err, err


def benchmark_parser(
    main: Callable[[list[str]], object], monkeypatch: pytest.MonkeyPatch
) -> argparse.ArgumentParser:
    """The parser a benchmark's `main` builds, caught at its parse_args (nothing of it runs)."""
    parsers: list[argparse.ArgumentParser] = []

    class Parsed(Exception):
        pass

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parsers.append(self)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(Parsed):
        main([])
    return parsers[0]


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_every_benchmark_option_says_what_it_sets(benchmark: str, monkeypatch) -> None:
    """decode's --model, --device, --prompt-len, --new-tokens and tokenize_throughput's --workers
    showed in --help with no word on what they set or their default."""
    silent = [
        action.option_strings[0]
        for action in benchmark_parser(BENCHMARKS[benchmark].main, monkeypatch)._actions
        if action.option_strings and not (action.help or "").strip()
    ]
    assert not silent, f"benchmarks.{benchmark} --help: options without help: {silent}"


def test_the_build_benchmark_runs_the_build_without_warnings(tmp_path, capsys) -> None:
    """Each run printed "build: bench_a: no .../manifest.json, so NOTICE.md holds no licence text
    for it" for both generated sources: a warning about the benchmark's own set-up, not the build."""
    bench_build.generate(tmp_path / "raw", 1)
    bench_build.child_normalize(tmp_path)
    info = bench_build.child_build(tmp_path)
    assert info["rows_read"] > 0
    err = capsys.readouterr().err
    assert "manifest" not in err, err
    notice = (tmp_path / "data" / "dataset" / "full" / "NOTICE.md").read_text()
    assert "## bench_a" in notice and "No download record" not in notice
