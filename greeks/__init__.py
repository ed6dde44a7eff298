"""Option prices, implied volatility and Greeks over NumPy arrays (facade: :mod:`greeks.engine`). No Django."""

MODELS: tuple[str, ...] = ("black_scholes", "black_scholes_merton", "black76")
"""The pricing models, by name (their index is the kernels' model code)."""

DEFAULT_MODEL = "black_scholes_merton"  # a Greeks config's model when it names none

GREEK_NAMES: tuple[str, ...] = ("iv", "delta", "gamma", "theta", "vega", "rho")
"""The Greeks every layer reports, in this order (the fields of :class:`greeks.engine.ChainResult` of these names):
implied volatility (decimal per √year), delta (per unit of the underlying), gamma (per unit per unit), theta (per
calendar day), vega and rho (per percentage point)."""
