"""The fast paths equal the plain formulas they stand for.

* dropout keep masks drawn from raw random bits (layers.bernoulli_keep) are the
  masks of ``rng.random(shape, dtype) >= p``, bit for bit;
* the optimizers' cache-sized pieces (optim.pieces) give the same update,
  element for element, as the formula applied to whole arrays;
* the training loop's distillation_loss_and_grad gives distillation_loss and
  distillation_loss_grad, bit for bit (its GPU kernel: tests/test_fused.py);
* cross_entropy_and_grad gives cross_entropy and cross_entropy_grad, bit for bit.
"""

import numpy as np
import pytest

import nanokd as nk
from nanokd import optim
from nanokd.layers import bernoulli_keep


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1 / 3, 0.9, 0.999999, 1 - 2.0 ** -26])
@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox])
def test_keep_mask_from_raw_bits_equals_the_plain_formula(dtype, p, bit_generator):
    fast = np.random.Generator(bit_generator(123))
    plain = np.random.Generator(bit_generator(123))
    # several draws in a row: the streams stay in step, also after odd counts (3, 5x7)
    for shape in [(128, 784), (64, 1200), (3,), (4, 6), (5, 7), (10,), (8,)]:
        keep = bernoulli_keep(fast, p, shape, np.dtype(dtype))
        assert keep.dtype == bool and keep.shape == shape
        np.testing.assert_array_equal(keep, plain.random(shape, dtype=dtype) >= p)


def test_keep_mask_after_a_leftover_half_word_and_other_generators_fall_back_correctly():
    # a float32 drawn by someone else leaves half of a 64-bit word for the next draw
    fast, plain = np.random.default_rng(0), np.random.default_rng(0)
    fast.random(1, dtype=np.float32), plain.random(1, dtype=np.float32)
    for shape in [(6,), (128, 784), (999,), (4, 4)]:
        np.testing.assert_array_equal(bernoulli_keep(fast, 0.3, shape, np.dtype(np.float32)),
                                      plain.random(shape, dtype=np.float32) >= 0.3)
    # MT19937 makes 32 bits at a time: the plain formula is used, and it is the plain formula
    a, b = np.random.Generator(np.random.MT19937(5)), np.random.Generator(np.random.MT19937(5))
    np.testing.assert_array_equal(bernoulli_keep(a, 0.4, (7, 9), np.dtype(np.float32)),
                                  b.random((7, 9), dtype=np.float32) >= 0.4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bit_generator, shape", [(np.random.PCG64, (64,)), (np.random.PCG64, (63,)),
                                                  (np.random.MT19937, (64,))])
def test_keep_mask_at_the_boundary_u_equal_to_p_and_just_below_it(dtype, bit_generator, shape):
    """u >= p keeps a unit whose u is p, and drops one whose u is p's next float down, on every path.

    (64,) from PCG64 takes the raw-bits path, (63,) (an odd float32 count) and
    MT19937 the plain formula.  For u in [1/4, 1/2) the next float up is
    u + 2^-25 in float32 (2^-54 in float64): a comparison made on one more
    bit than the dtype has sees a difference there.
    """
    dtype = np.dtype(dtype)
    u = np.random.Generator(bit_generator(9)).random(shape, dtype=dtype)
    candidates = u[(u >= 0.25) & (u < 0.5)]
    assert candidates.size >= 8
    for p in candidates:
        for q in (p, np.nextafter(p, dtype.type(1))):
            keep = bernoulli_keep(np.random.Generator(bit_generator(9)), q, shape, dtype)
            np.testing.assert_array_equal(keep, u >= q)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keep_mask_of_an_even_count_from_a_32_bit_generator_is_the_plain_formula(dtype):
    """MT19937 makes 32 bits at a time, so its raw outputs are not NumPy's floats' bits: the plain formula runs."""
    a, b = np.random.Generator(np.random.MT19937(5)), np.random.Generator(np.random.MT19937(5))
    for shape in [(8, 10), (128, 300)]:
        np.testing.assert_array_equal(bernoulli_keep(a, 0.4, shape, np.dtype(dtype)),
                                      b.random(shape, dtype=dtype) >= 0.4)


@pytest.mark.parametrize("p", [0.3, 1 - 2.0 ** -26])
def test_keep_mask_into_a_reused_buffer(p):
    """Given ``bufs``, the indicators go into one boolean buffer, reused by the next call of that shape."""
    bufs, plain = {}, np.random.default_rng(1)
    rng = np.random.default_rng(1)
    first = bernoulli_keep(rng, p, (8, 10), np.dtype(np.float32), np, bufs)
    assert first.dtype == bool
    np.testing.assert_array_equal(first, plain.random((8, 10), dtype=np.float32) >= p)
    second = bernoulli_keep(rng, p, (8, 10), np.dtype(np.float32), np, bufs)
    assert second is first
    np.testing.assert_array_equal(second, plain.random((8, 10), dtype=np.float32) >= p)


