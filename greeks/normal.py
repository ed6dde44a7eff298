"""Standard normal distribution functions (numba), ported from Jäckel's "Let's Be Rational" sources.

* :func:`erfc_cody`, :func:`erfcx_cody`: W. J. Cody, "Rational Chebyshev approximations for the error function",
  Math. Comp. 1969, pp. 631-638 (near-minimax rational approximations, full double precision, relatively
  accurate in the far tail).
* :func:`norm_cdf`: Φ(z), relatively accurate for very negative z (asymptotic expansion below z = -10).
* :func:`norm_pdf`: φ(z).
* :func:`inverse_norm_cdf`: Φ⁻¹(u), algorithm AS241 (Wichura 1988), about 1e-16 relative.

All functions are dimensionless and work on one float64 at a time; they are meant to be called from other
compiled kernels.

Copyright notice of the original: Copyright © 2013-2014 Peter Jäckel. Permission to use, copy, modify, and
distribute this software is freely granted, provided that this notice is preserved. (W. J. Cody's algorithms are
in the public domain.)
"""

from __future__ import annotations

import math

from greeks._numba import jit

DBL_EPSILON = 2.220446049250313e-16
DBL_MIN = 2.2250738585072014e-308
DBL_MAX = 1.7976931348623157e308
ONE_OVER_SQRT_TWO = 0.7071067811865475244008443621048490392848359376887
ONE_OVER_SQRT_TWO_PI = 0.3989422804014326779399460599343818684758586311649
SQRT_TWO_PI = 2.506628274631000502415765284811045253006986740610

_SQRPI = 0.56418958354775628695  # 1/sqrt(pi)
_THRESH = 0.46875
_XNEG = -26.628
_XSMALL = 1.11e-16
_XBIG = 26.543
_XHUGE = 6.71e7
_XMAX = 2.53e307
_XINF = 1.79e308

_NORM_CDF_ASYMPTOTIC_FIRST = -10.0
_NORM_CDF_ASYMPTOTIC_SECOND = -1.0 / math.sqrt(DBL_EPSILON)


@jit
def _d_int(x: float) -> float:
    return math.floor(x) if x > 0 else -math.floor(-x)


@jit
def _exp_minus_square(y: float) -> float:
    """exp(-y²) computed as exp(-a²)·exp(-(y-a)(y+a)) with a = y rounded down to 1/16 (Cody's accuracy trick)."""
    ysq = _d_int(y * 16.0) / 16.0
    dl = (y - ysq) * (y + ysq)
    return math.exp(-ysq * ysq) * math.exp(-dl)


@jit
def _calerf(x: float, jint: int) -> float:
    """Cody's CALERF: jint 0 → erf(x), 1 → erfc(x), 2 → erfcx(x) = exp(x²)·erfc(x)."""
    y = math.fabs(x)
    if y <= _THRESH:
        ysq = 0.0
        if y > _XSMALL:
            ysq = y * y
        xnum = 0.185777706184603153 * ysq
        xden = ysq
        xnum = (xnum + 3.1611237438705656) * ysq
        xden = (xden + 23.6012909523441209) * ysq
        xnum = (xnum + 113.864154151050156) * ysq
        xden = (xden + 244.024637934444173) * ysq
        xnum = (xnum + 377.485237685302021) * ysq
        xden = (xden + 1282.61652607737228) * ysq
        result = x * (xnum + 3209.37758913846947) / (xden + 2844.23683343917062)
        if jint != 0:
            result = 1.0 - result
        if jint == 2:
            result *= math.exp(ysq)
        return result
    if y <= 4.0:
        xnum = 2.15311535474403846e-8 * y
        xden = y
        xnum = (xnum + 0.564188496988670089) * y
        xden = (xden + 15.7449261107098347) * y
        xnum = (xnum + 8.88314979438837594) * y
        xden = (xden + 117.693950891312499) * y
        xnum = (xnum + 66.1191906371416295) * y
        xden = (xden + 537.181101862009858) * y
        xnum = (xnum + 298.635138197400131) * y
        xden = (xden + 1621.38957456669019) * y
        xnum = (xnum + 881.95222124176909) * y
        xden = (xden + 3290.79923573345963) * y
        xnum = (xnum + 1712.04761263407058) * y
        xden = (xden + 4362.61909014324716) * y
        xnum = (xnum + 2051.07837782607147) * y
        xden = (xden + 3439.36767414372164) * y
        result = (xnum + 1230.33935479799725) / (xden + 1230.33935480374942)
        if jint != 2:
            result *= _exp_minus_square(y)
    else:
        result = 0.0
        skip = False
        if y >= _XBIG:
            if jint != 2 or y >= _XMAX:
                skip = True
            elif y >= _XHUGE:
                result = _SQRPI / y
                skip = True
        if not skip:
            ysq = 1.0 / (y * y)
            xnum = 0.0163153871373020978 * ysq
            xden = ysq
            xnum = (xnum + 0.305326634961232344) * ysq
            xden = (xden + 2.56852019228982242) * ysq
            xnum = (xnum + 0.360344899949804439) * ysq
            xden = (xden + 1.87295284992346047) * ysq
            xnum = (xnum + 0.125781726111229246) * ysq
            xden = (xden + 0.527905102951428412) * ysq
            xnum = (xnum + 0.0160837851487422766) * ysq
            xden = (xden + 0.0605183413124413191) * ysq
            result = ysq * (xnum + 6.58749161529837803e-4) / (xden + 0.00233520497626869185)
            result = (_SQRPI - result) / y
            if jint != 2:
                result *= _exp_minus_square(y)
    # Fix up for negative argument, erf, etc.
    if jint == 0:
        result = (0.5 - result) + 0.5
        if x < 0:
            result = -result
    elif jint == 1:
        if x < 0:
            result = 2.0 - result
    else:
        if x < 0:
            if x < _XNEG:
                result = _XINF
            else:
                ysq = _d_int(x * 16.0) / 16.0
                dl = (x - ysq) * (x + ysq)
                yy = math.exp(ysq * ysq) * math.exp(dl)
                result = yy + yy - result
    return result


