"""Run-time guards and the restricted global namespace for user code (imported by the sandbox child only).

:func:`make_globals` returns a fresh globals dict for executing code compiled by
:func:`functions.sandbox.policy.compile_source`.  It provides

* ``__builtins__``: RestrictedPython's ``safe_builtins`` + ``utility_builtins`` (without its ``random``/``string``
  modules) + a curated set (``min max sum abs round len range enumerate zip sorted reversed map filter any all list
  dict set frozenset tuple float int str bool isinstance issubclass getattr hasattr setattr delattr iter next
  format divmod pow …``).  ``range``/``list``/``tuple`` are the real builtins, not RestrictedPython's "limited"
  versions (a 1000-element cap is useless for bar series; memory is bounded by RLIMIT_AS instead).
  ``getattr``/``hasattr``/``setattr``/``delattr``/``pow`` are guarded versions; ``__import__`` only returns the
  read-only module views below.  ``open``, ``type``, ``object``, ``vars``, ``globals``, ``dir``, ``compile``,
  ``exec``, ``eval``, ``input``, ``bytes``, ``memoryview`` … do not exist.
* ``_getattr_``: refuses ``_``-names, :func:`~functions.sandbox.policy.attribute_refusal` names (I/O, FFI,
  frames/generators introspection, ``mro`` …) and ``AttributeError.obj``; ``str.format``/``format_map`` (on
  instances *and* on the ``str`` type) are replaced by a formatter that refuses attribute/index look-ups in
  replacement fields (``'{0.__class__}'``, ``'{0[x]}'``) — plain ``'{:.2f}'.format(x)`` still works.
* module views (:class:`GuardedModule`): allow-lists of ``math``, ``statistics``, ``datetime``, ``json``
  (``dumps``/``loads`` only), ``collections``, ``itertools``, ``functools``, ``numpy`` (+ ``linalg``, ``random``)
  and ``pandas`` — numerical/data helpers only, none of their file, network or FFI surface.
* ``_write_``: attribute writes only on user-class instances, dicts/lists and pandas objects; item writes also on
  numpy arrays and other containers; nothing on modules, classes, functions.
* ``_pow_``/``**=``/``pow``: refuse integer powers larger than ``MAX_POW_BITS`` bits.
* ``_getitem_``, ``_getiter_``, ``_iter_unpack_sequence_``, ``_unpack_sequence_``, ``_inplacevar_``, ``_apply_``,
  ``_print_`` (output collected and discarded), ``__metaclass__`` (= ``type``, for ``class`` statements).

These guards are the second line of defence; OS limits in the child (``functions.sandbox.child``) are the third.
"""

from __future__ import annotations

import builtins as _py_builtins
import collections
import datetime
import functools
import itertools
import json
import math
import operator
import statistics
import string
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from RestrictedPython import PrintCollector, safe_builtins, utility_builtins
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from functions.sandbox.policy import ALLOWED_MODULES, attribute_refusal, check_power

USER_MODULE_NAME = "sandbox_user_code"
"""``__name__`` of the user module (and ``__module__`` of classes it defines)."""


class SandboxError(Exception):
    """Raised by a guard when user code attempts something the sandbox forbids."""


class GuardedModule:
    """A read-only, allow-listed view of a module: only the listed attributes exist."""

    __slots__ = ("_sandbox_name", "_sandbox_attrs")

    def __init__(self, name: str, attrs: Mapping[str, Any]) -> None:
        for key, value in attrs.items():
            if isinstance(value, types.ModuleType):
                raise TypeError(f"{name}.{key} is a module; expose a GuardedModule instead")
        object.__setattr__(self, "_sandbox_name", name)
        object.__setattr__(self, "_sandbox_attrs", dict(attrs))

    def __getattr__(self, attr: str) -> Any:
        attrs = object.__getattribute__(self, "_sandbox_attrs")
        try:
            return attrs[attr]
        except KeyError:
            name = object.__getattribute__(self, "_sandbox_name")
            raise AttributeError(f"'{name}.{attr}' is not available in the sandbox") from None

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("sandbox modules are read-only")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError("sandbox modules are read-only")

    def __dir__(self) -> list[str]:
        return sorted(object.__getattribute__(self, "_sandbox_attrs"))

    def __repr__(self) -> str:
        return f"<sandbox module {object.__getattribute__(self, '_sandbox_name')!r}>"


