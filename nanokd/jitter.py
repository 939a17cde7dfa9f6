"""The paper's data augmentation: every image moved by a random whole number of pixels.

Section 3 of the paper trains its teacher on MNIST digits "jittered by up to two
pixels in any direction".  A shift ``(dy, dx)`` with ``-s <= dy, dx <= s`` is
one of ``(2s + 1)**2`` *shift numbers* (25 for s = 2), and an image moved by
it is zero-filled where pixels come in and cropped where they fall off:

    shifted[r + dy, c + dx] = image[r, c]    (where both lie in the frame)

:func:`jitter` draws a shift per image (:func:`draw_shifts`) and applies it
(:func:`shift_images`).  Keeping the shift numbers is what makes consistent
teaching cheap: the teacher's logits of every (image, shift) pair can be
computed once and looked up (:func:`nanokd.trainer.shifted_teacher_logits`).
The images are rows of a (N, D) array, square and flattened
(:func:`image_side`).
"""

import math

from nanokd.backend import get_array_module


def jitter(x, rng, max_shift=2, out=None):
    """Translate each image by a random whole number of pixels, filling with zeros.

    The paper's augmentation: MNIST "jittered by up to two pixels in any
    direction".  Each example gets its own shift ``(dy, dx)``, each drawn
    uniformly from ``-max_shift .. max_shift``, fresh on every call (so every
    epoch sees new shifts): :func:`draw_shifts`, then :func:`shift_images`.

    Parameters
    ----------
    x : (N, D) float32 array, NumPy or CuPy
        Square images of ``D = side * side`` pixels, flattened (784 for MNIST).
    rng : generator from :func:`nanokd.backend.default_rng`, on ``x``'s device
    max_shift : int
        ``0`` returns ``x`` itself (not a copy), and draws nothing.
    out : (N, D) array, optional
        Where to write the result (C-contiguous, same dtype as ``x``; not ``x``
        itself).  Saves allocating 188 MB per epoch on the full training set.

    Returns
    -------
    (N, D) array, same dtype and device as ``x``.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return x
    return shift_images(x, draw_shifts(rng, len(x), max_shift), max_shift, out)


def draw_shifts(rng, n, max_shift):
    """For each of n images, which of the ``(2 max_shift + 1)**2`` shifts it gets: an (n,) int64 array.

    Shift number ``(dy + s) (2s + 1) + (dx + s)`` moves an image by dy rows
    and dx columns (s = max_shift).  Drawn with ``rng.random``, which NumPy's
    and CuPy's generators both have; the minimum guards against u * width
    rounding up to width.
    """
    width = 2 * max_shift + 1
    u = rng.random((2, n))
    xp = get_array_module(u)
    k = xp.minimum(xp.floor(u * width).astype(xp.int64), width - 1)
    return k[0] * width + k[1]


def shift_images(x, code, max_shift, out=None):
    """Image i of x moved by shift number ``code[i]`` (see :func:`draw_shifts`), zeros filling in.

    Vectorised: one loop over the ``(2s+1)**2`` possible shifts, each moving
    all images that drew it at once (on NumPy this is about twice as fast as
    one gather from a zero-padded copy).  ``out`` as in :func:`jitter`.  The
    rows of x are square images, flattened (:func:`image_side`).
    """
    xp = get_array_module(x)
    if out is x:
        raise ValueError("jitter cannot work in place: out must not be x")
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous {x.shape} {x.dtype} array")
    n, s, side = len(x), max_shift, image_side(x.shape[1])
    width = 2 * s + 1
    src = x.reshape(n, side, side)
    out = xp.zeros_like(x) if out is None else out
    dst = out.reshape(n, side, side)
    dst[...] = 0
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            idx = xp.flatnonzero(code == (dy + s) * width + (dx + s))
            if idx.size == 0:
                continue
            # Pixel (r, c) moves to (r + dy, c + dx); what falls off is dropped.
            dst[idx, max(dy, 0) : side + min(dy, 0), max(dx, 0) : side + min(dx, 0)] = src[
                idx, max(-dy, 0) : side - max(dy, 0), max(-dx, 0) : side - max(dx, 0)
            ]
    return out


def image_side(n_pixels):
    """The side of the square images of ``n_pixels`` pixels (28 for 784); ValueError if not a square number.

    Jitter shifts rows and columns of images it gets flattened, so it needs
    their shape: it takes them to be square, the one shape it can tell from
    the number of pixels alone.
    """
    side = math.isqrt(n_pixels)
    if side * side != n_pixels:
        raise ValueError(f"jitter needs square images, but {n_pixels} pixels is not a side x side square")
    return side
