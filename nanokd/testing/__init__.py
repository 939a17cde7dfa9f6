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

It has three parts, a module each (a worked example is in docs/testing.md):

**Strategies** (:mod:`nanokd.testing.strategies`) that draw what a loss is called with: :func:`logits`,
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

**assert_gradient** (:mod:`nanokd.testing.gradients`) compares an analytic gradient with central differences
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
steadily, and looks smooth; ``scale=`` tells the check that size.  The
measurements themselves are in :mod:`nanokd.testing.noise`.

**Property helpers** (:mod:`nanokd.testing.properties`), one per law that distillation losses obey, each a
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
except ImportError as error:  # pragma: no cover - exercised in a subprocess by tests/test_testing.py
    raise ImportError("nanokd.testing needs hypothesis: pip install nanokd[test]  "
                      "(or pip install hypothesis)") from error

import os

from .gradients import GradientReport, assert_gradient
from .properties import check_float32_agrees, check_high_temperature_limit, check_rows_sum_to_zero, \
    check_shift_invariance, check_zero_at_match
from .strategies import PATTERNS, RELATIONS, MLPCase, alphas, batches, labels, logit_pairs, logits, mlps, temperatures

__all__ = [
    "GradientReport", "MLPCase", "PATTERNS", "RELATIONS", "alphas", "assert_gradient", "batches", "check_float32_agrees",
    "check_high_temperature_limit", "check_rows_sum_to_zero", "check_shift_invariance", "check_zero_at_match",
    "examples", "labels", "logit_pairs", "logits", "mlps", "register_profiles", "temperatures",
]

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
