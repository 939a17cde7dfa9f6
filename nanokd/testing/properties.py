"""Property helpers: one law of distillation losses each, to check on your own loss.

Each law's tolerance is derived from measured rounding noise
(:mod:`nanokd.testing.noise`), never tuned.
"""

import numpy as np

from ..backend import get_array_module
from .noise import BETA, EPS, EPS32, LINE, POINTS, UNDERFLOW32, describe, fit_noise, fmt_index, host64, \
    input_rounding


def _outputs(out):
    """A function's result as a list of float64 host arrays (a scalar becomes a 0-d array)."""
    items = list(out) if isinstance(out, (tuple, list)) else [out]
    return [host64(o) for o in items]


def _finite(arrays, what):
    for k, a in enumerate(arrays):
        bad = ~np.isfinite(a)
        if bad.any():
            idx = np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape) if a.ndim else ()
            part = f" (output {k})" if len(arrays) > 1 else ""
            at = f" at index {fmt_index(idx)}" if a.ndim else ""
            raise AssertionError(f"{what}{part} is {describe(float(a[idx]))}{at}")


def _call(fn, args, xp):
    """fn of host arrays, on the caller's device; a list of host float64 outputs."""
    return _outputs(fn(*[xp.asarray(a) if isinstance(a, np.ndarray) and xp is not np else a for a in args]))


def _pair_args(z, v):
    xp = get_array_module(z)
    args = [host64(z)] + ([] if v is None else [host64(v)])
    return xp, args


def _line(fn, args, xp, moves, what):
    """fn (one output) at args + k moves for k in POINTS, stacked: shape (9, ...)."""
    out = []
    for k in POINTS:
        (o,) = _call(fn, [a + k * m for a, m in zip(args, moves)], xp)
        _finite([o], f"{what} at a point {k:g} steps along the line of the check")
        out.append(o)
    return np.stack(out)


def _loc(a, i):
    return f" at index {fmt_index(i)}" if np.ndim(a) else ""


def check_shift_invariance(f, z, v=None, grad=None, *, shift=None, seed=0):
    """A softmax ignores a constant added to a row: so must the loss f(z, v), and its gradient grad(z, v).

    Adds random constants c to the rows of z, of v, and of both (up to
    ``shift``; by default 10 times the largest logit, and at least 10), and
    asserts that f, and grad when given, come out the same.  Tolerance: 8
    times the larger of their rounding noise, measured along the line from
    the inputs to the shifted ones (nine points; the RMS scatter about a
    fitted cubic, so that a smooth dependence on c is not taken for noise),
    and what the rounding of the inputs costs before and after the shift
    (z + c is rounded to the ulps of c, and f feels it); plus 8 eps of their size.
    ``v=None`` for a loss of z alone, f(z).

    Returns {"f": largest |change|, "grad": largest |change|}.
    """
    xp, args = _pair_args(z, v)
    rng = np.random.default_rng(seed)
    if shift is None:
        shift = 10 * max(1.0, max(float(np.abs(a).max()) if a.size else 0.0 for a in args))
    fns = [("f", f)] + ([("grad", grad)] if grad is not None else [])
    cases = [("z", [0])] + ([("v", [1]), ("z and v", [0, 1])] if v is not None else [])
    changes = {label: 0.0 for label, _ in fns}
    for which, moved in cases:
        c = [rng.uniform(-shift, shift, (a.shape[0], 1)) if k in moved else np.zeros((1, 1))
             for k, a in enumerate(args)]
        start = [a + ci / 2 for a, ci in zip(args, c)]  # the line runs from the inputs to the shifted ones
        shifted = [a + ci for a, ci in zip(args, c)]
        for label, fn in fns:
            values = _line(fn, start, xp, [ci / (4 * BETA) for ci in c], label)
            before, after = _call(fn, args, xp)[0], _call(fn, shifted, xp)[0]
            _finite([before, after], label)
            change = np.abs(after - before)
            noise = fit_noise(values, 3)
            for point, value in ((args, before), (shifted, after)):
                (inputs,) = input_rounding(lambda a: _call(fn, a, xp), point, [value], rng)
                noise = np.maximum(noise, inputs)
            size = np.abs(before) + np.abs(after)
            if label == "grad":  # the entries of a gradient share one scale
                tol = np.full(change.shape, 8 * float(noise.max()) + 8 * EPS * float(size.max()) + 1e-300)
            else:
                tol = 8 * noise + 8 * EPS * size + 1e-300
            changes[label] = max(changes[label], float(change.max(initial=0.0)))
            if (change > tol).any():
                i = np.unravel_index(int(np.argmax(change / tol)), change.shape)
                raise AssertionError(
                    f"{label} is not invariant to adding a constant (up to {shift:g}) to each row of {which}"
                    f"{_loc(change, i)}: {float(before[i]):.10g} before, {float(after[i]):.10g} after, "
                    f"difference {float(change[i]):.3g} > tolerance {float(tol[i]):.3g}")
    return changes


