"""Upload-time checks (check_source) and the run-time guard objects, in-process (no user code is executed)."""

from __future__ import annotations

import pytest

from functions.sandbox import (
    check_source,
    compile_source,
    guards,
    module_views,
    user_globals,
    validate_limits,
)
from functions.sandbox.policy import MAX_SOURCE_CHARS
from functions.sandbox.rules import SandboxError, attribute_refusal

OK = "def signal(tick, bars, params):\n    return {'x': 1}\n"


def test_valid_source_passes() -> None:
    assert check_source(OK, "signal") == []
    src = (
        "import math\nimport numpy as np\nimport pandas as pd\nfrom numpy import linalg\nfrom numpy.linalg import norm\n"
        "import statistics, datetime, json, collections, itertools, functools\n"
        "def helper(x):\n    return x ** 2\n"
        "def signal(tick, bars, params, extra=None):\n"
        "    s = pd.Series([b['close'] for b in bars])\n"
        "    return {'x': helper(2), 'y': float(np.mean(s.to_numpy())), 'z': json.dumps([1]),\n"
        "            'w': '{:.2f}'.format(math.pi), 'l': json.loads('[1]')[0], 'd': pd.to_datetime('2025-01-01').day}\n"
    )
    assert check_source(src, "signal") == []
    assert check_source("def signal(*args):\n    return {}\n", "signal") == []


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def signal(tick, bars, params:\n    return {}\n", "Line 1: SyntaxError"),
        ("def signal(tick, bars, params):\n    return {}\n  x = 1\n", "IndentationError"),
        ("import os\ndef signal(t, b, p):\n    return {}\n", 'Line 1: import of "os" is not allowed'),
        ("def signal(t, b, p):\n    import subprocess\n    return {}\n", 'Line 2: import of "subprocess"'),
        ("import socket\ndef signal(t, b, p):\n    return {}\n", 'import of "socket" is not allowed'),
        ("from os import path\ndef signal(t, b, p):\n    return {}\n", 'import of "os"'),
        ("from . import x\ndef signal(t, b, p):\n    return {}\n", "relative imports are not allowed"),
        ("import numpy.lib\ndef signal(t, b, p):\n    return {}\n", 'import of "numpy.lib"'),
        (
            "def signal(t, b, p):\n    return open('/etc/passwd').read()\n",
            'Line 2: name "open" is not available',
        ),
        ("def signal(t, b, p):\n    return __import__('os')\n", '"__import__" is an invalid variable name'),
        (
            "def signal(t, b, p):\n    return ().__class__.__bases__[0].__subclasses__()\n",
            '"__class__" is an invalid',
        ),
        (
            "def signal(t, b, p):\n    return (x for x in ()).gi_frame.f_globals\n",
            '"gi_frame" is a restricted name',
        ),
        ("def signal(t, b, p):\n    return {'x': type(t)}\n", 'name "type" is not available'),
        ("def signal(t, b, p):\n    return globals()\n", 'name "globals" is not available'),
        ("def signal(t, b, p):\n    eval('1')\n", "Eval calls are not allowed"),
        ("def signal(t, b, p):\n    exec('1')\n", "Exec calls are not allowed"),
        (
            "import numpy as np\ndef signal(t, b, p):\n    return np.load('/etc/passwd')\n",
            "Line 3: Attribute 'load'",
        ),
        (
            "import numpy as np\ndef signal(t, b, p):\n    np.fromfile('/etc/passwd')\n",
            "Attribute 'fromfile'",
        ),
        (
            "import pandas as pd\ndef signal(t, b, p):\n    pd.read_csv('/etc/passwd')\n",
            "Attribute 'read_csv'",
        ),
        ("from numpy import load\ndef signal(t, b, p):\n    return {}\n", "Attribute 'load'"),
        (
            "import numpy as np\ndef signal(t, b, p):\n    np.zeros(3).tofile('/tmp/x')\n",
            "Attribute 'tofile'",
        ),
        (
            "import pandas as pd\ndef signal(t, b, p):\n    pd.DataFrame().to_csv('/tmp/x')\n",
            "Attribute 'to_csv'",
        ),
        ("import pandas as pd\ndef signal(t, b, p):\n    pd.DataFrame().query('a')\n", "Attribute 'query'"),
        ("import numpy as np\ndef signal(t, b, p):\n    np.lib.stride_tricks\n", "Attribute 'lib'"),
        ("import numpy as np\ndef signal(t, b, p):\n    np.zeros(1).ctypes\n", "Attribute 'ctypes'"),
        ("import pandas as pd\ndef signal(t, b, p):\n    pd.Timestamp.ceil.func_globals\n", "'func_globals'"),
        ("def signal(t, b, p):\n    return {'x': 10 ** 10 ** 10}\n", "integer power too large"),
        ("def signal(t, b, p):\n    return {'x': -(2 ** 1000000)}\n", "integer power too large"),
        ("async def signal(t, b, p):\n    return {}\n", "AsyncFunctionDef statements are not allowed"),
        ("def signal(t, b):\n    return {}\n", "must accept three positional arguments"),
        ("def signal(t, b, p, q):\n    return {}\n", "must accept three positional arguments"),
        ("def signal(t, b, p, *, q):\n    return {}\n", "must accept three positional arguments"),
        ("def other(t, b, p):\n    return {}\n", "function 'signal' is not defined"),
        ("signal = 42\n", "'signal' is not a function"),
        ("class signal:\n    pass\n", "'signal' is not a function"),
        ("(" * 300 + ")" * 300, "too many nested parentheses"),
        ("-" * 90000 + "1", "too deeply nested"),
        ("x = " + "1 + " * 20000 + "1\n", "too deeply nested"),
        ("x = 1\n" * 20000, "source is too long"),
    ],
)
def test_hostile_or_broken_sources_are_refused(source: str, fragment: str) -> None:
    errors = check_source(source, "signal")
    assert errors, "expected the source to be refused"
    assert any(fragment in e for e in errors), errors
    code, compile_errors = compile_source(source)
    if fragment not in ("must accept three", "is not defined", "is not a function"):
        assert code is None or not compile_errors


