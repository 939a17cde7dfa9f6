"""nanokd.elastic: Simard et al.'s elastic distortions, checked against a per-pixel loop and whole-pixel shifts."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanokd import elastic as nkelastic
from nanokd.backend import default_rng, to_numpy
from nanokd.jitter import shift_images


def warp_reference(img, dr, dc):
    """The module docstring's out[r, c] for one (side, side) float64 image, pixel by pixel."""
    side = img.shape[0]

    def pixel(i, j):
        return img[i, j] if 0 <= i < side and 0 <= j < side else 0.0

    out = np.zeros_like(img)
    for r in range(side):
        for c in range(side):
            y, x = r + dr[r, c], c + dc[r, c]
            i, j = math.floor(y), math.floor(x)
            f, g = y - i, x - j
            out[r, c] = ((1 - f) * ((1 - g) * pixel(i, j) + g * pixel(i, j + 1))
                         + f * ((1 - g) * pixel(i + 1, j) + g * pixel(i + 1, j + 1)))
    return out


@settings(max_examples=40, deadline=None)
@given(side=st.integers(2, 7), n=st.integers(1, 3), scale=st.floats(0.0, 9.0), seed=st.integers(0, 2**31))
def test_warp_equals_the_per_pixel_formula(side, n, scale, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, side * side))
    fields = scale * rng.standard_normal((2, n, side, side))  # scale 9 sends many points out of the frame
    got = nkelastic.warp(x, fields)
    assert got.shape == x.shape and got.dtype == np.float64
    for k in range(n):
        want = warp_reference(x[k].reshape(side, side), fields[0, k], fields[1, k])
        np.testing.assert_allclose(got[k].reshape(side, side), want, rtol=0, atol=1e-14)


def warp_reference_float32(img, dr, dc):
    """warp's float32 arithmetic for one (side, side) image, pixel by pixel in np.float32 scalars.

    In the order warp's docstring gives: upper = a + g (b - a), lower = e + g (h - e),
    out = upper + f (lower - upper), every step rounded to float32.
    """
    side, f32 = img.shape[0], np.float32

    def pixel(i, j):
        return img[i, j] if 0 <= i < side and 0 <= j < side else f32(0)

    out = np.zeros_like(img)
    for r in range(side):
        for c in range(side):
            y = min(max(f32(dr[r, c]) + f32(r), f32(-1)), f32(side))
            x = min(max(f32(dc[r, c]) + f32(c), f32(-1)), f32(side))
            i, j = int(math.floor(y)), int(math.floor(x))
            f, g = f32(y - f32(i)), f32(x - f32(j))
            upper = pixel(i, j) + g * (pixel(i, j + 1) - pixel(i, j))
            lower = pixel(i + 1, j) + g * (pixel(i + 1, j + 1) - pixel(i + 1, j))
            out[r, c] = upper + f * (lower - upper)
    return out


def test_warp_of_float32_images_is_float32_arithmetic_bit_for_bit():
    """No step of warp leaves the images' dtype: the same bits as the formula in float32 scalars."""
    rng = np.random.default_rng(7)
    side, n = 9, 3
    x = rng.random((n, side * side), dtype=np.float32)
    fields = (3 * rng.standard_normal((2, n, side, side))).astype(np.float32)  # some points leave the frame
    got = nkelastic.warp(x, fields)
    assert got.dtype == np.float32
    for k in range(n):
        want = warp_reference_float32(x[k].reshape(side, side), fields[0, k], fields[1, k])
        np.testing.assert_array_equal(got[k].reshape(side, side), want)


def test_fields_and_kernels_come_in_the_dtype_asked_for():
    assert nkelastic.gaussian_matrix(np, 6, 2.0, np.float32).dtype == np.float32
    assert nkelastic.displacement_fields(default_rng(np, 0), 2, 6).dtype == np.float32  # the default
    assert nkelastic.displacement_fields(default_rng(np, 0), 2, 6, dtype=np.float32).dtype == np.float32
    assert nkelastic.displacement_fields(default_rng(np, 0), 2, 6, dtype=np.float64).dtype == np.float64


def test_float64_images_are_bent_by_float64_fields():
    x = np.random.default_rng(0).random((5, 784))
    got = nkelastic.distort(x, default_rng(np, 4))
    want = nkelastic.warp(x, nkelastic.displacement_fields(default_rng(np, 4), 5, 28, dtype=np.float64))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dy, dx", [(0, 0), (2, -1), (-3, 3), (0, 5), (27, 0), (-40, 2)])
