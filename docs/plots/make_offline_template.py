"""Write docs/plots/offline.html: DVC's plot page with Vega inlined, so `dvc plots show` works offline.

DVC's own page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net: with no network the page
is blank. This template holds the same three builds (the versions DVC's page names) in the page
itself; .dvc/config points `plots.html_template` at it. DVC fills `{plot_divs}` and `{refresh_tag}`
by plain string replacement, so the scripts' braces are safe. Re-make it (npm and the npm registry
needed) with:

    python docs/plots/make_offline_template.py
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {  # npm package -> the build DVC's page loads (dvc_render.vega.VegaRenderer.SCRIPTS)
    "vega@5.20.2": "package/build/vega.min.js",
    "vega-lite@5.2.0": "package/build/vega-lite.min.js",
    "vega-embed@6.18.2": "package/build/vega-embed.min.js",
}
OUT = Path(__file__).with_name("offline.html")


def main() -> None:
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, member in PACKAGES.items():
            name = subprocess.run(
                ["npm", "pack", "-q", spec], cwd=tmp, check=True, capture_output=True, text=True
            ).stdout.split()[-1]
            with tarfile.open(Path(tmp) / name) as tar:
                code = tar.extractfile(member).read().decode("utf-8")
                licence = tar.extractfile("package/LICENSE").read().decode("utf-8")
            if "</script" in code:
                raise SystemExit(f"{spec}: its build holds </script>, which would end the inline script")
            scripts.append(
                f"<!-- {spec} ({member}), licence:\n{licence.strip()}\n-->\n<script>{code}</script>"
            )
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n    {refresh_tag}\n    <title>DVC Plot</title>\n"
        + "\n".join(scripts)
        + "\n    <style>\n        table {\n            border-spacing: 15px;\n        }\n    </style>\n"
        "</head>\n<body>\n    {plot_divs}\n</body>\n</html>\n"
    )
    OUT.write_text(page, encoding="utf-8")
    print(f"{OUT}: {len(page):,} bytes")


if __name__ == "__main__":
    main()
