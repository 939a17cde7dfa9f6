"""The MLP's hand-written backward against finite differences, max-norm, dropout, files.

The backward's property test draws its MLPs with nanokd.testing.mlps and checks
them with nanokd.testing.assert_gradient, as a user would test a layer of their own.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanokd as nk
import nanokd.testing as nkt
from nanokd.testing import examples


def host(a):
    return nk.to_numpy(a)


def loss_and_grads(model, x, y, v, T, alpha, margin):
    """A distillation loss through the model, with fixed dropout masks, and its analytic gradients."""
    model.forward(x, train=True)  # draws the masks, kept from here on
    nk.clear_kinks(model, x, margin)
    z = model.forward(x, train=True, keep_masks=True)
    grads = [g.copy() for g in model.backward(nk.distillation_loss_grad(z, v, y, T, alpha))]

    def f():
        return nk.distillation_loss(model.forward(x, train=True, keep_masks=True), v, y, T, alpha)

    return f, grads


@settings(max_examples=examples(40))
@given(data=st.data(), T=nkt.temperatures(0.5, 20.0), alpha=nkt.alphas())
def test_mlp_backward_equals_finite_differences(xp, data, T, alpha):
    """Every parameter of an MLP of 1 to 3 hidden layers, with and without dropout, for the distillation loss.

    nkt.mlps draws the dropout masks once and keeps them, and moves every ReLU 0.02 from its kink; the
    check steps the weights by up to 4 eps = 4e-4 in all."""
    case = data.draw(nkt.mlps(device="cpu" if xp is np else "cuda"), label="case")
    v, y = case.v, case.y
    report = case.assert_backward(lambda z: nk.distillation_loss(z, v, y, T, alpha),
                                  lambda z: nk.distillation_loss_grad(z, v, y, T, alpha),
                                  sample=36, directions=2, seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
    grads = case.backward(lambda z: nk.distillation_loss_grad(z, v, y, T, alpha))(*case.params)
    gmax = max(float(abs(g).max()) for g in grads)
    if gmax == 0:
        # dropout or ReLU silenced every path: the finite differences see only rounding noise
        assert abs(report.numeric) < 1e-10, report
    else:
        # within 1e-7 of the largest gradient, or within what the finite differences resolve when the whole
        # gradient is tiny (a dead ReLU and alpha ~ 1e-7 once left max |g| = 1.5e-8, resolved to 1.9e-11)
        assert report.max_rel_error < max(1e-7, report.tolerance / gmax), report


def test_784_30_30_10_backward_full_check():
    """The acceptance check: every parameter of a 784-30-30-10 MLP with dropout, checked elementwise."""
    rng = np.random.default_rng(0)
    model = nk.MLP([784, 30, 30, 10], dropout_input=0.2, dropout_hidden=0.5, seed=0, dtype="float64")
    x = rng.uniform(0, 1, size=(3, 784)) * (rng.uniform(size=(3, 784)) < 0.2)  # sparse, like MNIST
    v, y = rng.normal(size=(3, 10)) * 3, rng.integers(0, 10, size=3)
    f, grads = loss_and_grads(model, x, y, v, T=20.0, alpha=0.7, margin=0.02)
    result = nk.gradcheck(f, model.params, grads, eps=1e-4, max_elements=400, directions=3)
    assert result.max_rel_error < 1e-7, result


def test_fused_backward_equals_layer_by_layer(xp):
    """MLP.backward equals the chain rule applied by hand, one formula per layer."""
    rng = np.random.default_rng(1)
    model = nk.MLP([6, 5, 4, 3], dropout_input=0.2, dropout_hidden=0.5, seed=3, dtype="float64",
                   device="cpu" if xp is np else "cuda")
    x = xp.asarray(rng.uniform(-1, 1, size=(7, 6)))
    z = model.forward(x, train=True)
    dz = xp.asarray(rng.normal(size=z.shape))
    grads = [host(g).copy() for g in model.backward(dz.copy())]

    # the same forward, by hand
    (W1, b1, W2, b2, W3, b3) = [host(p) for p in model.params]
    drops = [layer for layer in model.layers if isinstance(layer, nk.Dropout)]
    m0, m1, m2 = (host(d.mask) for d in drops)
    h0 = host(x) * m0
    a1 = h0 @ W1 + b1
    h1 = np.maximum(a1, 0) * m1
    a2 = h1 @ W2 + b2
    h2 = np.maximum(a2, 0) * m2
    np.testing.assert_allclose(host(z), h2 @ W3 + b3, rtol=1e-13)
    # and backward, by hand
    d = host(dz)
    dW3, db3 = h2.T @ d, d.sum(0)
    d = (d @ W3.T) * m2 * (a2 > 0)
    dW2, db2 = h1.T @ d, d.sum(0)
    d = (d @ W2.T) * m1 * (a1 > 0)
    dW1, db1 = h0.T @ d, d.sum(0)
    for mine, ref in zip(grads, [dW1, db1, dW2, db2, dW3, db3]):
        np.testing.assert_allclose(mine, ref, rtol=1e-12, atol=1e-14)


def test_dropout_masks_and_scaling():
    model = nk.MLP([1000, 2000, 10], dropout_input=0.2, dropout_hidden=0.5, seed=0)
    x = np.ones((4, 1000), dtype=np.float32)
    x_before = x.copy()
    model.forward(x, train=True)
    assert np.array_equal(x, x_before)  # the input is never modified
    m_in, m_hid = (layer.mask for layer in model.layers if isinstance(layer, nk.Dropout))
    # inverted dropout: kept units are scaled by 1/(1 - p), the rest are 0
    assert set(np.unique(m_in)) == {0.0, np.float32(1 / 0.8)}
    assert set(np.unique(m_hid)) == {0.0, np.float32(2.0)}
    assert abs((m_in == 0).mean() - 0.2) < 0.01 and abs((m_hid == 0).mean() - 0.5) < 0.01
    # no dropout at test time: deterministic
    np.testing.assert_array_equal(model.forward(x), model.forward(x))


def test_dropout_layer_on_its_own():
    """Training is the default; a new mask each call unless kept; identity in evaluation and at p = 0; in place."""
    rng = np.random.default_rng(0)
    x = rng.random((6, 50), dtype=np.float32) + 0.5
    x_before = x.copy()
    layer = nk.Dropout(0.5)
    first = layer.forward(x, rng).copy()
    assert first.dtype == x.dtype and layer.mask.dtype == x.dtype
    assert 0.3 < (first == 0).mean() < 0.7
    second = layer.forward(x, rng)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(layer.forward(x, rng, keep_mask=True), second)
    np.testing.assert_array_equal(x, x_before)  # not in place: x is left as it was
    dh = np.full_like(x, 3.0)
    np.testing.assert_array_equal(layer.backward(dh), np.where(second == 0, 0, 3.0 * 2))
    assert layer.forward(x, rng, train=False) is x
    np.testing.assert_array_equal(layer.backward(np.full_like(x, 3.0)), 3.0)  # no mask in evaluation
    fresh = nk.Dropout(0.5)  # keep_mask with no mask yet: one is drawn
    assert (fresh.forward(x, rng, keep_mask=True) == 0).any() and fresh.mask.shape == x.shape
    state = rng.bit_generator.state
    assert nk.Dropout(0.0).forward(x, rng) is x
    assert rng.bit_generator.state == state  # p = 0 draws nothing
    y = x.copy()
    h = nk.Dropout(0.5, inplace=True).forward(y, rng)
    assert h is y and (y == 0).any()  # in place: into the buffer of the layer below


def test_a_layer_reuses_its_buffers():
    """A layer's output is one buffer, reused by the next call of that shape and dtype (the loop allocates nothing)."""
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(5, 3)).astype(np.float32), np.zeros(3, dtype=np.float32)
    layer = nk.Linear(W, b)
    x1, x2 = rng.random((4, 5), dtype=np.float32), rng.random((4, 5), dtype=np.float32)
    a1 = layer.forward(x1)
    a2 = layer.forward(x2)
    assert a2 is a1
    np.testing.assert_allclose(a2, x2 @ W + b, rtol=1e-6)
    dx1 = layer.backward(np.ones((4, 3), dtype=np.float32))
    assert layer.backward(np.ones((4, 3), dtype=np.float32)) is dx1
    a3 = layer.forward(x1[:2])  # another shape: another buffer, the right size
    assert a3.shape == (2, 3) and a3 is not a1
    relu = nk.ReLU()
    a = np.array([[-1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    h = relu.forward(a)
    assert h is a and np.array_equal(a, [[0, 2], [3, 0]])  # in place, into the buffer of the Linear before it


def test_backward_does_not_compute_the_gradient_of_the_input():
    """dL/dx of the input images is the largest product of a backward and no parameter needs it: it is skipped."""
    model = nk.MLP([20, 8, 3], dropout_input=0.2, seed=0)
    first, calls = model.linears[0], []
    backward = first.backward

    def spy(da, need_dx=True):
        calls.append(need_dx)
        return backward(da, need_dx)

    first.backward = spy
    x = np.random.default_rng(0).random((5, 20), dtype=np.float32)
    model.forward(x, train=True)
    model.backward(np.ones((5, 3), dtype=np.float32))
    assert calls == [False] and calls[0] is False


def test_the_layers_of_a_model_with_and_without_dropout():
    """Dropout layers exist only where a drop probability is > 0: input, then Linear-ReLU(-Dropout) blocks."""
    plain = nk.MLP([6, 5, 4, 3])
    assert [type(layer).__name__ for layer in plain.layers] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    both = nk.MLP([6, 5, 4, 3], dropout_input=0.2, dropout_hidden=0.5)
    assert [type(layer).__name__ for layer in both.layers] == ["Dropout", "Linear", "ReLU", "Dropout", "Linear",
                                                               "ReLU", "Dropout", "Linear"]
    assert [type(layer).__name__ for layer in nk.MLP([6, 5, 3], dropout_hidden=0.5).layers] == [
        "Linear", "ReLU", "Dropout", "Linear"]
    assert [type(layer).__name__ for layer in nk.MLP([6, 5, 3], dropout_input=0.5).layers] == [
        "Dropout", "Linear", "ReLU", "Linear"]


def test_same_seed_same_model_and_masks():
    a = nk.MLP([20, 8, 3], dropout_hidden=0.5, seed=7)
    b = nk.MLP([20, 8, 3], dropout_hidden=0.5, seed=7)
    c = nk.MLP([20, 8, 3], dropout_hidden=0.5, seed=8)
    x = np.random.default_rng(0).random((5, 20), dtype=np.float32)
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a.forward(x, train=True), b.forward(x, train=True))
    assert not np.array_equal(a.params[0], c.params[0])


def test_forward_returns_a_fresh_array():
    model = nk.MLP([4, 3, 2], seed=0)
    rng = np.random.default_rng(0)
    x1, x2 = rng.random((5, 4), dtype=np.float32), rng.random((5, 4), dtype=np.float32)
    z1 = model.forward(x1)
    z1_copy = z1.copy()
    model.forward(x2)
    np.testing.assert_array_equal(z1, z1_copy)


@given(c=st.floats(0.1, 5.0), scale=st.floats(0.1, 10.0), seed=st.integers(0, 1000))
@settings(max_examples=examples(30), deadline=None)
def test_max_norm_projects_columns(xp, c, scale, seed):
    rng = np.random.default_rng(seed)
    W0 = rng.normal(size=(30, 12)) * scale
    W = xp.asarray(W0)
    nk.max_norm_(W, c)
    norms0, norms = np.linalg.norm(W0, axis=0), np.linalg.norm(host(W), axis=0)
    assert (norms <= c * (1 + 1e-12)).all()
    # columns inside the ball are untouched; the others are scaled onto its surface, direction kept
    inside = norms0 <= c
    np.testing.assert_array_equal(host(W)[:, inside], W0[:, inside])
    np.testing.assert_allclose(norms[~inside], c, rtol=1e-12)
    np.testing.assert_allclose(host(W)[:, ~inside] * (norms0[~inside] / c), W0[:, ~inside], rtol=1e-12)


def test_model_max_norm_applies_to_hidden_units_only():
    model = nk.MLP([50, 40, 30, 10], max_norm=0.5, seed=0)
    for p in model.params[::2]:
        p *= 10
    model.apply_max_norm()
    W1, W2, W3 = model.params[0], model.params[2], model.params[4]
    assert (np.linalg.norm(W1, axis=0) <= 0.5 * (1 + 1e-6)).all()
    assert (np.linalg.norm(W2, axis=0) <= 0.5 * (1 + 1e-6)).all()
    assert (np.linalg.norm(W3, axis=0) > 0.5).all()  # the output layer is not constrained


def test_float32_forward_matches_float64():
    m32 = nk.MLP([784, 64, 64, 10], seed=0, dtype="float32")
    m64 = nk.MLP([784, 64, 64, 10], seed=0, dtype="float64")
    x = np.random.default_rng(0).random((16, 784))
    z32, z64 = m32.forward(x.astype(np.float32)), m64.forward(x)
    assert z32.dtype == np.float32
    np.testing.assert_allclose(z32, z64, rtol=0, atol=1e-4 * np.abs(z64).max())


def test_save_load_roundtrip(tmp_path):
    model = nk.MLP([12, 7, 3], dropout_input=0.1, dropout_hidden=0.3, max_norm=2.0, seed=5)
    path = tmp_path / "sub" / "m.npz"
    model.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]  # no temp file left behind
    loaded = nk.MLP.load(path)
    assert loaded.config == model.config
    assert loaded.config["max_norm"] == 2.0 and loaded.max_norm == 2.0  # the constraint survives the file
    for p, q in zip(model.params, loaded.params):
        np.testing.assert_array_equal(p, q)
    x = np.random.default_rng(0).random((3, 12), dtype=np.float32)
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))


