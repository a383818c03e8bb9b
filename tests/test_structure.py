"""Tests that pin the package's structure (issue 17, "tests that pin the
structure"), read from the source with :mod:`ast`:

* no import cycle inside ``flask_streaming/``: top-level imports, imports
  inside functions and ``TYPE_CHECKING`` imports are all edges (a cycle
  hidden behind a lazy import or ``TYPE_CHECKING`` is still a cycle of the
  design); importing a package's ``__init__`` (its re-exports) is for code
  outside that package only: a module inside it doing so is a cycle;
* no module uses another module's private names: ``from .x import _name``,
  ``x._name`` on an imported module, ``getattr(obj, "_name")`` and
  ``obj._name`` where ``_name`` is an attribute only another module of the
  package defines;
* the client and the wire format load no Flask, Werkzeug, blinker or
  server module (PEP 562 lazy imports of the package root).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_streaming"


@dataclasses.dataclass
class Module:
    name: str  # dotted, e.g. "flask_streaming.uploads.tus"
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


def package_modules(root: Path = PACKAGE) -> dict[str, Module]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return out


def imports(
    module: Module, known: dict[str, Module]
) -> Iterator[tuple[str, ast.Import | ast.ImportFrom, str]]:
    """``(target module, node, imported name)`` of every import of the package
    anywhere in *module*; ``from p import x`` imports the submodule ``p.x``
    when there is one, else ``x`` from ``p`` (its ``__init__`` when ``p`` is
    a package)."""
    top = module.name.partition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] == top:
                    yield alias.name, node, ""
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.partition(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub, node, "") if sub in known else (target, node, alias.name)


def import_graph(known: dict[str, Module]) -> dict[str, set[str]]:
    return {
        name: {target for target, _, _ in imports(module, known) if target != name}
        for name, module in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan),
    each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def inward_init_imports(known: dict[str, Module]) -> list[str]:
    """Modules that import the ``__init__`` of a package they are part of."""
    out = []
    for name, module in known.items():
        for target, node, _ in imports(module, known):
            is_package = known[target].path.name == "__init__.py" if target in known else False
            if is_package and name != target and name.startswith(target + "."):
                out.append(f"{name}:{node.lineno} imports {target} (its package's __init__)")
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_private_attributes(module: Module) -> set[str]:
    """Private names *module* defines: top-level and class-level names,
    functions, attributes it assigns (``self._x = ...``) and ``__slots__``."""
    out: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets)
            and isinstance(node.value, ast.Tuple | ast.List)
        ):
            out |= {
                e.value
                for e in node.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
    return {n for n in out if _private(n)}


#: Private attributes of other libraries' objects that the package reads on
#: purpose, whose names a module of ours happens to define too: the check
#: goes by name and cannot tell the owners apart.
THIRD_PARTY_PRIVATE = {
    # transport: gevent's socket object keeps the OS socket as ``_sock``
    # (uploads/bodies.py keeps its own ``self._sock``)
    "_sock",
}


def private_name_uses(known: dict[str, Module]) -> list[str]:
    """Uses of another package module's private names."""
    defined = {
        name: defined_private_attributes(m) - THIRD_PARTY_PRIVATE for name, m in known.items()
    }
    out = []
    for name, module in known.items():
        where = module.name
        mine = defined[name]
        elsewhere = set().union(*(d for other, d in defined.items() if other != name)) - mine
        module_aliases: set[str] = set()
        for target, imp, imported in imports(module, known):
            if target == name:
                continue
            if imported and _private(imported):
                out.append(f"{where}:{imp.lineno}: from {target} import {imported}")
            if not imported:  # a module bound to a name: "from . import x", "import a.b as x"
                for alias in imp.names:
                    if isinstance(imp, ast.ImportFrom) or alias.asname:
                        module_aliases.add(alias.asname or alias.name)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                receiver = node.value.id if isinstance(node.value, ast.Name) else ""
                # self._x of a base class in another module: a subclass's own business
                inherited = receiver in ("self", "cls")
                if receiver in module_aliases or (node.attr in elsewhere and not inherited):
                    out.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and node.args[1].value in elsewhere
            ):
                out.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return out


# -- the tests ----------------------------------------------------------------------------


def test_no_import_cycle_in_the_package() -> None:
    known = package_modules()
    found = cycles(import_graph(known))
    assert found == [], "import cycles (top-level, lazy and TYPE_CHECKING imports):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_no_module_imports_the_init_of_its_own_package() -> None:
    assert inward_init_imports(package_modules()) == []


