"""A Sphinx extension rendering tables from the code, so the reference
cannot drift from it:

* ``.. streaming-errors:: <group>``: status → error codes of a route group
  (``any``, ``events``, ``uploads``, ``tus``), from
  :data:`flask_streaming.error_codes.ERRORS`;
* ``.. streaming-close-reasons::``: the ``reason`` values of
  ``stream-closed``, from :data:`flask_streaming.signals.STREAM_CLOSED_REASONS`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

#: Statuses outside :class:`http.HTTPStatus`.
_PHRASES = {460: "Checksum Mismatch (tus)"}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _PHRASES.get(status, "")


def errors_rst(group: str) -> list[str]:
    """A list-table: status, and each code of *group* with its meaning."""
    from flask_streaming.error_codes import ERRORS, table

    out = [".. list-table::", "   :header-rows: 1", "   :widths: 12 88", ""]
    out += ["   * - status", "     - ``error`` codes"]
    for status, codes in table(group):
        out += [f"   * - {status}", f"       {_phrase(status)}"]
        items = [f"``{c}``: {ERRORS[c].meaning}" for c in codes]
        out += [f"     - * {items[0]}"] + [f"       * {item}" for item in items[1:]]
    return out


def close_reasons_rst() -> list[str]:
    from flask_streaming.signals import STREAM_CLOSED_REASONS

    return [f'* ``"{k}"``: {v}' for k, v in STREAM_CLOSED_REASONS.items()]


class _Generated(SphinxDirective):
    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        content = StringList(self.lines(), source=self.get_source_info()[0])
        self.state.nested_parse(content, self.content_offset, node)
        return node.children


class StreamingErrors(_Generated):
    required_arguments = 1

    def lines(self) -> list[str]:
        return errors_rst(self.arguments[0])


class StreamingCloseReasons(_Generated):
    def lines(self) -> list[str]:
        return close_reasons_rst()


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("streaming-errors", StreamingErrors)
    app.add_directive("streaming-close-reasons", StreamingCloseReasons)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
