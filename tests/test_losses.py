"""Property-based tests of every loss and its analytic gradient, written with nanokd.testing.

The strategies, the gradient check and the property helpers are the public
ones of :mod:`nanokd.testing`, which users call on their own losses: what
guards nanokd here is what they get.  Gradients are compared with finite
differences in float64 over hypothesis-drawn batch sizes, class counts,
temperatures, logit scales, pairs of logits and alphas.  Every test runs on
NumPy, and on CuPy when CuPy and a GPU are present.  ``--hypothesis-profile
thorough`` runs 20 times the examples.
"""

import fractions
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanokd as nk
import nanokd.testing as nkt
from nanokd import losses
from nanokd.testing import examples


def draw_case(xp, seed, N, C, scale, dtype="float64"):
    """Logits z, v of the given scale and labels y, made on the host from a seed, moved to xp (fixed examples)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, C)) * scale
    v = rng.normal(size=(N, C)) * scale
    y = rng.integers(0, C, size=N)
    return xp.asarray(z, dtype=dtype), xp.asarray(v, dtype=dtype), xp.asarray(y)


def on(xp, *arrays):
    return [xp.asarray(a) for a in arrays]


def host(a):
    return nk.to_numpy(a)


# The ranges the library promises: batches up to 64, up to 100 classes, T from 0.1 to 100.
WIDE = dict(n=(1, 64), c=(2, 100))
# Logits of scale 0.01 to 5, drawn independently for student and teacher: where every
# gradient agrees with its finite difference to 1e-6 of its scale (the saturated and the
# ill-conditioned cases below are held to their derived tolerances).
TYPICAL = dict(WIDE, scale=(0.01, 5.0), offset=0, relations=("independent",), patterns=("gaussian", "tied"))
TEMPERATURES = nkt.temperatures(0.1, 100.0)

# ----------------------------------------------------------------------------
# gradients equal finite differences
# ----------------------------------------------------------------------------

# each entry: (loss, its gradient, the finite-difference step h for temperature T).
# kd_loss depends on z only through z / T, so h = 1e-3 T is the same relative step at every
# temperature (at T = 100 a step of 1e-3 would barely move the softmax, and the loss's rounding,
# divided by h, would be all the finite difference sees); the mixture alpha kd + (1 - alpha) CE
# moves between the two steps with h = 1e-3 T^alpha.
LOSSES = {
    "cross_entropy": (lambda z, v, y, T, a: nk.cross_entropy(z, y),
                      lambda z, v, y, T, a: nk.cross_entropy_grad(z, y),
                      lambda T, a: 1e-3),
    "kd_loss": (lambda z, v, y, T, a: nk.kd_loss(z, v, T),
                lambda z, v, y, T, a: nk.kd_loss_grad(z, v, T),
                lambda T, a: 1e-3 * max(1.0, T)),
    "distillation_loss": (lambda z, v, y, T, a: nk.distillation_loss(z, v, y, T, a),
                          lambda z, v, y, T, a: nk.distillation_loss_grad(z, v, y, T, a),
                          lambda T, a: 1e-3 * max(1.0, T) ** a),
    "logit_matching_loss": (lambda z, v, y, T, a: nk.logit_matching_loss(z, v),
                            lambda z, v, y, T, a: nk.logit_matching_loss_grad(z, v),
                            lambda T, a: 1e-3),
}


def check_gradient(xp, name, batch, T, alpha, **kwargs):
    """nkt.assert_gradient of one loss at one drawn batch; the gradient's shape and dtype too."""
    loss, grad, step = LOSSES[name]
    z, v, y = on(xp, *batch)
    g = grad(z, v, y, T, alpha)
    assert g.shape == z.shape and g.dtype == z.dtype
    return nkt.assert_gradient(lambda z: loss(z, v, y, T, alpha), lambda z: grad(z, v, y, T, alpha), z,
                               eps=step(T, alpha), **kwargs)


