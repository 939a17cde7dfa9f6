"""Property-based testing of hand-written loss gradients, for nanokd and for your own losses.

A hand-derived gradient is usually wrong in one of a few ways: a factor is
missing (1/T from the chain rule through z/T, the batch's 1/N), a term is
missing (the centring "- p" of q - p, the mean subtracted by a softmax's
Jacobian), or it is right in the middle of the inputs and wrong at their
edges (saturated softmaxes, logits of 1e3, T = 100, a teacher its student
already matches).  One hand-picked example finds the first kind only if it
avoids the special values where the bug cancels (a missing 1/T is invisible
at T = 1); none finds the last kind.  So this module lets `hypothesis
<https://hypothesis.readthedocs.io>`_ draw the examples, from the whole range
of inputs a distillation loss meets, and shrink a failure to the smallest one
it can find::

    from hypothesis import given
    import nanokd.testing as nkt

    @given(nkt.logit_pairs(), nkt.temperatures())
    def test_my_loss_gradient(zv, T):
        z, v = zv
        nkt.assert_gradient(lambda z: my_loss(z, v, T), lambda z: my_loss_grad(z, v, T), z)

It has three parts (a worked example is in docs/testing.md):

**Strategies** that draw what a loss is called with: :func:`logits`,
:func:`logit_pairs` (student and teacher logits, independent, nearly equal,
equal up to a constant per row, or equal), :func:`labels`, :func:`batches`
(all three at once), :func:`temperatures` (log-uniform over the paper's range,
edges included), :func:`alphas`, and :func:`mlps` (small nanokd MLPs with
inputs and fixed dropout masks, their ReLUs kept off their kinks, for testing
a backward pass).  Every argument narrows a default that is wide on purpose:
a number fixes the value, a pair ``(low, high)`` bounds it, a strategy
replaces it.  Arrays are drawn from a seed that hypothesis chooses, so a
failure shrinks to a small batch (N = 1, C = 2), a seed of 0 and a scale of 1
where it can.

**assert_gradient** compares an analytic gradient with central differences
in float64 (:func:`nanokd.gradcheck`'s four-point stencil), with a tolerance
that is *derived*, not tuned:

* truncation: the stencil at step h and at 1.7h differ by about 7 times the
  truncation error of the first (it is O(h^4): 1.7^4 - 1 = 7.35), so
  |D(h) - D(1.7h)| bounds it;
* rounding: f is only known to within its rounding noise, measured: f is
  evaluated at nine points of the line the check moves along, and the
  scatter of those values about a fitted polynomial (which takes out
  everything f does smoothly) is its noise, at least macheps |f|; the
  stencil divides it by h;
* the analytic gradient is granted its own rounding noise, measured the same
  way from gradients along a random line, and the rounding of x + h.

A wrong gradient cannot loosen this tolerance: it depends on f and on the
gradient's rounding only, never on the gradient's error.  NaN or inf in f, in
the gradient, or anywhere the stencil steps, is a failure.  One thing no
measurement sees: a gradient computed as a difference of terms far larger
than itself (probabilities near 1, say) keeps only eps times their size,
steadily, and looks smooth; ``scale=`` tells the check that size.

**Property helpers**, one per law that distillation losses obey, each a
function to call on your own loss: :func:`check_shift_invariance`,
:func:`check_rows_sum_to_zero`, :func:`check_zero_at_match`,
:func:`check_high_temperature_limit`, :func:`check_float32_agrees`.  Their
tolerances are derived in the same way, from the noise of the quantity
compared along a line (with its smooth part fitted and taken out, so that a
broken law cannot pass itself off as noise), and from how much it changes
when its inputs move by a few units in their last place.

Finally :func:`register_profiles` registers two hypothesis profiles, ``ci``
(fast, the default for nanokd's tests) and ``thorough`` (20 times the
examples), chosen with ``pytest --hypothesis-profile thorough``;
:func:`examples` scales a test's own example count with the active profile.

hypothesis is an optional dependency: ``pip install nanokd[test]``.
"""

try:
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - exercised in a subprocess by tests/test_testing.py
    raise ImportError("nanokd.testing needs hypothesis: pip install nanokd[test]  "
                      "(or pip install hypothesis)") from error

import functools
import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .backend import get_array_module, to_numpy
from .gradcheck import clear_kinks, gradcheck

