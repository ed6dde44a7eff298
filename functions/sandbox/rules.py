"""What the sandbox forbids, shared by the compile-time policy and the run-time guards.

Importable modules, builtins that do not exist in the sandbox, attribute names refused on every object
(:func:`attribute_refusal`), the integer-power bound (:func:`check_power`), and the errors raised when user code
breaks a rule.  No Django and no numpy/pandas imports here (this module is imported by web processes).
"""

from __future__ import annotations

import math

MAX_POW_BITS = 100_000
"""Largest integer result (in bits, ≈ 30 000 decimal digits) that ``**``/``pow`` may produce in the sandbox."""

ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "math",
        "statistics",
        "datetime",
        "json",
        "collections",
        "itertools",
        "functools",
        "numpy",
        "numpy.linalg",
        "numpy.random",
        "pandas",
    }
)
"""Modules user code may import (each is exposed as a read-only allow-listed view, see :mod:`.module_views`)."""

# Builtins that are *not* available in the sandbox and are only ever used to break out of it.  A load of one
# of these names is refused at compile time unless the source binds the name itself.
FORBIDDEN_BUILTIN_NAMES: frozenset[str] = frozenset(
    {
        "open",
        "compile",
        "globals",
        "locals",
        "vars",
        "dir",
        "input",
        "breakpoint",
        "help",
        "type",
        "object",
        "super",
        "memoryview",
        "exit",
        "quit",
        "copyright",
        "credits",
        "license",
        "classmethod",
        "staticmethod",
        "property",
        "bytearray",
        "bytes",
    }
)

# Attribute names refused on every object (compile time and run time).
BLOCKED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # FFI / raw memory
        "ctypes",
        "ctypeslib",
        "cffi",
        "capsule",
        # file I/O and serialisation to files
        "tofile",
        "fromfile",
        "fromregex",
        "genfromtxt",
        "memmap",
        "dump",
        "DataSource",
        # dangerous sub-packages of numpy / pandas
        "lib",
        "testing",
        "f2py",
        "distutils",
        "io",
        "api",
        "core",
        "compat",
        # string-expression evaluators (pandas eval/query resolve arbitrary attributes)
        "eval",
        "query",
        # plotting / templating (imports matplotlib, jinja2)
        "style",
        "plot",
        "hist",
        "boxplot",
        # introspection
        "mro",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "f_trace",
        "f_generator",
        "tb_frame",
        "tb_next",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "cr_origin",
        "ag_frame",
        "ag_code",
        "ag_await",
        "co_code",
        # OS-ish names (never reachable, refused for clarity)
        "system",
        "popen",
        "environ",
        "spawn",
        "fork",
        "exec",
        "open",
        "builtins",
        "modules",
    }
)

BLOCKED_PREFIXES: tuple[str, ...] = ("read_", "load", "save", "to_", "func_", "im_")
"""Attribute-name prefixes refused on every object, except for :data:`ALLOWED_DESPITE_PREFIX`.

``func_*``/``im_*``: Cython functions (all over pandas) expose ``func_globals``, ``func_code``, ``func_closure``,
``func_defaults`` without an underscore — the module globals of pandas internals."""

ALLOWED_DESPITE_PREFIX: frozenset[str] = frozenset(
    {
        "loads",  # json.loads
        "func_name",
        "func_doc",
        "to_datetime",
        "to_numeric",
        "to_timedelta",
        "to_numpy",
        "to_list",
        "to_dict",
        "to_frame",
        "to_series",
        "to_records",
        "to_flat_index",
        "to_period",
        "to_timestamp",
        "to_pydatetime",
        "to_datetime64",
        "to_pytimedelta",
        "to_timedelta64",
        "to_julian_date",
    }
)


def attribute_refusal(name: str) -> str | None:
    """Return why attribute ``name`` may never be accessed in the sandbox, or ``None`` if the name is acceptable.

    Promises: any name starting with ``_``, any name in :data:`BLOCKED_ATTRIBUTES` and any name with a
    :data:`BLOCKED_PREFIXES` prefix (unless in :data:`ALLOWED_DESPITE_PREFIX`) gets a non-empty reason.
    """
    if name.startswith("_"):
        return f"attribute {name!r} is not allowed (names starting with '_' are private)"
    if name in BLOCKED_ATTRIBUTES:
        return f"attribute {name!r} is not available in the sandbox (I/O, FFI or introspection surface)"
    if name.startswith(BLOCKED_PREFIXES) and name not in ALLOWED_DESPITE_PREFIX:
        if name.startswith(("func_", "im_")):
            return f"attribute {name!r} is not available in the sandbox (function internals)"
        return f"attribute {name!r} is not available in the sandbox (file/IO readers and writers are blocked)"
    return None


class PowerTooLarge(OverflowError):
    """An integer power would produce an unreasonably large number."""


def check_power(base: object, exponent: object) -> None:
    """Raise :class:`PowerTooLarge` if ``base ** exponent`` on Python ints exceeds :data:`MAX_POW_BITS` bits.

    Only exact integers are checked (floats overflow to ``inf``/``OverflowError`` by themselves and numpy
    integers wrap around); ``bool`` counts as int.  Cheap: O(1).
    """
    if not isinstance(base, int) or not isinstance(exponent, int):
        return
    if exponent <= 1 or abs(base) <= 1:
        return
    try:
        bits = float(exponent) * math.log2(abs(base))
    except OverflowError:
        bits = math.inf
    if bits > MAX_POW_BITS:
        raise PowerTooLarge(
            f"integer power too large: the result would have about {bits:.3g} bits (limit {MAX_POW_BITS})"
        )


USER_MODULE_NAME = "sandbox_user_code"
"""``__name__`` of the user module (and ``__module__`` of classes it defines); the guards recognise user-defined
types by it."""


class SandboxError(Exception):
    """Raised by a guard when user code attempts something the sandbox forbids."""
