"""Old names that keep working for a while, with a :exc:`DeprecationWarning`.

A module lists its renamed names and gets a PEP 562 ``__getattr__``::

    __getattr__ = renamed(__name__, {"OldName": "NewName"})

:meta private:
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def renamed(
    module: str,
    names: Mapping[str, str],
    *,
    stacklevel: int = 2,
    instead: Mapping[str, str] | None = None,
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that resolves each old name of *names* to
    the module's new one, warning that the old name is deprecated.

    :param module: the module's ``__name__``.
    :param names: old name -> new name (an attribute of the same module).
    :param stacklevel: of the warning (3 when another ``__getattr__`` calls
        this one), so that it names the line that used the old name.
    :param instead: old name -> what the warning tells to use, when that
        is not the new attribute itself (a function that replaces it).
    """

    def __getattr__(name: str) -> Any:
        new = names.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        use = (instead or {}).get(name, new)
        warnings.warn(
            f"{module}.{name} is deprecated; use {module}.{use}",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        return getattr(sys.modules[module], new)

    return __getattr__
