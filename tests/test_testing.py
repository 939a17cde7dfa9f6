"""nanokd.testing itself: its strategies draw what they say, and its checks catch what they are for.

The demonstrations a user would want before trusting it: a KD gradient missing
its 1/T (right at T = 1, so a hand-picked example at T = 1 passes it), gradients
missing their centring term (q instead of q - p; the mean subtraction of a
softmax's Jacobian dropped), and NaN in the loss or in the gradient are all
caught, with messages that say where.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings

import nanokd as nk
import nanokd.testing as nkt
from nanokd.testing import examples

ROOT = Path(__file__).resolve().parents[1]

# a failing property test is run here on purpose: deterministic, no example database, no deadline,
# and no "explain" phase (which would run it many more times to comment on the shrunk example)
DEMO = settings(database=None, derandomize=True, max_examples=50, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow], phases=[Phase.generate, Phase.shrink])


def failure_of(test):
    """Run a hypothesis test that must fail; its AssertionError's message and hypothesis's falsifying example."""
    with pytest.raises(AssertionError) as info:
        test()
    notes = getattr(info.value, "__notes__", [])
    return str(info.value), "\n".join(n for n in notes if n.startswith("Falsifying example"))


def property_failure(loss, grad):
    """failure_of the property test every demonstration runs: ``grad`` against ``loss``'s finite differences."""
    @DEMO
    @given(nkt.logit_pairs(), nkt.temperatures())
    def test_gradient(zv, T):
        z, v = zv
        nkt.assert_gradient(lambda z: loss(z, v, T), lambda z: grad(z, v, T), z)

    return failure_of(test_gradient)


# ----------------------------------------------------------------------------
# losses with bugs, and one without
# ----------------------------------------------------------------------------


def kd_grad_missing_inverse_T(z, v, T):
    """d/dz of T^2 KL(p || q) with the 1/T of d log q / dz forgotten: T^2 (q - p)/N, right only at T = 1."""
    return T * T * (nk.softmax(z, T) - nk.softmax(v, T)) / len(z)


def kd_grad_missing_p(z, v, T):
    """T q / N: the "- p" of q - p (the centring term, the teacher's part) forgotten."""
    return T * nk.softmax(z, T) / len(z)


def brier(z, v, T):
    """T^2/(2N) sum ||q - p||^2: a squared error between the softened distributions."""
    r = nk.softmax(z, T) - nk.softmax(v, T)
    return T * T * 0.5 * float((r * r).sum()) / len(z)


def brier_grad(z, v, T):
    """T/N q * (r - <r, q>), r = q - p: the softmax's Jacobian (diag q - q q^T)/T applied to T^2 r / N."""
    q = nk.softmax(z, T)
    r = q - nk.softmax(v, T)
    return T * q * (r - (r * q).sum(axis=1, keepdims=True)) / len(z)


def brier_grad_missing_mean(z, v, T):
    """The same, with the mean <r, q> that the Jacobian subtracts dropped: T/N q * r."""
    q = nk.softmax(z, T)
    return T * q * (q - nk.softmax(v, T)) / len(z)


# ----------------------------------------------------------------------------
# assert_gradient: demonstrations
# ----------------------------------------------------------------------------


def test_a_missing_inverse_T_passes_at_T_1_and_is_caught_by_the_property_test():
    rng = np.random.default_rng(0)
    z, v = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    # one hand-picked example at T = 1: the bug is invisible there
    nkt.assert_gradient(lambda z: nk.kd_loss(z, v, 1.0), lambda z: kd_grad_missing_inverse_T(z, v, 1.0), z)

    message, example = property_failure(nk.kd_loss, kd_grad_missing_inverse_T)
    # hypothesis shrinks to the first temperature after 1 that the strategy draws, 2, where the
    # analytic gradient is T = 2 times the finite difference
    assert "T=2.0" in example, example
    assert message.startswith("gradient check failed at index ("), message
    assert "analytic / finite difference = 2)" in message, message
    assert "> tolerance" in message and "finite difference" in message


def test_a_missing_centring_term_is_caught():
    message, example = property_failure(nk.kd_loss, kd_grad_missing_p)
    assert "gradient check failed at index (" in message and "Falsifying example" in example

    message, example = property_failure(brier, brier_grad_missing_mean)
    assert "gradient check failed at index (" in message
    assert "T=1.0" in example  # any temperature shows this one: hypothesis says so, and keeps the simplest


