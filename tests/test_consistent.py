"""Consistent teaching: with jitter, the soft targets are the teacher's logits of the shifted image the student sees.

Whole-pixel shifts of up to s pixels give (2s + 1)**2 views of an image, so
train_model computes the teacher's logits of every (view, image) pair once
(:func:`nanokd.trainer.shifted_teacher_logits`) and looks each batch's
targets up.  These tests check that the lookup is the teacher's logits of the
shifted images, that training with it equals training with the targets
recomputed for every batch (to float32 rounding; bit for bit is not possible,
since a matrix product's rows depend on the batch they are computed in by the
last bit), and that an ensemble is combined at the run's T.
"""

import numpy as np
import pytest

import nanokd as nk
from nanokd import trainer
from nanokd import jitter as nkjitter
from nanokd.teacher import compute_teacher_logits, ensemble_logits

N = 96


def _images(dtype=np.float32):
    rng = np.random.default_rng(4)
    x = (rng.random((N, 28, 28)) * 0.3).astype(dtype)
    x[:, 8:20, 10:18] += 0.7  # a block that the shifts move
    return x.reshape(N, 784), rng.integers(0, 10, N)


@pytest.mark.parametrize("max_shift", [1, 2])
def test_lookup_holds_the_teachers_logits_of_each_shifted_image(max_shift):
    x, _ = _images()
    t = nk.MLP([784, 24, 10], seed=2)
    V = trainer.shifted_teacher_logits(t, x, max_shift, T=1.0)
    width = 2 * max_shift + 1
    assert V.shape == (width * width, N, 10) and V.dtype == np.float32
    for k in range(width * width):
        shifted = nkjitter.shift_images(x, np.full(N, k), max_shift)
        np.testing.assert_array_equal(V[k], compute_teacher_logits(t, shifted))
    centre = (width * width) // 2  # dy = dx = 0
    np.testing.assert_array_equal(V[centre], compute_teacher_logits(t, x))
    assert np.abs(V[0] - V[centre]).max() > 1e-2  # the views differ: a shift is not ignored


def test_jitter_is_draw_shifts_then_shift_images():
    """The lookup indexes by the shifts jitter draws: the two halves give jitter's images, bit for bit."""
    x, _ = _images()
    a = nkjitter.jitter(x, np.random.default_rng(9), 2)
    code = nkjitter.draw_shifts(np.random.default_rng(9), N, 2)
    np.testing.assert_array_equal(a, nkjitter.shift_images(x, code, 2))
    assert code.min() >= 0 and code.max() <= 24 and len(np.unique(code)) > 10


def _train(x, y, teacher, dtype, cache, monkeypatch, T=3.0):
    monkeypatch.setattr(trainer, "SHIFT_CACHE_BYTES", 1 << 30 if cache else 0)
    s = nk.MLP([784, 16, 10], seed=1, dtype=dtype)
    trainer.train_model(s, x, y, epochs=2, batch_size=32, lr=0.05, jitter=2, teacher=teacher, T=T, alpha=0.8,
                        seed=3, progress=False, log=None)
    return s


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-4)])
@pytest.mark.parametrize("ensemble", [False, True])
def test_training_with_the_lookup_equals_recomputing_per_batch(dtype, rtol, ensemble, monkeypatch):
    x, y = _images(dtype)
    teacher = [nk.MLP([784, 24, 10], seed=2, dtype=dtype)]
    if ensemble:
        teacher.append(nk.MLP([784, 12, 10], seed=5, dtype=dtype))
    cached = _train(x, y, teacher, dtype, True, monkeypatch)
    recomputed = _train(x, y, teacher, dtype, False, monkeypatch)
    for a, b in zip(cached.params, recomputed.params):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)
    # and both differ from training on the unshifted images' targets: the lookup follows the shifts
    unshifted = nk.MLP([784, 16, 10], seed=1, dtype=dtype)
    monkeypatch.setattr(trainer, "shift_images", lambda x, code, s, out=None: x)
    trainer.train_model(unshifted, x, y, epochs=2, batch_size=32, lr=0.05, jitter=2, teacher=teacher, T=3.0,
                        alpha=0.8, seed=3, progress=False, log=None)
    assert max(float(np.abs(a - b).max()) for a, b in zip(cached.params, unshifted.params)) > 1e-4


def test_an_ensembles_lookup_is_combined_at_the_runs_temperature():
    x, _ = _images()
    t1, t2 = nk.MLP([784, 24, 10], seed=2), nk.MLP([784, 12, 10], seed=5)
    V = trainer.shifted_teacher_logits([t1, t2], x, 1, T=4.0)
    shifted = nkjitter.shift_images(x, np.full(N, 7), 1)
    expected = ensemble_logits([t1.forward(shifted), t2.forward(shifted)], 4.0)
    np.testing.assert_allclose(V[7], expected, rtol=1e-6, atol=1e-6)
    assert np.abs(V[7] - trainer.shifted_teacher_logits([t1, t2], x, 1, T=1.0)[7]).max() > 1e-3