def test_bad_function_names() -> None:
    assert check_source(OK, "") == ["function_name is required"] + check_source(OK, "")[1:]
    assert "not a valid Python identifier" in check_source(OK, "my-func")[0]
    assert "not a valid Python identifier" in check_source(OK, "class")[0]
    assert "must not start with '_'" in check_source("def _f(t, b, p):\n    return {}\n", "_f")[0]


def test_error_messages_carry_line_numbers() -> None:
    src = "import math\n\ndef signal(t, b, p):\n    x = 1\n    return open('x')\n"
    assert check_source(src, "signal") == ['Line 5: name "open" is not available in the sandbox.']


def test_user_may_rebind_a_forbidden_builtin_name() -> None:
    assert check_source("def signal(t, b, p):\n    dir = 1\n    return {'d': dir}\n", "signal") == []
    assert len(OK) < MAX_SOURCE_CHARS


def test_attribute_refusal_rules() -> None:
    for name in ("__class__", "_x", "gi_frame", "f_globals", "load", "loadtxt", "save", "savez", "read_csv",
                 "read_pickle", "to_csv", "to_pickle", "to_sql", "tofile", "fromfile", "memmap", "ctypes",
                 "ctypeslib", "lib", "DataSource", "testing", "f2py", "distutils", "mro", "eval", "query", "io",
                 "func_globals", "func_code", "func_closure", "im_func"):  # fmt: skip
        assert attribute_refusal(name), name
    for name in ("loads", "dumps", "to_numpy", "to_list", "to_dict", "to_datetime", "to_numeric", "mean",
                 "rolling", "format", "close", "iloc", "values"):  # fmt: skip
        assert attribute_refusal(name) is None, name


