"""assert_gradient: an analytic gradient against central differences, with a derived tolerance.

The tolerance is explained in the package's docstring (``nanokd.testing``);
the noise it is built from is measured in :mod:`nanokd.testing.noise`.
"""

import math
from typing import NamedTuple

import numpy as np

from ..backend import get_array_module
from ..gradcheck import gradcheck
from .noise import BETA, EPS, POINTS, describe, fit_noise, fmt_index, host64


class GradientReport(NamedTuple):
    """What :func:`assert_gradient` measured; its worst check, relative to the tolerance."""

    max_rel_error: float   # worst |numeric - analytic| relative to the gradient's scale (as nk.gradcheck)
    worst_ratio: float     # worst error / tolerance (below 1: passed)
    where: str             # the check it came from: "index (0, 1)", "input 2, index (3,)", "direction 1"
    numeric: float         # the finite difference there
    analytic: float        # the analytic value there
    error: float
    tolerance: float
    checks: int            # how many elements and directions were checked
    evaluations: int       # calls of f


def _norm(arrays):
    """The 2-norm of several arrays together, scaled first: squares of entries below 1e-154 underflow."""
    top = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    if top == 0:
        return 0.0
    return top * math.sqrt(sum(float(((a / top) ** 2).sum()) for a in arrays))


class _Scalar:
    """f of host float64 arrays, passed to f on the caller's device; counts calls and insists on finite scalars."""

    def __init__(self, f, xp, label):
        self.f, self.xp, self.label, self.calls = f, xp, label, 0

    def __call__(self, arrays, where):
        self.calls += 1
        out = self.f(*[self.xp.asarray(a) if self.xp is not np else a.copy() for a in arrays])
        try:
            value = float(out)
        except (TypeError, ValueError):
            raise TypeError(f"{self.label} must return a scalar, got {type(out).__name__} "
                            f"of shape {getattr(out, 'shape', '?')}") from None
        if not math.isfinite(value):
            raise AssertionError(f"{self.label} is {describe(value)} at {where}")
        return value


def _grads(grad, arrays, xp, several, shapes, where):
    out = grad(*[xp.asarray(a) if xp is not np else a.copy() for a in arrays])
    gs = list(out) if several else [out]
    if len(gs) != len(shapes):
        raise AssertionError(f"grad returned {len(gs)} arrays for {len(shapes)} inputs")
    gs = [host64(g) for g in gs]
    for k, (g, shape) in enumerate(zip(gs, shapes)):
        name = f"grad's output {k}" if several else "grad(x)"
        if g.shape != shape:
            raise AssertionError(f"{name} has shape {g.shape}, but its input has shape {shape}")
        bad = ~np.isfinite(g)
        if bad.any():
            idx = np.unravel_index(int(np.flatnonzero(bad)[0]), g.shape)
            raise AssertionError(f"{name} is {describe(float(g[idx]))} at index {fmt_index(idx)} "
                                 f"({int(bad.sum())} non-finite entries) at {where}")
    return gs


