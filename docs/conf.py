"""Sphinx configuration for flask_streaming's documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (or ``tox -e docs``).
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # the package and docs.examples, unbuilt

import flask_streaming  # noqa: E402

project = "flask_streaming"
author = "flask_streaming contributors"
copyright = "flask_streaming contributors"
release = flask_streaming.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "streaming_config",
    "streaming_errors",
]


templates_path: list[str] = []
exclude_patterns = ["_build", "examples", "_figures.rst", "_interop_table.rst"]
root_doc = "index"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": False}

html_theme = "furo"
html_title = f"flask_streaming {release}"
html_static_path: list[str] = []

# A warning is an error (-W): keep the build clean rather than silence it.
nitpicky = False