def _line_step(args, rng):
    """Random moves for a line through args: steps of 1e-3 of their scale."""
    size = max(1.0, max(float(np.abs(a).max()) if a.size else 0.0 for a in args))
    return [1e-3 * size * rng.standard_normal(a.shape) for a in args]


def check_rows_sum_to_zero(grad, z, v=None, *, scale=None, seed=0):
    """The gradient of a shift-invariant loss sums to 0 along each row: moving a row by a constant changes nothing.

    (For KD each row is T (q - p)/N, a difference of two distributions.)
    grad(z, v), or grad(z) with ``v=None``.  Tolerance per row: 8 times the
    rounding noise of its sum, measured along a random line through z and v
    (nine points, steps of 1e-3 of their scale; the RMS scatter about a fitted
    cubic, so that sums that are smoothly not 0 are not taken for noise), and
    4 C eps times the gradient's largest entry, or ``scale`` when larger
    (over the whole batch: a row far smaller than the others, saturated, is
    computed from numbers like theirs, and no more accurately).

    ``scale``: the size of the terms the gradient is computed from, when
    larger than the gradient itself.  The gradient of a loss of q =
    softmax(z/T) is q * (u - <u, q>) for some u (the chain rule through the
    softmax); where q saturates it is far smaller than u, and computing it
    so cancels eps |u| of it, steadily enough to look smooth.  nanokd's KD
    gradient T (q - p)/N cancels nothing, and the default serves; for a
    gradient computed as written, pass the size of u (e.g. T / N).

    Returns {"row sums": the largest |row sum|}.
    """
    xp, args = _pair_args(z, v)
    rng = np.random.default_rng(seed)
    along = _line(grad, args, xp, _line_step(args, rng), "grad")
    if along.ndim != 3:
        raise ValueError(f"grad must return an (N, C) array, got shape {along.shape[1:]}")
    g = along[POINTS.index(0.0)]
    C = g.shape[1]
    sums = g.sum(axis=1)
    noise = fit_noise(along.sum(axis=2), 3)
    size = max(float(np.abs(g).max(initial=0.0)), 0.0 if scale is None else float(scale))
    tol = 8 * noise + 4 * C * EPS * size + 1e-300
    if (np.abs(sums) > tol).any():
        n = int(np.argmax(np.abs(sums) / tol))
        raise AssertionError(f"row {n} of the gradient sums to {sums[n]:.10g}, not 0 (tolerance {tol[n]:.3g}; "
                             f"its largest entry is {np.abs(g[n]).max():.3g}): is a centring term missing?")
    return {"row sums": float(np.abs(sums).max(initial=0.0))}


