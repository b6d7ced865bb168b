"""Shared test settings, and the `root` fixture of the tests that download and build sources."""

import os
import shutil
from pathlib import Path

import pytest

# Before anything imports torch (libgomp reads it once, as it loads; the tests' subprocesses inherit
# it): OpenMP threads that wait for work sleep instead of spinning. On a machine whose cores are
# shared (CI beside `make repro`), a spinning thread holds a core the thread it waits for needs, and
# each small kernel waits out a time slice: a tiny model's decode step took ~20x as long. Where
# threads wait is only speed, never a result; a policy set by the caller is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]

try:
    from hypothesis import HealthCheck, settings
except ModuleNotFoundError:  # a python without the test extras (the GPU check's device image may be
    settings = None  # one): only tests/test_properties_*.py need hypothesis, and they import it

# Property tests (tests/test_properties_*.py) replay the same examples on every machine: CI cannot
# fail on a draw a developer never saw, and no example database is kept between runs. Example I/O
# (parquet files, tokenization) is slow next to hypothesis' expectations, hence no deadline.
if settings is not None:
    settings.register_profile(
        "reproducible",
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.load_profile("reproducible")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with the real registry and params, and an empty data/contrib/; the Hub offline
    (read from tmp_path/hf-cache) and no token (tests/test_sources.py, test_notices*.py)."""
    shutil.copy(REPO / "sources.yaml", tmp_path / "sources.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    # the licence texts sources.yaml's `licence_text:` entries name (checked on load)
    shutil.copytree(REPO / "data" / "licences", tmp_path / "data" / "licences")
    (tmp_path / "data" / "contrib").mkdir(parents=True)
    monkeypatch.setenv("NANOCHATGPT_ROOT", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("NANOCHATGPT_DOWNLOAD_CACHE", str(tmp_path / "dl-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def toy_repro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The toy project (tests/toy_project.py, with fixtures/e2e/contrib) after its one `dvc repro`,
    and the environment its commands run in. Built once per session, as it is the suite's costliest
    setup (the whole graph, training included): the tests never touch it, each takes `copy_project`."""
    from toy_project import E2E_CONTRIB, make_project

    repo = tmp_path_factory.mktemp("toy-repro")
    return repo, make_project(repo, extra_contrib=E2E_CONTRIB)


@pytest.fixture(scope="session")
def straight_kill_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tokens, run folder): synthetic token shards and tests/test_train.py's KILL_RUN trained on them
    uninterrupted, in a fresh process as the kill tests run theirs. Trained once per session: the kill
    tests of tests/test_train.py and tests/test_train_resume.py only read its weights and logs, and
    train their killed runs on the same shards."""
    from test_train import KILL_RUN, _run_driver, write_tokens

    base = tmp_path_factory.mktemp("straight-kill-run")
    tokens = write_tokens(base / "tokens" / "full")
    _run_driver(KILL_RUN, base / "straight", tokens)
    return tokens, base / "straight"
