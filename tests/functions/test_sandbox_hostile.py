"""Hostile external functions, run in real sandbox processes (no mocks).

For every case: the source is refused by ``check_source`` **or** the run returns an error (killed where it had to
be) within its limit; the caller process is unaffected; and the next normal call on the same runner succeeds.
Many cases are written so that they *pass* ``check_source`` and must be stopped by the run-time layers.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from functions.sandbox import SandboxPool, check_source

from .conftest import assert_next_tick_ok

CANARY = "/tmp/signal-sandbox-test-canary"

# (id, source, expected fragment of the run error)
HOSTILE: list[tuple[str, str, str]] = [
    (
        "import_os",
        "import os\ndef f(t, b, p):\n    return {'x': os.getcwd()}",
        'import of "os" is not allowed',
    ),
    ("import_subprocess", "def f(t, b, p):\n    import subprocess\n    return {}", 'import of "subprocess"'),
    ("import_socket", "import socket\ndef f(t, b, p):\n    return {}", 'import of "socket"'),
    (
        "open_file",
        "def f(t, b, p):\n    return {'x': open('/etc/passwd').read()}",
        'name "open" is not available',
    ),
    (
        "dunder_import",
        "def f(t, b, p):\n    return {'x': str(__import__('os'))}",
        '"__import__" is an invalid',
    ),
    (
        "subclasses",
        "def f(t, b, p):\n    return {'x': str(().__class__.__bases__[0].__subclasses__())}",
        '"__class__" is an invalid attribute name',
    ),
    (
        "gen_frame_escape",
        "def f(t, b, p):\n    return {'x': str((x for x in ()).gi_frame.f_globals)}",
        '"gi_frame" is a restricted name',
    ),
    (
        "gen_frame_getattr",
        "def f(t, b, p):\n    g = (x for x in ())\n    return {'x': str(getattr(getattr(g, 'gi_frame'), 'f_globals'))}",
        "attribute 'gi_frame' is not available",
    ),
    (
        "format_attr",
        "def f(t, b, p):\n    return {'x': '{0.__class__}'.format(1)}",
        "look-ups in format strings",
    ),
    (
        "str_format_attr",
        "def f(t, b, p):\n    return {'x': str.format('{0.__class__.__bases__}', 1)}",
        "look-ups in format strings",
    ),
    (
        "format_map_attr",
        "def f(t, b, p):\n    return {'x': '{v.__class__}'.format_map({'v': t})}",
        "look-ups in format strings",
    ),
    (
        "format_index",
        "def f(t, b, p):\n    return {'x': '{0[ltp]}'.format(t)}",
        "look-ups in format strings",
    ),
    (
        "getattr_dunder",
        "def f(t, b, p):\n    return {'x': str(getattr(t, '__class__'))}",
        "attribute '__class__' is not allowed",
    ),
    (
        "exception_obj",
        "def f(t, b, p):\n    try:\n        getattr(t, 'missing')\n    except AttributeError as e:\n"
        "        return {'x': str(getattr(e, 'obj'))}",
        "'obj' of exceptions is not available",
    ),
    (
        "module_write",
        "import math\ndef f(t, b, p):\n    math.pi = 3\n    return {}",
        "cannot modify <sandbox module 'math'>",
    ),
    (
        "numpy_load",
        "import numpy\ndef f(t, b, p):\n    return {'x': str(numpy.load('/etc/passwd'))}",
        "'load'",
    ),
    (
        "numpy_load_runtime",
        "import numpy as np\ndef f(t, b, p):\n    return {'x': str(getattr(np, 'lo' + 'ad')('/etc/passwd'))}",
        "attribute 'load' is not available",
    ),
    (
        "numpy_fromfile_runtime",
        "import numpy as np\ndef f(t, b, p):\n    return {'x': str(getattr(np, 'from' + 'file')('/etc/passwd'))}",
        "attribute 'fromfile' is not available",
    ),
    (
        "numpy_ctypes_runtime",
        "import numpy as np\ndef f(t, b, p):\n    return {'x': str(getattr(np.zeros(2), 'cty' + 'pes'))}",
        "attribute 'ctypes' is not available",
    ),
    (
        "numpy_lib_runtime",
        "import numpy as np\ndef f(t, b, p):\n    return {'x': str(getattr(np, 'l' + 'ib'))}",
        "attribute 'lib' is not available",
    ),
    (
        "pandas_read_csv",
        "import pandas as pd\ndef f(t, b, p):\n    return {'x': str(pd.read_csv('/etc/passwd'))}",
        "'read_csv'",
    ),
    (
        "pandas_read_csv_runtime",
        "import pandas as pd\ndef f(t, b, p):\n    return {'x': str(getattr(pd, 'read_' + 'csv')('/etc/passwd'))}",
        "attribute 'read_csv' is not available",
    ),
    (
        "pandas_apply_eval",
        "import pandas as pd\ndef f(t, b, p):\n    df = pd.DataFrame({'a': [1]})\n"
        "    return {'x': str(df.apply('ev' + 'al', expr='a.__class__'))}",
        "apply('eval')",
    ),
    (
        "pandas_agg_to_csv",
        f"import pandas as pd\ndef f(t, b, p):\n    pd.DataFrame({{'a': [1]}}).agg(['sum', 'to_' + 'csv'], '{CANARY}')\n"
        "    return {}",
        "agg('to_csv')",
    ),
    (
        "pandas_agg_user_dict",
        "import pandas as pd\nclass D(dict):\n    def items(self):\n        return [('a', 'to_' + 'csv')]\n"
        "def f(t, b, p):\n    return {'x': str(pd.DataFrame({'a': [1]}).agg(D()))}",
        "user-defined container types",
    ),
    (
        "file_write_tofile",
        f"import numpy as np\ndef f(t, b, p):\n    getattr(np.zeros(2), 'to' + 'file')('{CANARY}')\n    return {{}}",
        "attribute 'tofile' is not available",
    ),
    (
        "cython_func_globals",
        "import pandas as pd\ndef f(t, b, p):\n    g = getattr(pd.Timestamp.ceil, 'func_' + 'globals')\n"
        "    return {'x': str(g['np'])}",
        "attribute 'func_globals' is not available",
    ),
    (
        "cython_func_globals_static",
        "import pandas as pd\ndef f(t, b, p):\n    return {'x': str(pd.Timestamp.ceil.func_globals)}",
        "'func_globals'",
    ),
    ("exec_eval", "def f(t, b, p):\n    return {'x': eval('1')}", "Eval calls are not allowed"),
    ("huge_pow_constant", "def f(t, b, p):\n    return {'x': 10**10**10}", "integer power too large"),
    (
        "huge_pow_runtime",
        "def f(t, b, p):\n    n = 10\n    return {'x': n ** n ** n}",
        "integer power too large",
    ),
    ("huge_pow_builtin", "def f(t, b, p):\n    return {'x': pow(10, 10**10)}", "integer power too large"),
    (
        "huge_pow_inplace",
        "def f(t, b, p):\n    n = 10\n    n **= 10**10\n    return {'x': n}",
        "integer power too large",
    ),
    (
        "recursion",
        "def f(t, b, p):\n    def g(n):\n        return g(n + 1)\n    return {'x': g(0)}",
        "RecursionError",
    ),
    ("recursion_top", "def f(t, b, p):\n    return f(t, b, p)", "RecursionError"),
    ("memory_str", "def f(t, b, p):\n    return {'x': 'x' * 10**10}", "MemoryError: memory limit of 64 MB"),
    (
        "memory_numpy",
        "import numpy as np\ndef f(t, b, p):\n    return {'x': float(np.ones(10**8).sum())}",
        "MemoryError",
    ),
    (
        "memory_leak_loop",
        "def f(t, b, p):\n    keep = []\n    while True:\n        keep.append('a' * 10**6)",
        "MemoryError",
    ),
    (
        "raise",
        "def f(t, b, p):\n    x = 1\n    raise ValueError('boom ' + str(x))",
        "ValueError: boom 1 (line 3)",
    ),
    ("system_exit", "def f(t, b, p):\n    raise SystemExit(3)", "SystemExit: 3"),
    ("non_json_set", "def f(t, b, p):\n    return {'x': {1, 2}}", "'x' has type set"),
    ("non_json_object", "class A:\n    pass\ndef f(t, b, p):\n    return {'x': A()}", "'x' has type A"),
    ("non_json_nested", "def f(t, b, p):\n    return {'x': [1, {'y': 2}]}", "'x' has type list"),
    ("not_a_dict", "def f(t, b, p):\n    return [1, 2]", "must return a dict"),
    ("non_str_key", "def f(t, b, p):\n    return {1: 2}", "keys must be strings"),
    ("lone_surrogate", "def f(t, b, p):\n    return {'x': chr(0xD800)}", "not valid Unicode text"),
    ("output_too_large", "def f(t, b, p):\n    return {'x': 'a' * 70000}", "output too large"),
    ("missing_function", "def g(t, b, p):\n    return {}", "'f'"),
    ("not_a_function", "f = 42", "'f' is not a function"),
]


@pytest.mark.parametrize(("case_id", "source", "fragment"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_source_is_stopped(
    pool: SandboxPool,
    tick: dict[str, Any],
    bars: list[dict[str, Any]],
    case_id: str,
    source: str,
    fragment: str,
) -> None:
    refused = check_source(source, "f")
    pid, cwd, threads = os.getpid(), os.getcwd(), threading.active_count()
    started = time.monotonic()
    res = pool.run(source, "f", tick, bars, {}, timeout_s=2.0, memory_limit_mb=64)
    elapsed = time.monotonic() - started
    assert res.result is None, f"hostile source produced a result: {res.result}"
    assert res.error and fragment in res.error, (res.error, refused)
    assert elapsed < 2.0 + 0.5, elapsed
    # the caller is untouched
    assert (os.getpid(), os.getcwd(), threading.active_count()) == (pid, cwd, threads)
    assert not os.path.exists(CANARY)
    # "the next tick is processed" on the same runner
    assert_next_tick_ok(pool, tick, bars)


def test_refusal_happens_at_upload_for_statically_visible_attacks() -> None:
    visible = {"import_os", "import_subprocess", "import_socket", "open_file", "dunder_import", "subclasses",
               "gen_frame_escape", "numpy_load", "pandas_read_csv", "exec_eval", "huge_pow_constant",
               "missing_function", "not_a_function"}  # fmt: skip
    for case_id, source, _ in HOSTILE:
        if case_id in visible:
            assert check_source(source, "f"), case_id


def test_infinite_loop_is_killed_by_wall_clock(
    pool: SandboxPool, tick: dict[str, Any], bars: list[dict[str, Any]]
) -> None:
    source = "def f(t, b, p):\n    while True:\n        pass\n"
    assert check_source(source, "f") == []
    started = time.monotonic()
    res = pool.run(source, "f", tick, bars, {}, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert res.killed and res.error == "timed out after 1 s (wall-clock limit)"
    assert 0.95 <= elapsed < 1.0 + 0.4, elapsed
    assert 950 <= res.execution_time_ms < 1400
    assert_next_tick_ok(pool, tick, bars)


def test_cpu_bound_builtin_is_killed(
    pool: SandboxPool, tick: dict[str, Any], bars: list[dict[str, Any]]
) -> None:
    """A long computation inside one C call (no bytecode boundary) is still killed on time."""
    source = "import math\ndef f(t, b, p):\n    return {'x': math.factorial(10**8) % 7}\n"
    started = time.monotonic()
    res = pool.run(source, "f", tick, bars, {}, timeout_s=0.5)
    assert res.killed and "timed out" in (res.error or "")
    assert time.monotonic() - started < 0.5 + 0.4
    assert_next_tick_ok(pool, tick, bars)


def test_cpu_time_limit(pool: SandboxPool, tick: dict[str, Any], bars: list[dict[str, Any]]) -> None:
    source = "def f(t, b, p):\n    while True:\n        pass\n"
    started = time.monotonic()
    res = pool.run(source, "f", tick, bars, {}, timeout_s=10.0, cpu_time_s=1)
    elapsed = time.monotonic() - started
    assert res.killed and "CPU time limit exceeded" in (res.error or ""), res.error
    assert elapsed < 1.0 + 1.0, elapsed
    assert_next_tick_ok(pool, tick, bars)


def test_nan_and_inf_become_null(pool: SandboxPool, tick: dict[str, Any], bars: list[dict[str, Any]]) -> None:
    source = (
        "import math\nimport numpy as np\n"
        "def f(t, b, p):\n"
        "    return {'nan': float('nan'), 'inf': math.inf, 'npnan': np.float64('nan'), 'ok': 1.5}\n"
    )
    res = pool.run(source, "f", tick, bars, {})
    assert res.error is None
    assert res.result == {"nan": None, "inf": None, "npnan": None, "ok": 1.5}


def test_worker_killed_between_calls_is_replaced(tick: dict[str, Any], bars: list[dict[str, Any]]) -> None:
    with SandboxPool(size=1) as own:
        assert_next_tick_ok(own, tick, bars)
        (pid,) = own.worker_pids()
        os.kill(pid, 9)
        time.sleep(0.05)
        assert_next_tick_ok(own, tick, bars)
        assert own.worker_pids() != [pid]


def test_unresponsive_worker_is_killed_by_the_caller(
    tick: dict[str, Any], bars: list[dict[str, Any]]
) -> None:
    """Backstop: a worker that stops answering (SIGSTOP) is killed after timeout + grace; the next call works."""
    with SandboxPool(size=1, backstop_grace_s=0.3) as own:
        assert_next_tick_ok(own, tick, bars)
        (pid,) = own.worker_pids()
        os.kill(pid, 19)  # SIGSTOP
        started = time.monotonic()
        res = own.run("def f(t, b, p):\n    return {}\n", "f", tick, bars, {}, timeout_s=0.3)
        assert res.killed and "did not answer" in (res.error or "")
        assert time.monotonic() - started < 0.3 + 0.3 + 0.5
        assert_next_tick_ok(own, tick, bars)
        assert pid not in own.worker_pids()