@pytest.mark.parametrize("name", list(LOSSES))
@settings(max_examples=examples(60))
@given(batch=nkt.batches(**TYPICAL), T=TEMPERATURES, alpha=nkt.alphas())
def test_gradient_equals_finite_differences(xp, name, batch, T, alpha):
    report = check_gradient(xp, name, batch, T, alpha, sample=8, directions=2)
    # Typical cases agree to ~1e-10 (tests/test_gradcheck.py holds the 1e-7 acceptance checks).  At the
    # corners of the drawn ranges (T ~ 100 with logits ~ 0.01) the gradient is ~1e-4 and the loss's
    # rounding bounds what any finite difference resolves; assert_gradient derives that bound, and
    # beside it the error must stay below 1e-6 of the gradient's scale everywhere here.
    assert report.max_rel_error < 1e-6, report


@pytest.mark.parametrize("name", list(LOSSES))
@settings(max_examples=examples(30))
@given(batch=nkt.batches(**{**TYPICAL, "scale": (5.0, 30.0), "patterns": nkt.PATTERNS}), T=TEMPERATURES,
       alpha=nkt.alphas())
def test_gradient_equals_finite_differences_saturated(xp, name, batch, T, alpha):
    """Large logits saturate the softmax: gradient entries fall to ~exp(-scale / T) while the loss value
    still carries a rounding error of ~1e-16 |z| / T, so a finite difference only resolves them to
    ~1e-16 |z| / (T h): the relative bound is looser here, and only here (the derived one is not)."""
    report = check_gradient(xp, name, batch, T, alpha, sample=8, directions=2)
    assert report.max_rel_error < 1e-5, report


@pytest.mark.parametrize("name", list(LOSSES))
@settings(max_examples=examples(40))
@given(batch=nkt.batches(), T=TEMPERATURES, alpha=nkt.alphas())
def test_gradient_equals_finite_differences_everywhere(xp, name, batch, T, alpha):
    """All that nkt.batches draws: logits of scale 1e-3 to 1e3, saturated rows, ties, rows shifted by
    up to 100, teachers nearly equal to, equal to, or a shift of their students.  The gradient is tiny
    or pure rounding in some of these (q = p exactly), so only the derived tolerance applies."""
    check_gradient(xp, name, batch, T, alpha)


@settings(max_examples=examples(60))
@given(batch=nkt.batches(**WIDE), T=TEMPERATURES, alpha=nkt.alphas())
def test_loss_gradients_leave_the_teacher_logits_unchanged(xp, batch, T, alpha):
    """The gradients work in place on their own buffers only: the teacher's logits v, cached for a whole
    epoch by the training loop, come back bit for bit as they went in."""
    z, v, y = on(xp, *batch)
    v_before = v.copy()
    nk.kd_loss_grad(z, v, T)
    nk.distillation_loss_grad(z, v, y, T, alpha)
    nk.distillation_loss_and_grad(z, v, y, T, alpha)
    assert bool((v == v_before).all())


# ----------------------------------------------------------------------------
# invariances and simple properties
# ----------------------------------------------------------------------------


@settings(max_examples=examples(60))
@given(batch=nkt.batches(**TYPICAL), T=TEMPERATURES, alpha=nkt.alphas(), shift=st.floats(1e-3, 50.0))
def test_losses_invariant_to_row_constants(xp, batch, T, alpha, shift):
    """softmax(z + c 1) = softmax(z): every softmax-based loss ignores a constant added to a row."""
    z, v, y = on(xp, *batch)
    for f, grad in ((lambda z, v: nk.cross_entropy(z, y), lambda z, v: nk.cross_entropy_grad(z, y)),
                    (lambda z, v: nk.kd_loss(z, v, T), lambda z, v: nk.kd_loss_grad(z, v, T)),
                    (lambda z, v: nk.distillation_loss(z, v, y, T, alpha),
                     lambda z, v: nk.distillation_loss_grad(z, v, y, T, alpha))):
        changes = nkt.check_shift_invariance(f, z, v, grad, shift=shift)
        # and within the bounds this test held them to before the tolerance was derived
        assert changes["f"] <= 1e-9 * max(1.0, abs(float(f(z, v))), T * T)
        assert changes["grad"] <= 1e-12 * max(1.0, T)


