"""The Transformer's feed-forward non-linearities and their derivatives: ReLU, swish and
the exact GELU, with the error function computed by W. J. Cody's rational approximations.

NumPy has no ``erf``; ``math.erf`` is scalar. Cody's approximations ("Rational Chebyshev
approximations for the error function", Mathematics of Computation 23, 1969, pp. 631-637;
the coefficient sets of Netlib SPECFUN's ``calerf``) reach float64 precision on three
intervals of ``|x|``: erf by a rational in ``x^2`` up to 0.46875, erfc by ``exp(-x^2)``
times a rational in ``x`` up to 4 and in ``1 / x^2`` beyond.
"""

from __future__ import annotations

import numpy as np

_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)  # fmt: skip
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)  # fmt: skip
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)  # fmt: skip
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)  # fmt: skip
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)  # fmt: skip
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-01,
      6.05183413124413191e-02, 2.33520497626869185e-03)  # fmt: skip
_ONE_OVER_SQRT_PI = 5.6418958354775628695e-1
_SQRT_HALF = 0.7071067811865476
_ONE_OVER_SQRT_2PI = 0.3989422804014327


def erf(x: np.ndarray) -> np.ndarray:
    """The error function of every element of ``x`` (a fresh array of its dtype), to within
    a few float64 ulps (Cody 1969; see the module docstring)."""
    y = np.abs(x)
    out = np.empty_like(x)
    small = y <= 0.46875
    if small.any():
        z = y[small] ** 2
        num, den = _A[4] * z, z.copy()
        for i in range(3):
            num = (num + _A[i]) * z
            den = (den + _B[i]) * z
        out[small] = y[small] * (num + _A[3]) / (den + _B[3])
    middle = ~small & (y <= 4.0)
    if middle.any():
        t = y[middle]
        num, den = _C[8] * t, t.copy()
        for i in range(7):
            num = (num + _C[i]) * t
            den = (den + _D[i]) * t
        out[middle] = 1.0 - np.exp(-t * t) * (num + _C[7]) / (den + _D[7])
    large = y > 4.0
    if large.any():
        t = y[large]
        z = 1.0 / (t * t)
        num, den = _P[5] * z, z.copy()
        for i in range(4):
            num = (num + _P[i]) * z
            den = (den + _Q[i]) * z
        tail = (_ONE_OVER_SQRT_PI - z * (num + _P[4]) / (den + _Q[4])) / t
        out[large] = 1.0 - np.exp(-t * t) * tail
    return np.copysign(out, x, out=out)


def sigmoids(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sigmoid(h), sigmoid(-h))``, fresh arrays of ``h``'s dtype, where
    ``sigmoid(h) = 1 / (1 + exp(-h))``. Both come from ``exp(-|h|)``, which cannot
    overflow, and ``sigmoid(-h)`` is not formed as ``1 - sigmoid(h)``, whose digits cancel
    where ``sigmoid(h)`` is near 1."""
    e = np.exp(-np.abs(h))
    positive = h >= 0
    denominator = e + 1.0
    s = np.where(positive, 1.0, e)
    s /= denominator
    complement = np.where(positive, e, 1.0)
    complement /= denominator
    return s, complement


def forward(name: str, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``act(h)`` for ``name`` in ``"relu"``, ``"gelu"`` (``0.5 h (1 + erf(h / sqrt 2))``,
    Hendrycks & Gimpel 2016, the exact form) and ``"swish"`` (``h sigmoid(h)``, Ramachandran
    et al. 2017, "Searching for Activation Functions"; SiLU). Returns ``(act(h), cache)``,
    the cache :func:`backward` needs (``act(h)`` itself for ReLU, ``h`` for GELU and
    swish)."""
    if name == "relu":
        out = np.maximum(h, 0.0)
        return out, out
    if name == "swish":
        out, _ = sigmoids(h)
        out *= h
        return out, h
    if name != "gelu":
        raise ValueError(f"unknown activation {name!r}: relu, gelu or swish")
    cdf = erf(h * _SQRT_HALF)
    cdf += 1.0
    cdf *= 0.5
    return h * cdf, h


def backward(name: str, d_out: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """``d_out * act'(h)`` (``d_out`` is overwritten) from the cache of :func:`forward`.
    GELU's derivative is ``Phi(h) + h phi(h)``, Phi and phi the standard normal CDF and
    density; swish's is ``s + h s (1 - s)`` with ``s = sigmoid(h)``."""
    if name == "relu":
        d_out *= cache > 0
        return d_out
    h = cache
    if name == "swish":
        s, complement = sigmoids(h)
        complement *= h
        complement += 1.0
        complement *= s
        d_out *= complement
        return d_out
    if name != "gelu":
        raise ValueError(f"unknown activation {name!r}: relu, gelu or swish")
    cdf = erf(h * _SQRT_HALF)
    cdf += 1.0
    cdf *= 0.5
    density = np.exp(-0.5 * h * h)
    density *= _ONE_OVER_SQRT_2PI
    density *= h
    density += cdf
    d_out *= density
    return d_out
