"""Shared test settings, and the `root` fixture of the tests that download and build sources."""

import shutil
from pathlib import Path

import pytest

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