@settings(max_examples=examples(40))
@given(zv=nkt.logit_pairs(), T=nkt.temperatures(0.1, 100.0))
def test_the_right_brier_gradient_passes(zv, T):
    """The loss of the demonstrations, with its gradient right, passes assert_gradient and every helper."""
    z, v = zv
    nkt.assert_gradient(lambda z: brier(z, v, T), lambda z: brier_grad(z, v, T), z, scale=T / len(z))
    nkt.check_shift_invariance(lambda z, v: brier(z, v, T), z, v, lambda z, v: brier_grad(z, v, T))
    # q * (r - <r, q>) cancels where q saturates: its terms are of size T / N (see the helper's docstring)
    nkt.check_rows_sum_to_zero(lambda z, v: brier_grad(z, v, T), z, v, scale=T / len(z))
    nkt.check_zero_at_match(lambda z, v: brier(z, v, T), lambda z, v: brier_grad(z, v, T), z)


def test_nan_and_inf_are_caught_in_f_and_in_grad():
    rng = np.random.default_rng(1)
    z, v = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))

    def f(z):
        return nk.kd_loss(z, v, 2.0)

    def grad(z):
        return nk.kd_loss_grad(z, v, 2.0)

    with pytest.raises(AssertionError, match=r"^f is NaN at x$"):
        nkt.assert_gradient(lambda z: float("nan"), grad, z)
    z00 = float(z[0, 0])  # f that turns NaN only where the stencil steps: the checker must look at every value
    with pytest.raises(AssertionError, match=r"^f is NaN at x \+ 0\.002 at index \(0, 0\)$"):
        nkt.assert_gradient(lambda x: f(x) if x[0, 0] < z00 + 0.0015 else float("nan"), grad, z)
    with pytest.raises(AssertionError, match=r"^f is inf at x"):
        nkt.assert_gradient(lambda x: f(x) if x[0, 0] < z00 + 0.0015 else float("inf"), grad, z)

    def grad_nan(z):
        g = grad(z).copy()
        g[1, 2] = float("nan")
        return g

    with pytest.raises(AssertionError, match=r"^grad\(x\) is NaN at index \(1, 2\) \(1 non-finite entries\) at x$"):
        nkt.assert_gradient(f, grad_nan, z)
    with pytest.raises(AssertionError, match=r"^grad\(x\) is -inf at index \(0, 0\)"):
        nkt.assert_gradient(f, lambda z: np.full_like(z, -np.inf), z)


def test_a_right_gradient_passes_with_a_report_and_the_input_is_untouched():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4))
    x0 = x.copy()
    report = nkt.assert_gradient(lambda x: float((np.sin(x) * x).sum()), lambda x: np.cos(x) * x + np.sin(x), x)
    np.testing.assert_array_equal(x, x0)
    assert report.worst_ratio < 1 and report.max_rel_error < 1e-10
    assert report.checks == 12  # at most max_elements = 16 elements: every one of them
    # larger: random directions and a sample of elements
    big = rng.normal(size=(20, 30))
    report = nkt.assert_gradient(lambda x: float((x ** 3).sum()), lambda x: 3 * x ** 2, big)
    assert report.checks == 3 + 6 and report.worst_ratio < 1


def test_a_wrong_column_of_a_large_gradient_is_found_and_named():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 50))

    def wrong(x):
        g = 2 * x
        g[:, 7] *= 1.01
        return g

    with pytest.raises(AssertionError, match=r"^gradient check failed at index \(\d+, 7\)"):
        nkt.assert_gradient(lambda x: float((x * x).sum()), wrong, x)


def test_several_inputs():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 3)), rng.normal(size=(3,))

    def f(a, b):
        return float((a * b).sum() + (b ** 2).sum())

    report = nkt.assert_gradient(f, lambda a, b: (np.broadcast_to(b, a.shape), a.sum(axis=0) + 2 * b), inputs=[a, b])
    assert report.checks == 9
    with pytest.raises(AssertionError, match=r"^gradient check failed at input 1, index \(\d,\)"):
        nkt.assert_gradient(f, lambda a, b: (np.broadcast_to(b, a.shape), a.sum(axis=0) + b), inputs=[a, b])


def test_bad_calls_say_what_is_wrong():
    x = np.zeros((2, 3))
    with pytest.raises(AssertionError, match=r"grad\(x\) has shape \(3, 2\), but its input has shape \(2, 3\)"):
        nkt.assert_gradient(lambda x: 0.0, lambda x: np.zeros((3, 2)), x)
    with pytest.raises(TypeError, match="f must return a scalar"):
        nkt.assert_gradient(lambda x: x, lambda x: x, x)
    with pytest.raises(TypeError, match="exactly one"):
        nkt.assert_gradient(lambda x: 0.0, lambda x: x, x, inputs=[x])
    with pytest.raises(TypeError, match="floating"):
        nkt.assert_gradient(lambda x: 0.0, lambda x: x, np.zeros(3, dtype=int))


