"""Strategies: what a distillation loss is called with, drawn by hypothesis from its whole range.

Logits (:func:`logits`), student/teacher pairs (:func:`logit_pairs`), labels,
batches of all three, temperatures, alphas, and small MLPs with inputs and
fixed dropout masks (:func:`mlps`, :class:`MLPCase`) for testing a backward
pass.  Every argument narrows a default that is wide on purpose: a number
fixes the value, a pair ``(low, high)`` bounds it, a strategy replaces it.
"""

import math
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from ..gradcheck import clear_kinks
from .gradients import assert_gradient


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
    from ..mlp import MLP

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
