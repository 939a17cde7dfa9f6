"""The gradient checker itself: it passes right gradients, catches wrong ones, restores its inputs."""

import numpy as np
import pytest

import nanokd as nk


def test_passes_a_right_gradient_and_restores_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3))
    x0 = x.copy()
    res = nk.gradcheck(lambda: (np.sin(x) * x).sum(), [x], [np.cos(x) * x + np.sin(x)])
    assert res.max_rel_error < 1e-10 and res.ok()
    assert res.n_evaluations == 4 * x.size + 4 * 3
    np.testing.assert_array_equal(x, x0)  # bit for bit


@pytest.mark.parametrize("order", [2, 4])
def test_catches_a_wrong_gradient(order):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4))
    g = 2 * x
    g[2, 1] *= 1.001  # one entry off by 0.1 %
    full = nk.gradcheck(lambda: (x * x).sum(), [x], [g], order=order, directions=0)
    assert full.max_rel_error > 1e-4 and not full.ok()
    assert full.worst == "input 0, index (2, 1)"
    # the directional check alone needs only 2 * order evaluations and still notices
    directional = nk.gradcheck(lambda: (x * x).sum(), [x], [g], order=order, full=False, directions=2)
    assert directional.n_evaluations == 2 * order
    assert directional.max_rel_error > 1e-6


def test_distillation_loss_grad_acceptance_check():
    """The acceptance figure: a float64 check of distillation_loss_grad agrees below 1e-7."""
    rng = np.random.default_rng(2)
    z, v = rng.normal(size=(32, 10)) * 4, rng.normal(size=(32, 10)) * 4
    y = rng.integers(0, 10, size=32)
    for T in (1.0, 2.5, 20.0):
        g = nk.distillation_loss_grad(z, v, y, T, 0.9)
        res = nk.gradcheck(lambda: nk.distillation_loss(z, v, y, T, 0.9), [z], [g])
        assert res.max_rel_error < 1e-7, res


def test_argument_errors():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="same length"):
        nk.gradcheck(lambda: 0.0, [x], [])
    with pytest.raises(ValueError, match="shape"):
        nk.gradcheck(lambda: 0.0, [x], [np.zeros(4)])
    with pytest.raises(TypeError, match="float64"):
        nk.gradcheck(lambda: 0.0, [x.astype(np.float32)], [x])
    with pytest.raises(ValueError, match="order"):
        nk.gradcheck(lambda: 0.0, [x], [x], order=3)


def test_clear_kinks_moves_every_pre_activation_off_zero():
    rng = np.random.default_rng(3)
    model = nk.MLP([20, 16, 16, 3], dropout_input=0.2, dropout_hidden=0.5, seed=1, dtype="float64")
    x = rng.normal(size=(32, 20))
    model.forward(x, train=True)
    before = [np.abs(layer.x @ layer.W + layer.b).min() for layer in model.linears[:-1]]
    assert min(before) < 0.05  # the check below is not vacuous: 512 pre-activations per layer come this close
    dropouts = [layer for layer in model.layers if isinstance(layer, nk.Dropout)]
    masks = [d.mask.copy() for d in dropouts]
    nk.clear_kinks(model, x, 0.05)
    model.forward(x, train=True, keep_masks=True)
    for layer in model.linears[:-1]:
        assert np.abs(layer.x @ layer.W + layer.b).min() >= 0.05
    assert len(masks) == 3
    for old, d in zip(masks, dropouts):  # the masks the check will see are those drawn before
        np.testing.assert_array_equal(old, d.mask)


def test_clear_kinks_says_when_it_gives_up():
    model = nk.MLP([4, 3, 2], seed=0, dtype="float64")
    x = np.zeros((2, 4))  # every pre-activation is the bias, 0 at init
    with pytest.raises(RuntimeError, match="clear_kinks"):
        nk.clear_kinks(model, x, 0.1, max_tries=0)
