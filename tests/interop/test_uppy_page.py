"""The demo's Uppy page: its committed bundle is exactly what
``examples/vendor_uppy.sh`` builds from the npm packages pinned in
tests/js/package-lock.json, and the demo serves the page and the bundle.
(The live Uppy tests, which drive this page, are in test_upload_clients.py.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from examples import uppy as uppy_example
from examples.demo import create_app
from tests.interop.conftest import require_npm_clients
from tests.interop.matrix import ROOT


def test_committed_bundle_is_what_the_script_builds(tmp_path: Path) -> None:
    require_npm_clients()
    subprocess.run(
        ["bash", "examples/vendor_uppy.sh"],
        cwd=ROOT,
        env={**os.environ, "UPPY_OUT": str(tmp_path)},
        check=True,
        capture_output=True,
    )
    built = sorted(p.name for p in tmp_path.iterdir())
    assert built == sorted(p.name for p in uppy_example.BUNDLE_DIR.iterdir())
    for name in built:
        assert (tmp_path / name).read_bytes() == (uppy_example.BUNDLE_DIR / name).read_bytes(), (
            f"examples/static/uppy/{name} is stale: run bash examples/vendor_uppy.sh"
        )


def test_demo_serves_the_uppy_page_and_bundle(tmp_path: Path) -> None:
    app = create_app({"TESTING": True})
    app.instance_path = str(tmp_path)
    client = app.test_client()
    index = client.get("/").get_data(as_text=True)
    assert 'href="/uppy"' in index or "/uppy" in index
    page = client.get("/uppy").get_data(as_text=True)
    assert 'from "/uppy-client/uppy.min.js"' in page and "/streaming/tus/" in page
    with client.get("/uppy-client/uppy.min.js") as js:
        assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
        assert js.get_data() == (uppy_example.BUNDLE_DIR / "uppy.min.js").read_bytes()
    with client.get("/uppy-client/uppy.min.css") as css:
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    with client.get("/uppy-client/VERSION") as other:
        assert other.status_code == 404
