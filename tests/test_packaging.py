"""The distributions: ``python -m build`` makes an sdist and a wheel that
carry the JavaScript client and ``py.typed``, and the wheel, installed into
a fresh virtualenv, imports and serves ``client.js``.

The venv gets the already-installed dependencies (Flask, gevent, ...) through
a ``.pth`` file naming this interpreter's site-packages, so nothing is
downloaded; ``.pth`` files *inside* those folders are not run, so an
editable install of flask_streaming there cannot shadow the wheel. The check
runs from a temporary working directory and asserts where the package was
imported from.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import flask_streaming

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "flask_streaming" / "static"

pytestmark = pytest.mark.slow


def _can_build_without_isolation() -> bool:
    """The build backend is importable here (no download needed)."""
    try:
        import setuptools
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    bundles_bdist_wheel = major >= 71  # setuptools 70.1+ ships bdist_wheel
    return major >= 64 and (bundles_bdist_wheel or importlib.util.find_spec("wheel") is not None)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package is not installed: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "build", "--outdir", str(out)]
    if _can_build_without_isolation():
        cmd.append("--no-isolation")  # else build fetches setuptools and wheel from PyPI
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def static_files() -> list[str]:
    return sorted(p.name for p in STATIC.iterdir() if p.is_file())


def test_version_is_in_one_place(dists: dict[str, Path]) -> None:
    version = flask_streaming.__version__
    assert dists["wheel"].name.startswith(f"flask_streaming-{version}-")
    assert dists["sdist"].name in (
        f"flask_streaming-{version}.tar.gz",
        f"flask-streaming-{version}.tar.gz",
    )
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()


def test_wheel_carries_the_js_client_and_py_typed(dists: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    assert "flask_streaming/py.typed" in names
    assert static_files(), "flask_streaming/static is empty"
    for name in static_files():
        assert f"flask_streaming/static/{name}" in names
    assert not any(n.startswith(("tests/", "docs/", "examples/", "benchmarks/")) for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(dists["wheel"]).read(metadata).decode()
    assert "Classifier: Framework :: Flask" in text and "Typing :: Typed" in text
    assert "Provides-Extra: redis" in text and "Provides-Extra: client" in text


def test_sdist_carries_package_docs_and_changelog(dists: dict[str, Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("flask_streaming/py.typed", "CHANGELOG.md", "README.md", "docs/conf.py",
                   "docs/examples/quickstart.py", "setup.cfg", "pyproject.toml"):  # fmt: skip
        assert needed in names
    for name in static_files():
        assert f"flask_streaming/static/{name}" in names
    assert not any("node_modules" in n or "_build/" in n or "__pycache__" in n for n in names)


def test_wheel_installs_in_a_fresh_venv_and_serves_the_client(
    dists: dict[str, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_host_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    install = subprocess.run(
        # --ignore-installed: the host's site-packages (on the venv's path for
        # the dependencies) may hold an editable install of this project,
        # which pip would take as "already satisfied" and install nothing.
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--ignore-installed", "--no-index", "--disable-pip-version-check", "-q",
         str(dists["wheel"])],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr

    check = textwrap.dedent(
        """
        import json, sys
        import flask_streaming
        from flask import Flask
        from flask_streaming import Streaming

        app = Flask("installed", instance_path=sys.argv[1])
        Streaming(app)
        client = app.test_client()
        rules = {r.rule for r in app.url_map.iter_rules()}
        url = "/streaming/client.js"
        if url not in rules:  # before the client route existed: the static folder
            url = "/streaming/static/" + sys.argv[2]
        rv = client.get(url)
        print(json.dumps({
            "file": flask_streaming.__file__,
            "version": flask_streaming.__version__,
            "url": url,
            "status": rv.status_code,
            "mimetype": rv.mimetype,
            "body": rv.get_data(as_text=True)[:20000],
        }))
        """
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    script = "flask-streaming.js" if (STATIC / "flask-streaming.js").exists() else static_files()[0]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [python, "-c", check, str(tmp_path / "instance"), script],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["file"].startswith(str(venv)), f"imported from {result['file']}, not the wheel"
    assert result["version"] == flask_streaming.__version__
    assert result["status"] == 200
    assert result["body"] == (STATIC / script).read_text()[:20000]
    if script.endswith(".js"):
        assert result["mimetype"] in ("text/javascript", "application/javascript")