__all__ = [
    "GradientReport", "MLPCase", "alphas", "assert_gradient", "batches", "check_float32_agrees",
    "check_high_temperature_limit", "check_rows_sum_to_zero", "check_shift_invariance", "check_zero_at_match",
    "examples", "labels", "logit_pairs", "logits", "mlps", "register_profiles", "temperatures",
]

EPS = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
UNDERFLOW32 = 2.0**20 * float(np.finfo(np.float32).tiny)
ULPS = 4  # inputs are moved by this many units in their last place to measure what their rounding costs


# ----------------------------------------------------------------------------
# hypothesis profiles
# ----------------------------------------------------------------------------

CI_EXAMPLES = 50


def register_profiles():
    """Register the hypothesis profiles ``ci`` (fast) and ``thorough`` (20 times the examples).

    Call it from a conftest.py and load the default there::

        from hypothesis import settings
        import nanokd.testing as nkt
        nkt.register_profiles()
        settings.load_profile("ci")

    then ``pytest --hypothesis-profile thorough`` for a long local run.  Both
    drop the deadline (a finite-difference check of a big batch is slow, and
    machines are shared).  ``ci`` replaces hypothesis's own profile of that
    name, which is loaded only when a CI environment variable is set.
    """
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                  print_blob=True)
    settings.register_profile("ci", max_examples=CI_EXAMPLES, **common)
    settings.register_profile("thorough", max_examples=20 * CI_EXAMPLES, **common)


def examples(n):
    """n hypothesis examples under the ``ci`` profile, scaled with the active one (20 n under ``thorough``).

    For a test that asks for its own count (``@settings(max_examples=nkt.examples(60))``);
    the environment variable ``NANOKD_EXAMPLES_SCALE`` multiplies it further.
    """
    scale = settings().max_examples / CI_EXAMPLES * float(os.environ.get("NANOKD_EXAMPLES_SCALE", "1"))
    return max(1, int(round(n * scale)))


# ----------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------


def _integers(value, name):
    """A strategy of ints from an int, a (low, high) pair or a strategy."""
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return st.integers(int(value[0]), int(value[1]))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return st.just(int(value))
    raise TypeError(f"{name} must be an int, a (low, high) pair or a strategy, got {value!r}")


def _log_uniform(low, high):
    """Floats spread evenly in log between low > 0 and high, both included."""
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got ({low}, {high})")
    if low == high:
        return st.just(float(low))
    # exp(log u) rounds: clip back into the range.  The middle of the range in log is where it shrinks to.
    mid = math.sqrt(low * high)
    return st.floats(math.log(low / mid), math.log(high / mid)).map(
        lambda u: float(min(max(mid * math.exp(u), low), high)))


def _positive(value, name):
    """A strategy of floats > 0 from a number, a (low, high) pair (log-uniform) or a strategy."""
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return _log_uniform(float(value[0]), float(value[1]))
    if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and value >= 0:
        return st.just(float(value))
    raise TypeError(f"{name} must be a number >= 0, a (low, high) pair or a strategy, got {value!r}")


def _with_specials(specials, low, high, continuous):
    """specials inside [low, high] first (hypothesis shrinks towards them), then the continuous range."""
    inside = []
    for s in specials:
        if low <= s <= high and s not in inside:
            inside.append(float(s))
    return st.one_of(st.sampled_from(inside), continuous) if inside else continuous


def temperatures(min_value=1.0, max_value=100.0):
    """Temperatures T, log-uniform in [min_value, max_value], with the values people use drawn often.

    The default covers the paper's range (T = 1 to 20; 20 for MNIST, 2.5 to 4
    for smaller students) and beyond, to 100, where distillation approaches
    logit matching.  Both edges and 1, 2, 2.5, 4, 8, 20 (where inside) are
    drawn as themselves; hypothesis shrinks towards the first of them that
    fails.  ``temperatures(0.1, 100)`` adds T < 1, which sharpens the softmax.
    """
    if not 0 < min_value <= max_value:
        raise ValueError(f"need 0 < min_value <= max_value, got ({min_value}, {max_value})")
    return _with_specials([min_value, 1.0, 2.0, 2.5, 4.0, 8.0, 20.0, max_value], min_value, max_value,
                          _log_uniform(min_value, max_value))