@settings(max_examples=examples(30))
@given(batch=nkt.batches(), T=TEMPERATURES, alpha=nkt.alphas())
def test_losses_invariant_to_row_constants_everywhere(xp, batch, T, alpha):
    z, v, y = on(xp, *batch)
    nkt.check_shift_invariance(lambda z, v: nk.distillation_loss(z, v, y, T, alpha), z, v,
                               lambda z, v: nk.distillation_loss_grad(z, v, y, T, alpha))


@settings(max_examples=examples(60))
@given(batch=nkt.batches(**WIDE), T=TEMPERATURES, alpha=nkt.alphas())
def test_gradient_rows_sum_to_zero(xp, batch, T, alpha):
    """Each row of a softmax-loss gradient is a difference of two distributions (times a factor), so it sums to 0."""
    z, v, y = on(xp, *batch)
    N, C = z.shape
    for grad, factor in ((lambda z, v: nk.cross_entropy_grad(z, y), 1 / N),
                         (lambda z, v: nk.kd_loss_grad(z, v, T), T / N),
                         (lambda z, v: nk.distillation_loss_grad(z, v, y, T, alpha), max(T, 1) / N)):
        sums = nkt.check_rows_sum_to_zero(grad, z, v)
        assert sums["row sums"] <= 1e-13 * factor * C


@settings(max_examples=examples(60))
@given(zv=nkt.logit_pairs(**WIDE), T=TEMPERATURES)
def test_kd_loss_nonnegative_and_zero_at_equality(xp, zv, T):
    z, v = on(xp, *zv)
    assert float(nk.kd_loss(z, v, T)) >= -1e-12 * T * T
    nkt.check_zero_at_match(lambda z, v: nk.kd_loss(z, v, T), lambda z, v: nk.kd_loss_grad(z, v, T), z)
    nkt.check_zero_at_match(nk.logit_matching_loss, nk.logit_matching_loss_grad, z)
    # exactly, not merely to rounding: l = log p - log q is computed from v - z, which is 0
    assert float(nk.kd_loss(z, z, T)) == 0.0
    assert float(abs(nk.kd_loss_grad(z, z, T)).max()) == 0.0


def test_softmax_is_a_distribution_and_log_softmax_matches(xp):
    z, _, _ = draw_case(xp, 0, 7, 5, 3.0)
    for T in (0.5, 1.0, 4.0):
        q = nk.softmax(z, T)
        np.testing.assert_allclose(host(q.sum(axis=1)), 1.0, rtol=1e-14)
        np.testing.assert_allclose(host(nk.log_softmax(z, T)), np.log(host(q)), rtol=1e-12)
        # against the textbook formula, which is safe at this scale
        e = np.exp(host(z) / T)
        np.testing.assert_allclose(host(q), e / e.sum(axis=1, keepdims=True), rtol=1e-12)


def test_kl_and_soft_cross_entropy_differ_by_teacher_entropy(xp):
    """kd_loss = T^2 (H(p, q) - H(p)) / batch: the documented identity, checked numerically."""
    z, v, _ = draw_case(xp, 3, 9, 6, 2.0)
    T = 3.0
    p, logq, logp = nk.softmax(v, T), nk.log_softmax(z, T), nk.log_softmax(v, T)
    soft_ce = float(-(p * logq).sum(axis=1).mean())
    entropy = float(-(p * logp).sum(axis=1).mean())
    assert float(nk.kd_loss(z, v, T)) == pytest.approx(T * T * (soft_ce - entropy), rel=1e-12)


