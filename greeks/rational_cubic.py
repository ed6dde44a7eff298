"""Shape-preserving rational cubic interpolation (numba), used for the initial guess of Let's Be Rational.

R. Delbourgo, J. A. Gregory, "Shape preserving piecewise rational interpolation", SIAM J. Sci. Stat. Comput.
1985; ported from Peter Jäckel's "Let's Be Rational" (rationalcubic.cpp). All quantities are dimensionless
(normalised prices and volatilities).

Copyright notice of the original: Copyright © 2013-2014 Peter Jäckel. Permission to use, copy, modify, and
distribute this software is freely granted, provided that this notice is preserved.
"""

from __future__ import annotations

import math

from greeks._numba import jit
from greeks.normal import DBL_EPSILON, DBL_MAX, DBL_MIN

MINIMUM_CONTROL_PARAMETER = -(1.0 - math.sqrt(DBL_EPSILON))
MAXIMUM_CONTROL_PARAMETER = 2.0 / (DBL_EPSILON * DBL_EPSILON)


@jit
def _is_zero(x: float) -> bool:
    return math.fabs(x) < DBL_MIN


@jit
def rational_cubic_interpolation(
    x: float, x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, r: float
) -> float:
    """Value at x of the rational cubic through (x_l, y_l), (x_r, y_r) with end slopes d_l, d_r and control r."""
    h = x_r - x_l
    if math.fabs(h) <= 0:
        return 0.5 * (y_l + y_r)
    t = (x - x_l) / h
    if not (r >= MAXIMUM_CONTROL_PARAMETER):
        omt = 1.0 - t
        t2 = t * t
        omt2 = omt * omt
        return (y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2
                + y_l * omt2 * omt) / (1.0 + (r - 3.0) * t * omt)
    return y_r * t + y_l * (1.0 - t)


@jit
def _control_parameter_to_fit_second_derivative_at_left_side(
    x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, second_derivative_l: float
) -> float:
    h = x_r - x_l
    numerator = 0.5 * h * second_derivative_l + (d_r - d_l)
    if _is_zero(numerator):
        return 0.0
    denominator = (y_r - y_l) / h - d_l
    if _is_zero(denominator):
        return MAXIMUM_CONTROL_PARAMETER if numerator > 0 else MINIMUM_CONTROL_PARAMETER
    return numerator / denominator


@jit
def _control_parameter_to_fit_second_derivative_at_right_side(
    x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, second_derivative_r: float
) -> float:
    h = x_r - x_l
    numerator = 0.5 * h * second_derivative_r + (d_r - d_l)
    if _is_zero(numerator):
        return 0.0
    denominator = d_r - (y_r - y_l) / h
    if _is_zero(denominator):
        return MAXIMUM_CONTROL_PARAMETER if numerator > 0 else MINIMUM_CONTROL_PARAMETER
    return numerator / denominator


@jit
def _minimum_control_parameter(d_l: float, d_r: float, s: float, prefer_shape_preservation: bool) -> float:
    monotonic = d_l * s >= 0 and d_r * s >= 0
    convex = d_l <= s and s <= d_r
    concave = d_l >= s and s >= d_r
    if not monotonic and not convex and not concave:
        return MINIMUM_CONTROL_PARAMETER
    d_r_m_d_l = d_r - d_l
    d_r_m_s = d_r - s
    s_m_d_l = s - d_l
    r1 = -DBL_MAX
    r2 = r1
    if monotonic:
        if not _is_zero(s):
            r1 = (d_r + d_l) / s
        elif prefer_shape_preservation:
            r1 = MAXIMUM_CONTROL_PARAMETER
    if convex or concave:
        if not (_is_zero(s_m_d_l) or _is_zero(d_r_m_s)):
            r2 = max(math.fabs(d_r_m_d_l / d_r_m_s), math.fabs(d_r_m_d_l / s_m_d_l))
        elif prefer_shape_preservation:
            r2 = MAXIMUM_CONTROL_PARAMETER
    elif monotonic and prefer_shape_preservation:
        r2 = MAXIMUM_CONTROL_PARAMETER
    return max(MINIMUM_CONTROL_PARAMETER, max(r1, r2))


@jit
def convex_control_parameter_left(
    x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, second_derivative_l: float,
    prefer_shape_preservation: bool,
) -> float:
    """Control parameter matching the second derivative at the left end, but never below the convexity minimum."""
    r = _control_parameter_to_fit_second_derivative_at_left_side(x_l, x_r, y_l, y_r, d_l, d_r, second_derivative_l)
    r_min = _minimum_control_parameter(d_l, d_r, (y_r - y_l) / (x_r - x_l), prefer_shape_preservation)
    return max(r, r_min)


@jit
def convex_control_parameter_right(
    x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float, second_derivative_r: float,
    prefer_shape_preservation: bool,
) -> float:
    """Control parameter matching the second derivative at the right end, but never below the convexity minimum."""
    r = _control_parameter_to_fit_second_derivative_at_right_side(x_l, x_r, y_l, y_r, d_l, d_r, second_derivative_r)
    r_min = _minimum_control_parameter(d_l, d_r, (y_r - y_l) / (x_r - x_l), prefer_shape_preservation)
    return max(r, r_min)
