"""constraints.txt, the lock `make install` applies: it pins every package the install takes, agrees
with pyproject.toml's own pins and ranges, and is what the tests run on (Makefile: `make lock`)."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"


def locked() -> dict[str, Version]:
    """constraints.txt as {canonical name: version}; a malformed or repeated line fails the test."""
    pins: dict[str, Version] = {}
    for n, line in enumerate(LOCK.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;#]+)", line)
        assert m, f"constraints.txt:{n}: {line!r} is not name==version"
        name, version = canonicalize_name(m.group(1)), Version(m.group(2))
        assert name not in pins, f"constraints.txt:{n}: {name} pinned twice"
        # A local label (torch's +cpu) would refuse the same release built for CUDA or from PyPI.
        assert version.local is None, f"constraints.txt:{n}: {line!r} has a local version label"
        pins[name] = version
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = project["dependencies"] + [
        s for extra in project["optional-dependencies"].values() for s in extra
    ]
    return [Requirement(s) for s in specs]


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = locked()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"pyproject.toml's {req} is not in constraints.txt: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {req}: run `make lock`"
        )


def test_the_tests_run_on_the_locked_versions() -> None:
    """The environment `make test` made is the lock's: a pin the install did not apply (a Makefile
    that lost its `-c`, a lock edited without reinstalling) shows here as a version that differs."""
    venv = ROOT / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve() or not (venv / ".installed").is_file():
        pytest.skip("not running in the environment `make install` made (.venv)")
    differ = []
    for name, version in locked().items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            # The lock pins versions, not the choice of packages: on another Python or platform a
            # conditional dependency (funcy below 3.12, colorama on Windows) is rightly absent.
            continue
        if installed.public != version.public:  # 2.13.0+cpu is the lock's 2.13.0
            differ.append(f"{name} {installed} (locked {version})")
    assert not differ, "installed versions differ from constraints.txt: " + ", ".join(differ)


def test_make_install_applies_the_lock_and_reinstalls_when_it_changes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^LOCK\s*:=\s*constraints\.txt$", makefile, re.M)
    assert re.search(r"^\$\(STAMP\):.*\$\(LOCK\)", makefile, re.M), "a new lock must reinstall"
    installs = [line for line in makefile.splitlines() if "$(PY) -m pip install" in line]
    assert installs and all("-c $(LOCK)" in line for line in installs), installs