def test_distillation_loss_is_the_alpha_mixture(xp):
    z, v, y = draw_case(xp, 4, 11, 7, 2.0)
    T, alpha = 5.0, 0.9
    expected = alpha * float(nk.kd_loss(z, v, T)) + (1 - alpha) * float(nk.cross_entropy(z, y))
    assert float(nk.distillation_loss(z, v, y, T, alpha)) == pytest.approx(expected, rel=1e-13)
    # alpha weights the soft term: alpha = 1 ignores the labels, alpha = 0 ignores the teacher
    assert float(nk.distillation_loss(z, v, y, T, 1.0)) == pytest.approx(float(nk.kd_loss(z, v, T)), rel=1e-14)
    assert float(nk.distillation_loss(z, v, y, T, 0.0)) == pytest.approx(float(nk.cross_entropy(z, y)), rel=1e-14)
    np.testing.assert_array_equal(host(nk.distillation_loss_grad(z, v, y, T, 0.0)), host(nk.cross_entropy_grad(z, y)))


def test_cross_entropy_known_value(xp):
    """Uniform logits over C classes cost log C, and the gradient is (1/C - onehot)/N."""
    z = xp.zeros((2, 4))
    y = xp.asarray([1, 3])
    assert float(nk.cross_entropy(z, y)) == pytest.approx(np.log(4), rel=1e-15)
    expected = np.full((2, 4), 0.25)
    expected[[0, 1], [1, 3]] -= 1
    np.testing.assert_allclose(host(nk.cross_entropy_grad(z, y)), expected / 2, rtol=1e-15)


# ----------------------------------------------------------------------------
# the paper's high-temperature limit (eqs. 3-4)
# ----------------------------------------------------------------------------


@settings(max_examples=examples(30))
@given(zv=nkt.logit_pairs(**{**TYPICAL, "scale": (0.1, 5.0), "patterns": ("gaussian",)}))
def test_high_temperature_limit_is_logit_matching(xp, zv):
    """For zero-mean logits, T (q - p)/N -> (z - v)/(N C) = logit_matching_loss_grad / C, with error ~ 1/T."""
    z, v = on(xp, *zv)
    C = z.shape[1]
    # the helper centres the rows, bounds the error at T = 100 by 3 max|z| / T, and asks it to fall like 1/T
    errors = nkt.check_high_temperature_limit(lambda z, v, T: nk.kd_loss_grad(z, v, T), z, v, (1e2, 1e3, 1e4))
    # nanokd's gradient does more: the error falls exactly like 1/T, ten times the temperature, a tenth of
    # the error.  Its 1/T term is proportional to z_i^2 - mean_j z_j^2 (and likewise for v), which is 0 for
    # every zero-mean row when C = 2: there the error falls even faster, like 1/T^2.
    for coarse, fine in zip(errors, errors[1:]):
        if C > 2:
            assert 0.07 < fine / coarse < 0.13
        else:  # ~1/T^2 down to float64's rounding floor
            assert fine < max(0.02 * coarse, 1e-9)


# ----------------------------------------------------------------------------
# float32 stability at extreme logits and temperatures
# ----------------------------------------------------------------------------

# One scale for z and v (st.shared), uniform in [1, 1e4], as this test has always drawn them (so mostly
# in the thousands).  The bound kept from before on the gradient, 3e-7 (2 s + log C) T / N with
# s = max|z| / T, does not hold for every draw nkt.batches can make (found with NANOKD_EXAMPLES_SCALE=40):
# scales drawn log-uniformly exceed it by up to 1.5 times around |z| ~ 10-30, T ~ 2.5, and a teacher far
# larger than its student (|v| ~ 4000, |z| ~ 1, T = 0.05) by 7 times, since the gradient is computed from
# (v - z)/T and s leaves v out.  The derived tolerances of check_float32_agrees hold in both.
EXTREME = dict(n=(1, 32), c=(2, 100), scale=st.shared(st.floats(1.0, 1e4), key="extreme scale"), offset=0,
               relations=("independent",), patterns=("gaussian",))