def test_runtime_guards_in_process() -> None:
    namespace = user_globals.make_globals()
    builtins = namespace["__builtins__"]
    for missing in ("open", "type", "object", "vars", "globals", "locals", "dir", "compile", "exec", "eval", "input",
                    "memoryview", "bytes", "breakpoint"):  # fmt: skip
        assert missing not in builtins, missing
    for present in (
        "min",
        "max",
        "sum",
        "sorted",
        "zip",
        "range",
        "len",
        "isinstance",
        "getattr",
        "math",
        "set",
    ):
        assert present in builtins, present
    with pytest.raises(ImportError, match="not allowed"):
        module_views.guarded_import("os")
    with pytest.raises(ImportError, match="relative"):
        module_views.guarded_import("numpy", level=1)
    np = module_views.guarded_import("numpy")
    assert isinstance(np, module_views.GuardedModule)
    assert module_views.guarded_import("numpy.linalg", fromlist=["norm"]) is np.linalg
    for name in ("load", "save", "fromfile", "memmap", "ctypeslib", "lib", "DataSource", "testing", "f2py"):
        with pytest.raises(AttributeError):
            guards.guarded_getattr(np, name)
        assert not hasattr(np, name), name  # not even present in the allow-listed view
    pd = module_views.guarded_import("pandas")
    for name in ("read_csv", "read_pickle", "eval", "io", "api", "core", "options", "set_option"):
        assert not hasattr(pd, name), name
    json = module_views.guarded_import("json")
    assert sorted(dir(json)) == ["JSONDecodeError", "dumps", "loads"]
    with pytest.raises(AttributeError, match="read-only"):
        np.sum = 1
    with pytest.raises(AttributeError):
        guards.guarded_getattr({}, "__class__")
    with pytest.raises(TypeError):
        guards.guarded_getattr({}, 1)  # type: ignore[arg-type]
    fmt = guards.guarded_getattr("{:.1f}|{0.real}", "format")
    with pytest.raises(SandboxError):
        fmt(1.0)
    assert guards.guarded_getattr("{:.1f}", "format")(2.25) == "2.2"
    assert guards.guarded_getattr(str, "format")("{}-{}", 1, 2) == "1-2"
    with pytest.raises(OverflowError):
        guards.guarded_pow(10, 10**10)
    # whatever the name, real modules / frames / code objects are never handed to user code
    import types as pytypes

    holder = pytypes.SimpleNamespace(mod=pytypes, code=test_runtime_guards_in_process.__code__)
    for name in ("mod", "code"):
        with pytest.raises(AttributeError, match="not available in the sandbox"):
            guards.guarded_getattr(holder, name)
    with pytest.raises(SandboxError):
        guards.guarded_getitem({"m": pytypes}, "m")
    # C-level imports (PyImport_Import: empty *list* fromlist) of loaded modules succeed but return nothing
    assert module_views.guarded_import("time", None, None, [], 0) is None
    with pytest.raises(ImportError):
        module_views.guarded_import("time")
    with pytest.raises(ImportError):
        module_views.guarded_import("time", None, None, ("sleep",), 0)
    assert guards.guarded_pow(2, 10) == 1024 and guards.guarded_pow(2.0, 0.5) == pytest.approx(2**0.5)


def test_validate_limits_names_fields() -> None:
    assert validate_limits(2, 128) == []
    assert validate_limits(0.05, 16) == [] and validate_limits(60, 4096) == []
    assert validate_limits(0, 128) == ["timeout must be a number of seconds between 0.05 and 60.0"]
    assert validate_limits(2, 8)[0].startswith("memory_limit_mb must be")
    assert validate_limits("2", 128)[0].startswith("timeout")
    assert validate_limits(2, 128, max_output_bytes=0)[0].startswith("max_output_bytes")
    assert validate_limits(2, 128, cpu_time_s=-1)[0].startswith("cpu_time_s")
