"""The losses of distillation and their analytic gradients.

Notation follows Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in
a Neural Network" (arXiv 1503.02531):

=====  =========================================================
z      student logits, shape (N, C)
v      teacher logits, shape (N, C)
y      integer class labels, shape (N,)
T      temperature, T > 0
q      student soft probabilities  q = softmax(z / T)
p      teacher soft probabilities  p = softmax(v / T)
N      batch size;  every loss is the *mean over the batch*
=====  =========================================================

Each equation lives in exactly one function below, and each loss ``f`` has a
partner ``f_grad`` returning d f / d z with the same shape as z.  The
derivations are in the docstrings and, at length, in ``docs/gradients.md``.

Every public function checks its input (shapes, dtypes, label range, T, alpha,
finite logits, and for the losses a batch of at least one example) and raises
ValueError/TypeError naming the bad argument.  The
finiteness and label-range checks read values back from the device, so the
training loop passes ``check=False`` to skip them.
"""

import numbers

from .backend import get_array_module

#: Where the float32-exact KL switches between its forms (see :func:`kl_divergence`).  The GPU
#: row kernel (nanokd/fused.py) is built from these same constants.
FAR = 30          # |l| >= FAR: p and q so far apart that the plain formulas lose nothing that matters
PSI_SPLIT = -2    # psi(l) = 1 - exp(l) (1 - l) for l < PSI_SPLIT, l - (1 - l) expm1(l) above
GRAD_SPLIT = 1    # kd_loss_grad: q - p as -q expm1(l) where |l| < GRAD_SPLIT, else q - p directly
PSI_SERIES = (2, 3, 8, 30, 144, 840, 5760)  # psi(l) = l^2/2 + l^3/3 + ... + l^8/5760: k!/(k - 1), k = 2 .. 8

# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------


def _check_temperature(T):
    if isinstance(T, bool) or not isinstance(T, numbers.Real):
        raise TypeError(f"T must be a real number > 0, got {type(T).__name__}")
    if not T > 0 or T != T or T == float("inf"):
        raise ValueError(f"T must be a finite number > 0, got {T}")


def _check_logits(a, name, check_values=True):
    xp = get_array_module(a)
    if not isinstance(a, xp.ndarray):
        raise TypeError(f"{name} must be a numpy or cupy array, got {type(a).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, C), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype, got {a.dtype}")
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one class column, got shape {a.shape}")
    if check_values and not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or Inf")


def _check_pair(z, v):
    _check_logits(z, "z")
    _check_logits(v, "v")
    if z.shape != v.shape:
        raise ValueError(f"z and v must have the same shape, got z {z.shape} and v {v.shape}")
    if get_array_module(z) is not get_array_module(v):
        raise TypeError("z and v must live on the same device (both numpy or both cupy)")


def _check_batch(z):
    """A loss is a mean over the batch: of N = 0 examples it is 0/0, so an empty batch is refused."""
    if z.shape[0] == 0:
        raise ValueError(f"z is an empty batch (shape {z.shape}): a loss is a mean over the N examples of a "
                         f"batch, and N must be >= 1")