def test_no_module_uses_another_modules_private_names() -> None:
    assert private_name_uses(package_modules()) == []


# The checks themselves, on small packages written for them: each rule must
# see what it is meant to see.


def _write(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return package_modules(root / "pkg")


def test_the_checks_see_lazy_and_type_checking_cycles(tmp_path: Path) -> None:
    known = _write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": """
                def f():
                    from .b import g
            """,
            "b.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .a import f
            """,
            "c.py": "from . import a",
        },
    )
    assert cycles(import_graph(known)) == [["pkg.a", "pkg.b"]]


def test_the_checks_see_an_import_of_the_own_package_init(tmp_path: Path) -> None:
    known = _write(
        tmp_path,
        {
            "__init__.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .a import f
            """,
            "a.py": """
                def f():
                    from . import g
            """,
            "sub/__init__.py": "",
            "sub/x.py": """
                import pkg
                from .. import a
            """,
        },
    )
    assert cycles(import_graph(known)) == [["pkg", "pkg.a"]]
    assert [line.split(" imports")[0] for line in inward_init_imports(known)] == [
        "pkg.a:3",
        "pkg.sub.x:2",
    ]


def test_the_checks_see_private_names_of_other_modules(tmp_path: Path) -> None:
    known = _write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": """
                _secret = 1
                class Box:
                    __slots__ = ("_lock",)
                    _hook = None
            """,
            "b.py": """
                from .a import _secret
                from . import a
                a._secret
                def f(box, ext):
                    return box._lock, getattr(ext, "_hook"), box._own
            """,
            "c.py": """
                class C:
                    def __init__(self):
                        self._own = 1
                        self._lock = 2
                    def g(self, other, sock):
                        return other._lock, getattr(self, "_own"), self._hook, sock._sock
            """,
        },
    )
    found = sorted(line.split(": ", 1)[1] for line in private_name_uses(known))
    assert found == [
        "a._secret",
        "box._lock",
        "box._own",
        "from pkg.a import _secret",
        "getattr(ext, '_hook')",
    ]


# -- the client and the wire format stand alone -------------------------------------------

#: Modules that must not be loaded by ``import flask_streaming.client`` or the
#: wire format: the web framework and the server side of the package.
SERVER_SIDE = ("flask", "werkzeug", "blinker", "gevent", "gunicorn", "redis")


@pytest.mark.parametrize(
    "module", ["flask_streaming.client", "flask_streaming.sse_wire", "flask_streaming.sse_parser"]
)
def test_the_client_and_the_wire_format_load_no_server_module(module: str) -> None:
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(m for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.partition(".")[0] in SERVER_SIDE] == []
    ours = sorted(m for m in loaded if m.startswith("flask_streaming"))
    allowed = {
        "flask_streaming",
        "flask_streaming.version",
        "flask_streaming.sse_wire",
        "flask_streaming.sse_parser",
        "flask_streaming.error_codes",
        "flask_streaming.tus_version",
        "flask_streaming.client",
    }
    assert set(ours) <= allowed, ours


def test_the_package_root_still_offers_every_name() -> None:
    code = (
        "import json, flask_streaming as fs\n"
        "print(json.dumps([[n, getattr(fs, n).__module__ if hasattr(getattr(fs, n), '__module__')"
        " else None] for n in fs.__all__]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    names = dict(json.loads(out.stdout))
    import flask_streaming

    assert sorted(names) == sorted(flask_streaming.__all__)
    assert set(flask_streaming.__all__) <= set(dir(flask_streaming))
    with pytest.raises(AttributeError):
        flask_streaming.no_such_name  # noqa: B018


def test_the_former_import_paths_of_the_wire_format_keep_working() -> None:
    from flask_streaming import sse, sse_parser, sse_wire, testing

    assert sse_parser.EventParser is sse_wire.EventParser
    assert sse_parser.Event is sse_wire.Event
    assert sse.ServerSentEvent is sse_wire.ServerSentEvent
    assert sse.PING is sse_wire.PING and sse.to_event is sse_wire.to_event
    for name in ("Event", "EventParser"):
        with pytest.warns(DeprecationWarning, match=f"testing.{name} is deprecated"):
            assert getattr(testing, name) is getattr(sse_wire, name)
    with pytest.raises(AttributeError):
        testing.NoSuchHelper  # noqa: B018
