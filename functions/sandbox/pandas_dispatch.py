"""pandas callables that take the *name* of a method as a string and look it up themselves.

``df.apply("eval", expr=…)`` or ``df.agg("to_csv", path)`` would call ``getattr(obj, name)`` inside pandas and so
bypass ``_getattr_``; the guards wrap such callables so their string arguments obey the attribute policy.  Imported
by the sandbox child only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from functions.sandbox.rules import USER_MODULE_NAME, SandboxError, attribute_refusal

# pandas methods (and functions) that accept the *name* of a method as a string and call ``getattr(obj, name)``
# themselves — ``df.apply("eval", expr=…)``, ``df.agg("to_csv", path)`` — which would bypass ``_getattr_``.
# Their string arguments are checked with the attribute policy.
STRING_DISPATCH_METHODS: frozenset[str] = frozenset(
    {"agg", "aggregate", "apply", "transform", "pipe", "map", "applymap", "pivot_table", "crosstab"}
)


def check_dispatch_strings(method: str, value: Any, depth: int = 0) -> None:
    """Refuse strings in ``value`` (recursively in lists/tuples/sets/dicts) that name a blocked attribute.

    Containers defined by user code (e.g. a ``dict`` subclass overriding ``items``) are refused outright, since
    pandas would consult their overridable methods rather than the contents checked here.
    """
    if depth > 20:
        raise SandboxError(f"{method}(): arguments are nested too deeply")
    if type(value).__module__ == USER_MODULE_NAME and isinstance(
        value, (str, list, tuple, set, frozenset, Mapping)
    ):
        raise SandboxError(f"{method}(): user-defined container types cannot be passed here")
    if isinstance(value, str):
        text = str.__str__(value)
        reason = attribute_refusal(text)
        if reason is not None:
            raise SandboxError(f"{method}({text!r}): {reason}")
    elif isinstance(value, dict):
        for item in dict.values(value):
            check_dispatch_strings(method, item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            check_dispatch_strings(method, item, depth + 1)
    elif isinstance(value, Mapping):
        for item in value.values():
            check_dispatch_strings(method, item, depth + 1)


def checked_dispatch(method: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a pandas string-dispatching callable so method names passed as strings obey the attribute policy."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        check_dispatch_strings(method, args)
        check_dispatch_strings(method, kwargs)
        return func(*args, **kwargs)

    return checked


def _is_pandas_module_name(module: Any) -> bool:
    return isinstance(module, str) and (module == "pandas" or module.startswith("pandas."))


def is_pandas_object(ob: Any) -> bool:
    """True for instances of pandas classes (DataFrame, Series, GroupBy, Rolling, Resampler, indexers …)."""
    return _is_pandas_module_name(type(ob).__module__)


def is_pandas_class(ob: Any) -> bool:
    return isinstance(ob, type) and _is_pandas_module_name(ob.__module__)
