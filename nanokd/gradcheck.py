"""A finite-difference gradient checker, for the losses and layers here and for your own.

Central differences.  The two-point formula

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h)

has a truncation error O(h^2) and a rounding error O(macheps |f| / h).  When
|f| is large next to the gradient (a loss at T = 50 is multiplied by T^2; a
batch mean divides the gradient by N) the rounding term wins, and no h brings
the error below ~1e-7 everywhere.  The default is therefore the four-point
central stencil

    df/dx_i ~ (8 (f(x + h) - f(x - h)) - (f(x + 2h) - f(x - 2h))) / (12h),

whose truncation error is O(h^4): it allows h = 1e-3, where rounding costs
only ~1e-13 |f|.  Each symmetric pair is subtracted before anything else:
where f does not change (behind a dead ReLU) the differences are exactly 0,
while a running sum -f + 8f - 8f + f of equal values can leave an ulp of 8f.

In float64 this checks the losses here to ~1e-10 of the gradient's scale in
typical cases.  At the corners of T in [0.1, 100], N up to 64 and C up to 100
(T ~ 100 with logits ~ 0.01: a gradient of ~1e-4 beside a loss rounded to
~1e-16 T^2) no finite difference resolves better than ~1e-7
(tests/test_losses.py).

Two ways to compare, each costing ``order`` evaluations of f per estimate
(four with the default order=4, two with order=2):

* elementwise ("full"): one estimate per checked element (all of them, or
  ``max_elements`` random ones per input);
* directional (chainer's trick): for a random unit direction d over all the
  inputs, the derivative along d is  <grad f, d>, estimated by the same
  stencil along d (f(x +- eps d), f(x +- 2 eps d)): ``order`` evaluations per
  direction, however many elements there are.  In exact arithmetic a wrong
  gradient fails it with probability 1.  With a tolerance, a bug e in the
  gradient shows up diluted, as a relative error of about
  ||e|| / (sqrt(n) ||grad f||) for n elements in all, so a small bug passes
  in a large model: combine a few directions with sampled elements.

NaN and infinity.  A NaN compares False with any tolerance, so an error of
NaN would never count as the worst and a broken function would "pass" with
an error of 0.  So the checker raises a ValueError, saying which value is not
finite (an input, an analytic gradient, or f at which step), as soon as it
meets one: a non-finite value is not a large error, it is no answer at all.
(Raising was chosen over a result whose ``ok()`` is False: a result can be
ignored, or tested only for its size; an exception cannot.)

Errors are relative to a scale taken from the analytic gradient, so entries
that are nearly 0 do not turn rounding noise into a huge "relative" error.
Elementwise, each input's errors are divided by that input's largest
magnitude, floored at a thousandth of the largest over all the inputs (so an
input whose whole gradient is 0, behind a dead ReLU say, is measured on the
scale of the others) and at ``floor``.  A direction's error is divided by the
2-norm of the whole gradient, over all the inputs.
"""

from typing import NamedTuple

import numpy as np

from .backend import get_array_module


class GradcheckResult(NamedTuple):
    max_rel_error: float    # worst error over all checks, relative to the gradient's scale
    worst: str              # where it occurred, e.g. "input 2, index (3, 1)" or "direction 0"
    numeric: float          # the finite-difference value there
    analytic: float         # the analytic value there
    n_evaluations: int      # how many times f was called

    def ok(self, tol=1e-7):
        return bool(self.max_rel_error <= tol)


