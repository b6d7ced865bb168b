"""`dvc plots show` works offline: the page DVC writes carries Vega itself (docs/plots/offline.html,
set in .dvc/config), where DVC's own page loads it from a CDN and stays blank without the network."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_plot_page_needs_no_network(tmp_path: Path) -> None:
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        pytest.skip("dvc is not installed beside this python")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    out = tmp_path / "plots"
    proc = subprocess.run(
        [dvc, "plots", "show", "-o", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    assert not re.findall(r"<script[^>]*\bsrc=", page)  # nothing to fetch: no CDN, no other file
    assert page.count("vegaEmbed(") >= 5  # the plots dvc.yaml declares, each embedded
    for library in ("vega@5.20.2", "vega-lite@5.2.0", "vega-embed@6.18.2"):
        assert f"<!-- {library} " in page
    assert "{plot_divs}" not in page


def test_each_single_file_plot_says_what_it_shows() -> None:
    """DVC titles a plot with its file's path when dvc.yaml gives none: two variants' bar charts read
    `data/tokens/full/sources.csv` and `data/tokens/commercial/sources.csv` in `dvc plots show` and
    `dvc plots diff`. The stages' plots only: test_plots34 checks the top-level ones (the training
    curves) and that no plot is a folder."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    untitled = [
        path
        for stage in stages.values()
        for entry in (stage.get("do", stage).get("plots") or [])
        if isinstance(entry, dict)
        for path, options in entry.items()
        if Path(path).suffix and not (options or {}).get("title")
    ]
    assert not untitled, f"dvc.yaml: plots with no title (shown as their path): {untitled}"