def _check_labels(y, z, check_values=True):
    xp = get_array_module(z)
    if not isinstance(y, xp.ndarray):
        raise TypeError(f"y must be an integer array on the same device as z, got {type(y).__name__}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"y must have shape (N,) = ({z.shape[0]},), got {y.shape}")
    if check_values and y.size and (int(y.min()) < 0 or int(y.max()) >= z.shape[1]):
        raise ValueError(f"y must be class labels in [0, {z.shape[1] - 1}], got values in [{int(y.min())}, {int(y.max())}]")


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number in [0, 1], got {type(alpha).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _check_distillation(z, v, y, T, alpha):
    _check_pair(z, v)
    _check_batch(z)
    _check_labels(y, z)
    _check_temperature(T)
    _check_alpha(alpha)


# --------------------------------------------------------------------------
# the tempered softmax
# --------------------------------------------------------------------------


def log_softmax(z, T=1.0, *, check=True):
    r"""Row-wise log of the tempered softmax, computed in log space.

    See docs/gradients.md, sections 1 and 3.

    .. math::  \log q_i = z_i/T - \log \sum_j \exp(z_j/T)

    Notes
    -----
    Subtracting the row maximum m = max_j z_j/T before exponentiating leaves
    the result unchanged (numerator and denominator are both scaled by
    exp(-m)) but makes the largest exponent exp(0) = 1, so nothing overflows,
    and the log of the sum is at least 0, so nothing underflows to log(0):

        log q_i = (z_i/T - m) - log sum_j exp(z_j/T - m).

    The largest term of the sum is exactly 1, so the sum is computed as
    log1p(sum of the others): when every other probability is tiny, log q of
    the top class (about minus that sum) keeps its full relative precision.

    This is finite for |z| up to 1e4 in float32 at any T in [0.05, 1000],
    where ``log(softmax(z))`` would give -inf for every small probability.
    The Jacobian is  d log q_i / d z_j = (delta_ij - q_j) / T.
    """
    if check:
        _check_logits(z, "z")
        _check_temperature(T)
    xp = get_array_module(z)
    s = z / T if T != 1 else z.copy()
    rows, top = xp.arange(s.shape[0]), s.argmax(axis=1)
    s -= s[rows, top][:, None]
    e = xp.exp(s)
    e[rows, top] = 0  # the largest term is exactly exp(0) = 1: add it through log1p
    s -= xp.log1p(e.sum(axis=1, keepdims=True))
    return s


def softmax(z, T=1.0, *, check=True):
    r"""Row-wise tempered softmax  q_i = exp(z_i/T) / sum_j exp(z_j/T).

    See docs/gradients.md, sections 1 and 3.

    Notes
    -----
    Computed as exp(log_softmax(z, T)), so it inherits the max-subtraction
    that keeps it finite.  A higher T gives a softer distribution over the
    classes; T = 1 is the ordinary softmax.  Its Jacobian is
    d q_i / d z_j = q_i (delta_ij - q_j) / T.
    """
    xp = get_array_module(z)
    return xp.exp(log_softmax(z, T, check=check))


# --------------------------------------------------------------------------
# hard-label cross-entropy
# --------------------------------------------------------------------------


def cross_entropy(z, y, *, check=True):
    r"""Mean cross-entropy of the hard labels:  -(1/N) sum_n log softmax(z_n)[y_n].

    See docs/gradients.md, section 2.

    See :func:`cross_entropy_grad` for its gradient.
    """
    if check:
        _check_logits(z, "z")
        _check_batch(z)
        _check_labels(y, z)
    xp = get_array_module(z)
    logq = log_softmax(z, check=False)
    return -logq[xp.arange(z.shape[0]), y].mean()


def cross_entropy_grad(z, y, *, check=True):
    r"""Gradient of :func:`cross_entropy`:  (softmax(z) - onehot(y)) / N.

    See docs/gradients.md, section 2.

    Notes
    -----
    For one example, L = -log q_y with q = softmax(z).  Using
    d log q_y / d z_j = delta_yj - q_j (the Jacobian of log-softmax at T = 1),
    dL/dz_j = q_j - delta_yj.  The batch mean divides by N.

    The entry of the true class, q_y - 1, is computed as -sum_{j != y} q_j
    (equal, since the q_j sum to 1): when q_y is close to 1 the subtraction
    would cancel every significant digit of a gradient like -1e-13.
    """
    if check:
        _check_logits(z, "z")
        _check_batch(z)
        _check_labels(y, z)
    rows = get_array_module(z).arange(z.shape[0])
    g = softmax(z, check=False)
    g[rows, y] = 0
    g[rows, y] = -g.sum(axis=1)  # q_y - 1 = -(sum of the other q_j), with no cancellation near q_y = 1
    g /= z.shape[0]
    return g


def cross_entropy_and_grad(z, y, *, check=True):
    r"""``(cross_entropy(z, y), cross_entropy_grad(z, y))``, for the training loop.

    (On a GPU the training step computes both in one kernel per row instead,
    ``nanokd.fused.loss_rows``: the same formulas.)
    """
    if check:
        _check_logits(z, "z")
        _check_batch(z)
        _check_labels(y, z)
    return cross_entropy(z, y, check=False), cross_entropy_grad(z, y, check=False)


# --------------------------------------------------------------------------
# the distillation (soft-target) loss
# --------------------------------------------------------------------------


def log_ratio(z, v, T, *, check=True):
    r"""l = log p - log q, row by row, accurate to float precision even when p and q nearly agree.

    See docs/gradients.md, appendix A ("Keeping the digits of a small KL in float32").
    Returns ``(log q, log p, l)``, each (N, C); the first two are
    :func:`log_softmax` of z and of v.

    Notes
    -----
    Subtracting two log-softmaxes, log p_i - log q_i, loses the digits of l
    when p ~ q: each log-softmax is rounded relative to the *logits*
    (about eps |v/T|), and that error is passed on whole to l, which may be
    far smaller.  But given q, l depends on the logits only through d = (v - z)/T
    (it still depends on q: errors in q enter multiplied by the spread of d),
    which a float subtraction gets to within one rounding of its own size:

        l_i = log p_i - log q_i = d_i - log sum_j q_j exp(d_j),

    since  p_i / q_i = exp(v_i/T) / exp(z_i/T) * sum_j exp(z_j/T) / sum_j exp(v_j/T)
    and    sum_j exp(v_j/T) / sum_j exp(z_j/T) = sum_j q_j exp(d_j).

    Centre d on its q-weighted mean, e = d - sum_j q_j d_j (a shift of d by
    a constant leaves l unchanged; d is first shifted so that its entry for
    the most probable class is 0, which keeps the rounding of that mean
    proportional to the spread of d, not to its size).  Then sum_j q_j e_j = 0, so

        log sum_j q_j exp(e_j) = log1p(sum_j q_j expm1(e_j)),

    whose argument is >= 0 (expm1(e) >= e) and of second order in e: both
    functions keep the digits of tiny arguments.  When some e_j is huge
    (above 30; exp would overflow float32 near 88) p and q are so different
    that the plain difference of log-softmaxes loses nothing that matters,
    and that row uses it instead.

    One loss of digits is left, and no float32 formula avoids it: l depends
    on how v - z varies across the classes, while each v_i - z_i is rounded
    relative to its own size.  When v - z is nearly the same for every class
    (a student matching its teacher up to a shift), l keeps only about
    eps |v - z| / (spread of v - z) of its relative precision.
    """
    if check:
        _check_pair(z, v)
        _check_temperature(T)
    xp = get_array_module(z)
    logq = log_softmax(z, T, check=False)
    q = xp.exp(logq)
    d = (v - z) / T
    rows, top = xp.arange(d.shape[0]), z.argmax(axis=1)
    d -= d[rows, top][:, None]  # first relative to the class of largest q: d_top = 0 exactly ...
    e = d - (q * d).sum(axis=1, keepdims=True)  # ... so this mean is small wherever q is concentrated
    s = (q * xp.expm1(xp.minimum(e, FAR))).sum(axis=1, keepdims=True)
    l = e - xp.log1p(xp.maximum(s, 0))
    logp = log_softmax(v, T, check=False)
    huge = e.max(axis=1, keepdims=True) > FAR
    return logq, logp, xp.where(huge, logp - logq, l)


def series_limit(dtype):
    """Below this |l| :func:`kd_loss` sums psi(l) by its series: to l^8 it is within 2 units in the last place there."""
    return 0.25 if dtype.itemsize <= 4 else 0.01


def kd_loss(z, v, T, *, check=True, ratio=None):
    r"""The soft-target loss  T^2 * (1/N) sum_n KL(p_n || q_n).

    See docs/gradients.md, sections 3 and 4, and appendix A.

    With p = softmax(v/T) and q = softmax(z/T):

        KL(p || q) = sum_i p_i (log p_i - log q_i).

    Notes
    -----
    *KL and soft cross-entropy.*  The soft cross-entropy
    H(p, q) = -sum_i p_i log q_i equals KL(p || q) + H(p), where the teacher's
    entropy H(p) does not depend on z.  So the two losses differ by a constant
    and have the same gradient; KL is used because it is 0 when q = p, which
    makes the value readable.

    *Why T^2.*  The gradient of KL(p || q) with respect to z is (q - p)/T
    (the paper's eq. 2).  At high T, q - p itself shrinks like 1/T (eq. 4:
    q_i - p_i ~ (z_i - v_i)/(C T) for zero-mean logits, C classes), so the
    soft gradients scale as 1/T^2.  Multiplying the loss by T^2 keeps their
    size roughly unchanged when T is varied (once T exceeds the spread of the
    logits), so the relative weight of the soft and hard terms of
    :func:`distillation_loss` depends little on T there.  (With alpha = 1,
    T^2 only rescales the learning rate.)

    The digits: l = log p - log q comes from :func:`log_ratio` and the sum
    from :func:`kl_divergence`, which keep the KL of nearly equal
    distributions exact to float precision.  ``ratio``: the
    ``(log q, log p, l)`` of :func:`log_ratio` for these z, v and T, when the
    caller has it already (see :func:`distillation_loss_and_grad`).

    The gradient is :func:`kd_loss_grad`.
    """
    if check:
        _check_pair(z, v)
        _check_batch(z)
        _check_temperature(T)
    logq, logp, l = log_ratio(z, v, T, check=False) if ratio is None else ratio  # l = log p - log q
    kl = kl_divergence(logq, logp, l)  # KL(p_n || q_n) of each row
    return T * T * kl.mean()


def kl_divergence(logq, logp, l):
    r"""KL(p || q) = sum_i p_i l_i of each row, l = log p - log q, summed so that it keeps its digits.

    See docs/gradients.md, appendix A.  Returns an (N,) array.

    Notes
    -----
    When p ~ q the terms p_i l_i are of first order in l but their sum is of
    second order: summing them as written cancels most digits (in float32,
    the loss at T = 50 could be wrong in its second digit).  With
    p_i = q_i exp(l_i) and sum p = sum q = 1:

        KL = sum_i p_i l_i - sum_i p_i + sum_i q_i = sum_i q_i psi(l_i),
        psi(l) = 1 - exp(l) (1 - l) = l^2/2 + l^3/3 + l^4/8 + ...  >= 0,

    a sum of non-negative terms, each accurate when l is (:func:`log_ratio`).
    psi is summed by its series (:func:`psi_series`) for |l| below
    :func:`series_limit`, by :func:`psi` up to |l| = ``FAR``, and beyond that
    as q_i + p_i (l_i - 1) with p_i from log p_i: there one of the two terms
    is negligible, and p_i = q_i exp(l_i) would carry the rounding of l_i.
    The expanded q_i + p_i (l_i - 1) is not used nearer: it would subtract
    two nearly equal numbers when |l| is near the series' limit, and pass on
    the rounding of q_i (about eps |log q_i|).
    """
    xp = get_array_module(l)
    q = xp.exp(logq)
    small = series_limit(l.dtype)
    near = q * psi_series(xp.clip(l, -small, small))  # clipping: each form is used only where it is chosen
    middle = q * psi(xp.clip(l, -FAR, FAR))
    far = q + xp.exp(logp) * (l - 1)  # q psi(l) = q - q exp(l) + q exp(l) l = q + p (l - 1)
    terms = xp.where(xp.abs(l) < small, near, xp.where(xp.abs(l) < FAR, middle, far))
    return terms.sum(axis=1)


def psi(l):
    r"""psi(l) = 1 - exp(l) (1 - l), in the form that cancels least (|l| < 30).

    In float32 within 1.5e-6 of psi, relative (24 unit roundoffs, the worst
    just below l = -1/4; docs/gradients.md, appendix A).

        psi(l) = 1 - exp(l) (1 - l)       for l < -2 (PSI_SPLIT),
        psi(l) = l - (1 - l) expm1(l)     otherwise.
    """
    xp = get_array_module(l)
    return xp.where(l < PSI_SPLIT, 1 - xp.exp(l) * (1 - l), l - (1 - l) * xp.expm1(l))


def psi_series(t):
    r"""psi(t) = sum_{k=2}^{8} t^k (k - 1)/k! = t^2/2 + t^3/3 + t^4/8 + ..., by Horner's rule.

    Within 2 units in the last place of the dtype for |t| < :func:`series_limit`
    (against the exact series: tests/test_losses.py).
    """
    inner = t / PSI_SERIES[-1]
    for d in reversed(PSI_SERIES[1:-1]):
        inner = t * (1 / d + inner)
    return t * t * (1 / PSI_SERIES[0] + inner)


def kd_loss_grad(z, v, T, *, check=True, ratio=None):
    r"""Gradient of :func:`kd_loss` with respect to z:  T (q - p) / N.

    See docs/gradients.md, sections 3 and 4.

    Notes
    -----
    KL(p || q) = sum_i p_i log p_i - sum_i p_i log q_i.  Only the second term
    depends on z.  With d log q_i / d z_j = (delta_ij - q_j)/T,

        d/dz_j [-sum_i p_i log q_i] = -(1/T) sum_i p_i (delta_ij - q_j)
                                    = -(1/T) (p_j - q_j sum_i p_i)
                                    = (q_j - p_j) / T,

    because sum_i p_i = 1.  Times T^2 and the batch mean 1/N gives T (q - p)/N.

    q - p is computed as -q expm1(l), l = log p - log q (:func:`log_ratio`),
    which keeps its digits when p ~ q, where a difference of two softmaxes
    would cancel them; where |l_i| >= 1 (p_i and q_i a factor e apart or
    more), as q_i - p_i directly, which then cancels nothing.  ``ratio`` as
    in :func:`kd_loss`.
    """
    if check:
        _check_pair(z, v)
        _check_batch(z)
        _check_temperature(T)
    xp = get_array_module(z)
    logq, logp, l = log_ratio(z, v, T, check=False) if ratio is None else ratio
    q = xp.exp(logq)
    g = xp.where(xp.abs(l) < GRAD_SPLIT, -q * xp.expm1(xp.clip(l, -GRAD_SPLIT, GRAD_SPLIT)), q - xp.exp(logp))
    g *= T / z.shape[0]
    return g


def distillation_loss(z, v, y, T, alpha, *, check=True, ratio=None):
    r"""The distillation objective  alpha * kd_loss + (1 - alpha) * cross_entropy.

    See docs/gradients.md, section 4.

    **alpha weights the soft (teacher) term.**  alpha = 1 is pure distillation
    from soft targets; alpha = 0 is ordinary training on the hard labels.  The
    paper found it best to put "a considerably lower weight on the second
    objective" (the hard labels), i.e. alpha close to 1.  Some other code uses
    the opposite convention (alpha on the hard term): not this library.

    The T^2 inside :func:`kd_loss` keeps the two terms' gradients on the same
    scale once T exceeds the spread of the logits, so alpha means roughly the
    same thing at every such temperature.
    """
    if check:
        _check_distillation(z, v, y, T, alpha)
    soft = kd_loss(z, v, T, check=False, ratio=ratio) if alpha > 0 else 0.0
    hard = cross_entropy(z, y, check=False) if alpha < 1 else 0.0
    return alpha * soft + (1 - alpha) * hard


def distillation_loss_grad(z, v, y, T, alpha, *, check=True, ratio=None):
    r"""Gradient of :func:`distillation_loss`:  alpha T (q - p)/N + (1 - alpha)(softmax(z) - onehot(y))/N.

    See docs/gradients.md, section 4.

    Notes
    -----
    The loss is a weighted sum, so its gradient is the same weighted sum of
    :func:`kd_loss_grad` and :func:`cross_entropy_grad`.  ``ratio`` as in
    :func:`kd_loss`.
    """
    if check:
        _check_distillation(z, v, y, T, alpha)
    if alpha == 0:
        return cross_entropy_grad(z, y, check=False)
    g = kd_loss_grad(z, v, T, check=False, ratio=ratio)
    if alpha < 1:
        g *= alpha
        g += (1 - alpha) * cross_entropy_grad(z, y, check=False)
    return g


def distillation_loss_and_grad(z, v, y, T, alpha, *, check=True):
    r"""``(distillation_loss(...), distillation_loss_grad(...))``, for the training loop.

    The two functions themselves, with :func:`log_ratio`, the costly part,
    computed once and handed to both.  (On a GPU the training step runs the
    same formulas as one kernel per row, ``nanokd.fused.loss_rows``.)
    """
    if check:
        _check_distillation(z, v, y, T, alpha)
    ratio = log_ratio(z, v, T, check=False) if alpha > 0 else None
    return (distillation_loss(z, v, y, T, alpha, check=False, ratio=ratio),
            distillation_loss_grad(z, v, y, T, alpha, check=False, ratio=ratio))


# --------------------------------------------------------------------------
# logit matching: the high-temperature limit
# --------------------------------------------------------------------------


def logit_matching_loss(z, v, *, check=True):
    r"""Caruana's logit matching:  (1/N) sum_n 1/2 ||z_n - v_n||^2.

    See docs/gradients.md, section 5.

    Notes
    -----
    This is the paper's high-temperature limit of distillation (its eqs. 3-4):
    expanding exp(x/T) ~ 1 + x/T for T much larger than the logits, and with
    logits of zero mean per example, q_i ~ (1 + z_i/T)/C, so the gradient of
    :func:`kd_loss` tends to

        T (q - p)/N  ->  (z - v)/(N C),

    which is the gradient of this loss divided by C.  The error of the
    approximation shrinks like 1/T.  See :func:`logit_matching_loss_grad`.
    """
    if check:
        _check_pair(z, v)
        _check_batch(z)
    d = z - v
    return 0.5 * (d * d).sum(axis=1).mean()


def logit_matching_loss_grad(z, v, *, check=True):
    r"""Gradient of :func:`logit_matching_loss`:  (z - v) / N.

    See docs/gradients.md, section 5.

    Notes
    -----
    d/dz_j of 1/2 sum_i (z_i - v_i)^2 is z_j - v_j; the batch mean divides by N.
    """
    if check:
        _check_pair(z, v)
        _check_batch(z)
    g = z - v
    g /= z.shape[0]
    return g