class _RawBitsOnly:
    """A generator whose floating-point draws fail: only its raw bits may be read."""

    def __init__(self, seed):
        self.bit_generator = np.random.PCG64(seed)

    def random(self, *args, **kwargs):
        raise AssertionError("the plain formula ran where the raw-bits fast path applies")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_raw_bits_path_runs_where_it_applies(dtype):
    """A PCG64 generator and an even count: the indicators come from the raw bits (about twice as fast)."""
    keep = bernoulli_keep(_RawBitsOnly(3), 0.3, (8, 10), np.dtype(dtype))
    np.testing.assert_array_equal(keep, np.random.Generator(np.random.PCG64(3)).random((8, 10), dtype=dtype) >= 0.3)
    x = np.ones((8, 10), dtype=dtype)
    layer = nk.Dropout(0.3)
    np.testing.assert_array_equal(layer.forward(x, _RawBitsOnly(3)), keep / dtype(0.7))


def test_dropout_layer_uses_the_same_masks_as_the_plain_formula():
    model = nk.MLP([300, 200, 10], dropout_input=0.2, dropout_hidden=0.5, seed=4)
    x = np.random.default_rng(1).random((32, 300), dtype=np.float32)
    model.reseed(77)
    model.forward(x, train=True)
    m_in, m_hid = (layer.mask for layer in model.layers if isinstance(layer, nk.Dropout))
    rng = nk.backend.default_rng(np, 77)  # the model's dropout generator, restarted
    np.testing.assert_array_equal(m_in, (rng.random((32, 300), dtype=np.float32) >= 0.2) / np.float32(0.8))
    np.testing.assert_array_equal(m_hid, (rng.random((32, 200), dtype=np.float32) >= 0.5) / np.float32(0.5))


def test_pieces_are_views_that_cover_the_arrays():
    a = np.zeros((300, 700), dtype=np.float32)  # 210000 elements: more than one piece
    b = np.ones_like(a)
    pieces = list(optim.pieces(a, b))
    assert len(pieces) == -(-a.size // optim.BLOCK) > 1
    for pa, pb in pieces:
        pa += pb
    np.testing.assert_array_equal(a, 1)
    # small, strided or non-NumPy arrays come back whole
    assert list(optim.pieces(a[:, ::2], b[:, ::2]))[0][0].shape == (300, 350)
    assert len(list(optim.pieces(a[:2], b[:2]))) == 1


def _run(make, params, grads_seq):
    opt = make(params)
    for grads in grads_seq:
        opt.step([g.copy() for g in grads])
    return params


@pytest.mark.parametrize("make", [
    lambda p: nk.SGD(p, lr=0.05, momentum=0.9),
    lambda p: nk.SGD(p, lr=0.05),
    lambda p: nk.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: nk.Adam(p, lr=1e-3, weight_decay=1e-4),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_in_pieces_equals_update_of_whole_arrays(monkeypatch, make, dtype):
    rng = np.random.default_rng(0)
    shapes = [(300, 700), (700,), (700, 10)]
    start = [rng.normal(size=s).astype(dtype) for s in shapes]
    grads_seq = [[rng.normal(size=s).astype(dtype) for s in shapes] for _ in range(4)]
    in_pieces = _run(make, [p.copy() for p in start], grads_seq)
    monkeypatch.setattr(optim, "BLOCK", 10 ** 9)  # one piece per array: the plain whole-array formula
    whole = _run(make, [p.copy() for p in start], grads_seq)
    for a, b in zip(in_pieces, whole):
        np.testing.assert_array_equal(a, b)


def test_numpy_float64_learning_rate_keeps_float32_arithmetic():
    w = np.ones(10, dtype=np.float32)
    opt = nk.SGD([w], lr=np.float64(0.1), momentum=np.float64(0.5))
    opt.step([np.full(10, 0.3, dtype=np.float32)])
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, np.float32(1) - np.float32(0.1) * np.float32(0.3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.9, 1.0])
@pytest.mark.parametrize("T", [1.0, 4.0, 20.0])
def test_distillation_loss_and_grad_equals_the_two_functions(xp, dtype, alpha, T):
    # the plain pair, bit for bit (the GPU training step's kernel for it: tests/test_fused.py)
    rng = np.random.default_rng(int(T * 10 + alpha * 100))
    z = xp.asarray(rng.normal(size=(100, 10)) * 5, dtype=dtype)
    v = xp.asarray(rng.normal(size=(100, 10)) * 5, dtype=dtype)
    y = xp.asarray(rng.integers(0, 10, 100))
    loss, g = nk.distillation_loss_and_grad(z, v, y, T, alpha)
    assert float(loss) == float(nk.distillation_loss(z, v, y, T, alpha))
    assert g.dtype == dtype
    np.testing.assert_array_equal(nk.to_numpy(g), nk.to_numpy(nk.distillation_loss_grad(z, v, y, T, alpha)))
    with pytest.raises(ValueError, match="alpha"):
        nk.distillation_loss_and_grad(z, v, y, T, 1.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_and_grad_equals_the_two_functions(xp, dtype):
    rng = np.random.default_rng(3)
    z = xp.asarray(rng.normal(size=(50, 10)) * 5, dtype=dtype)
    y = xp.asarray(rng.integers(0, 10, 50))
    loss, g = nk.cross_entropy_and_grad(z, y)
    assert float(loss) == float(nk.cross_entropy(z, y))
    np.testing.assert_array_equal(nk.to_numpy(g), nk.to_numpy(nk.cross_entropy_grad(z, y)))
    with pytest.raises(ValueError, match="y must be class labels"):
        nk.cross_entropy_and_grad(z, y + 10)
