"""Property-based tests of every loss and its analytic gradient.

Gradients are compared with finite differences in float64 (nk.gradcheck) over
hypothesis-drawn batch sizes, class counts, temperatures, logit scales and
alphas.  Every test runs on NumPy, and on CuPy when CuPy and a GPU are present.
"""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanokd as nk
from nanokd import losses


def examples(n):
    """n hypothesis examples, times NANOKD_EXAMPLES_SCALE (e.g. 20 for a long hunt for counterexamples)."""
    return int(n * float(os.environ.get("NANOKD_EXAMPLES_SCALE", "1")))

SETTINGS = settings(max_examples=examples(60), deadline=None)


def draw_case(xp, seed, N, C, scale, dtype="float64"):
    """Logits z, v of the given scale and labels y, made on the host from a seed, moved to xp."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, C)) * scale
    v = rng.normal(size=(N, C)) * scale
    y = rng.integers(0, C, size=N)
    return xp.asarray(z, dtype=dtype), xp.asarray(v, dtype=dtype), xp.asarray(y)


cases = dict(
    seed=st.integers(0, 2**31 - 1),
    N=st.integers(1, 64),
    C=st.integers(2, 100),
    scale=st.floats(0.01, 5.0),
    T=st.floats(0.1, 100.0),
    alpha=st.floats(0.0, 1.0),
)


def host(a):
    return nk.to_numpy(a)


# ----------------------------------------------------------------------------
# gradients equal finite differences
# ----------------------------------------------------------------------------

# each entry: (loss, its gradient, the finite-difference step h for temperature T).
# The loss value carries a rounding error of about 1e-16 * T^2 (kd_loss is T^2 times a
# KL that is a difference of two log-probabilities), so the step must grow with T for the
# finite difference to resolve the gradient to 1e-7.  kd_loss depends on z only through
# z / T, so h = 1e-3 T is the same relative step at every temperature; the mixture
# alpha kd + (1 - alpha) CE moves between the two steps with h = 1e-3 T^alpha.
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


@pytest.mark.parametrize("name", list(LOSSES))
@SETTINGS
@given(**cases)
def test_gradient_equals_finite_differences(xp, name, seed, N, C, scale, T, alpha):
    loss, grad, step = LOSSES[name]
    z, v, y = draw_case(xp, seed, N, C, scale)
    g = grad(z, v, y, T, alpha)
    assert g.shape == z.shape and g.dtype == z.dtype
    result = nk.gradcheck(lambda: loss(z, v, y, T, alpha), [z], [g], eps=step(T, alpha),
                          max_elements=12, directions=2, seed=seed)
    # Typical cases agree to ~1e-10 (tests/test_gradcheck.py holds the 1e-7 acceptance checks).
    # At the corners of the drawn ranges (T ~ 100 with logits ~ 0.01) the gradient is ~1e-4
    # while the loss value's rounding floor is ~1e-16 T^2, which bounds what any finite
    # difference can resolve at ~1e-7; the bound here leaves that floor a factor of 10.
    assert result.max_rel_error < 1e-6, result


@pytest.mark.parametrize("name", list(LOSSES))
@settings(max_examples=examples(30), deadline=None)
@given(**{**cases, "scale": st.floats(5.0, 30.0)})
def test_gradient_equals_finite_differences_saturated(xp, name, seed, N, C, scale, T, alpha):
    """Large logits saturate the softmax: gradient entries fall to ~exp(-scale / T) while the
    loss value still carries a rounding error of ~1e-16 * |z| / T, so a finite difference can
    only resolve them to ~1e-16 |z| / (T h); the check is looser here, and only here."""
    loss, grad, step = LOSSES[name]
    z, v, y = draw_case(xp, seed, N, C, scale)
    g = grad(z, v, y, T, alpha)
    result = nk.gradcheck(lambda: loss(z, v, y, T, alpha), [z], [g], eps=step(T, alpha),
                          max_elements=12, directions=2, seed=seed)
    assert result.max_rel_error < 1e-5, result


@SETTINGS
@given(**cases)
def test_loss_gradients_leave_the_teacher_logits_unchanged(xp, seed, N, C, scale, T, alpha):
    """The gradients work in place on their own buffers only: the teacher's logits v, cached for a whole
    epoch by the training loop, come back bit for bit as they went in."""
    z, v, y = draw_case(xp, seed, N, C, scale)
    v_before = v.copy()
    nk.kd_loss_grad(z, v, T)
    nk.distillation_loss_grad(z, v, y, T, alpha)
    nk.distillation_loss_and_grad(z, v, y, T, alpha)
    assert bool((v == v_before).all())


# ----------------------------------------------------------------------------
# invariances and simple properties
# ----------------------------------------------------------------------------


@SETTINGS
@given(**cases, shift=st.floats(-50, 50))
def test_losses_invariant_to_row_constants(xp, seed, N, C, scale, T, alpha, shift):
    """softmax(z + c 1) = softmax(z): every softmax-based loss ignores a constant added to a row."""
    z, v, y = draw_case(xp, seed, N, C, scale)
    rng = np.random.default_rng(seed + 1)
    cz = xp.asarray(rng.uniform(-1, 1, size=(N, 1)) * shift)
    cv = xp.asarray(rng.uniform(-1, 1, size=(N, 1)) * shift)
    for f in (lambda z, v: nk.cross_entropy(z, y),
              lambda z, v: nk.kd_loss(z, v, T),
              lambda z, v: nk.distillation_loss(z, v, y, T, alpha)):
        a, b = float(f(z, v)), float(f(z + cz, v + cv))
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9 * max(1.0, T * T))
    g1 = nk.distillation_loss_grad(z, v, y, T, alpha)
    g2 = nk.distillation_loss_grad(z + cz, v + cv, y, T, alpha)
    np.testing.assert_allclose(host(g2), host(g1), rtol=0, atol=1e-12 * max(1.0, T))


@SETTINGS
@given(**cases)
def test_gradient_rows_sum_to_zero(xp, seed, N, C, scale, T, alpha):
    """Each row of a softmax-loss gradient is a difference of two distributions (times a factor), so it sums to 0."""
    z, v, y = draw_case(xp, seed, N, C, scale)
    for g, factor in ((nk.cross_entropy_grad(z, y), 1 / N),
                      (nk.kd_loss_grad(z, v, T), T / N),
                      (nk.distillation_loss_grad(z, v, y, T, alpha), max(T, 1) / N)):
        np.testing.assert_allclose(host(g.sum(axis=1)), 0.0, atol=1e-13 * factor * C)


@SETTINGS
@given(**cases)
def test_kd_loss_nonnegative_and_zero_at_equality(xp, seed, N, C, scale, T, alpha):
    z, v, _ = draw_case(xp, seed, N, C, scale)
    assert float(nk.kd_loss(z, v, T)) >= -1e-12 * T * T
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


@settings(max_examples=examples(30), deadline=None)
@given(seed=st.integers(0, 2**31 - 1), N=st.integers(1, 64), C=st.integers(2, 100), scale=st.floats(0.1, 5.0))
def test_high_temperature_limit_is_logit_matching(xp, seed, N, C, scale):
    """For zero-mean logits, T (q - p)/N -> (z - v)/(N C) = logit_matching_loss_grad / C, with error ~ 1/T."""
    z, v, _ = draw_case(xp, seed, N, C, scale)
    z -= z.mean(axis=1, keepdims=True)
    v -= v.mean(axis=1, keepdims=True)
    limit = host(nk.logit_matching_loss_grad(z, v)) / C
    errors = []
    for T in (1e2, 1e3, 1e4):
        g = host(nk.kd_loss_grad(z, v, T))
        errors.append(np.abs(g - limit).max() / np.abs(limit).max())
    assert errors[0] < 0.5 * scale
    # The error shrinks like 1/T: ten times the temperature, a tenth of the error.  Its 1/T
    # term is proportional to z_i^2 - mean_j z_j^2 (and likewise for v), which is 0 for
    # every zero-mean row when C = 2: there the error falls even faster, like 1/T^2.
    for coarse, fine in zip(errors, errors[1:]):
        if C > 2:
            assert 0.07 < fine / coarse < 0.13
        else:  # ~1/T^2 down to float64's rounding floor
            assert fine < max(0.02 * coarse, 1e-9)


# ----------------------------------------------------------------------------
# float32 stability at extreme logits and temperatures
# ----------------------------------------------------------------------------


@settings(max_examples=examples(60), deadline=None)
@given(seed=st.integers(0, 2**31 - 1), N=st.integers(1, 32), C=st.integers(2, 100),
       scale=st.floats(1.0, 1e4), T=st.floats(0.05, 1000.0), alpha=st.floats(0.0, 1.0))
def test_float32_stable_at_extremes(xp, seed, N, C, scale, T, alpha):
    """No NaN/Inf for |z| up to 1e4 and T in [0.05, 1000], and close to the float64 computation."""
    rng = np.random.default_rng(seed)
    z32 = xp.asarray(np.clip(rng.normal(size=(N, C)) * scale, -1e4, 1e4), dtype="float32")
    v32 = xp.asarray(np.clip(rng.normal(size=(N, C)) * scale, -1e4, 1e4), dtype="float32")
    y = xp.asarray(rng.integers(0, C, size=N))
    z64, v64 = z32.astype("float64"), v32.astype("float64")

    ls32, ls64 = host(nk.log_softmax(z32, T)), host(nk.log_softmax(z64, T))
    assert ls32.dtype == np.float32 and np.isfinite(ls32).all()
    # float32 holds z/T and log q, both up to ~2 s + log C in size, to ~6e-8 relative
    s = max(1.0, float(np.abs(host(z64)).max()) / T)
    tol = 3e-7 * (2 * s + np.log(C))
    np.testing.assert_allclose(ls32, ls64, rtol=0, atol=tol)

    g32 = host(nk.distillation_loss_grad(z32, v32, y, T, alpha))
    g64 = host(nk.distillation_loss_grad(z64, v64, y, T, alpha))
    assert g32.dtype == np.float32 and np.isfinite(g32).all()
    np.testing.assert_allclose(g32, g64, rtol=0, atol=tol * max(T, 1.0) / N)

    for f in (nk.kd_loss(z32, v32, T), nk.cross_entropy(z32, y), nk.distillation_loss(z32, v32, y, T, alpha)):
        assert np.isfinite(float(f))
    # the KL's rounding is about eps |z/T|^2 (l and log q each off by eps |z/T|), so the absolute part of the
    # bound scales with (|z|/T)^2 itself, without the floor of 1 in s: at T = 1000 and |z| ~ 1 it is ~1e-12 T^2
    r = max(float(np.abs(host(z64)).max()), float(np.abs(host(v64)).max())) / T
    assert float(nk.kd_loss(z32, v32, T)) == pytest.approx(float(nk.kd_loss(z64, v64, T)),
                                                            rel=1e-4, abs=1e-6 * r * r * T * T)


@settings(max_examples=examples(60), deadline=None)
@given(seed=st.integers(0, 2**31 - 1), N=st.integers(1, 32), C=st.integers(2, 100),
       scale=st.floats(0.01, 30.0), T=st.floats(0.5, 100.0), gap=st.floats(1e-6, 10.0))
def test_float32_kd_loss_keeps_its_digits_when_p_and_q_nearly_agree(xp, seed, N, C, scale, T, gap):
    """KL(p || q) is of second order in v - z; a plain float32 sum of p (log p - log q) cancels its
    first-order terms and loses digits (relative error ~1e-2 at T = 50). log_ratio's formula does not:
    value and gradient within 1e-5 of float64, relative to their own size, for v - z from 1e-6 to 10.

    What float32 cannot avoid: l depends on how v - z varies across the classes, and each v_i - z_i
    is rounded relative to its own size. When v - z is nearly the same for every class (a student
    that matches its teacher up to a shift), the variation keeps only ~eps |v - z| / spread of its
    digits: the tolerance grows by that condition number."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, C)) * scale
    z32 = xp.asarray(z, dtype="float32")
    v32 = xp.asarray(z + rng.normal(size=(N, C)) * scale * gap, dtype="float32")
    z64, v64 = z32.astype("float64"), v32.astype("float64")  # the same numbers: only the arithmetic differs
    w = host(v64 - z64)
    cond = float((np.abs(w).max(axis=1) / np.maximum(np.ptp(w, axis=1), 1e-300)).max())
    rel = 1e-5 + 2 * float(np.finfo(np.float32).eps) * min(cond, 1e6)
    kl64 = float(nk.kd_loss(z64, v64, T))
    assert float(nk.kd_loss(z32, v32, T)) == pytest.approx(kl64, rel=rel, abs=1e-30)
    g32, g64 = host(nk.kd_loss_grad(z32, v32, T)), host(nk.kd_loss_grad(z64, v64, T))
    assert np.abs(g32 - g64).max() <= rel * np.abs(g64).max() + 1e-30
    # the float64 values themselves: KL >= 0, 0 only where p = q, and T (q - p)/N summing to 0 per row
    assert kl64 >= 0
    np.testing.assert_allclose(g64.sum(axis=1), 0, atol=1e-13 * T / N)  # entries are at most T/N


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
    with pytest.raises(ValueError, match=r"y must have shape \(N,\)"):
        nk.cross_entropy(z, y[:2])
    for T in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="T must be"):
            nk.kd_loss_grad(z, v, T)
    with pytest.raises(TypeError, match="T must be"):
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
    with pytest.raises(TypeError, match="numpy or cupy array"):
        nk.softmax([[1.0, 2.0]])
    with pytest.raises(ValueError, match="at least one class column"):
        nk.log_softmax(xp.zeros((3, 0)))
    with pytest.raises(TypeError, match="y must be an integer array"):
        nk.cross_entropy(z, [0, 1, 2, 0])
    for alpha in ("0.5", True, None):
        with pytest.raises(TypeError, match="alpha must be a real number"):
            nk.distillation_loss_grad(z, v, y, 2.0, alpha)
    with pytest.raises(ValueError, match="T must be"):
        losses.log_ratio(z, v, 0.0)
