"""Shared numba configuration for the Greeks engine.

Every compiled kernel in :mod:`greeks` uses :data:`jit`: ``nopython`` mode, ``cache=True`` (so the machine code is
written next to the sources in ``__pycache__`` and re-used at service start) and ``fastmath=False`` (IEEE semantics
are required for the 1e-12 accuracy of the deep-wing implied volatilities; ``fastmath`` would allow re-association
and break the carefully ordered expansions of Let's Be Rational).

Note: numba's on-disk cache is keyed on the source file of each compiled function; after editing one of the
``greeks`` modules during development, delete ``greeks/__pycache__`` to be sure no stale dependent kernel is used.
"""

from __future__ import annotations

from numba import njit

jit = njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
"""Decorator used for every scalar helper and loop kernel (no parallelism: one element after another)."""