def alphas(min_value=0.0, max_value=1.0):
    """Weights alpha of the soft term in [min_value, max_value]; 0, 1, 0.5 and the paper's 0.9 drawn as themselves.

    alpha = 0 and alpha = 1 leave out one term entirely (nanokd skips its
    computation), so they are edges worth drawing often.
    """
    if not 0 <= min_value <= max_value <= 1:
        raise ValueError(f"need 0 <= min_value <= max_value <= 1, got ({min_value}, {max_value})")
    return _with_specials([min_value, max_value, 0.5, 0.9], min_value, max_value,
                          st.floats(min_value, max_value))


PATTERNS = ("gaussian", "confident", "tied")


def _offsets(offset):
    """Row offsets: 0 half the time, else log-uniform from 1e-2 to ``offset`` (a number; 0 for none)."""
    if isinstance(offset, st.SearchStrategy):
        return offset
    if isinstance(offset, bool) or not isinstance(offset, (int, float, np.floating)) or offset < 0:
        raise TypeError(f"offset must be a number >= 0 or a strategy, got {offset!r}")
    if offset == 0:
        return st.just(0.0)
    return st.one_of(st.just(0.0), _log_uniform(min(1e-2, float(offset)), float(offset)))


def _base_logits(rng, n, c, scale, pattern):
    """One (n, c) array of logits of the given scale, in one of PATTERNS."""
    z = rng.standard_normal((n, c)) * scale
    if pattern == "confident":  # one class per row far above the rest: a saturated softmax
        z[np.arange(n), rng.integers(0, c, n)] += scale * rng.uniform(5, 20, n)
    elif pattern == "tied":  # values on a coarse grid: many classes tied, whole rows equal when c is small
        z = np.round(z / scale) * scale
    return z


@st.composite
def _logits(draw, n, c, scale, offset, pattern, dtype):
    n, c, s = draw(n), draw(c), draw(scale)
    pat = draw(pattern)
    off = draw(offset)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z = _base_logits(rng, n, c, s, pat)
    if off > 0:
        z += rng.uniform(-off, off, (n, 1))
    return z.astype(dtype)


def logits(n=(1, 8), c=(2, 10), scale=(1e-3, 1e3), *, offset=1e2, patterns=PATTERNS, dtype="float64"):
    """Logit arrays of shape (n, c), float64 unless ``dtype`` says otherwise.

    Each argument: a number fixes the value, a (low, high) pair bounds it, a
    strategy replaces it.

    n, c : batch size and number of classes.
    scale : the spread of a row, log-uniform from tiny (1e-3: a nearly uniform
        softmax) to extreme (1e3: one class takes everything).
    offset : rows are shifted by a constant of up to this size (0 for none),
        half the time: softmax ignores it, but a careless exp overflows.
    patterns : any of "gaussian" (normal entries), "confident" (one class per
        row 5 to 20 scales above the others) and "tied" (entries on a grid of
        the scale's size, so that classes tie).
    """
    pattern = st.sampled_from(list(patterns))
    offset = _offsets(offset)
    return _logits(_integers(n, "n"), _integers(c, "c"), _positive(scale, "scale"), offset, pattern, dtype)


RELATIONS = ("independent", "near", "shifted", "equal")


@st.composite
def _logit_pairs(draw, n, c, scale, offset, pattern, relation, gap, dtype):
    n, c = draw(n), draw(c)
    s, pat, rel = draw(scale), draw(pattern), draw(relation)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z = _base_logits(rng, n, c, s, pat)
    if rel == "independent":  # the teacher's own scale and pattern
        v = _base_logits(rng, n, c, draw(scale), draw(pattern))
    elif rel == "near":  # a student close to its teacher: KL of second order in the gap
        v = z + rng.standard_normal((n, c)) * (s * draw(gap))
    elif rel == "shifted":  # the same softmax: p = q exactly, though v - z is not small
        v = z + rng.uniform(-1, 1, (n, 1)) * max(s, draw(offset), 1.0)
    else:
        v = z.copy()
    off = draw(offset)
    if off > 0:  # both rows moved by constants of their own
        z += rng.uniform(-off, off, (n, 1))
        v += rng.uniform(-off, off, (n, 1))
    return z.astype(dtype), v.astype(dtype)