def test_a_wrong_mlp_backward_is_caught():
    """A gradient of the logits off by the batch's 1/N: through the whole backward, every parameter shows it."""
    case = find(nkt.mlps(dropout=False, n=(3, 8)), lambda case: True)
    v, y = case.v, case.y
    case.assert_backward(lambda z: nk.distillation_loss(z, v, y, 4.0, 0.5),
                         lambda z: nk.distillation_loss_grad(z, v, y, 4.0, 0.5))
    with pytest.raises(AssertionError, match=r"analytic / finite difference = \d"):
        case.assert_backward(lambda z: nk.distillation_loss(z, v, y, 4.0, 0.5),
                             lambda z: nk.distillation_loss_grad(z, v, y, 4.0, 0.5) * len(z))


# ----------------------------------------------------------------------------
# property helpers catch what they are for
# ----------------------------------------------------------------------------


def test_property_helpers_catch_the_bugs_they_are_for():
    rng = np.random.default_rng(5)
    z, v = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 2
    T = 3.0
    # a missing centring term: rows do not sum to 0, and the gradient is not 0 where q = p
    with pytest.raises(AssertionError, match=r"row \d+ of the gradient sums to .*centring term missing"):
        nkt.check_rows_sum_to_zero(lambda z, v: kd_grad_missing_p(z, v, T), z, v)
    with pytest.raises(AssertionError, match="sums to .*not 0"):
        nkt.check_rows_sum_to_zero(lambda z, v: brier_grad_missing_mean(z, v, T), z, v)
    with pytest.raises(AssertionError, match=r"grad\(z, z\) is .* not 0"):
        nkt.check_zero_at_match(lambda z, v: nk.kd_loss(z, v, T), lambda z, v: kd_grad_missing_p(z, v, T), z)
    # the soft cross-entropy H(p, q) = KL + H(p) has KL's gradient but is not 0 at a match
    with pytest.raises(AssertionError, match=r"f\(z, z\) = .* not 0"):
        nkt.check_zero_at_match(lambda z, v: float(-(nk.softmax(v, T) * nk.log_softmax(z, T)).sum(axis=1).mean()),
                                lambda z, v: nk.kd_loss_grad(z, v, T) / (T * T), z)
    # logit matching is not shift invariant, whereas everything built on a softmax is
    with pytest.raises(AssertionError, match="f is not invariant to adding a constant .* each row of z"):
        nkt.check_shift_invariance(nk.logit_matching_loss, z, v)
    # the high-temperature limit: a missing 1/T grows like T, a loss without the T^2 vanishes
    with pytest.raises(AssertionError, match="grow like T"):
        nkt.check_high_temperature_limit(kd_grad_missing_inverse_T, z, v)
    with pytest.raises(AssertionError, match=r"vanish like 1/T\^2"):
        nkt.check_high_temperature_limit(lambda z, v, T: nk.kd_loss_grad(z, v, T) / (T * T), z, v)
    with pytest.raises(ValueError, match="raise the temperatures"):
        nkt.check_high_temperature_limit(nk.kd_loss_grad, z * 100, v, (10.0, 100.0))
    # float32: log(softmax) overflows to -inf; summing p (log p - log q) loses a near-match's digits
    big = (rng.normal(size=(4, 6)) * 100).astype(np.float32)
    with pytest.raises(AssertionError, match="f in float32 is -inf"), np.errstate(divide="ignore"):
        nkt.check_float32_agrees(lambda z: np.log(nk.softmax(z)), big)
    near = z + 1e-3 * rng.normal(size=z.shape)
    with pytest.raises(AssertionError, match="float32 disagrees with float64"):
        nkt.check_float32_agrees(lambda z, v: (nk.softmax(v, T) * (nk.log_softmax(v, T) - nk.log_softmax(z, T))).sum(),
                                 z, near)
    # and nanokd's own pass them all
    nkt.check_rows_sum_to_zero(lambda z, v: nk.kd_loss_grad(z, v, T), z, v)
    nkt.check_zero_at_match(lambda z, v: nk.kd_loss(z, v, T), lambda z, v: nk.kd_loss_grad(z, v, T), z)
    nkt.check_shift_invariance(lambda z, v: nk.kd_loss(z, v, T), z, v, lambda z, v: nk.kd_loss_grad(z, v, T))
    nkt.check_high_temperature_limit(nk.kd_loss_grad, z, v)
    nkt.check_float32_agrees(lambda z, v: nk.kd_loss(z, v, T), z, near)
    with pytest.raises(AssertionError, match="is float64 for float32 inputs"):
        nkt.check_float32_agrees(lambda z: z.astype(np.float64), z)


# ----------------------------------------------------------------------------
# strategies draw what they say
# ----------------------------------------------------------------------------