@settings(max_examples=examples(60))
@given(batch=nkt.batches(**EXTREME), T=nkt.temperatures(0.05, 1000.0), alpha=nkt.alphas())
def test_float32_stable_at_extremes(xp, batch, T, alpha):
    """No NaN/Inf for |z| up to 1e4 and T in [0.05, 1000], and close to the float64 computation."""
    z, v, y = batch
    z32, v32 = (xp.asarray(np.clip(a, -1e4, 1e4), dtype="float32") for a in (z, v))
    y = xp.asarray(y)
    z64, v64 = z32.astype("float64"), v32.astype("float64")
    C, N = z.shape[1], z.shape[0]
    # float32 holds z/T and log q, both up to ~2 s + log C in size, to ~6e-8 relative; so do l = log p - log q
    # and the gradient T (q - p)/N, which is computed from d = (v - z)/T: where the student saturates, v - z
    # is large and its rounding, not the inputs', is what float32 costs (see losses.log_ratio)
    s = max(1.0, float(np.abs(host(z64)).max()) / T)
    logits_size = 2 * s + np.log(C)
    # the KL's rounding is about eps |z/T|^2 (l and log q each off by eps |z/T|), so the absolute part of the
    # bound scales with (|z|/T)^2 itself, without the floor of 1 in s: at T = 1000 and |z| ~ 1 it is ~1e-12 T^2
    r = max(float(np.abs(host(z64)).max()), float(np.abs(host(v64)).max())) / T
    kl_size = r * r * T * T

    # float32 in, float32 out, finite, and within what float32's rounding of the inputs and of those
    # intermediate terms (scale=) forgives
    nkt.check_float32_agrees(lambda z, v: nk.log_softmax(z, T), z32, v32, scale=logits_size)
    nkt.check_float32_agrees(lambda z, v: nk.distillation_loss_grad(z, v, y, T, alpha), z32, v32,
                             scale=logits_size * max(T, 1.0) / N)
    nkt.check_float32_agrees(
        lambda z, v: (nk.kd_loss(z, v, T), nk.cross_entropy(z, y), nk.distillation_loss(z, v, y, T, alpha)),
        z32, v32, scale=(kl_size, logits_size, alpha * kl_size + (1 - alpha) * logits_size))

    # and within the bounds this test held them to before those tolerances were derived:
    ls32, ls64 = host(nk.log_softmax(z32, T)), host(nk.log_softmax(z64, T))
    tol = 3e-7 * logits_size
    np.testing.assert_allclose(ls32, ls64, rtol=0, atol=tol)
    g32 = host(nk.distillation_loss_grad(z32, v32, y, T, alpha))
    g64 = host(nk.distillation_loss_grad(z64, v64, y, T, alpha))
    np.testing.assert_allclose(g32, g64, rtol=0, atol=tol * max(T, 1.0) / N)
    assert float(nk.kd_loss(z32, v32, T)) == pytest.approx(float(nk.kd_loss(z64, v64, T)),
                                                            rel=1e-4, abs=1e-6 * kl_size)


@settings(max_examples=examples(60))
@given(zv=nkt.logit_pairs(n=(1, 32), c=(2, 100), scale=(0.01, 30.0), offset=0, relations=("near",),
                          patterns=("gaussian",), gap=(1e-6, 10.0)),
       T=nkt.temperatures(0.5, 100.0))
