"""Optimizers against their update formulas written out in plain NumPy, and the schedules."""

import numpy as np
import pytest

import nanokd as nk


def draws(seed, shapes=((5, 3), (3,))):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                            (0.9, True, 0.0), (0.5, False, 1e-2), (0.95, True, 1e-3)])
def test_sgd_matches_its_formula(xp, momentum, nesterov, weight_decay):
    params = [xp.asarray(p) for p in draws(0)]
    ref = [p.copy() for p in draws(0)]
    opt = nk.SGD(params, lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    u = [np.zeros_like(p) for p in ref]
    for step in range(5):
        grads = draws(100 + step)
        if step == 3:
            opt.lr, opt.momentum = 0.05, momentum / 2  # schedules change these between steps
        lr, mu = opt.lr, opt.momentum
        opt.step([xp.asarray(g.copy()) for g in grads])  # the optimizer uses its gradients as scratch
        for w, g, ui in zip(ref, grads, u):
            g = g + weight_decay * w
            ui *= mu
            ui += g
            w -= lr * (g + mu * ui if nesterov else ui)
    for p, w in zip(params, ref):
        np.testing.assert_allclose(nk.to_numpy(p), w, rtol=1e-14)


def test_adam_matches_its_formula(xp):
    params = [xp.asarray(p) for p in draws(1)]
    ref = [p.copy() for p in draws(1)]
    opt = nk.Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    m = [np.zeros_like(p) for p in ref]
    s = [np.zeros_like(p) for p in ref]
    for t in range(1, 6):
        grads = draws(200 + t)
        opt.step([xp.asarray(g.copy()) for g in grads])  # the optimizer uses its gradients as scratch
        for w, g, mi, si in zip(ref, grads, m, s):
            mi[...] = 0.8 * mi + 0.2 * g
            si[...] = 0.99 * si + 0.01 * g * g
            w -= 0.01 * (mi / (1 - 0.8 ** t)) / (np.sqrt(si / (1 - 0.99 ** t)) + 1e-6)
    for p, w in zip(params, ref):
        np.testing.assert_allclose(nk.to_numpy(p), w, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda p: nk.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: nk.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda p: nk.Adam(p, lr=0.1)])
def test_optimizers_minimise_a_quadratic(make):
    """f(w) = 1/2 ||A w - b||^2 has gradient A^T (A w - b); every optimizer must find its minimum."""
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(8, 4)) / 3, rng.normal(size=8)
    w = np.zeros(4)
    opt = make([w])
    for _ in range(3000):
        opt.step([A.T @ (A @ w - b)])
    np.testing.assert_allclose(w, np.linalg.lstsq(A, b, rcond=None)[0], atol=1e-6)


@pytest.mark.parametrize("make", [lambda p: nk.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: nk.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda p: nk.Adam(p, lr=0.01, weight_decay=1e-3)])
def test_resumed_optimizer_continues_exactly(make):
    """Three steps, state saved and loaded into a fresh optimizer, three more: as six steps in one go."""
    straight = [p.copy() for p in draws(4)]
    opt = make(straight)
    for step in range(6):
        opt.step(draws(10 + step))
    first = [p.copy() for p in draws(4)]
    opt = make(first)
    for step in range(3):
        opt.step(draws(10 + step))
    resumed = [p.copy() for p in first]
    other = make(resumed)
    other.load_state([np.array(a) for a in opt.state()])
    for step in range(3, 6):
        other.step(draws(10 + step))
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_schedules():
    assert nk.exponential_decay(1.0, 0.5, 0) == 1.0
    assert nk.exponential_decay(2.0, 0.9, 3) == pytest.approx(2.0 * 0.729)
    assert nk.linear_ramp(0.5, 0.99, 10, 0) == 0.5
    assert nk.linear_ramp(0.5, 0.99, 10, 5) == pytest.approx(0.745)
    assert nk.linear_ramp(0.5, 0.99, 10, 10) == 0.99
    assert nk.linear_ramp(0.5, 0.99, 10, 500) == 0.99


W = [np.zeros(2)]


@pytest.mark.parametrize("make, message", [
    (lambda: nk.SGD(W, lr=0), "lr must be > 0, got 0"),
    (lambda: nk.SGD(W, lr=0.1, momentum=1.0), "momentum must be in [0, 1), got 1.0"),
    (lambda: nk.SGD(W, lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: nk.SGD(W, lr=0.1, weight_decay=-1.0), "weight_decay must be >= 0, got -1.0"),
    (lambda: nk.SGD(W, lr=0.1).step([np.zeros(2), np.zeros(2)]), "expected 1 gradients, got 2"),
    (lambda: nk.SGD(W, lr=0.1).step([np.zeros(3)]), "grads[0] has shape (3,), but params[0] has shape (2,)"),
    (lambda: nk.SGD(W, lr=0.1).step([[0.0, 0.0]]), "grads[0] has shape list, but params[0] has shape (2,)"),
    (lambda: nk.Adam(W, lr=0), "lr must be > 0, got 0"),
    (lambda: nk.Adam(W, betas=(1.0, 0.9)), "betas must be in [0, 1), got (1.0, 0.9)"),
    (lambda: nk.Adam(W, betas=(0.9, 1.0)), "betas must be in [0, 1), got (0.9, 1.0)"),
    (lambda: nk.Adam(W, eps=0), "eps must be > 0, got 0"),
    (lambda: nk.Adam(W, weight_decay=-1e-4), "weight_decay must be >= 0, got -0.0001"),
])
def test_bad_arguments_are_refused_with_a_message_naming_them(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value) == message


def test_adam_defaults_and_the_edges_of_its_betas():
    """Adam's defaults are the paper's (lr 1e-3, betas (0.9, 0.999), eps 1e-8); betas of 0 are allowed."""
    opt = nk.Adam([np.zeros(2)])
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert nk.Adam([np.zeros(2)], betas=(0.0, 0.0)).betas == (0.0, 0.0)


def test_a_ramp_of_one_epoch_starts_at_start():
    assert nk.linear_ramp(0.5, 0.9, 1, 0) == 0.5
    assert nk.linear_ramp(0.5, 0.9, 1, 1) == 0.9
    assert nk.linear_ramp(0.5, 0.9, 0, 0) == 0.9