def check_zero_at_match(f, grad, z, *, seed=0):
    """A distillation loss is 0, and flat, where the student matches its teacher: f(z, z) = 0 and grad(z, z) = 0.

    Checked at z and at eight more points z' of a random line through it
    (steps of 1e-3 of its scale), each with its teacher equal to it.
    Tolerance: 8 times the rounding noise of those values (their RMS scatter
    about a fitted cubic: a loss or gradient that is smoothly not 0 there is
    not taken for noise).

    Returns {"f": largest |f(z', z')|, "grad": largest |grad(z', z')|}.
    """
    xp, (zh,) = _pair_args(z, None)
    rng = np.random.default_rng(seed)
    (move,) = _line_step([zh], rng)
    points = [zh + k * move for k in POINTS]
    fs, gs = [], []
    for p in points:
        (fv,) = _call(f, [p, p.copy()], xp)
        (gv,) = _call(grad, [p, p.copy()], xp)
        _finite([fv], "f(z, z)")
        _finite([gv], "grad(z, z)")
        fs.append(fv)
        gs.append(gv)
    fs, gs = np.stack(fs), np.stack(gs)
    tol_f = 8 * float(fit_noise(fs, 3).max(initial=0.0)) + 1e-300
    tol_g = 8 * float(fit_noise(gs, 3).max(initial=0.0)) + 1e-300
    worst_f, worst_g = float(np.abs(fs).max()), float(np.abs(gs).max(initial=0.0))
    if worst_f > tol_f:
        k = int(np.argmax(np.abs(fs).reshape(LINE, -1).max(axis=1)))
        raise AssertionError(f"f(z, z) = {float(fs[k].flat[0]):.10g}, not 0 (tolerance {tol_f:.3g}): a loss that "
                             f"is not 0 at a perfect match (a cross-entropy H(p, q) rather than a KL?)")
    if worst_g > tol_g:
        k, *i = np.unravel_index(int(np.argmax(np.abs(gs))), gs.shape)
        raise AssertionError(f"grad(z, z) is {float(gs[(k, *i)]):.10g} at index {fmt_index(i)}, not 0 "
                             f"(tolerance {tol_g:.3g}): is the \"- p\" of q - p missing?")
    return {"f": worst_f, "grad": worst_g}


def check_high_temperature_limit(grad, z, v, temperatures=(1e2, 1e3, 1e4), *, limit=None):
    """The paper's eqs. 3-4: as T grows, the gradient of a T^2-scaled KD loss tends to logit matching's.

    With the rows of z and v centred (the helper centres them), grad(z, v, T)
    must tend to ``limit(z, v)``, by default (z - v)/(N C): the gradient of
    :func:`nanokd.logit_matching_loss` divided by C.  The relative error
    (largest entry, relative to the limit's largest) must be at most
    3 M / T at the first temperature (M the largest centred logit: the first
    correction of exp(x/T) = 1 + x/T + ... bounds it by 2 M / T), and must fall
    at least like 1/T from each temperature to the next (down to float64's
    floor, 16 eps T (M + 1) / max|z - v|).

    Returns the relative errors, one per temperature.
    """
    xp = get_array_module(z)
    zc = host64(z) - host64(z).mean(axis=1, keepdims=True)
    vc = host64(v) - host64(v).mean(axis=1, keepdims=True)
    N, C = zc.shape
    target = (zc - vc) / (N * C) if limit is None else host64(limit(xp.asarray(zc), xp.asarray(vc)))
    scale = float(np.abs(target).max()) if target.size else 0.0
    if scale == 0:
        raise ValueError("z and v are equal up to row constants: the limit is 0 and says nothing")
    M = max(float(np.abs(zc).max()), float(np.abs(vc).max()))
    Ts = [float(T) for T in temperatures]
    if M / Ts[0] > 0.5:
        raise ValueError(f"the logits (largest centred {M:.3g}) are not small next to T = {Ts[0]:g}: "
                         f"raise the temperatures (the limit needs T >> |z|)")
    errors, sizes = [], []
    for T in Ts:
        (g,) = _call(grad, [zc, vc, T], xp)
        _finite([g], f"grad at T = {T:g}")
        errors.append(float(np.abs(g - target).max()) / scale)
        sizes.append(float(np.abs(g).max()) / scale)
    spread = float(np.abs(zc - vc).max())
    listing = (f"relative errors {', '.join(f'{e:.3g}' for e in errors)} at T = {', '.join(f'{T:g}' for T in Ts)}; "
               f"the gradient is {', '.join(f'{s:.3g}' for s in sizes)} times the limit's size")
    hint = " (a missing T^2 makes it vanish like 1/T^2, a missing 1/T grow like T)" if errors[-1] > 0.5 else ""
    if errors[0] > 3 * M / Ts[0]:
        raise AssertionError(f"at T = {Ts[0]:g} the gradient is {errors[0]:.3g} (relative) from the limit, more "
                             f"than 3 M / T = {3 * M / Ts[0]:.3g}: {listing}{hint}")
    for (T0, e0), (T1, e1) in zip(zip(Ts, errors), zip(Ts[1:], errors[1:])):
        floor = 16 * EPS * T1 * (M + 1) / spread
        if e1 > 1.3 * (T0 / T1) * e0 + floor:
            raise AssertionError(f"the gradient does not approach the limit like 1/T: {listing}{hint}")
    return errors