def logit_pairs(n=(1, 8), c=(2, 10), scale=(1e-3, 1e3), *, offset=1e2, patterns=PATTERNS,
                relations=RELATIONS, gap=(1e-6, 0.1), dtype="float64"):
    """Pairs (z, v) of student and teacher logits of the same shape (n, c).

    ``n``, ``c``, ``scale``, ``offset``, ``patterns`` and ``dtype`` as in
    :func:`logits`.  ``relations`` says how v is drawn from z:

    * "independent": on its own, with its own scale and pattern;
    * "near": z plus noise ``gap`` times the scale (1e-6 to 0.1), where a KL
      is of second order in the gap and cancels digits if summed carelessly;
    * "shifted": z plus a constant per row, so that softmax(v) = softmax(z)
      exactly while v - z is large;
    * "equal": v = z.

    When ``offset`` allows, each row of z and of v is then moved by a constant
    of its own (which no softmax-based loss may notice).
    """
    pattern = st.sampled_from(list(patterns))
    offset = _offsets(offset)
    return _logit_pairs(_integers(n, "n"), _integers(c, "c"), _positive(scale, "scale"), offset, pattern,
                        st.sampled_from(list(relations)), _positive(gap, "gap"), dtype)


def labels(n, c):
    """Integer class labels, shape (n,), values in [0, c): ``labels(*z.shape)`` fits a logit array z."""
    n, c = int(n), int(c)
    if n < 0 or c < 1:
        raise ValueError(f"need n >= 0 and c >= 1, got n = {n}, c = {c}")
    return st.lists(st.integers(0, c - 1), min_size=n, max_size=n).map(lambda ys: np.array(ys, dtype=np.int64))


@st.composite
def _batches(draw, pairs):
    z, v = draw(pairs)
    return z, v, draw(labels(*z.shape))


def batches(n=(1, 8), c=(2, 10), scale=(1e-3, 1e3), **kwargs):
    """Triples (z, v, y): a pair from :func:`logit_pairs` (same arguments) and labels to go with it."""
    return _batches(logit_pairs(n, c, scale, **kwargs))


# ----------------------------------------------------------------------------
# MLPs for testing a backward pass
# ----------------------------------------------------------------------------


@dataclass(eq=False)
class MLPCase:
    """A small nanokd MLP with a batch x, teacher logits v and labels y, ready for a gradient check.

    Its dropout masks are drawn once and kept (``forward(..., keep_masks=True)``),
    and its hidden biases are moved (:func:`nanokd.clear_kinks`) until no
    pre-activation on x lies within ``margin`` of a ReLU's kink, which is far
    more than the steps a check with ``eps`` takes.

    ``case.loss(f)`` and ``case.backward(grad)`` turn a loss f(z) of the
    logits and its gradient grad(z) = dL/dz into functions of the model's
    parameters, for :func:`assert_gradient`; ``case.assert_backward(f, grad)``
    does both and runs the check.
    """

    model: object
    x: np.ndarray
    v: np.ndarray
    y: np.ndarray
    eps: float = 1e-4
    margin: float = 0.02
    _saved: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        self._saved = [p.copy() for p in self.model.params]

    @property
    def params(self):
        """Copies of the model's parameters [W1, b1, W2, b2, ...] as the case was drawn."""
        return [p.copy() for p in self._saved]

    def _set(self, arrays):
        for p, a in zip(self.model.params, arrays):
            p[...] = a

    def _restore(self):
        self._set(self._saved)

    def logits(self):
        """The model's logits on x, with the case's fixed dropout masks."""
        return self.model.forward(self.x, train=True, keep_masks=True)

    def loss(self, f):
        """``f`` of the logits, as a function of the parameters: ``loss(f)(*params) = f(model(x))``."""
        def of_params(*params):
            self._set(params)
            try:
                return f(self.logits())
            finally:
                self._restore()
        return of_params

    def backward(self, grad):
        """The model's backward of ``grad(z)``, as a function of the parameters."""
        def of_params(*params):
            self._set(params)
            try:
                z = self.logits()
                return [g.copy() for g in self.model.backward(grad(z))]
            finally:
                self._restore()
        return of_params

    def assert_backward(self, f, grad, **kwargs):
        """:func:`assert_gradient` of every parameter, for a loss f(z) with gradient grad(z); returns its report."""
        kwargs.setdefault("eps", self.eps)
        return assert_gradient(self.loss(f), self.backward(grad), inputs=self.params, **kwargs)


