"""nanokd.jitter: the paper's random translations, checked against np.roll."""

import numpy as np
import pytest

from nanokd import jitter as nkjitter
from nanokd.backend import default_rng



def shift_reference(images, dy, dx):
    """Shift (N, 28, 28) images by (dy, dx) with np.roll, zeroing what wrapped around."""
    out = np.roll(images, (dy, dx), axis=(1, 2))
    if dy > 0:
        out[:, :dy] = 0
    elif dy < 0:
        out[:, dy:] = 0
    if dx > 0:
        out[:, :, :dx] = 0
    elif dx < 0:
        out[:, :, dx:] = 0
    return out


def found_shifts(x, y, max_shift):
    """For each image, the (dy, dx) with which y equals the shifted x, or None."""
    images, result = x.reshape(-1, 28, 28), [None] * len(x)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            match = (shift_reference(images, dy, dx).reshape(len(x), -1) == y).all(axis=1)
            for i in np.flatnonzero(match):
                result[i] = (dy, dx)
    return result


@pytest.fixture
def images():
    # No zero pixel anywhere, so the 25 shifts of an image all differ.
    return np.random.default_rng(0).uniform(0.1, 1.0, (600, 784)).astype(np.float32)


def test_jitter_shifts_each_image_by_at_most_two_pixels(images):
    y = nkjitter.jitter(images, default_rng(np, 1))
    assert y.shape == images.shape and y.dtype == np.float32
    shifts = found_shifts(images, y, 2)
    assert None not in shifts
    assert set(shifts) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # all 25 occur


def test_jitter_max_shift_one(images):
    shifts = found_shifts(images, nkjitter.jitter(images, default_rng(np, 1), max_shift=1), 1)
    assert None not in shifts and len(set(shifts)) == 9


def test_jitter_rejects_a_negative_shift(images):
    with pytest.raises(ValueError, match="max_shift must be >= 0, got -1"):
        nkjitter.jitter(images, default_rng(np, 1), max_shift=-1)


def test_jitter_never_adds_mass(images):
    x = images * (np.random.default_rng(2).random(images.shape) < 0.3)  # sparse, like digits
    y = nkjitter.jitter(x, default_rng(np, 3))
    assert (y.sum(axis=1, dtype=np.float64) <= x.sum(axis=1, dtype=np.float64) + 1e-9).all()
    assert (y >= 0).all()


def test_jitter_reproducible_from_seed(images):
    a = nkjitter.jitter(images, default_rng(np, 5))
    b = nkjitter.jitter(images, default_rng(np, 5))
    c = nkjitter.jitter(images, default_rng(np, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rng = default_rng(np, 5)
    first, second = nkjitter.jitter(images, rng), nkjitter.jitter(images, rng)
    assert not np.array_equal(first, second)  # fresh shifts on every call (every epoch)


def test_jitter_max_shift_zero_returns_x(images):
    assert nkjitter.jitter(images, default_rng(np, 0), max_shift=0) is images


def test_jitter_out(images):
    out = np.full_like(images, 7.0)
    y = nkjitter.jitter(images, default_rng(np, 4), out=out)
    assert y is out
    np.testing.assert_array_equal(out, nkjitter.jitter(images, default_rng(np, 4)))
    with pytest.raises(ValueError, match="in place"):
        nkjitter.jitter(images, default_rng(np, 4), out=images)
    with pytest.raises(ValueError, match="C-contiguous"):
        nkjitter.jitter(images, default_rng(np, 4), out=np.empty((600, 784), np.float64))
