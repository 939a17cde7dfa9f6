"""nanokd.folded, the CPU fast path: the same update as MLP.backward followed by SGD.step.

The folded path computes u <- momentum u + x^T delta in one BLAS product and
W <- W - lr u in one axpy; the plain path computes dW, then SGD's formula.
The two orders of the same arithmetic agree to rounding: in float64 to about
1e-13 after several steps, in float32 to a few units in the last place.
"""

import numpy as np
import pytest

import nanokd as nk
from nanokd import folded
from nanokd.losses import distillation_loss_and_grad
from nanokd.trainer import train_model, train_step


def _pair(sizes, dtype, **kw):
    """Two identical models, each with its momentum SGD."""
    models = [nk.MLP(sizes, seed=3, dtype=dtype, **kw) for _ in range(2)]
    return [(m, nk.SGD(m.params, lr=0.05, momentum=0.9)) for m in models]


def _batch(sizes, dtype, n=17, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, sizes[0])).astype(dtype)
    return x, rng.integers(0, sizes[-1], n), (3 * rng.standard_normal((n, sizes[-1]))).astype(dtype)


def _worst(a, b):
    """The largest difference between the two models' parameters, relative to each parameter's largest entry."""
    return max(float(np.abs(p - q).max() / np.abs(p).max()) for p, q in zip(a.params, b.params))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("sizes, kw", [
    ([12, 9, 4], {}),
    ([12, 9, 7, 4], dict(dropout_input=0.2, dropout_hidden=0.5)),
    ([12, 4], {}),
    ([30, 20, 20, 20, 5], dict(dropout_hidden=0.3)),
], ids=["one-hidden", "dropout", "no-hidden", "three-hidden"])
def test_backward_and_step_equals_backward_then_sgd_step(dtype, tol, sizes, kw):
    (a, opt_a), (b, opt_b) = _pair(sizes, dtype, **kw)
    for step in range(6):
        x, y, v = _batch(sizes, dtype, seed=step)
        opt_a.lr = opt_b.lr = 0.05 * 0.9 ** step  # the schedules change lr and momentum between steps
        opt_a.momentum = opt_b.momentum = min(0.9, 0.5 + 0.1 * step)
        for model, opt, take in ((a, opt_a, "plain"), (b, opt_b, "folded")):
            model.rng = np.random.default_rng(step)  # the same dropout masks in both
            z = model.forward(x, train=True)
            _, g = distillation_loss_and_grad(z, v, y, 4.0, 0.7, check=False)
            if take == "plain":
                opt.step(model.backward(g))
            else:
                folded.backward_and_step(model, opt, g)
    assert _worst(a, b) < tol
    for u, w in zip(opt_a.velocity, opt_b.velocity):
        np.testing.assert_allclose(w, u, rtol=0, atol=tol * float(np.abs(u).max()))
    assert _worst(a, nk.MLP(sizes, seed=3, dtype=dtype, **kw)) > 1e-3  # and both did train


def test_the_float32_difference_is_rounding_not_arithmetic():
    """float32 folded vs plain differ by far less than float32 plain vs float64 plain: rounding only."""
    sizes = [40, 30, 30, 10]
    (a32, o32), (b32, p32) = _pair(sizes, np.float32)
    (a64, o64), _ = _pair(sizes, np.float64)
    for step in range(5):
        x, y, v = _batch(sizes, np.float64, n=32, seed=step)
        for model, opt, fast in ((a32, o32, False), (b32, p32, True), (a64, o64, False)):
            xx = x.astype(model.dtype)
            with (folded.disabled() if not fast else _nothing()):
                train_step(model, opt, xx, y, v.astype(model.dtype), 4.0, 0.5)
    between_orders = _worst(a32, b32)
    assert 0 < between_orders < 1e-5
    assert _worst(a64, a32) > 0 and between_orders < 10 * _worst(a64, a32)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_train_step_takes_the_folded_path_for_momentum_sgd(monkeypatch):
    calls = []
    real = folded.backward_and_step
    monkeypatch.setattr(folded, "backward_and_step", lambda *a: calls.append(1) or real(*a))
    sizes = [12, 9, 4]
    (model, opt), _ = _pair(sizes, np.float32)
    x, y, v = _batch(sizes, np.float32)
    train_step(model, opt, x, y)
    train_step(model, opt, x, y, v, 2.0, 0.5)
    assert calls == [1, 1]
    with folded.disabled():
        train_step(model, opt, x, y)
    assert calls == [1, 1]
    assert folded.active(model, opt)


@pytest.mark.parametrize("make, why", [
    (lambda m: nk.SGD(m.params, lr=0.1), "no momentum"),
    (lambda m: nk.SGD(m.params, lr=0.1, momentum=0.9, nesterov=True), "Nesterov"),
    (lambda m: nk.SGD(m.params, lr=0.1, momentum=0.9, weight_decay=1e-4), "weight decay"),
    (lambda m: nk.Adam(m.params), "another optimizer"),
    (lambda m: nk.SGD(m.params[:2], lr=0.1, momentum=0.9), "some of the parameters only"),
    (lambda m: nk.SGD([p.copy() for p in m.params], lr=0.1, momentum=0.9), "other arrays than the model's"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_anything_but_plain_momentum_sgd_on_the_models_parameters_takes_the_plain_path(make, why):
    model = nk.MLP([12, 9, 4], seed=0)
    assert not folded.active(model, make(model)), why


def test_a_gradient_of_another_dtype_takes_the_plain_path():
    """BLAS would work on a converted copy and leave u and W alone; the plain path converts into them."""
    sizes = [12, 9, 4]
    (a, opt_a), (b, opt_b) = _pair(sizes, np.float32)
    x, y, v = _batch(sizes, np.float32)
    for model in (a, b):
        model.forward(x, train=True)
    g = np.random.default_rng(1).standard_normal((len(x), 4))  # float64
    opt_a.step(a.backward(g.copy()))
    folded.backward_and_step(b, opt_b, g.copy())
    assert _worst(a, b) == 0 and _worst(a, nk.MLP(sizes, seed=3, dtype=np.float32)) > 0


def test_folded_training_keeps_max_norm_and_resumes_bit_for_bit(tmp_path):
    """train_model on the folded path: the max-norm projection still follows every step, and a resume is exact."""
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 20), dtype=np.float32), rng.integers(0, 3, 200)
    kw = dict(epochs=3, batch_size=16, lr=0.2, momentum=0.9, progress=False, log=None, seed=4)
    whole = nk.MLP([20, 16, 16, 3], max_norm=0.5, seed=2)
    train_model(whole, x, y, **kw)
    for linear in whole.linears[:-1]:
        assert np.sqrt((linear.W.astype(np.float64) ** 2).sum(axis=0)).max() <= 0.5 * (1 + 1e-6)
    ckpt = tmp_path / "run.ckpt.npz"
    part = nk.MLP([20, 16, 16, 3], max_norm=0.5, seed=2)
    train_model(part, x, y, **{**kw, "epochs": 2}, checkpoint_path=ckpt)
    resumed = nk.MLP([20, 16, 16, 3], max_norm=0.5, seed=2)
    train_model(resumed, x, y, **kw, checkpoint_path=ckpt, resume=True)
    for p, q in zip(whole.params, resumed.params):
        np.testing.assert_array_equal(p, q)