def check_float32_agrees(f, *args, scale=None, seed=0):
    """float32 in, float32 out, close to float64: f of float32 arrays agrees with f of the same numbers in float64.

    The floating arrays among ``args`` are rounded to float32; f is called
    with those, and with the same values converted to float64.  Every output
    (a scalar, an array, or a tuple of them) must be finite, an array output
    must be float32, and the two must agree to within what float32 forgives:
    4 times the largest change of the float64 result when the inputs move by
    4 float32 units in their last place, plus 16 float32 roundings of the
    output's largest entry (or of ``scale``, when larger), plus 2^20 times
    float32's smallest normal number (~1e-32: what a float32 value flushed
    to 0, then multiplied by up to a million, T^2 at T = 1000, is off by).

    ``scale`` (a number, or one per output): the size of the terms an output
    is computed from, when larger than the output itself, and rounded in
    float32 along the way; e.g. T^2 for a loss T^2 sum (q - p)^2 that is 1e-20
    when q ~ p: float32 gives it to eps32 T^2 at best.  nanokd's kd_loss keeps
    its digits there (see log_ratio), and its test of nearly equal p and q
    asks the default, agreement relative to the output's own size; where the
    student's softmax saturates, its gradient is computed from (v - z)/T, of
    size |z|/T, and that test passes it as scale.

    Returns {"output k": largest |float32 - float64|}.
    """
    arrays = [a for a in args if hasattr(a, "dtype")]
    xp = get_array_module(*arrays) if arrays else np
    floating = [hasattr(a, "dtype") and a.dtype.kind == "f" for a in args]
    args32 = [a.astype(np.float32) if fl else a for a, fl in zip(args, floating)]
    out32 = f(*args32)
    items32 = list(out32) if isinstance(out32, (tuple, list)) else [out32]
    for k, o in enumerate(items32):
        if getattr(o, "ndim", 0) > 0 and o.dtype != np.float32:
            raise AssertionError(f"f's output {k} is {o.dtype} for float32 inputs, not float32")
    r32 = [host64(o) for o in items32]
    _finite(r32, "f in float32")
    host_args = [host64(a) if fl else a for a, fl in zip(args32, floating)]
    r64 = _call(f, host_args, xp)
    _finite(r64, "f in float64")
    noise = input_rounding(lambda a: _call(f, a, xp), host_args, r64, np.random.default_rng(seed), floating, EPS32)
    scales = list(scale) if isinstance(scale, (tuple, list)) else [scale] * len(r64)
    errors = {}
    for k, (a, b, n, sc) in enumerate(zip(r32, r64, noise, scales)):
        if a.shape != b.shape:
            raise AssertionError(f"output {k} has shape {a.shape} in float32 but {b.shape} in float64")
        err = np.abs(a - b)
        # one tolerance per output: its entries share a scale (a gradient's tiny entries carry its largest rounding)
        size = max(float(np.abs(b).max(initial=0.0)), 0.0 if sc is None else float(sc))
        tol = 4 * float(n.max(initial=0.0)) + 16 * EPS32 * size + UNDERFLOW32
        errors[f"output {k}"] = float(err.max(initial=0.0))
        if errors[f"output {k}"] > tol:
            i = np.unravel_index(int(np.argmax(err)), err.shape)
            part = f" (output {k})" if len(r32) > 1 else ""
            raise AssertionError(f"float32 disagrees with float64{part}{_loc(err, i)}: {float(a[i]):.8g} against "
                                 f"{float(b[i]):.10g}, error {float(err[i]):.3g} > tolerance {tol:.3g}")
    return errors
