"""Tests written for mutants of the ``uploads`` mutation slice (the upload
service, its transaction, the native protocol's flow, bodies, locks, file
storage; see docs/testing.rst, "Mutation testing") that survived the suite.
Each test names the mutant it kills; each was checked by applying that
mutant by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask

from flask_streaming import Streaming
from flask_streaming.uploads.json_body import MAX_JSON_DEPTH, json_depth


def make(tmp_path: Path, **options: Any) -> Flask:
    app = Flask("uploads_survivors", instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    Streaming(app, **options)
    return app


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def test_json_depth_counts_from_zero() -> None:
    """``depth = deepest = 0`` made ``-1`` in ``json_depth``: every body
    read one level shallower, so one nested a level past the limit passed."""
    assert json_depth(b"1") == 0
    assert json_depth(b'"[[{"') == 0
    assert json_depth(b"{}") == 1
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(json.dumps(nested(MAX_JSON_DEPTH)).encode()) == MAX_JSON_DEPTH


def test_a_creation_body_one_level_too_deep_is_400(tmp_path: Path) -> None:
    """The same mutant over HTTP: a native creation body nested
    ``MAX_JSON_DEPTH + 1`` levels deep (outside ``metadata``, which the
    service checks again) was accepted."""
    client = make(tmp_path).test_client()
    for levels, status in ((MAX_JSON_DEPTH - 1, 201), (MAX_JSON_DEPTH, 400)):
        rv = client.post("/streaming/uploads", json={"other": nested(levels)})
        assert rv.status_code == status, (levels, rv.get_json())
        if status == 400:
            assert rv.get_json()["error"] == "too_deep"
