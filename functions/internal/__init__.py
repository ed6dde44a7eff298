"""Internal (in-code) user functions — docs/REFERENCE.md §3.4.  No Django imports.

:mod:`.registry` holds the registry and parameter binding, :mod:`.builtin_functions` the shipped functions.  Both
are imported here, so whoever uses the catalogue through this package sees every built-in registered.
"""

from functions.internal import builtin_functions
from functions.internal.registry import (
    FunctionError,
    FunctionSpec,
    InternalFunction,
    InvalidParamsError,
    Param,
    ResultError,
    UnknownFunctionError,
    bind,
    call_internal,
    get,
    names,
    needs_bars,
    needs_chain,
    register,
    spec,
    unregister,
    validate_params,
)

__all__ = [
    "FunctionError",
    "FunctionSpec",
    "InternalFunction",
    "InvalidParamsError",
    "Param",
    "ResultError",
    "UnknownFunctionError",
    "bind",
    "builtin_functions",
    "call_internal",
    "get",
    "names",
    "needs_bars",
    "needs_chain",
    "register",
    "spec",
    "unregister",
    "validate_params",
]
