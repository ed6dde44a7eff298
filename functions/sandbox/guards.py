"""Run-time guards called by RestrictedPython-compiled user code (imported by the sandbox child only).

* ``_getattr_`` (:func:`guarded_getattr`, also the ``getattr`` builtin): refuses ``_``-names,
  :func:`~functions.sandbox.rules.attribute_refusal` names (I/O, FFI, frames/generators introspection, ``mro`` …)
  and ``AttributeError.obj``; ``str.format``/``format_map`` (on instances *and* on the ``str`` type) are replaced
  by a formatter that refuses attribute/index look-ups in replacement fields (``'{0.__class__}'``, ``'{0[x]}'``) —
  plain ``'{:.2f}'.format(x)`` still works; pandas string-dispatch methods are wrapped
  (:mod:`functions.sandbox.pandas_dispatch`); real modules, frames, code objects, cells are never returned.
* ``_write_``: attribute writes only on user-class instances, dicts/lists and pandas objects; item writes also on
  numpy arrays and other containers; nothing on modules, classes, functions.
* ``_pow_``/``**=``/``pow``: refuse integer powers larger than ``MAX_POW_BITS`` bits.
* ``_getitem_``, ``_inplacevar_``, ``_apply_``.

These guards are the second line of defence; OS limits in the child (``functions.sandbox.child``) are the third.
"""

from __future__ import annotations

import functools
import operator
import string
import types
from collections.abc import Callable, Mapping
from typing import Any

from functions.sandbox.module_views import GuardedModule
from functions.sandbox.pandas_dispatch import (
    STRING_DISPATCH_METHODS,
    checked_dispatch,
    is_pandas_class,
    is_pandas_object,
)
from functions.sandbox.rules import USER_MODULE_NAME, SandboxError, attribute_refusal, check_power


