"""Compile-time sandbox policy for uploaded ("external") functions.

The source is compiled with RestrictedPython using :class:`SandboxPolicy`, a subclass of RestrictedPython's
``RestrictingNodeTransformer``.  On top of RestrictedPython's rules (no ``_``-prefixed names or attributes, no
``exec``/``eval`` calls, no frame/generator/traceback introspection attributes, attribute access rewritten to
``_getattr_``, item access to ``_getitem_`` …) the policy

* allows ``import`` only of :data:`~functions.sandbox.rules.ALLOWED_MODULES` (absolute imports, no ``*``);
* refuses uses of builtins that do not exist in the sandbox and would only be used to escape it (``open``,
  ``globals``, ``vars``, ``type``, …) unless the source assigns that name itself;
* refuses attribute names that are I/O, FFI or escape surfaces (:func:`~functions.sandbox.rules.attribute_refusal`: ``read_*``, ``load*``,
  ``save*``, file-writing ``to_*``, ``tofile``, ``ctypes``, ``mro``, ``lib``, ``io``, …) — on any object;
* rewrites ``a ** b`` to ``_pow_(a, b)`` (a guard that refuses integer powers with huge results) and refuses
  constant powers such as ``10 ** 10 ** 10`` outright.

This is the *early* line of defence (used at upload time by :func:`check_source`); the same rules are enforced
again at run time by :mod:`functions.sandbox.guards` inside the sandbox process, under OS resource limits.

No Django and no numpy/pandas imports here (this module is imported by web processes).
"""

from __future__ import annotations

import ast
import keyword
from collections.abc import Iterable
from types import CodeType

from RestrictedPython import RestrictingNodeTransformer, compile_restricted_exec
from RestrictedPython.transformer import INSPECT_ATTRIBUTES as _RP_INSPECT

from functions.sandbox.rules import (
    ALLOWED_MODULES,
    FORBIDDEN_BUILTIN_NAMES,
    MAX_POW_BITS,
    PowerTooLarge,
    attribute_refusal,
    check_power,
)

USER_FILENAME = "<user_function>"
"""File name given to compiled user code (appears in error messages / tracebacks)."""

MAX_SOURCE_CHARS = 100_000
"""Longest accepted source text."""


class _NotConstant(Exception):
    pass