def test_float32_kd_loss_keeps_its_digits_when_p_and_q_nearly_agree(xp, zv, T):
    """KL(p || q) is of second order in v - z; a plain float32 sum of p (log p - log q) cancels its
    first-order terms and loses digits (relative error ~1e-2 at T = 50). log_ratio's formula does not:
    value and gradient agree with float64 relative to their own size, for v - z from 1e-6 to 10.

    What float32 cannot avoid: l depends on how v - z varies across the classes, and each v_i - z_i
    is rounded relative to its own size. When v - z is nearly the same for every class (a student
    that matches its teacher up to a shift), the variation keeps only ~eps |v - z| / spread of its
    digits. check_float32_agrees measures that: its tolerance is what moving the float32 inputs by a
    few units in their last place does to the float64 result."""
    z32, v32 = (xp.asarray(a, dtype="float32") for a in zv)
    errors = nkt.check_float32_agrees(lambda z, v: (nk.kd_loss(z, v, T), nk.kd_loss_grad(z, v, T)), z32, v32)

    # and within the bounds this test held them to before that tolerance was derived:
    z64, v64 = z32.astype("float64"), v32.astype("float64")  # the same numbers: only the arithmetic differs
    w = host(v64 - z64)
    cond = float((np.abs(w).max(axis=1) / np.maximum(np.ptp(w, axis=1), 1e-300)).max())
    rel = 1e-5 + 2 * float(np.finfo(np.float32).eps) * min(cond, 1e6)
    kl64 = float(nk.kd_loss(z64, v64, T))
    assert errors["output 0"] <= rel * kl64 + 1e-30
    g64 = host(nk.kd_loss_grad(z64, v64, T))
    assert errors["output 1"] <= rel * np.abs(g64).max() + 1e-30
    # the float64 values themselves: KL >= 0, 0 only where p = q, and T (q - p)/N summing to 0 per row
    assert kl64 >= 0
    np.testing.assert_allclose(g64.sum(axis=1), 0, atol=1e-13 * T / z64.shape[0])  # entries are at most T/N


def test_float32_kl_of_a_rare_class_whose_log_ratio_is_just_past_the_series(xp):
    """One class of probability e^-9 to e^-30, whose l = log p - log q is 0.25 to 0.4 from 0.

    The KL is then that class's q psi(l) (plus the big class's share, of the same order).
    Written as q + p (l - 1), it subtracted two numbers up to 36 times larger than
    the result, and passed on the rounding of log q (~eps |log q|): 3.3e-5 off at worst
    over these 200 rows, 8.9e-6 in the median (a case hypothesis found was 3.4e-5 off).
    Computed as q psi(l): 8e-7 at worst, 1.7e-7 in the median."""
    rng = np.random.default_rng(0)
    gap = rng.uniform(18, 30, 200)
    l_small = rng.choice([-1, 1], 200) * rng.uniform(0.25, 0.4, 200)
    z = np.stack([gap / 2, -gap / 2], axis=1)
    v = z + np.stack([np.zeros(200), l_small], axis=1)
    z32, v32 = xp.asarray(z, dtype="float32"), xp.asarray(v, dtype="float32")
    z64, v64 = z32.astype("float64"), v32.astype("float64")
    for i in range(200):  # one row at a time: each row's KL is compared with its own size
        kl64 = float(nk.kd_loss(z64[i:i + 1], v64[i:i + 1], 1.0))
        assert float(nk.kd_loss(z32[i:i + 1], v32[i:i + 1], 1.0)) == pytest.approx(kl64, rel=2e-6), i