def assert_gradient(f, grad, x=None, *, inputs=None, eps=1e-3, max_elements=16, directions=3, sample=6, scale=None,
                    seed=0):
    """Assert that ``grad`` is the gradient of ``f``, by central differences in float64.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar (with ``inputs=[a, b, ...]``: ``f(a, b, ...)``).
    grad : callable
        ``grad(x)`` returns an array shaped like x (with ``inputs``: a sequence
        of arrays shaped like them).
    x : array, or ``inputs``: a list of arrays
        Where to check, converted to float64 (numpy or cupy: f and grad get
        arrays of the same kind).  Not modified.
    eps : float
        The step h.  The check takes steps up to 3.4h: keep kinks (a ReLU at 0)
        farther away than that.
    max_elements : int
        When all the inputs together have at most this many elements, every
        element is checked.  Otherwise ``directions`` random directions
        through all of them at once (a wrong gradient fails one with
        probability 1) and ``sample`` random elements are; when a direction
        fails and no element did, up to 8 max_elements more elements are
        checked, to name one that fails.
    scale : float or None
        The size of the terms the gradient is computed from, when they can be
        far larger than the gradient itself: e.g. T / N for a gradient
        T q * (r - <r, q>) / N of a loss of r = q - p, which where softmaxes
        saturate is a difference of probabilities near 1, good to no better
        than eps T / N (a rounding that stays frozen as x moves, so nothing
        can measure it).  None (the default) asks the gradient to be as
        accurate as its rounding allows, as nanokd's KD gradient is.
    seed : int
        Seeds the choice of elements and directions.

    The derivative along each checked element or direction is estimated by
    :func:`nanokd.gradcheck`'s four-point stencil at step h, D(h), and at 1.7h,
    D(1.7h), from f at 0, +-h, +-2h, +-1.7h, +-3.4h along it (8 calls of f).
    The tolerance of the check is

        2 |D(h) - D(1.7h)|             truncation: D(h)'s is O(h^4), so this is 15 times it
      + 6 delta_f / h                  f's rounding, through the stencil (its weights sum to 1.5/h)
      + 3 sum_j |g_j| eps |x_j| / h    x + h is rounded too
      + 4 delta_g + 64 eps max|g|      the analytic gradient's own rounding (max(max|g|, scale))

    delta_f is f's rounding noise along that line: the RMS scatter of the nine
    values about a fitted quartic (and at least eps |f|).  delta_g is the
    gradient's, measured the same way from nine gradients along a random
    line.  None of these depend on how wrong the gradient is.

    Returns a :class:`GradientReport`.  Raises AssertionError naming the worst
    element (its index), the finite difference, the analytic value, the error
    and the tolerance; or the first NaN or inf met in f or in the gradient.
    """
    if (x is None) == (inputs is None):
        raise TypeError("assert_gradient takes x or inputs=[...], exactly one of them")
    several = inputs is not None
    xs = list(inputs) if several else [x]
    if not xs:
        raise ValueError("inputs is empty")
    for k, a in enumerate(xs):
        if getattr(a, "dtype", np.dtype(float)).kind != "f":
            raise TypeError(f"input {k} must be a floating array, got dtype {getattr(a, 'dtype', type(a))}")
    xp = get_array_module(*xs)
    hosts = [host64(a) for a in xs]
    shapes = [a.shape for a in hosts]
    sizes = [a.size for a in hosts]
    total = sum(sizes)
    name = (lambda k: f"input {k}, ") if several else (lambda k: "")
    value = _Scalar(f, xp, "f")
    rng = np.random.default_rng(seed)

    def grads(arrays, where):
        return _grads(grad, arrays, xp, several, shapes, where)

    def random_direction():
        ds = [rng.standard_normal(shape) for shape in shapes]
        norm = math.sqrt(sum(float((d * d).sum()) for d in ds)) or 1.0
        return [d / norm for d in ds]

    f0 = value(hosts, "x")
    g0 = grads(hosts, "x")
    gmax = max((float(np.abs(g).max()) for g in g0 if g.size), default=0.0)
    gnorm = _norm(g0)
    terms = max(gmax, 0.0 if scale is None else float(scale))

    # the gradient's rounding noise, along a random line through x
    g_noise = [np.zeros(shape) for shape in shapes]
    if total:
        line = random_direction()
        along = [g0 if k == 0 else grads([a + (k * eps) * d for a, d in zip(hosts, line)],
                                         f"x + {k * eps:g} d along a random line")
                 for k in POINTS]
        g_noise = [np.maximum(n, fit_noise(np.stack([g[i] for g in along]), 4)) for i, n in enumerate(g_noise)]
    delta_g = [float(n.max()) if n.size else 0.0 for n in g_noise]
    delta_g2 = _norm(g_noise)

    def stencil(point, analytic, where):
        """D(h), D(1.7h) along the line point(s) (nk.gradcheck on a scalar parameter), f's noise, largest |f|."""
        t = np.zeros(1)
        seen = {0.0: f0}  # f at each step s

        def at(s):
            if s not in seen:
                seen[s] = value(point(s), where(s))
            return seen[s]

        ds = []
        for step in (eps, BETA * eps):
            r = gradcheck(lambda: at(float(t[0])), [t], [np.array([analytic])], eps=step, order=4, directions=0)
            ds.append(analytic if r.worst == "none" else r.numeric)  # "none": equal to the last bit
        values = np.array([at(k * eps) for k in POINTS])
        return ds[0], ds[1], float(fit_noise(values, 4)), float(np.abs(values).max())

    results = []  # (ratio, where, numeric, analytic, error, tolerance, is_direction)

    def record(where, d1, d2, noise, fmax, analytic, step_rounding, grad_rounding, is_direction):
        rounding = 1.5 * max(noise, EPS * fmax) / eps
        tol = (2 * abs(d1 - d2) + 4 * rounding + 2 * 1.5 * step_rounding / eps + 4 * grad_rounding
               + 64 * EPS * terms + 1e-300)
        err = abs(d1 - analytic)
        results.append((err / tol, where, d1, analytic, err, tol, is_direction))

    def check_element(j):
        k = int(np.searchsorted(offsets, j, side="right") - 1)
        idx = np.unravel_index(int(j - offsets[k]), shapes[k])
        x0, ana = float(hosts[k][idx]), float(g0[k][idx])
        label = f"{name(k)}index {fmt_index(idx)}"

        def point(s):
            pts = list(hosts)
            pts[k] = hosts[k].copy()
            pts[k][idx] = x0 + s
            return pts

        d1, d2, noise, fmax = stencil(point, ana, lambda s: f"x + {s:g} at {label}")
        record(label, d1, d2, noise, fmax, ana, abs(ana) * EPS * abs(x0), delta_g[k], False)

    def check_direction(i):
        ds = random_direction()
        ana = sum(float((g * d).sum()) for g, d in zip(g0, ds))
        d1, d2, noise, fmax = stencil(lambda s: [a + s * d for a, d in zip(hosts, ds)], ana,
                                      lambda s: f"x + {s:g} d along random direction {i}")
        step = EPS * sum(float((np.abs(g) * np.abs(d) * np.abs(a)).sum()) for g, d, a in zip(g0, ds, hosts))
        record(f"direction {i}", d1, d2, noise, fmax, ana, step, delta_g2, True)

    offsets = np.cumsum([0] + sizes)
    if total <= max_elements:
        for j in range(total):
            check_element(j)
    else:
        for i in range(directions):
            check_direction(i)
        for j in rng.choice(total, size=min(sample, total), replace=False):
            check_element(j)
        if any(r[0] > 1 for r in results if r[6]) and not any(r[0] > 1 for r in results if not r[6]):
            # a direction failed, no sampled element did: look for one that does, to name it
            for j in rng.choice(total, size=min(8 * max_elements, total), replace=False):
                check_element(j)
                if results[-1][0] > 1:
                    break

    if not results:  # x has no elements
        return GradientReport(0.0, 0.0, "none", 0.0, 0.0, 0.0, 0.0, 0, value.calls)
    worst = max(results, key=lambda r: r[0])
    failed_elements = [r for r in results if r[0] > 1 and not r[6]]
    if worst[6] and failed_elements:  # name an element when one fails
        worst = max(failed_elements, key=lambda r: r[0])
    ratio, where, num, ana, err, tol, is_dir = worst
    size = (gnorm if is_dir else gmax) or 1.0
    report = GradientReport(max(r[4] / ((gnorm if r[6] else gmax) or 1.0) for r in results),
                            max(r[0] for r in results), where, num, ana, err, tol, len(results), value.calls)
    if ratio > 1:
        times = f"; analytic / finite difference = {ana / num:.6g}" if num != 0 else ""
        raise AssertionError(
            f"gradient check failed at {where}: finite difference {num:.10g}, analytic {ana:.10g}, "
            f"error {err:.3g} > tolerance {tol:.3g} (relative to the gradient's scale: {err / size:.3g}{times}); "
            f"step h = {eps:g}, worst of {len(results)} checks")
    return report