def test_a_constant_whole_pixel_field_is_the_jitter_shift(xp, dy, dx):
    """Sampling at (r - dy, c - dx) moves the image by (dy, dx): nanokd.jitter.shift_images, exactly."""
    x = xp.asarray(np.random.default_rng(0).uniform(0.1, 1, (5, 784)).astype(np.float32))
    fields = xp.empty((2, 5, 28, 28), dtype=xp.float32)
    fields[0], fields[1] = -dy, -dx
    s = max(abs(dy), abs(dx), 1)
    code = xp.full(5, (dy + s) * (2 * s + 1) + (dx + s))
    want = shift_images(x, code, s) if s < 28 else xp.zeros_like(x)
    assert (nkelastic.warp(x, fields) == want).all()


def test_warp_is_exact_on_a_linear_image():
    """Bilinear interpolation reproduces a linear image at every point inside the frame."""
    side, rng = 12, np.random.default_rng(3)
    r, c = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    img = 0.3 * r - 0.7 * c + 2.0
    fields = rng.uniform(-2, 2, (2, 1, side, side))
    y, x = r + fields[0, 0], c + fields[1, 0]
    inside = (y >= 0) & (y <= side - 1) & (x >= 0) & (x <= side - 1)
    got = nkelastic.warp(img.reshape(1, -1), fields).reshape(side, side)
    assert inside.sum() > 80
    np.testing.assert_allclose(got[inside], (0.3 * y - 0.7 * x + 2.0)[inside], rtol=0, atol=1e-13)


def test_gaussian_matrix_is_the_normalised_kernel():
    g = nkelastic.gaussian_matrix(np, 40, 4.0, np.float64)
    i, j = 17, 21
    assert g[i, j] == pytest.approx(math.exp(-16 / 32) / (math.sqrt(2 * math.pi) * 4), rel=1e-15)
    np.testing.assert_array_equal(g, g.T)
    assert g[20].sum() == pytest.approx(1.0, abs=1e-5)  # a row far from the frame holds the whole kernel
    assert g[0].sum() == pytest.approx(0.5 + g[0, 0] / 2, abs=1e-3)  # at the edge, about half of it


def test_displacement_fields_have_the_predicted_spread():
    """Interior pixels: Var Δ = α² · Var U · (Σ_k G_k²)² with Var U = 1/3 and Σ_k G_k² = 1 / (2 √π σ)."""
    n, side, alpha, sigma = 4000, 28, nkelastic.ALPHA, nkelastic.SIGMA
    d = nkelastic.displacement_fields(default_rng(np, 5), n, side, alpha, sigma, np.float64)
    assert d.shape == (2, n, side, side) and d.dtype == np.float64
    want = alpha / math.sqrt(3) / (2 * math.sqrt(math.pi) * sigma)  # 1.385 pixels
    centre = d[:, :, 13:15, 13:15]
    assert np.sqrt((centre ** 2).mean()) == pytest.approx(want, rel=0.03)
    assert abs(centre.mean()) < 0.03
    # smooth: neighbouring pixels move together (the correlation of a Gaussian of sigma 4 at one pixel is
    # exp(-1 / (4 sigma^2)) = 0.98)
    a, b = d[0, :, 13, 13], d[0, :, 13, 14]
    assert np.corrcoef(a, b)[0, 1] == pytest.approx(math.exp(-1 / (4 * sigma**2)), abs=0.01)


def test_distort_is_seeded_and_chunk_by_chunk(xp, monkeypatch):
    x = xp.asarray(np.random.default_rng(0).random((70, 784), dtype=np.float32))
    a = nkelastic.distort(x, default_rng(xp, 1))
    b = nkelastic.distort(x, default_rng(xp, 1))
    assert a.dtype == xp.float32 and (a == b).all()
    assert not (a == nkelastic.distort(x, default_rng(xp, 2))).all()
    monkeypatch.setattr(nkelastic, "CHUNK", 32)  # three chunks: 32, 32, 6 images
    rng = default_rng(xp, 1)
    parts = [nkelastic.warp(x[s:s + 32], nkelastic.displacement_fields(rng, len(x[s:s + 32]), 28))
             for s in (0, 32, 64)]
    out = xp.empty_like(x)
    assert nkelastic.distort(x, default_rng(xp, 1), out=out) is out
    assert (out == xp.concatenate(parts)).all()