def test_log_softmax_where_log_of_softmax_underflows(xp):
    z = xp.asarray([[0.0, -200.0, -1e4]], dtype="float32")
    with np.errstate(divide="ignore"):
        naive = np.log(host(nk.softmax(z)))
    assert np.isinf(naive).any()                    # log(softmax) loses the small classes ...
    ls = host(nk.log_softmax(z))
    assert np.isfinite(ls).all()                    # ... log_softmax keeps them
    np.testing.assert_allclose(ls, [[0.0, -200.0, -1e4]], rtol=1e-6)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(xp):
    z, v, y = draw_case(xp, 0, 4, 3, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        nk.kd_loss(z, v[:, :2], 2.0)
    with pytest.raises(ValueError, match="2-D"):
        nk.softmax(z[0])
    with pytest.raises(TypeError, match="floating"):
        nk.softmax(xp.asarray([[1, 2]]))
    with pytest.raises(TypeError, match="integer"):
        nk.cross_entropy(z, y.astype("float64"))
    with pytest.raises(ValueError, match=r"y must be class labels in \[0, 2\]"):
        nk.cross_entropy(z, xp.asarray([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="y must be class labels"):
        nk.cross_entropy_grad(z, xp.asarray([0, -1, 2, 1]))
    assert z.shape[0] != z.shape[1]  # so that the message's N can only be the batch's
    with pytest.raises(ValueError, match=rf"y must have shape \(N,\) = \({z.shape[0]},\), got \(2,\)"):
        nk.cross_entropy(z, y[:2])
    for T in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="T must be"):
            nk.kd_loss_grad(z, v, T)
    with pytest.raises(TypeError, match="T must be a real number > 0, got str"):
        nk.kd_loss(z, v, "2")
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha must be in"):
            nk.distillation_loss(z, v, y, 2.0, alpha)
    bad = z.copy()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="z contains NaN or Inf"):
        nk.distillation_loss_grad(bad, v, y, 2.0, 0.5)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="v contains NaN or Inf"):
        nk.logit_matching_loss(z, bad)
    with pytest.raises(TypeError, match="z must be a numpy or cupy array, got list"):
        nk.softmax([[1.0, 2.0]])
    nan = z.copy()
    nan[0, 0] = float("nan")
    for f in (nk.log_softmax, nk.softmax, lambda a: nk.cross_entropy(a, y), lambda a: nk.cross_entropy_grad(a, y)):
        with pytest.raises(ValueError, match="^z contains NaN or Inf$"):
            f(nan)
    with pytest.raises(ValueError, match="at least one class column"):
        nk.log_softmax(xp.zeros((3, 0)))
    with pytest.raises(TypeError, match="y must be an integer array on the same device as z, got list"):
        nk.cross_entropy(z, [0, 1, 2, 0])
    for alpha, kind in (("0.5", "str"), (True, "bool"), (None, "NoneType")):
        with pytest.raises(TypeError, match=rf"alpha must be a real number in \[0, 1\], got {kind}$"):
            nk.distillation_loss_grad(z, v, y, 2.0, alpha)
    with pytest.raises(ValueError, match="T must be"):
        losses.log_ratio(z, v, 0.0)


def test_the_fused_pairs_name_the_student_logits_when_they_are_not_finite():
    """cross_entropy_and_grad and distillation_loss_and_grad check z as the separate functions do."""
    z, v, y = np.array([[np.nan, 1.0]]), np.zeros((1, 2)), np.array([0])
    with pytest.raises(ValueError) as e:
        nk.cross_entropy_and_grad(z, y)
    assert str(e.value) == "z contains NaN or Inf"
    with pytest.raises(ValueError) as e:
        nk.distillation_loss_and_grad(z, v, y, 2.0, 0.5)
    assert str(e.value) == "z contains NaN or Inf"
    with pytest.raises(ValueError) as e:
        nk.distillation_loss_and_grad(v, z, y, 2.0, 0.5)
    assert str(e.value) == "v contains NaN or Inf"


# ---------------------------------------------------------------------------
# The digits of the KL: each form against an exact or extended-precision reference
# ---------------------------------------------------------------------------


def _psi_exact(t):
    """psi(t) = sum_{k>=2} (k - 1) t^k / k! of the float t, in exact rational arithmetic (40 terms)."""
    t = fractions.Fraction(float(t))
    total, power = fractions.Fraction(0), t * t
    for k in range(2, 40):
        total += (k - 1) * power / math.factorial(k)
        power *= t
    return float(total)