def _pick(module: Any, names: Iterable[str]) -> dict[str, Any]:
    """Return ``{name: module.name}`` for the listed names that exist (versions differ) and pass the name rules."""
    out: dict[str, Any] = {}
    for name in names:
        if attribute_refusal(name) is not None:
            raise ValueError(f"allow-list entry {name!r} violates the attribute policy")
        if hasattr(module, name):
            value = getattr(module, name)
            if not isinstance(value, types.ModuleType):
                out[name] = value
    return out


_MATH_NAMES = [n for n in dir(math) if not n.startswith("_")]  # the math module holds only math functions

_STATISTICS_NAMES = [
    "NormalDist", "StatisticsError", "correlation", "covariance", "fmean", "geometric_mean", "harmonic_mean",
    "linear_regression", "mean", "median", "median_grouped", "median_high", "median_low", "mode", "multimode",
    "pstdev", "pvariance", "quantiles", "stdev", "variance",
]  # fmt: skip

_DATETIME_NAMES = ["date", "datetime", "time", "timedelta", "timezone", "tzinfo", "MINYEAR", "MAXYEAR", "UTC"]

_JSON_NAMES = ["dumps", "loads", "JSONDecodeError"]

_COLLECTIONS_NAMES = ["ChainMap", "Counter", "OrderedDict", "defaultdict", "deque", "namedtuple"]

_ITERTOOLS_NAMES = [
    "accumulate", "chain", "combinations", "combinations_with_replacement", "compress", "count", "cycle",
    "dropwhile", "filterfalse", "groupby", "islice", "pairwise", "permutations", "product", "repeat", "starmap",
    "takewhile", "tee", "zip_longest", "batched",
]  # fmt: skip

_FUNCTOOLS_NAMES = ["reduce", "partial", "lru_cache", "cache", "cmp_to_key", "total_ordering"]

_NUMPY_NAMES = [
    # types, constants, info
    "ndarray", "dtype", "generic", "number", "integer", "signedinteger", "unsignedinteger", "floating",
    "complexfloating", "bool", "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "intp", "uintp", "float16", "float32", "float64", "complex64", "complex128", "str_", "datetime64",
    "timedelta64", "pi", "e", "inf", "nan", "newaxis", "euler_gamma", "iinfo", "finfo", "errstate", "isscalar",
    "ndim", "shape", "size", "result_type", "promote_types", "can_cast", "issubdtype",
    # creation
    "array", "asarray", "asanyarray", "ascontiguousarray", "zeros", "ones", "empty", "full", "zeros_like",
    "ones_like", "empty_like", "full_like", "arange", "linspace", "logspace", "geomspace", "eye", "identity",
    "diag", "diagflat", "tri", "tril", "triu", "vander", "meshgrid", "copy", "fromiter", "indices",
    # shape manipulation
    "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "concatenate", "stack",
    "vstack", "hstack", "dstack", "column_stack", "split", "array_split", "hsplit", "vsplit", "tile", "repeat",
    "flip", "fliplr", "flipud", "roll", "rot90", "append", "insert", "delete", "unique", "unique_values",
    "unique_counts", "pad", "atleast_1d", "atleast_2d", "atleast_3d", "broadcast_to", "broadcast_arrays",
    "resize", "trim_zeros", "take", "put", "take_along_axis", "compress", "extract", "place",
    # element-wise maths
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power", "float_power", "mod",
    "remainder", "fmod", "divmod", "negative", "positive", "absolute", "abs", "fabs", "sign", "sqrt", "cbrt",
    "square", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos",
    "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "hypot", "degrees", "radians",
    "deg2rad", "rad2deg", "floor", "ceil", "trunc", "rint", "round", "around", "fix", "clip", "maximum",
    "minimum", "fmax", "fmin", "isnan", "isinf", "isfinite", "isneginf", "isposinf", "isclose", "allclose",
    "array_equal", "nan_to_num", "real", "imag", "conj", "conjugate", "angle", "logaddexp", "logaddexp2",
    "reciprocal", "heaviside", "gcd", "lcm", "interp", "convolve", "correlate", "diff", "ediff1d", "gradient",
    "cross", "dot", "vdot", "inner", "outer", "matmul", "tensordot", "einsum", "kron", "trace", "sinc",
    "bitwise_and", "bitwise_or", "bitwise_xor", "invert", "signbit", "copysign",
    # logic, selection, search
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or",
    "logical_not", "logical_xor", "all", "any", "where", "select", "choose", "piecewise", "nonzero",
    "flatnonzero", "argwhere", "count_nonzero", "isin", "searchsorted", "digitize", "bincount", "histogram",
    "histogram_bin_edges", "intersect1d", "union1d", "setdiff1d", "setxor1d",
    # reductions and statistics
    "sum", "prod", "cumsum", "cumprod", "mean", "average", "median", "std", "var", "min", "max", "amin", "amax",
    "ptp", "argmin", "argmax", "percentile", "quantile", "nansum", "nanprod", "nanmean", "nanmedian", "nanstd",
    "nanvar", "nanmin", "nanmax", "nanargmin", "nanargmax", "nanpercentile", "nanquantile", "nancumsum",
    "nancumprod", "cov", "corrcoef", "sort", "argsort", "lexsort", "partition", "argpartition",
    # polynomials
    "polyfit", "polyval", "polyder", "polyint", "roots", "poly",
]  # fmt: skip