def test_distort_moves_pixels_but_keeps_the_digit(mnist_dir):
    """On real digits: the images change, their ink stays about the same, and most of it stays put."""
    from nanokd import data

    x = data.to_float(data.load("mnist", mnist_dir).x_train[:500])
    y = nkelastic.distort(x, default_rng(np, 0))
    ink_ratio = y.sum(axis=1) / x.sum(axis=1)
    assert 0.85 < np.median(ink_ratio) < 1.15
    assert np.abs(y - x).mean() > 0.02  # not a copy
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(x, y)]
    assert 0.5 < np.median(corr) < 0.95  # bent, not scrambled


def test_alpha_zero_returns_the_images(xp):
    x = xp.asarray(np.random.default_rng(0).random((9, 784), dtype=np.float32))
    y = nkelastic.distort(x, default_rng(xp, 1), alpha=0.0)
    assert y is not x and (y == x).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=-1.0), "alpha must be a finite number >= 0, got -1.0"),
    (dict(alpha=float("nan")), "alpha must be a finite number >= 0, got nan"),
    (dict(sigma=0.0), "sigma must be a finite number > 0, got 0.0"),
    (dict(sigma=float("inf")), "sigma must be a finite number > 0, got inf"),
])
def test_distort_rejects_bad_settings(kwargs, message):
    x = np.zeros((2, 784), np.float32)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        nkelastic.distort(x, default_rng(np, 0), **kwargs)


def test_distort_takes_any_positive_sigma_and_a_sharper_field_bends_more():
    # sigma below a pixel is allowed (rougher fields, larger moves for the same alpha: rms ~ alpha / sigma)
    x = np.random.default_rng(0).random((8, 784)).astype(np.float32)
    moved = [float(np.abs(nkelastic.distort(x, default_rng(np, 3), alpha=2.0, sigma=s) - x).mean())
             for s in (0.5, 4.0)]
    assert moved[0] > moved[1] > 0


def test_warp_and_distort_refuse_to_work_in_place():
    x = np.zeros((2, 784), np.float32)
    with pytest.raises(ValueError, match="^distort cannot work in place: out must not be x$"):
        nkelastic.distort(x, default_rng(np, 0), out=x)
    with pytest.raises(ValueError, match="^warp cannot work in place: out must not be x$"):
        nkelastic.warp(x, np.zeros((2, 2, 28, 28), np.float32), out=x)
    with pytest.raises(ValueError, match=r"fields must have shape \(2, 2, 28, 28\), got \(2, 3, 28, 28\)"):
        nkelastic.warp(x, np.zeros((2, 3, 28, 28), np.float32))


