"""Read-only, allow-listed views of the modules user code may import, and the ``__import__`` that hands them out.

:class:`GuardedModule` exposes only listed attributes of ``math``, ``statistics``, ``datetime``, ``json``
(``dumps``/``loads`` only), ``collections``, ``itertools``, ``functools``, ``numpy`` (+ ``linalg``, ``random``)
and ``pandas`` — numerical/data helpers only, none of their file, network or FFI surface.  Every listed name must
also pass :func:`functions.sandbox.rules.attribute_refusal`.  Imported by the sandbox child only.
"""

from __future__ import annotations

import collections
import datetime
import functools
import itertools
import json
import math
import statistics
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

from functions.sandbox.pandas_dispatch import checked_dispatch
from functions.sandbox.rules import ALLOWED_MODULES, attribute_refusal


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
def module_views() -> dict[str, GuardedModule]:
    """Build (once per process) the allow-listed module views, keyed by importable name."""
    # why: numpy/pandas load in the worker's preload step, after child.main() moved the protocol pipes off fds 0/1
    import numpy
    import pandas

    np_linalg = GuardedModule("numpy.linalg", _pick(numpy.linalg, _NUMPY_LINALG_NAMES))
    np_random = GuardedModule("numpy.random", _pick(numpy.random, _NUMPY_RANDOM_NAMES))
    np_attrs = _pick(numpy, _NUMPY_NAMES)
    np_attrs.update(linalg=np_linalg, random=np_random)
    pd_attrs = _pick(pandas, _PANDAS_NAMES)
    for name in ("pivot_table", "crosstab"):
        if name in pd_attrs:
            pd_attrs[name] = checked_dispatch(name, pd_attrs[name])
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
    mods = module_views()
    if not isinstance(name, str) or name not in mods:
        allowed = ", ".join(sorted(m for m in mods if "." not in m))
        raise ImportError(f"import of {name!r} is not allowed in the sandbox; importable modules: {allowed}")
    if fromlist:
        return mods[name]
    return mods[name.split(".")[0]]
