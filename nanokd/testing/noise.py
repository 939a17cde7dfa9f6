"""Rounding noise, measured: the arithmetic that nanokd.testing's tolerances are derived from.

A check of a gradient, or of a law a loss obeys, compares two numbers that
are each rounded.  Its tolerance must cover that rounding and nothing more,
or a broken gradient passes as noise.  Two measurements supply it:

* :func:`fit_noise`: a quantity evaluated at the nine :data:`POINTS` of a
  line, its smooth part fitted by a polynomial and taken out; the RMS of what
  is left is its rounding noise;
* :func:`input_rounding`: how much the outputs change when the inputs, which
  are rounded numbers themselves, move by :data:`ULPS` units in their last
  place.
"""

import functools
import math

import numpy as np

from ..backend import to_numpy

EPS = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
UNDERFLOW32 = 2.0**20 * float(np.finfo(np.float32).tiny)
ULPS = 4  # inputs are moved by this many units in their last place to measure what their rounding costs


def host64(a):
    """``a`` as a float64 NumPy array (copied off the GPU if it is there): what every check computes in."""
    return np.array(to_numpy(a), dtype=np.float64)


def describe(value):
    """A number for a failure message; NaN spelt out."""
    return "NaN" if value != value else str(value)


def fmt_index(idx):
    """An index as Python writes a tuple: (3,) or (0, 1)."""
    return "(" + ", ".join(str(int(i)) for i in idx) + ("," if len(idx) == 1 else "") + ")"


# The second step of the stencil, in units of h: irrational-looking, so that the points of the two
# stencils, 0, +-h, +-2h, +-BETA h, +-2 BETA h, do not lie on one grid.  On an evenly spaced grid a
# function's rounding can repeat from point to point (a quantity near 1 that moves by nearly a whole
# number of ulps per step is rounded the same way each time), look smooth, and hide from the fit below.
BETA = 1.7
POINTS = (-2 * BETA, -2.0, -BETA, -1.0, 0.0, 1.0, BETA, 2.0, 2 * BETA)  # where f is evaluated, in units of h
LINE = len(POINTS)


@functools.lru_cache(maxsize=None)
def residual_maker(points, degree):
    """I - V V^+ for the Vandermonde matrix V of the points: the residual of a least-squares polynomial fit."""
    V = np.vander(np.asarray(points) / max(abs(p) for p in points), degree + 1)
    return np.eye(len(points)) - V @ np.linalg.pinv(V)


def fit_noise(values, degree, points=POINTS):
    """The rounding noise of samples along a line, elementwise: their RMS residual about a fitted polynomial.

    ``values``: an array (K, ...) of a function at the K ``points`` of a
    line.  Whatever the function does smoothly along it, up to ``degree``,
    is fitted and removed; what is left is its rounding (each sample rounded
    afresh).  So a function that is wrong but smooth -- not invariant, say,
    or a gradient that does not sum to 0 -- cannot pass its error off as noise.
    """
    K = values.shape[0]
    flat = values.reshape(K, -1)
    residual = residual_maker(tuple(points), degree) @ flat
    top = np.abs(residual).max(axis=0)  # scaled before squaring: a residual of 1e-177 squared underflows to 0
    unit = np.where(top > 0, top, 1.0)
    rms = top * np.sqrt(((residual / unit) ** 2).sum(axis=0) / (K - degree - 1))
    return rms.reshape(values.shape[1:])


def input_rounding(fn, arrays, base, rng, floating=None, eps=EPS):
    """How much each output of fn(arrays) changes, elementwise, when its floating inputs move by ULPS ulps.

    fn takes and returns lists of host arrays; ``base`` is fn(arrays).  The
    inputs are rounded numbers themselves, and this is what that costs.  A
    loss of softmaxes feels only the differences within a row, and a move of
    two entries by the same relative amount in the same direction leaves
    their difference nearly alone; so the entries of each row are moved by
    patterns of signs that set every pair of them apart at least once (the
    bits of their class index: ceil(log2 C) patterns), each row's pattern
    given a random sign, plus one pattern of random signs.  The largest
    change counts.
    """
    floating = [True] * len(arrays) if floating is None else floating
    width = max([np.shape(a)[-1] for a, fl in zip(arrays, floating) if fl and np.ndim(a)] or [1])
    patterns = []
    for bit in range(max(1, math.ceil(math.log2(width)))):
        patterns.append([None if not fl else np.ones(np.shape(a)) if not np.ndim(a) else
                         (1.0 - 2.0 * ((np.arange(np.shape(a)[-1]) >> bit) & 1))
                         * rng.choice([-1.0, 1.0], size=np.shape(a)[:-1] + (1,))
                         for a, fl in zip(arrays, floating)])
    patterns.append([rng.choice([-1.0, 1.0], size=np.shape(a)) if fl else None for a, fl in zip(arrays, floating)])
    worst = [np.zeros(np.shape(b)) for b in base]
    for signs in patterns:
        moved = [a * (1 + ULPS * eps * r) if fl else a for a, r, fl in zip(arrays, signs, floating)]
        worst = [np.maximum(w, np.abs(o - b)) for w, o, b in zip(worst, fn(moved), base)]
    return worst
