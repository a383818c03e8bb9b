"""The committed table of docs/interop.rst (docs/_interop_table.rst) names
exactly the matrix's cells, in order, with the client versions installed
now (tests/js/package-lock.json, the dev extras), and a result for each
that agrees with the known failures. Which results a run proves is checked
by the run itself (conftest.py rewrites the table and fails when it
differs); this test catches, on any run, a version bump or a cell added or
removed without a new table.
"""

from __future__ import annotations

from tests.interop import matrix


def committed_outcomes() -> dict[tuple[str, str], str]:
    """Read the result cells back (``pass`` or ``fails: ...``)."""
    outcomes: dict[tuple[str, str], str] = {}
    blocks = [b.split("\n     - ") for b in matrix.TABLE.read_text().split("\n   * - ")]
    rows = {b[0]: b for b in blocks if b[0] in matrix.CLIENTS}
    assert set(rows) == set(matrix.CLIENTS), "a row per client"
    for client, (_, _, kind, _) in matrix.CLIENTS.items():
        scenarios = matrix.SSE_SCENARIOS if kind == "sse" else matrix.UPLOAD_SCENARIOS
        for i, scenario in enumerate(scenarios):
            result = rows[client][3 + i]
            outcomes[(client, scenario)] = "passed" if result == "pass" else "xfailed"
    return outcomes


def test_committed_table_matches_the_matrix_and_installed_versions() -> None:
    assert matrix.TABLE.read_text() == matrix.render(committed_outcomes()), (
        "docs/_interop_table.rst is stale: run python -m pytest tests/interop and commit it"
    )


def test_every_client_has_a_version_installed() -> None:
    missing = [
        p for _, packages, _, _ in matrix.CLIENTS.values() for p in packages
        if matrix.version(p) == "not installed"
    ]  # fmt: skip
    assert missing == [], (
        f"not installed: {missing} (npm ci --prefix tests/js; pip install -e '.[dev]')"
    )