def test_init_std_sets_the_spread_of_every_layer_and_survives_save_and_load(tmp_path):
    he = nk.MLP([784, 400, 10], seed=2)
    small = nk.MLP([784, 400, 10], seed=2, init_std=0.01)
    assert "init_std" not in he.config and small.config["init_std"] == 0.01
    assert abs(he.params[0].std() - (2 / 784) ** 0.5) < 1e-3 and abs(he.params[2].std() - (2 / 400) ** 0.5) < 3e-3
    for W in small.params[0::2]:
        assert abs(W.std() - 0.01) < 5e-4
    np.testing.assert_allclose(small.params[0], he.params[0] * (0.01 / (2 / 784) ** 0.5), rtol=1e-5)  # same draws
    small.save(tmp_path / "m.npz")
    assert nk.MLP.load(tmp_path / "m.npz").config == small.config
    with pytest.raises(ValueError, match="init_std"):
        nk.MLP([4, 3], init_std=0.0)


def test_load_rejects_a_foreign_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a nanokd model"):
        nk.MLP.load(path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sizes"):
        nk.MLP([784])
    for dtype in ["float16", "bogus", None, np.int32]:
        with pytest.raises(ValueError, match="dtype"):
            nk.MLP([4, 2], dtype=dtype)
    with pytest.raises(ValueError, match="dropout_hidden must be a drop probability"):
        nk.MLP([4, 3, 2], dropout_hidden=1.0)
    with pytest.raises(ValueError, match="dropout_input must be a drop probability"):
        nk.MLP([4, 3, 2], dropout_input=-0.3)
    with pytest.raises(ValueError, match="dropout probability"):
        nk.Dropout(1.0)
    for max_norm in (0, -1.0, float("inf"), True, "3"):
        with pytest.raises(ValueError, match="max_norm must be None or a finite number > 0"):
            nk.MLP([4, 2], max_norm=max_norm)
    with pytest.raises(ValueError, match="device"):
        nk.MLP([4, 2], device="tpu")
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\)"):
        nk.MLP([4, 2]).forward(np.zeros((3, 5), dtype=np.float32))
    model = nk.MLP([4, 3, 2])
    with pytest.raises(ValueError, match="expected 4 arrays, got 2"):
        model.load_params([np.zeros((4, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"shape mismatch: model \(4, 3\), file \(3, 4\)"):
        model.load_params([np.zeros((3, 4)), np.zeros(3), np.zeros((3, 2)), np.zeros(2)])


@pytest.mark.skipif(not nk.cuda_available(), reason="CuPy with a CUDA GPU is not available here")
def test_a_batch_on_another_device_is_refused():
    import cupy

    with pytest.raises(TypeError, match="x lives on cuda but the model on cpu"):
        nk.MLP([4, 2]).forward(cupy.zeros((3, 4), dtype=cupy.float32))
    with pytest.raises(TypeError, match="x lives on cpu but the model on cuda"):
        nk.MLP([4, 2], device="cuda").forward(np.zeros((3, 4), dtype=np.float32))


def test_default_seed_is_0():
    for p, q in zip(nk.MLP([6, 4, 2]).params, nk.MLP([6, 4, 2], seed=0).params):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_input_of_another_dtype_is_cast_to_the_models_first(dtype):
    """A float64 batch into a float32 model gives the logits of the batch rounded to float32, and vice versa."""
    other = np.float64 if dtype == "float32" else np.float32
    model = nk.MLP([6, 5, 3], dropout_input=0.2, dtype=dtype, seed=2)
    x = np.random.default_rng(0).random((4, 6)).astype(other)
    z = model.forward(x)
    assert z.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(z, model.forward(x.astype(dtype)))
    model.reseed(5)
    z_train = model.forward(x, train=True)
    model.reseed(5)
    np.testing.assert_array_equal(z_train, model.forward(x.astype(dtype), train=True))


def test_dtype_may_be_named_or_given_as_a_numpy_type():
    for dtype in ["float64", np.float64, np.dtype("float64")]:
        model = nk.MLP([4, 3, 2], dtype=dtype)
        assert model.dtype == np.float64 and model.config["dtype"] == "float64"


@pytest.mark.skipif(nk.cuda_available(), reason="checks the error raised where CuPy or a GPU is missing")
def test_cuda_without_cupy_raises_a_clear_error():
    with pytest.raises(RuntimeError, match="CuPy"):
        nk.MLP([4, 2], device="cuda")
    assert nk.MLP([4, 2], device="auto").device == "cpu"