def _constant_int(node: ast.AST, depth: int = 0) -> int:
    """Evaluate a pure integer-constant expression (``+ - * **``, unary ``-``/``+``) or raise ``_NotConstant``.

    Raises :class:`PowerTooLarge` when a power (or product) in it would be huge.
    """
    if depth > 50:
        raise _NotConstant
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _constant_int(node.operand, depth + 1)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Pow)):
        left = _constant_int(node.left, depth + 1)
        right = _constant_int(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            if right < 0:
                raise _NotConstant
            check_power(left, right)
            return left**right
        if isinstance(node.op, ast.Mult):
            if left.bit_length() + right.bit_length() > MAX_POW_BITS:
                raise PowerTooLarge(f"integer product too large (limit {MAX_POW_BITS} bits)")
            return left * right
        return left + right if isinstance(node.op, ast.Add) else left - right
    raise _NotConstant


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the source binds anywhere (assignments, defs, classes, arguments, imports, for targets…)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython policy of the signal sandbox (see the module docstring)."""

    _bound: set[str]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        """Record the names the source binds, then apply the RestrictedPython module transformation."""
        self._bound = _bound_names(node)
        return super().visit_Module(node)  # type: ignore[return-value]

    def visit_Name(self, node: ast.Name) -> ast.AST:
        """Refuse loads of sandbox-less builtins (``open``, ``globals``, …) that the source does not bind."""
        if (
            isinstance(node.ctx, ast.Load)
            and node.id in FORBIDDEN_BUILTIN_NAMES
            and node.id not in getattr(self, "_bound", ())
        ):
            self.error(node, f'name "{node.id}" is not available in the sandbox.')
        return super().visit_Name(node)  # type: ignore[return-value]

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        """Refuse blocked attribute names (I/O, FFI, escape surfaces) in addition to RestrictedPython's rules."""
        if not node.attr.startswith("_"):  # RestrictedPython reports '_' names itself
            reason = attribute_refusal(node.attr)
            if reason is not None and node.attr not in _RP_INSPECT:
                self.error(node, reason[0].upper() + reason[1:] + ".")
        return super().visit_Attribute(node)  # type: ignore[return-value]

    def _check_module(self, node: ast.AST, module: str) -> None:
        if module not in ALLOWED_MODULES:
            allowed = ", ".join(sorted(m for m in ALLOWED_MODULES if "." not in m))
            self.error(node, f'import of "{module}" is not allowed; importable modules: {allowed}.')

    def visit_Import(self, node: ast.Import) -> ast.AST:
        """Allow ``import X`` only for :data:`ALLOWED_MODULES`."""
        for alias in node.names:
            self._check_module(node, alias.name)
        return super().visit_Import(node)  # type: ignore[return-value]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        """Allow ``from X import a, b`` only for :data:`ALLOWED_MODULES` and acceptable attribute names."""
        if node.level:
            self.error(node, "relative imports are not allowed.")
        else:
            self._check_module(node, node.module or "")
            for alias in node.names:
                reason = attribute_refusal(alias.name) if not alias.name.startswith("_") else None
                if reason is not None:
                    self.error(node, reason[0].upper() + reason[1:] + ".")
        return super().visit_ImportFrom(node)  # type: ignore[return-value]

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        """Rewrite ``a ** b`` to ``_pow_(a, b)``; refuse integer-constant powers with huge results."""
        if isinstance(node.op, ast.Pow):
            try:
                _constant_int(node)
            except PowerTooLarge as exc:
                self.error(node, f"{exc}.")
            except (_NotConstant, ArithmeticError, ValueError):
                pass
        new = self.node_contents_visit(node)
        if isinstance(new.op, ast.Pow):
            call = ast.Call(func=ast.Name("_pow_", ast.Load()), args=[new.left, new.right], keywords=[])
            ast.copy_location(call, new)
            ast.fix_missing_locations(call)
            return call
        return new


def _parse_errors(source: str) -> list[str] | None:
    if not isinstance(source, str):
        return ["source must be a string"]
    if len(source) > MAX_SOURCE_CHARS:
        return [f"source is too long ({len(source)} characters; limit {MAX_SOURCE_CHARS})"]
    if "\x00" in source:
        return ["source contains NUL characters"]
    return None


def compile_source(source: str) -> tuple[CodeType | None, list[str]]:
    """Compile ``source`` under :class:`SandboxPolicy`.

    Returns ``(code, [])`` on success or ``(None, errors)``; every error message carries a ``Line N:`` prefix
    when a line is known.  Never raises for bad input (overly nested or huge sources become errors).
    """
    errors = _parse_errors(source)
    if errors:
        return None, errors
    try:
        result = compile_restricted_exec(source, filename=USER_FILENAME, policy=SandboxPolicy)
    except (RecursionError, MemoryError):
        return None, ["source is too deeply nested or too complex to compile"]
    except (SyntaxError, ValueError, TypeError) as exc:  # e.g. compile() limits on the transformed AST
        return None, [f"{type(exc).__name__}: {exc}"]
    if result.errors or result.code is None:
        return None, list(result.errors) or ["source did not compile"]
    return result.code, []


def check_function_name(function_name: str) -> str | None:
    """Return an error message if ``function_name`` cannot name a sandbox function, else ``None``."""
    if not isinstance(function_name, str) or not function_name:
        return "function_name is required"
    if not function_name.isidentifier() or keyword.iskeyword(function_name):
        return f"function_name {function_name!r} is not a valid Python identifier"
    if function_name.startswith("_"):
        return f"function_name {function_name!r} must not start with '_'"
    return None


def _function_errors(tree: ast.Module, function_name: str) -> list[str]:
    definition: ast.FunctionDef | None = None
    other: ast.AST | None = None
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == function_name:
            definition, other = stmt, None
        elif isinstance(stmt, (ast.ClassDef, ast.AsyncFunctionDef)) and stmt.name == function_name:
            definition, other = None, stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom)):
            for name in _stmt_bound_names(stmt):
                if name == function_name:
                    definition, other = None, stmt
    if definition is None:
        if other is not None:
            return [f"Line {getattr(other, 'lineno', '?')}: {function_name!r} is not a function (use 'def')"]
        return [f"function {function_name!r} is not defined at the top level of the source"]
    args = definition.args
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    missing_kwonly = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if (positional < 3 and args.vararg is None) or required > 3 or missing_kwonly:
        return [
            f"Line {definition.lineno}: function {function_name!r} must accept three positional arguments "
            "(tick, bars, params)"
        ]
    return []


def _stmt_bound_names(stmt: ast.stmt) -> Iterable[str]:
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        for alias in stmt.names:
            yield (alias.asname or alias.name).split(".")[0]
        return
    targets: list[ast.expr]
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    else:
        targets = [stmt.target]  # type: ignore[attr-defined]
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                yield node.id


def check_source(source: str, function_name: str) -> list[str]:
    """Check an uploaded function at upload time; return error messages (empty list = acceptable).

    Reports, with ``Line N:`` prefixes where a line is known: syntax errors; sandbox-policy violations
    (forbidden imports, names, attributes, huge constant powers, RestrictedPython rules); an invalid
    ``function_name``; a ``function_name`` that is not defined by a top-level ``def`` or that cannot be called
    as ``NAME(tick, bars, params)``.  Runs in the calling process but never executes the source and never
    raises for bad input.  The runtime guards and OS limits in the sandbox process remain the real defence.
    """
    errors: list[str] = []
    name_error = check_function_name(function_name)
    if name_error:
        errors.append(name_error)
    code, compile_errors = compile_source(source)
    errors.extend(compile_errors)
    if code is not None and name_error is None:
        try:
            tree = ast.parse(source, USER_FILENAME)
        except (SyntaxError, RecursionError, MemoryError, ValueError):  # pragma: no cover - compiled above
            return errors or ["source did not parse"]
        errors.extend(_function_errors(tree, function_name))
    return errors