def gradcheck(f, inputs, grads, *, eps=1e-3, order=4, full=True, directions=3, max_elements=None, seed=0,
              floor=1e-12):
    """Compare analytic gradients with central finite differences.

    See docs/gradients.md, section 7.

    Parameters
    ----------
    f : callable
        ``f()`` returns the scalar loss; it must read ``inputs`` (which the
        checker perturbs in place and restores).
    inputs : list of float64 arrays
        The arrays to differentiate with respect to (numpy or cupy).
    grads : list of arrays
        The analytic gradients of f with respect to each input, same shapes.
    eps : float
        Step h of the central difference.  Keep x +- 2h clear of kinks (ReLU at 0).
    order : 2 or 4
        The two-point (error O(h^2)) or four-point (error O(h^4)) central stencil.
    full : bool
        Check elementwise (all elements, or ``max_elements`` random ones per input).
    directions : int
        Number of random-direction checks (0 for none).
    max_elements : int or None
        Check at most this many randomly chosen elements per input.
    seed : int
        Seeds the choice of elements and directions.
    floor : float
        Smallest gradient scale: where every analytic entry is below it (a
        saturated softmax, say), errors are absolute rather than relative, since
        a finite difference cannot resolve a gradient below its rounding noise.

    Returns
    -------
    GradcheckResult with the worst relative error and where it happened.

    Raises
    ------
    ValueError
        If an input or an analytic gradient holds a NaN or infinity, or f
        returns one at some step (named in the message); also for arguments
        that do not fit together.
    """
    if len(inputs) != len(grads):
        raise ValueError(f"inputs and grads must have the same length, got {len(inputs)} and {len(grads)}")
    for i, (x, g) in enumerate(zip(inputs, grads)):
        if x.shape != g.shape:
            raise ValueError(f"grads[{i}] has shape {g.shape}, but inputs[{i}] has shape {x.shape}")
        if x.dtype != np.float64:
            raise TypeError(f"inputs[{i}] must be float64 for a meaningful check, got {x.dtype}")
    rng = np.random.default_rng(seed)
    grads = [np.asarray(g.get() if hasattr(g, "get") else g, dtype=np.float64) for g in grads]
    for i, x in enumerate(inputs):
        _check_finite(np.asarray(x.get() if hasattr(x, "get") else x), f"inputs[{i}]")
    for i, g in enumerate(grads):
        _check_finite(g, f"the analytic gradient grads[{i}]")
    evals = 0
    worst = (0.0, "none", 0.0, 0.0)

    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order}")

    def central(move, where):
        """The central difference along d, where move(s) sets the inputs to x + s h d."""
        def at(s):
            move(s)
            value = float(f())
            if not np.isfinite(value):
                move(0.0)  # the inputs are restored before the error leaves
                raise ValueError(f"gradcheck: f() returned {value} at {where} moved by {s:+g} eps: a finite "
                                 f"difference of a non-finite value means nothing")
            return value

        d1 = at(1.0) - at(-1.0)  # each symmetric pair is subtracted first: exact where f is flat
        if order == 2:
            num = d1 / (2 * eps)
        else:
            num = (8.0 * d1 - (at(2.0) - at(-2.0))) / (12 * eps)
        move(0.0)  # restores the inputs exactly
        return num

    overall = max((float(np.abs(g).max()) for g in grads if g.size), default=0.0)
    if full:
        for k, (x, g) in enumerate(zip(inputs, grads)):
            # an input whose gradient is 0 (a dead ReLU) is measured on the scale of the others
            scale = max(float(np.abs(g).max()) if g.size else 0.0, 1e-3 * overall, floor)
            flat_idx = np.arange(x.size)
            if max_elements is not None and x.size > max_elements:
                flat_idx = rng.choice(x.size, size=max_elements, replace=False)
            for j in flat_idx:
                idx = np.unravel_index(int(j), x.shape)
                x0 = float(x[idx])

                def move(s, x=x, idx=idx, x0=x0):
                    x[idx] = x0 + s * eps

                num = central(move, f"input {k}, index {tuple(int(i) for i in idx)}")
                evals += order
                err = abs(num - g[idx]) / scale
                if err > worst[0]:
                    worst = (err, f"input {k}, index {tuple(int(i) for i in idx)}", num, float(g[idx]))

    for d_i in range(directions):
        ds = [rng.standard_normal(x.shape) for x in inputs]
        norm = np.sqrt(sum(float((d * d).sum()) for d in ds))
        ds = [d / norm for d in ds]
        ds_dev = [get_array_module(x).asarray(d) for x, d in zip(inputs, ds)]

        originals = [x.copy() for x in inputs]

        def move(s):
            for x, x0, d in zip(inputs, originals, ds_dev):
                x[...] = x0 + (s * eps) * d

        num = central(move, f"the inputs along direction {d_i}")
        evals += order
        ana = sum(float((g * d).sum()) for g, d in zip(grads, ds))
        scale = max(np.sqrt(sum(float((g * g).sum()) for g in grads)), floor)
        err = abs(num - ana) / scale
        if err > worst[0]:
            worst = (err, f"direction {d_i}", num, ana)

    return GradcheckResult(float(worst[0]), worst[1], float(worst[2]), float(worst[3]), evals)


def _check_finite(a, name):
    """Raise a ValueError naming ``a`` and its first NaN or infinite entry, if it has one."""
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"gradcheck: {name} is not finite at index {idx} ({a[idx]}): NaN and infinity compare "
                         f"False with any tolerance, so they cannot be checked")


def clear_kinks(model, x, margin, max_tries=100):
    """Shift an MLP's hidden biases until no pre-activation on x lies within ``margin`` of a ReLU kink.

    A ReLU network is piecewise linear; a finite difference that steps across
    a kink (a pre-activation changing sign) measures neither side's slope.
    Before checking an MLP's backward with :func:`gradcheck`, call this with
    a margin larger than the steps the check takes (for eps = 1e-4 and the
    four-point stencil, 0.02 is ample): every pre-activation a = x W + b that
    is closer than ``margin`` to 0 has its unit's bias raised by 3 margin,
    layer by layer, until none is.  It runs the model forward with
    ``keep_masks=True``, so draw the dropout masks first (one
    ``model.forward(x, train=True)``) and keep them for the check.

    Raises RuntimeError if ``max_tries`` rounds per layer do not clear the kinks.
    """
    for linear in model.linears[:-1]:
        for _ in range(max_tries):
            model.forward(x, train=True, keep_masks=True)
            close = (abs(linear.x @ linear.W + linear.b) < margin).any(axis=0)
            if not bool(close.any()):
                break
            linear.b[close] += 3 * margin
        else:
            raise RuntimeError(f"clear_kinks: {max_tries} rounds did not move the pre-activations "
                               f"at least {margin} away from 0")