def test_warp_on_the_device_equals_numpy(xp):
    rng = np.random.default_rng(4)
    x, fields = rng.random((6, 100), dtype=np.float32), rng.uniform(-4, 4, (2, 6, 10, 10)).astype(np.float32)
    want = nkelastic.warp(x, fields)
    np.testing.assert_allclose(to_numpy(nkelastic.warp(xp.asarray(x), xp.asarray(fields))), want, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------
# In the training loop: TrainConfig(elastic=..., elastic_sigma=...)
# ---------------------------------------------------------------------------


def _digits(n=64):
    rng = np.random.default_rng(4)
    x = (rng.random((n, 28, 28)) * 0.3).astype(np.float32)
    x[:, 8:20, 10:18] += 0.7
    return x.reshape(n, 784), rng.integers(0, 10, n)


def _seen_batches(monkeypatch):
    """Record the (x, v) of every train_step the loop takes."""
    from nanokd import trainer

    seen, step = [], trainer.train_step

    def spy(model, optimizer, x, y, v=None, T=1.0, alpha=1.0):
        seen.append((x.copy(), None if v is None else v.copy()))
        return step(model, optimizer, x, y, v, T, alpha)

    monkeypatch.setattr(trainer, "train_step", spy)
    return seen


@pytest.mark.parametrize("jitter", [0, 2])
def test_an_epoch_sees_the_jittered_images_bent_from_the_same_generator(jitter, monkeypatch):
    """Epoch e's inputs: draw_shifts, shift_images, then distort, all from the generator of epoch_seeds' jitter seed."""
    import nanokd as nk
    from nanokd import trainer
    from nanokd.jitter import draw_shifts

    x, y = _digits()
    seen = _seen_batches(monkeypatch)
    trainer.train_model(nk.MLP([784, 8, 10], seed=1), x, y, epochs=2, batch_size=64, lr=0.01, jitter=jitter,
                        elastic=20.0, elastic_sigma=3.0, seed=5, progress=False, log=None)
    for epoch, (xb, _) in enumerate(seen):
        _, s_jitter, s_shuffle = trainer.epoch_seeds(5, epoch)
        rng = default_rng(np, s_jitter)
        want = shift_images(x, draw_shifts(rng, len(x), jitter), jitter) if jitter else x
        want = nkelastic.distort(want, rng, 20.0, 3.0)[np.random.default_rng(s_shuffle).permutation(len(x))]
        np.testing.assert_array_equal(xb, want)
    assert not (seen[0][0] == seen[1][0]).all()  # fresh fields every epoch


def test_a_distilled_student_gets_the_teachers_logits_of_the_bent_images(monkeypatch):
    import nanokd as nk
    from nanokd import trainer
    from nanokd.teacher import compute_teacher_logits

    x, y = _digits()
    teacher = nk.MLP([784, 12, 10], seed=2)
    seen = _seen_batches(monkeypatch)
    trainer.train_model(nk.MLP([784, 8, 10], seed=1), x, y, epochs=2, batch_size=16, lr=0.01, jitter=1,
                        elastic=34.0, teacher=teacher, T=4.0, seed=5, progress=False, log=None)
    assert len(seen) == 8
    for xb, v in seen:
        np.testing.assert_array_equal(v, compute_teacher_logits(teacher, xb, 4.0))
        assert np.abs(v - compute_teacher_logits(teacher, x[:1], 4.0)).max() > 0  # (not one image's)


def test_an_elastic_distilled_run_caches_no_soft_targets_and_says_so():
    """With distortions every batch is a new image: nothing is computed ahead, and no setup time is reported."""
    import nanokd as nk
    from nanokd import trainer

    x, y = _digits()
    history = trainer.train_model(nk.MLP([784, 8, 10], seed=1), x, y, teacher=nk.MLP([784, 8, 10], seed=2), epochs=1,
                                  batch_size=64, lr=0.01, elastic=20.0, progress=False, log=None)
    assert history["setup_seconds"] == 0.0 and history["total_seconds"] == sum(history["seconds"])


def test_an_elastic_run_resumes_bit_for_bit_and_refuses_another_runs_checkpoint(tmp_path):
    import nanokd as nk
    from nanokd import trainer
    from nanokd.checkpoint import CheckpointError

    x, y = _digits()
    kw = dict(batch_size=16, lr=0.05, jitter=1, elastic=34.0, seed=5, progress=False, log=None)
    straight = nk.MLP([784, 8, 10], seed=1)
    trainer.train_model(straight, x, y, epochs=3, **kw)
    ck = tmp_path / "ck.npz"
    resumed = nk.MLP([784, 8, 10], seed=1)
    trainer.train_model(resumed, x, y, epochs=1, checkpoint_path=ck, **kw)
    trainer.train_model(resumed, x, y, epochs=3, checkpoint_path=ck, resume=True, **kw)
    for a, b in zip(straight.params, resumed.params):
        np.testing.assert_array_equal(a, b)
    for other in (dict(elastic=30.0), dict(elastic_sigma=5.0), dict(elastic=0.0)):
        with pytest.raises(CheckpointError):
            trainer.train_model(nk.MLP([784, 8, 10], seed=1), x, y, epochs=3, checkpoint_path=ck, resume=True,
                                **{**kw, **other})


def test_elastic_settings_are_checked():
    from nanokd.trainer import TrainConfig, train_model
    import nanokd as nk

    with pytest.raises(ValueError, match="elastic"):
        TrainConfig(epochs=1, elastic=-1.0)
    with pytest.raises(ValueError, match="elastic_sigma"):
        TrainConfig(epochs=1, elastic=34.0, elastic_sigma=0.0)
    x, y = _digits(8)
    with pytest.raises(ValueError, match="teacher_logits cannot be used with elastic distortions"):
        train_model(nk.MLP([784, 8, 10]), x, y, epochs=1, elastic=34.0, teacher_logits=np.zeros((8, 10)),
                    progress=False, log=None)
    with pytest.raises(ValueError, match="square"):
        train_model(nk.MLP([780, 8, 10]), x[:, :780], y, epochs=1, elastic=34.0, progress=False, log=None)
