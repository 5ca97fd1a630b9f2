"""Write .dvc/plots_offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

DVC's own page (`dvc plots show`, `dvc plots diff`) loads the three libraries from a CDN, so in a
lab without internet no plot draws. .dvc/config points DVC at this template instead
(`plots.html_template`); it has no `{scripts}` placeholder, so DVC adds no CDN script tags.

The libraries come from the npm registry, at the versions below, each checked against its
registry integrity hash; the file is committed, so users never run this. To move to other
versions: edit PACKAGES (versions and the `dist.integrity` of `npm view <pkg>@<version>`), run
`python tools/build_plots_template.py`, and commit the result with the test
(tests/pipeline/test_dvc_pipeline.py draws every plot in Chromium with the network cut off).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
# the major versions DVC's own page loads (dvc_render.vega.VegaRenderer.SCRIPTS): vega 5,
# vega-lite 5, vega-embed 6; the newest release of each
PACKAGES = {
    "vega": ("5.33.1", "build/vega.min.js",
             "sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="),
    "vega-lite": ("5.23.0", "build/vega-lite.min.js",
                  "sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="),
    "vega-embed": ("6.29.0", "build/vega-embed.min.js",
                   "sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="),
}  # fmt: skip
OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots_offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- {names}: inlined (tools/build_plots_template.py), so the page draws without internet.
         Their licenses at the end of this file. -->
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
<!--
{licenses}
-->
"""


def fetch(name: str, version: str, integrity: str) -> tarfile.TarFile:
    url = f"{REGISTRY}/{name}/-/{name}-{version}.tgz"
    data = urllib.request.urlopen(url, timeout=60).read()
    algorithm, expected = integrity.split("-", 1)
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise SystemExit(f"{url}: integrity {algorithm}-{got}, expected {integrity}")
    return tarfile.open(fileobj=io.BytesIO(data))


def build() -> str:
    scripts, licenses = [], []
    for name, (version, path, integrity) in PACKAGES.items():
        with fetch(name, version, integrity) as tar:
            code = tar.extractfile(f"package/{path}").read().decode()
            meta = json.loads(tar.extractfile("package/package.json").read())
            if "package/LICENSE" in tar.getnames():
                text = tar.extractfile("package/LICENSE").read().decode()
            else:  # vega's package ships none: its license field and where the text is
                repository = meta.get("repository")
                where = repository.get("url") if isinstance(repository, dict) else repository
                text = f"{meta['license']} (the package ships no LICENSE file; the text: {where}, LICENSE)"
        if "</script" in code.lower() or "-->" in text:
            raise SystemExit(f"{name} {version} cannot be inlined as it is")
        for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):  # DVC fills these in
            if placeholder in code:
                raise SystemExit(f"{name} {version} holds DVC's placeholder {placeholder}")
        scripts.append(f"    <script>/* {name}@{version} */\n{code.strip()}\n    </script>")
        licenses.append(f"{name}@{version}:\n{text.strip()}")
    names = ", ".join(f"{n}@{v}" for n, (v, _, _) in PACKAGES.items())
    return PAGE.format(names=names, scripts="\n".join(scripts), licenses="\n\n".join(licenses))


if __name__ == "__main__":
    OUT.write_text(build())
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB): {json.dumps({n: v for n, (v, _, _) in PACKAGES.items()})}")