class _SafeFormatter(string.Formatter):
    """``str.format`` without attribute or index look-ups in replacement fields."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        """Resolve a replacement field, refusing ``.attr`` and ``[index]`` parts."""
        if "." in field_name or "[" in field_name:
            raise SandboxError(
                f"format field {field_name!r}: attribute and index look-ups in format strings are not allowed "
                "in the sandbox"
            )
        return super().get_field(field_name, args, kwargs)


_FORMATTER = _SafeFormatter()


def _safe_format(template: str, /, *args: Any, **kwargs: Any) -> str:
    if not isinstance(template, str):
        raise TypeError("format() template must be a str")
    return _FORMATTER.vformat(template, args, kwargs)


def _safe_format_map(template: str, mapping: Mapping[str, Any], /) -> str:
    if not isinstance(template, str):
        raise TypeError("format_map() template must be a str")
    return _FORMATTER.vformat(template, (), mapping)


def _bound_format(template: str) -> Callable[..., str]:
    def format(*args: Any, **kwargs: Any) -> str:
        return _safe_format(template, *args, **kwargs)

    return format


def _bound_format_map(template: str) -> Callable[..., str]:
    def format_map(mapping: Mapping[str, Any]) -> str:
        return _safe_format_map(template, mapping)

    return format_map


_MISSING = object()

# Values user code must never hold: real modules, frames, code, tracebacks, closure cells.  ``_getattr_`` and
# ``_getitem_`` refuse to return them whatever the name (defence in depth behind the name rules).
_FORBIDDEN_VALUE_TYPES: tuple[type, ...] = (
    types.ModuleType,
    types.FrameType,
    types.CodeType,
    types.TracebackType,
    types.CellType,
)


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """``_getattr_`` and the ``getattr`` builtin of user code (see the module docstring for the rules).

    A refused name raises ``AttributeError`` (even when a default is given); a missing attribute returns
    ``default`` when given.
    """
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    reason = attribute_refusal(name)
    if reason is not None:
        raise AttributeError(reason)
    if name in ("format", "format_map"):
        if isinstance(obj, str):
            return _bound_format(obj) if name == "format" else _bound_format_map(obj)
        if isinstance(obj, type) and issubclass(obj, str):
            return _safe_format if name == "format" else _safe_format_map
    elif name == "obj" and isinstance(obj, BaseException):
        raise AttributeError("attribute 'obj' of exceptions is not available in the sandbox")
    value = getattr(obj, name) if default is _MISSING else getattr(obj, name, default)
    if isinstance(value, _FORBIDDEN_VALUE_TYPES) and not isinstance(value, GuardedModule):
        raise AttributeError(
            f"attribute {name!r} refers to a {type(value).__name__} object, not available in the sandbox"
        )
    if (
        name in STRING_DISPATCH_METHODS
        and callable(value)
        and (is_pandas_object(obj) or is_pandas_class(obj))
    ):
        return checked_dispatch(name, value)
    return value


def guarded_hasattr(obj: Any, name: str) -> bool:
    """``hasattr`` for user code: ``False`` for refused names as well as missing ones."""
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


_FULL_WRITE_TYPES: tuple[type, ...] = (dict, list)
_NO_WRITE_TYPES: tuple[type, ...] = (
    types.ModuleType,
    GuardedModule,
    type,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
    types.GeneratorType,
    types.TracebackType,
    functools.partial,
    str,
    bytes,
    tuple,
    frozenset,
    int,
    float,
    complex,
)


class _ItemWriteOnly:
    """Write proxy: allows ``obj[k] = v`` / ``del obj[k]`` but no attribute writes."""

    __slots__ = ("_ob",)

    def __init__(self, ob: Any) -> None:
        object.__setattr__(self, "_ob", ob)

    def __setitem__(self, key: Any, value: Any) -> None:
        object.__getattribute__(self, "_ob")[key] = value

    def __delitem__(self, key: Any) -> None:
        del object.__getattribute__(self, "_ob")[key]

    def __setattr__(self, name: str, value: Any) -> None:
        ob = object.__getattribute__(self, "_ob")
        raise SandboxError(f"cannot set attributes on {type(ob).__name__} objects in the sandbox")

    def __delattr__(self, name: str) -> None:
        ob = object.__getattribute__(self, "_ob")
        raise SandboxError(f"cannot delete attributes of {type(ob).__name__} objects in the sandbox")


class _NoWrite:
    """Write proxy that refuses every write."""

    __slots__ = ("_ob",)

    def __init__(self, ob: Any) -> None:
        object.__setattr__(self, "_ob", ob)

    def _refuse(self, *args: Any) -> None:
        ob = object.__getattribute__(self, "_ob")
        what = repr(ob) if isinstance(ob, GuardedModule) else f"{type(ob).__name__} objects"
        raise SandboxError(f"cannot modify {what} in the sandbox")

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _refuse


def guarded_write(ob: Any) -> Any:
    """``_write_``: return ``ob`` itself or a proxy that only allows the permitted kinds of writes."""
    if isinstance(ob, _FULL_WRITE_TYPES) or type(ob).__module__ == USER_MODULE_NAME or is_pandas_object(ob):
        if not isinstance(ob, _NO_WRITE_TYPES):
            return ob
    if isinstance(ob, _NO_WRITE_TYPES):
        return _NoWrite(ob)
    return _ItemWriteOnly(ob)


def guarded_setattr(obj: Any, name: str, value: Any) -> None:
    """``setattr`` builtin for user code (same rules as ``obj.name = value``)."""
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    reason = attribute_refusal(name)
    if reason is not None:
        raise AttributeError(reason)
    setattr(guarded_write(obj), name, value)


def guarded_delattr(obj: Any, name: str) -> None:
    """``delattr`` builtin for user code."""
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    reason = attribute_refusal(name)
    if reason is not None:
        raise AttributeError(reason)
    delattr(guarded_write(obj), name)


def guarded_pow(base: Any, exponent: Any, modulus: Any = None) -> Any:
    """``**`` / ``pow`` for user code: refuses integer powers above ``MAX_POW_BITS`` bits (OverflowError)."""
    if modulus is not None:
        return pow(base, exponent, modulus)
    check_power(base, exponent)
    return base**exponent


def _ipow(base: Any, exponent: Any) -> Any:
    check_power(base, exponent)
    return operator.ipow(base, exponent)


_INPLACE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": _ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


def guarded_inplacevar(op: str, target: Any, value: Any) -> Any:
    """``_inplacevar_``: ``x op= value`` for plain names."""
    try:
        func = _INPLACE_OPS[op]
    except KeyError:
        raise SandboxError(f"operator {op!r} is not supported") from None
    return func(target, value)


def guarded_getitem(ob: Any, index: Any) -> Any:
    """``_getitem_``: ``ob[index]``, refusing to hand out modules, frames, code objects (see ``_getattr_``)."""
    value = ob[index]
    if isinstance(value, _FORBIDDEN_VALUE_TYPES):
        raise SandboxError(f"item refers to a {type(value).__name__} object, not available in the sandbox")
    return value


def guarded_apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``_apply_``: calls with ``*args``/``**kwargs``."""
    return func(*args, **kwargs)
