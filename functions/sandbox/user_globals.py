"""The restricted global namespace user code runs in (imported by the sandbox child only).

:func:`make_globals` returns a fresh globals dict for executing code compiled by
:func:`functions.sandbox.policy.compile_source`.  Its ``__builtins__`` are RestrictedPython's ``safe_builtins`` +
``utility_builtins`` (without its ``random``/``string`` modules) + a curated set (``min max sum abs round len range
enumerate zip sorted reversed map filter any all list dict set frozenset tuple float int str bool isinstance
issubclass getattr hasattr setattr delattr iter next format divmod pow …``).  ``range``/``list``/``tuple`` are the
real builtins, not RestrictedPython's "limited" versions (a 1000-element cap is useless for bar series; memory is
bounded by RLIMIT_AS instead).  ``getattr``/``hasattr``/``setattr``/``delattr``/``pow`` are the guarded versions
(:mod:`functions.sandbox.guards`); ``__import__`` only returns the read-only module views
(:mod:`functions.sandbox.module_views`).  ``open``, ``type``, ``object``, ``vars``, ``globals``, ``dir``,
``compile``, ``exec``, ``eval``, ``input``, ``bytes``, ``memoryview`` … do not exist.  The globals also carry
``_getattr_``, ``_getitem_``, ``_getiter_``, ``_iter_unpack_sequence_``, ``_unpack_sequence_``, ``_write_``,
``_inplacevar_``, ``_apply_``, ``_pow_``, ``_print_`` (output collected and discarded) and ``__metaclass__``
(= ``type``, for ``class`` statements).
"""

from __future__ import annotations

import builtins as _py_builtins
import functools
import types
from typing import Any

from RestrictedPython import PrintCollector, safe_builtins, utility_builtins
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from functions.sandbox.guards import (
    guarded_apply,
    guarded_delattr,
    guarded_getattr,
    guarded_getitem,
    guarded_hasattr,
    guarded_inplacevar,
    guarded_pow,
    guarded_setattr,
    guarded_write,
)
from functions.sandbox.module_views import guarded_import, module_views
from functions.sandbox.rules import USER_MODULE_NAME

_CURATED_BUILTINS = [
    "min", "max", "sum", "abs", "round", "len", "range", "enumerate", "zip", "sorted", "reversed", "map", "filter",
    "any", "all", "list", "dict", "set", "frozenset", "tuple", "float", "int", "str", "bool", "isinstance",
    "issubclass", "iter", "next", "format", "divmod", "callable", "chr", "ord", "hash", "repr", "slice", "complex",
    "hex", "oct", "bin", "NotImplemented", "Ellipsis", "None", "True", "False", "ArithmeticError",
    "AssertionError", "AttributeError", "Exception", "IndexError", "KeyError", "LookupError", "MemoryError",
    "NameError", "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError", "StopIteration",
    "TypeError", "ValueError", "ZeroDivisionError", "ImportError", "ModuleNotFoundError",
]  # fmt: skip


@functools.cache
def _builtins() -> dict[str, Any]:
    out: dict[str, Any] = dict(safe_builtins)
    out.pop("_getattr_", None)  # the globals carry ours
    for name, value in utility_builtins.items():
        if not isinstance(value, types.ModuleType) and name not in (
            "random",
            "whrandom",
            "string",
            "DateTime",
        ):
            out[name] = value
    for name in _CURATED_BUILTINS:
        out[name] = getattr(_py_builtins, name)
    out.update(
        {
            "__import__": guarded_import,
            "getattr": guarded_getattr,
            "hasattr": guarded_hasattr,
            "setattr": guarded_setattr,
            "delattr": guarded_delattr,
            "pow": guarded_pow,
            "math": module_views()["math"],
        }
    )
    for name in (
        "open",
        "type",
        "object",
        "vars",
        "globals",
        "locals",
        "dir",
        "compile",
        "exec",
        "eval",
        "input",
    ):
        out.pop(name, None)
    return out


def make_globals() -> dict[str, Any]:
    """Return a fresh globals dict for executing sandbox-compiled user code (one per call)."""
    return {
        "__builtins__": dict(_builtins()),
        "__name__": USER_MODULE_NAME,
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": guarded_inplacevar,
        "_apply_": guarded_apply,
        "_print_": PrintCollector,
        "_pow_": guarded_pow,
    }


def preload() -> None:
    """Build the module views and builtins now (the child calls this before dropping privileges)."""
    module_views()
    _builtins()