@st.composite
def _mlps(draw, n_in, hidden, depth, c, n, dropout, device):
    from .mlp import MLP

    sizes = [draw(n_in)] + [draw(hidden) for _ in range(draw(depth))] + [draw(c)]
    p_in, p_hid = (draw(st.sampled_from([0.0, 0.2])), draw(st.sampled_from([0.0, 0.5]))) if dropout else (0.0, 0.0)
    seed = draw(st.integers(0, 2**31 - 1))
    N = draw(n)
    model = MLP(sizes, dropout_input=p_in, dropout_hidden=p_hid, seed=seed % 1000, dtype="float64", device=device)
    rng = np.random.default_rng(seed)
    xp = model.xp
    x = xp.asarray(rng.uniform(-1, 1, size=(N, sizes[0])))
    v = xp.asarray(rng.standard_normal((N, sizes[-1])) * 3)
    y = xp.asarray(rng.integers(0, sizes[-1], size=N))
    model.forward(x, train=True)  # draws the dropout masks, kept from here on
    clear_kinks(model, x, MLPCase.margin)
    return MLPCase(model, x, v, y)


def mlps(n_in=(1, 20), hidden=(1, 16), depth=(1, 3), c=(2, 10), n=(1, 8), *, dropout=True, device="cpu"):
    """Small float64 nanokd MLPs, as :class:`MLPCase`: a model with a batch and fixed dropout masks.

    ``n_in`` inputs, ``depth`` hidden layers of ``hidden`` units each drawn on
    its own, ``c`` classes, a batch of ``n`` examples in [-1, 1].  With
    ``dropout``, input and hidden dropout of 0 or 0.2 and 0 or 0.5 (the
    paper's teacher).  The case also holds teacher logits v (scale 3) and labels y.
    """
    return _mlps(_integers(n_in, "n_in"), _integers(hidden, "hidden"), _integers(depth, "depth"),
                 _integers(c, "c"), _integers(n, "n"), dropout, device)


# ----------------------------------------------------------------------------
# assert_gradient
# ----------------------------------------------------------------------------


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


def _host64(a):
    return np.array(to_numpy(a), dtype=np.float64)


def _describe(value):
    return "NaN" if value != value else str(value)


def _norm(arrays):
    """The 2-norm of several arrays together, scaled first: squares of entries below 1e-154 underflow."""
    top = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    if top == 0:
        return 0.0
    return top * math.sqrt(sum(float(((a / top) ** 2).sum()) for a in arrays))


def _fmt_index(idx):
    return "(" + ", ".join(str(int(i)) for i in idx) + ("," if len(idx) == 1 else "") + ")"


# The second step of the stencil, in units of h: irrational-looking, so that the points of the two
# stencils, 0, +-h, +-2h, +-BETA h, +-2 BETA h, do not lie on one grid.  On an evenly spaced grid a
# function's rounding can repeat from point to point (a quantity near 1 that moves by nearly a whole
# number of ulps per step is rounded the same way each time), look smooth, and hide from the fit below.
BETA = 1.7
POINTS = (-2 * BETA, -2.0, -BETA, -1.0, 0.0, 1.0, BETA, 2.0, 2 * BETA)  # where f is evaluated, in units of h
LINE = len(POINTS)


@functools.lru_cache(maxsize=None)
def _residual_maker(points, degree):
    """I - V V^+ for the Vandermonde matrix V of the points: the residual of a least-squares polynomial fit."""
    V = np.vander(np.asarray(points) / max(abs(p) for p in points), degree + 1)
    return np.eye(len(points)) - V @ np.linalg.pinv(V)


def _fit_noise(values, degree, points=POINTS):
    """The rounding noise of samples along a line, elementwise: their RMS residual about a fitted polynomial.

    ``values``: an array (K, ...) of a function at the K ``points`` of a
    line.  Whatever the function does smoothly along it, up to ``degree``,
    is fitted and removed; what is left is its rounding (each sample rounded
    afresh).  So a function that is wrong but smooth -- not invariant, say,
    or a gradient that does not sum to 0 -- cannot pass its error off as noise.
    """
    K = values.shape[0]
    flat = values.reshape(K, -1)
    residual = _residual_maker(tuple(points), degree) @ flat
    top = np.abs(residual).max(axis=0)  # scaled before squaring: a residual of 1e-177 squared underflows to 0
    unit = np.where(top > 0, top, 1.0)
    rms = top * np.sqrt(((residual / unit) ** 2).sum(axis=0) / (K - degree - 1))
    return rms.reshape(values.shape[1:])


def _input_rounding(fn, arrays, base, rng, floating=None, eps=EPS):
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
            raise AssertionError(f"{self.label} is {_describe(value)} at {where}")
        return value