_NUMPY_LINALG_NAMES = [
    "norm", "inv", "pinv", "det", "slogdet", "solve", "lstsq", "eig", "eigh", "eigvals", "eigvalsh", "svd", "qr",
    "cholesky", "matrix_rank", "matrix_power", "multi_dot", "cond", "LinAlgError",
]  # fmt: skip

_NUMPY_RANDOM_NAMES = [
    "default_rng", "seed", "random", "rand", "randn", "randint", "normal", "uniform", "choice", "shuffle",
    "permutation", "standard_normal", "lognormal", "exponential", "poisson", "binomial",
]  # fmt: skip

_PANDAS_NAMES = [
    "DataFrame", "Series", "Index", "RangeIndex", "DatetimeIndex", "TimedeltaIndex", "PeriodIndex", "MultiIndex",
    "CategoricalIndex", "IntervalIndex", "Categorical", "Timestamp", "Timedelta", "Period", "Interval",
    "DateOffset", "NaT", "NA", "isna", "isnull", "notna", "notnull", "concat", "merge", "merge_asof",
    "merge_ordered", "to_datetime", "to_timedelta", "to_numeric", "date_range", "bdate_range", "timedelta_range",
    "period_range", "interval_range", "cut", "qcut", "unique", "factorize", "crosstab", "pivot", "pivot_table",
    "melt", "wide_to_long", "get_dummies", "from_dummies", "Grouper", "NamedAgg", "IndexSlice", "array",
    "Float64Dtype", "Int64Dtype", "BooleanDtype", "StringDtype", "CategoricalDtype", "DatetimeTZDtype",
    "infer_freq",
]  # fmt: skip


@functools.cache
def _modules() -> dict[str, GuardedModule]:
    """Build (once per process) the allow-listed module views, keyed by importable name."""
    import numpy
    import pandas

    np_linalg = GuardedModule("numpy.linalg", _pick(numpy.linalg, _NUMPY_LINALG_NAMES))
    np_random = GuardedModule("numpy.random", _pick(numpy.random, _NUMPY_RANDOM_NAMES))
    np_attrs = _pick(numpy, _NUMPY_NAMES)
    np_attrs.update(linalg=np_linalg, random=np_random)
    pd_attrs = _pick(pandas, _PANDAS_NAMES)
    for name in ("pivot_table", "crosstab"):
        if name in pd_attrs:
            pd_attrs[name] = _checked_dispatch(name, pd_attrs[name])
    mods = {
        "math": GuardedModule("math", _pick(math, _MATH_NAMES)),
        "statistics": GuardedModule("statistics", _pick(statistics, _STATISTICS_NAMES)),
        "datetime": GuardedModule("datetime", _pick(datetime, _DATETIME_NAMES)),
        "json": GuardedModule("json", _pick(json, _JSON_NAMES)),
        "collections": GuardedModule("collections", _pick(collections, _COLLECTIONS_NAMES)),
        "itertools": GuardedModule("itertools", _pick(itertools, _ITERTOOLS_NAMES)),
        "functools": GuardedModule("functools", _pick(functools, _FUNCTOOLS_NAMES)),
        "numpy": GuardedModule("numpy", np_attrs),
        "numpy.linalg": np_linalg,
        "numpy.random": np_random,
        "pandas": GuardedModule("pandas", pd_attrs),
    }
    assert set(mods) == set(ALLOWED_MODULES), "ALLOWED_MODULES and the module views disagree"
    return mods


