"""A Sphinx extension: ``.. streaming-config::`` writes one ``.. data::``
block per ``STREAMING_*`` config key, generated from the fields of
:class:`flask_streaming.settings.Settings` and their ``#:`` comments, so the
reference can never miss a key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _default(value: Any, unit: str) -> str:
    if isinstance(value, frozenset):
        return "``{" + ", ".join(repr(v) for v in sorted(value)) + "}`` (all groups)"
    text = f"``{value!r}``"
    if unit == "bytes" and isinstance(value, int):  # also as a readable size
        text += f" ({_size(value)})"
    return text


def config_fields() -> list[tuple[str, str, str, list[str]]]:
    """``(config key, type, default, doc lines)`` for every settings field;
    the doc lines end with what the key accepts (its check's words)."""
    from flask_streaming.settings import Settings, check_of

    docs = ModuleAnalyzer.for_module("flask_streaming.settings").find_attr_docs()
    rows = []
    previous = ""
    for field in dataclasses.fields(Settings):
        key = f"STREAMING_{field.name.upper()}"
        doc = [line for line in docs.get(("Settings", field.name), []) if line.strip()]
        if doc and doc[0].startswith("...") and previous:
            # "... or this many bytes behind." continues the key before it.
            doc = [f"Continues :data:`{previous}`: {doc[0]}", *doc[1:]]
        if not doc:
            doc = ["(Not documented yet: add a ``#:`` comment to the field.)"]
        previous = key
        check = check_of(field.name)
        doc = [*doc, "", f"Accepts {check.accepted}."]
        rows.append(
            (
                key,
                str(field.type),
                _default(field.default, check.unit),
                doc,
            )
        )
    return rows


def config_rst() -> list[str]:
    """The reStructuredText the directive inserts."""
    out: list[str] = []
    for key, type_, default, doc in config_fields():
        out += [f".. data:: {key}", "", f"   :type: {type_}", ""]
        out += [f"   {line}" for line in doc]
        out += ["", f"   Default: {default}", ""]
    return out


class StreamingConfig(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(ModuleAnalyzer.for_module("flask_streaming.settings").srcname)
        node = nodes.section()
        node.document = self.state.document
        source = self.get_source_info()[0]
        content = StringList(config_rst(), source=source)
        nested_parse_with_titles(self.state, content, node)
        return node.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("streaming-config", StreamingConfig)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