def _grads(grad, arrays, xp, several, shapes, where):
    out = grad(*[xp.asarray(a) if xp is not np else a.copy() for a in arrays])
    gs = list(out) if several else [out]
    if len(gs) != len(shapes):
        raise AssertionError(f"grad returned {len(gs)} arrays for {len(shapes)} inputs")
    gs = [_host64(g) for g in gs]
    for k, (g, shape) in enumerate(zip(gs, shapes)):
        name = f"grad's output {k}" if several else "grad(x)"
        if g.shape != shape:
            raise AssertionError(f"{name} has shape {g.shape}, but its input has shape {shape}")
        bad = ~np.isfinite(g)
        if bad.any():
            idx = np.unravel_index(int(np.flatnonzero(bad)[0]), g.shape)
            raise AssertionError(f"{name} is {_describe(float(g[idx]))} at index {_fmt_index(idx)} "
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
    hosts = [_host64(a) for a in xs]
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
        g_noise = [np.maximum(n, _fit_noise(np.stack([g[i] for g in along]), 4)) for i, n in enumerate(g_noise)]
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
        return ds[0], ds[1], float(_fit_noise(values, 4)), float(np.abs(values).max())

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
        label = f"{name(k)}index {_fmt_index(idx)}"

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


# ----------------------------------------------------------------------------
# property helpers
# ----------------------------------------------------------------------------


def _outputs(out):
    """A function's result as a list of float64 host arrays (a scalar becomes a 0-d array)."""
    items = list(out) if isinstance(out, (tuple, list)) else [out]
    return [_host64(o) for o in items]


def _finite(arrays, what):
    for k, a in enumerate(arrays):
        bad = ~np.isfinite(a)
        if bad.any():
            idx = np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape) if a.ndim else ()
            part = f" (output {k})" if len(arrays) > 1 else ""
            at = f" at index {_fmt_index(idx)}" if a.ndim else ""
            raise AssertionError(f"{what}{part} is {_describe(float(a[idx]))}{at}")


def _call(fn, args, xp):
    """fn of host arrays, on the caller's device; a list of host float64 outputs."""
    return _outputs(fn(*[xp.asarray(a) if isinstance(a, np.ndarray) and xp is not np else a for a in args]))


def _pair_args(z, v):
    xp = get_array_module(z)
    args = [_host64(z)] + ([] if v is None else [_host64(v)])
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
    return f" at index {_fmt_index(i)}" if np.ndim(a) else ""


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
            noise = _fit_noise(values, 3)
            for point, value in ((args, before), (shifted, after)):
                (inputs,) = _input_rounding(lambda a: _call(fn, a, xp), point, [value], rng)
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
    noise = _fit_noise(along.sum(axis=2), 3)
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
    tol_f = 8 * float(_fit_noise(fs, 3).max(initial=0.0)) + 1e-300
    tol_g = 8 * float(_fit_noise(gs, 3).max(initial=0.0)) + 1e-300
    worst_f, worst_g = float(np.abs(fs).max()), float(np.abs(gs).max(initial=0.0))
    if worst_f > tol_f:
        k = int(np.argmax(np.abs(fs).reshape(LINE, -1).max(axis=1)))
        raise AssertionError(f"f(z, z) = {float(fs[k].flat[0]):.10g}, not 0 (tolerance {tol_f:.3g}): a loss that "
                             f"is not 0 at a perfect match (a cross-entropy H(p, q) rather than a KL?)")
    if worst_g > tol_g:
        k, *i = np.unravel_index(int(np.argmax(np.abs(gs))), gs.shape)
        raise AssertionError(f"grad(z, z) is {float(gs[(k, *i)]):.10g} at index {_fmt_index(i)}, not 0 "
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
    zc = _host64(z) - _host64(z).mean(axis=1, keepdims=True)
    vc = _host64(v) - _host64(v).mean(axis=1, keepdims=True)
    N, C = zc.shape
    target = (zc - vc) / (N * C) if limit is None else _host64(limit(xp.asarray(zc), xp.asarray(vc)))
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
    r32 = [_host64(o) for o in items32]
    _finite(r32, "f in float32")
    host_args = [_host64(a) if fl else a for a, fl in zip(args32, floating)]
    r64 = _call(f, host_args, xp)
    _finite(r64, "f in float64")
    noise = _input_rounding(lambda a: _call(f, a, xp), host_args, r64, np.random.default_rng(seed), floating, EPS32)
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