def _ulps(got, ref, dtype):
    """|got - ref| in units of the last place of ref in ``dtype``."""
    ref = np.asarray(ref, dtype=np.longdouble)
    spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.longdouble)
    return np.abs(np.asarray(got).astype(np.longdouble) - ref) / spacing


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_psi_series_is_within_two_units_in_the_last_place_below_the_series_limit(dtype):
    limit = losses.series_limit(np.dtype(dtype))
    t = np.random.default_rng(0).uniform(-limit, limit, 500).astype(dtype)
    assert _ulps(losses.psi_series(t), [_psi_exact(x) for x in t], dtype).max() <= 2.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_psi_keeps_its_digits_on_both_sides_of_its_split(dtype):
    """Below l = -2 the form 1 - e^l (1 - l) cancels nothing (within ~1 ulp); above, l - (1 - l) expm1(l)."""
    below = np.linspace(-29.9, -2.01, 2000).astype(dtype)
    ld = below.astype(np.longdouble)
    assert _ulps(losses.psi(below), 1 - np.exp(ld) * (1 - ld), dtype).max() <= 2
    above = np.concatenate([np.linspace(-2, -0.25, 2000), np.linspace(0.25, 29.9, 2000)]).astype(dtype)
    ld = above.astype(np.longdouble)
    assert _ulps(losses.psi(above), ld - (1 - ld) * np.expm1(ld), dtype).max() <= 24  # docs/gradients.md, app. A


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_divergence_of_every_range_of_l_against_extended_precision(dtype):
    """Rows whose l = log p - log q lie near 0, between the series limit and FAR, and beyond FAR."""
    rng = np.random.default_rng(1)
    for scale in (1e-3, 0.3, 3.0, 40.0):
        z = rng.normal(0, scale, (50, 6)).astype(dtype)
        v = (z + rng.normal(0, scale, (50, 6))).astype(dtype)
        logq, logp, l = losses.log_ratio(z, v, 1.0)
        lq, lp = logq.astype(np.longdouble), logp.astype(np.longdouble)
        ll = l.astype(np.longdouble)  # the reference sums exactly what kl_divergence is given
        series = sum((k - 1) * ll ** k / math.factorial(k) for k in range(2, 16))  # exact enough for |l| < 1/4
        psi = np.where(np.abs(ll) < 0.25, series,
                       np.where(ll < -2, 1 - np.exp(ll) * (1 - ll), ll - (1 - ll) * np.expm1(ll)))
        terms = np.where(np.abs(ll) < 30, np.exp(lq) * psi, np.exp(lq) + np.exp(lp) * (ll - 1))
        np.testing.assert_allclose(losses.kl_divergence(logq, logp, l).astype(np.longdouble), terms.sum(axis=1),
                                   rtol=40 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)  # (KLs of 1e-41)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_ratio_treats_each_row_alone(dtype):
    """A row whose p and q are far apart (e > FAR) takes the plain difference; the other rows keep their digits."""
    z = np.array([[0.1, 0.2, 0.3], [5.0, -40.0, 3.0], [1.0, 1.0 + 1e-3, 0.5]], dtype=dtype)
    v = np.array([[0.1, 0.25, 0.3], [-60.0, 50.0, 0.0], [1.0, 1.0, 0.5]], dtype=dtype)
    together = losses.log_ratio(z, v, 1.0)
    for n in range(3):
        alone = losses.log_ratio(z[n:n + 1], v[n:n + 1], 1.0)
        for a, b in zip(together, alone):
            np.testing.assert_array_equal(a[n:n + 1], b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_raise_no_floating_point_error(dtype):
    """Each form is evaluated only inside its range (the clipping): no overflow or invalid operation anywhere."""
    z = np.array([[-1e30, 0, 1e30], [0.1, 0.2, 0.3], [5, -40, 3]], dtype=dtype)
    v = np.array([[1e30, 0, -1e30], [0.1, 0.25, 0.3], [-60, 50, 0]], dtype=dtype)
    y = np.array([0, 1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for T in (1.0, 4.0):
            assert np.isfinite(nk.kd_loss(z, v, T)) and np.isfinite(nk.kd_loss_grad(z, v, T)).all()
            loss, grad = nk.distillation_loss_and_grad(z, v, y, T, 0.5)
            assert np.isfinite(loss) and np.isfinite(grad).all()


@pytest.mark.skipif(not nk.cuda_available(), reason="CuPy with a CUDA GPU is not available here")
def test_logits_on_two_devices_are_refused():
    import cupy

    z, v = np.zeros((2, 3)), cupy.zeros((2, 3))
    with pytest.raises(TypeError, match=r"^z and v must live on the same device \(both numpy or both cupy\)$"):
        nk.kd_loss(z, v, 2.0)
    with pytest.raises(TypeError, match=r"^z and v must live on the same device"):
        nk.kd_loss_grad(v, z, 2.0)