@jit
def erfc_cody(x: float) -> float:
    """Complementary error function erfc(x) (dimensionless), relatively accurate for large positive x."""
    return _calerf(x, 1)


@jit
def erfcx_cody(x: float) -> float:
    """Scaled complementary error function erfcx(x) = exp(x²)·erfc(x) (dimensionless)."""
    return _calerf(x, 2)


@jit
def norm_pdf(z: float) -> float:
    """Standard normal density φ(z) = exp(-z²/2)/√(2π)."""
    return ONE_OVER_SQRT_TWO_PI * math.exp(-0.5 * z * z)


@jit
def norm_cdf(z: float) -> float:
    """Standard normal cumulative distribution Φ(z), relatively accurate in the lower tail (down to underflow)."""
    if z <= _NORM_CDF_ASYMPTOTIC_FIRST:
        # Abramowitz & Stegun (26.2.12): Φ(z) = φ(z)/|z|·[1 - 1/z² + 3/z⁴ - ...]
        total = 1.0
        if z >= _NORM_CDF_ASYMPTOTIC_SECOND:
            zsqr = z * z
            i = 1.0
            g = 1.0
            a = DBL_MAX
            lasta = a
            xx = (4.0 * i - 3.0) / zsqr
            yy = xx * ((4.0 * i - 1.0) / zsqr)
            a = g * (xx - yy)
            total -= a
            g *= yy
            i += 1.0
            a = math.fabs(a)
            while lasta > a and a >= math.fabs(total * DBL_EPSILON):
                lasta = a
                xx = (4.0 * i - 3.0) / zsqr
                yy = xx * ((4.0 * i - 1.0) / zsqr)
                a = g * (xx - yy)
                total -= a
                g *= yy
                i += 1.0
                a = math.fabs(a)
        return -norm_pdf(z) * total / z
    return 0.5 * erfc_cody(-z * ONE_OVER_SQRT_TWO)


@jit
def inverse_norm_cdf(u: float) -> float:
    """Φ⁻¹(u) for u in (0, 1) (AS241, ~1e-16 relative); returns -inf/+inf at u <= 0 / u >= 1."""
    if u <= 0:
        return -math.inf
    if u >= 1:
        return math.inf
    q = u - 0.5
    if math.fabs(q) <= 0.425:
        r = 0.180625 - q * q
        return (
            q
            * (((((((2.5090809287301226727e3 * r + 3.3430575583588128105e4) * r + 6.7265770927008700853e4) * r
                   + 4.5921953931549871457e4) * r + 1.3731693765509461125e4) * r + 1.9715909503065514427e3) * r
                + 1.3314166789178437745e2) * r + 3.3871328727963666080e0)
            / (((((((5.2264952788528545610e3 * r + 2.8729085735721942674e4) * r + 3.9307895800092710610e4) * r
                   + 2.1213794301586595867e4) * r + 5.3941960214247511077e3) * r + 6.8718700749205790830e2) * r
                + 4.2313330701600911252e1) * r + 1.0)
        )
    r = u if q < 0.0 else 1.0 - u
    r = math.sqrt(-math.log(r))
    if r < 5.0:
        r -= 1.6
        ret = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r + 2.41780725177450611770e-1) * r
                   + 1.27045825245236838258e0) * r + 3.64784832476320460504e0) * r + 5.76949722146069140550e0) * r
                + 4.63033784615654529590e0) * r + 1.42343711074968357734e0) / (
            ((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r + 1.51986665636164571966e-2) * r
                 + 1.48103976427480074590e-1) * r + 6.89767334985100004550e-1) * r + 1.67638483018380384940e0) * r
              + 2.05319162663775882187e0) * r + 1.0)
    else:
        r -= 5.0
        ret = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 1.24266094738807843860e-3) * r
                   + 2.65321895265761230930e-2) * r + 2.96560571828504891230e-1) * r + 1.78482653991729133580e0) * r
                + 5.46378491116411436990e0) * r + 6.65790464350110377720e0) / (
            ((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r + 1.84631831751005468180e-5) * r
                 + 7.86869131145613259100e-4) * r + 1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r
              + 5.99832206555887937690e-1) * r + 1.0)
    return -ret if q < 0.0 else ret