def guarded_import(
    name: str,
    globals: Mapping[str, Any] | None = None,
    locals: Mapping[str, Any] | None = None,
    fromlist: Iterable[str] | None = (),
    level: int = 0,
) -> GuardedModule | None:
    """``__import__`` for user code: only :data:`ALLOWED_MODULES`, returned as read-only views.

    C code running on behalf of user code (``datetime.strftime`` importing ``time``, numpy importing its exception
    module, …) goes through ``PyImport_Import``, which calls the *current frame's* ``__import__`` with an empty
    *list* ``fromlist`` and then reads ``sys.modules`` itself, ignoring the return value.  User code can never
    produce that call shape (``import x`` passes ``None``, ``from x import a`` a tuple, and ``__import__`` is not
    nameable), so such calls are allowed for modules that are already loaded — returning ``None``, never the module.
    """
    if type(fromlist) is list and not fromlist and not level and isinstance(name, str):
        if name in sys.modules:
            return None
        raise ImportError(f"module {name!r} is not available in the sandbox")
    if level:
        raise ImportError("relative imports are not allowed in the sandbox")
    mods = _modules()
    if not isinstance(name, str) or name not in mods:
        allowed = ", ".join(sorted(m for m in mods if "." not in m))
        raise ImportError(f"import of {name!r} is not allowed in the sandbox; importable modules: {allowed}")
    if fromlist:
        return mods[name]
    return mods[name.split(".")[0]]


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

# pandas methods (and functions) that accept the *name* of a method as a string and call ``getattr(obj, name)``
# themselves — ``df.apply("eval", expr=…)``, ``df.agg("to_csv", path)`` — which would bypass ``_getattr_``.
# Their string arguments are checked with the attribute policy.
_STRING_DISPATCH_METHODS: frozenset[str] = frozenset(
    {"agg", "aggregate", "apply", "transform", "pipe", "map", "applymap", "pivot_table", "crosstab"}
)


def _check_dispatch_strings(method: str, value: Any, depth: int = 0) -> None:
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
            _check_dispatch_strings(method, item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _check_dispatch_strings(method, item, depth + 1)
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_dispatch_strings(method, item, depth + 1)


def _checked_dispatch(method: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a pandas string-dispatching callable so method names passed as strings obey the attribute policy."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_dispatch_strings(method, args)
        _check_dispatch_strings(method, kwargs)
        return func(*args, **kwargs)

    return checked


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
        name in _STRING_DISPATCH_METHODS
        and callable(value)
        and (_is_pandas_object(obj) or _is_pandas_class(obj))
    ):
        return _checked_dispatch(name, value)
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


def _is_pandas_module_name(module: Any) -> bool:
    return isinstance(module, str) and (module == "pandas" or module.startswith("pandas."))


def _is_pandas_object(ob: Any) -> bool:
    """True for instances of pandas classes (DataFrame, Series, GroupBy, Rolling, Resampler, indexers …)."""
    return _is_pandas_module_name(type(ob).__module__)


def _is_pandas_class(ob: Any) -> bool:
    return isinstance(ob, type) and _is_pandas_module_name(ob.__module__)


def guarded_write(ob: Any) -> Any:
    """``_write_``: return ``ob`` itself or a proxy that only allows the permitted kinds of writes."""
    if isinstance(ob, _FULL_WRITE_TYPES) or type(ob).__module__ == USER_MODULE_NAME or _is_pandas_object(ob):
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
            "math": _modules()["math"],
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
    _modules()
    _builtins()