@settings(max_examples=examples(30))
@given(z=nkt.logits(), pair=nkt.logit_pairs(n=3, c=(4, 6), dtype="float32"), batch=nkt.batches(),
       T=nkt.temperatures(), alpha=nkt.alphas())
def test_strategies_draw_what_they_say(z, pair, batch, T, alpha):
    assert z.dtype == np.float64 and z.ndim == 2 and 1 <= z.shape[0] <= 8 and 2 <= z.shape[1] <= 10
    assert np.isfinite(z).all()
    a, b = pair
    assert a.shape == b.shape and a.shape[0] == 3 and 4 <= a.shape[1] <= 6 and a.dtype == b.dtype == np.float32
    z, v, y = batch
    assert z.shape == v.shape and y.shape == (z.shape[0],) and y.dtype.kind == "i"
    assert ((0 <= y) & (y < z.shape[1])).all()
    assert 1.0 <= T <= 100.0 and 0.0 <= alpha <= 1.0


def test_strategies_reach_their_edges_and_relations():
    assert find(nkt.temperatures(), lambda T: T == 100.0) == 100.0
    assert find(nkt.temperatures(0.1, 100.0), lambda T: T == 0.1) == 0.1
    assert find(nkt.temperatures(), lambda T: 30 < T < 100 and T not in (50.0,)) < 100  # not only the specials
    assert find(nkt.alphas(), lambda a: a == 0.0) == 0.0 and find(nkt.alphas(), lambda a: a == 1.0) == 1.0
    assert find(nkt.logits(), lambda z: np.abs(z).max() > 300).size
    assert find(nkt.logits(), lambda z: np.abs(z).max() < 1e-2).size
    equal = find(nkt.logit_pairs(relations=("equal",)), lambda zv: True)
    np.testing.assert_array_equal(*equal)
    z, v = find(nkt.logit_pairs(relations=("shifted",), offset=0), lambda zv: zv[0].shape[1] > 2)
    np.testing.assert_allclose(nk.softmax(z), nk.softmax(v), rtol=1e-12, atol=1e-300)
    z, v = find(nkt.logit_pairs(relations=("near",), offset=0), lambda zv: True)
    assert 0 < np.abs(z - v).max() <= 0.2 * max(1.0, np.abs(z).max()) * 10
    tied = find(nkt.logits(patterns=("tied",), offset=0), lambda z: z.shape[1] > 3)
    assert len(np.unique(tied)) < tied.size
    with pytest.raises(TypeError, match="n must be"):
        nkt.logits(n="many")
    with pytest.raises(ValueError, match="min_value"):
        nkt.temperatures(0.0, 1.0)


@settings(max_examples=examples(10))
@given(case=nkt.mlps())
def test_mlp_cases_have_fixed_masks_and_no_kink_nearby(case):
    z1, z2 = case.logits(), case.logits()
    np.testing.assert_array_equal(z1, z2)  # the masks are kept
    assert case.model.dtype == np.float64 and z1.shape == (case.x.shape[0], case.model.sizes[-1])
    for linear in case.model.linears[:-1]:
        assert np.abs(linear.x @ linear.W + linear.b).min() >= case.margin
    for p, q in zip(case.params, case.model.params):  # the case's functions leave the model as they found it
        np.testing.assert_array_equal(p, q)


# ----------------------------------------------------------------------------
# profiles, and hypothesis as an optional dependency
# ----------------------------------------------------------------------------


def test_profiles_are_registered_and_examples_follow_them():
    ci, thorough = settings.get_profile("ci"), settings.get_profile("thorough")
    assert thorough.max_examples == 20 * ci.max_examples and ci.deadline is None
    assert examples(60) == round(60 * settings().max_examples / ci.max_examples
                                 * float(os.environ.get("NANOKD_EXAMPLES_SCALE", "1")))


def test_the_profile_asked_for_is_loaded(request):
    asked = request.config.getoption("hypothesis_profile", None) or "ci"
    assert settings().max_examples == settings.get_profile(asked).max_examples


def test_hypothesis_profile_thorough_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile",
                          "thorough", "tests/test_testing.py::test_the_profile_asked_for_is_loaded"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def test_importing_without_hypothesis_says_how_to_install_it():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import nanokd\n"  # nanokd itself does not need hypothesis
            "try:\n    import nanokd.testing\nexcept ImportError as e:\n    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ImportError: nanokd.testing needs hypothesis: pip install nanokd[test]" in out.stdout


def test_every_subpackage_of_nanokd_is_installed():
    """pyproject.toml lists the packages a wheel holds: nanokd.testing is a package of its own, and must be there."""
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nanokd").rglob("__init__.py"))
    assert "nanokd.testing" in found and sorted(listed) == found
