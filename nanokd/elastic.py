r"""Elastic distortions (Simard, Steinkraus & Platt 2003): every image bent by a smooth random field.

Not the paper's augmentation (that is :mod:`nanokd.jitter`), but the classic
one for fully connected nets on MNIST: Simard et al.'s 800-unit MLP made 1.6 %
test errors on the plain digits, 1.1 % with affine distortions and 0.7 % with
elastic ones ("Best practices for convolutional neural networks applied to
visual document analysis", ICDAR 2003).  Each image gets its own displacement
field (Δr, Δc), one value per pixel and coordinate:

    Δ = α · (G_σ U G_σᵀ),    U ~ Uniform(-1, 1) per pixel,
    G_σ[i, j] = exp(-(i - j)² / (2σ²)) / (√(2π) σ)

that is, white noise smoothed by a Gaussian of standard deviation σ pixels
(with zeros beyond the frame) and scaled by α pixels (:func:`displacement_fields`).
The distorted image samples the original at the displaced points, by bilinear
interpolation between the four pixels around each point, zero outside the
frame (:func:`warp`):

    out[r, c] = Σ_{a, b ∈ {0, 1}} w_a(f) w_b(g) · img[i + a, j + b],
    i = ⌊r + Δr⌋,  f = r + Δr - i,   j = ⌊c + Δc⌋,  g = c + Δc - j,
    w_0(t) = 1 - t,  w_1(t) = t.

A large σ moves nearby pixels together (almost a translation); a small one
scrambles them.  σ = 4 and α = 34 are Simard et al.'s values for 28 x 28
digits (:data:`SIGMA`, :data:`ALPHA`): displacements of about 1.4 pixels rms.
Where Δ is a whole constant number of pixels the warp is an exact shift
(tests/test_elastic.py checks it against :func:`nanokd.jitter.shift_images`).

No gradient flows through any of this: it only makes training inputs.  The
images are rows of a (N, D) array, square and flattened
(:func:`nanokd.jitter.image_side`), on NumPy or CuPy.
"""

import math

from nanokd.backend import get_array_module
from nanokd.jitter import image_side

#: Simard et al.'s field for 28 x 28 digits: smoothing σ and scale α, in pixels.
SIGMA = 4.0
ALPHA = 34.0
#: Images per chunk of :func:`distort` (keeps its temporaries in cache: 2,048 images is 6 MB a field).
CHUNK = 2048


def gaussian_matrix(xp, side, sigma, dtype):
    """G_σ of the module's docstring: ``(side, side)``, ``G[i, j] = exp(-(i-j)² / 2σ²) / (√(2π) σ)``.

    Its rows are the normalised Gaussian kernel centred on each pixel, cut at
    the frame (zeros beyond it), so ``G U Gᵀ`` smooths each row and column of U.
    """
    i = xp.arange(side, dtype=xp.float64)
    g = xp.exp(-((i[:, None] - i[None, :]) ** 2) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    return g.astype(dtype)


def displacement_fields(rng, n, side, alpha=ALPHA, sigma=SIGMA, dtype=None):
    """Δ = α G_σ U G_σᵀ for n images: an array ``(2, n, side, side)`` of row and column displacements.

    U is drawn with ``rng.random`` (NumPy's or CuPy's generator,
    :func:`nanokd.backend.default_rng`), mapped from [0, 1) to [-1, 1).
    """
    u = rng.random((2 * n, side, side), dtype=dtype or "float32")
    xp = get_array_module(u)
    u *= 2
    u -= 1
    g = gaussian_matrix(xp, side, sigma, u.dtype)
    d = xp.matmul(xp.matmul(g * u.dtype.type(alpha), u), g.T)  # G U Gᵀ for each of the 2n noise images
    return d.reshape(2, n, side, side)


def warp(x, fields, out=None):
    """Each image of x sampled at its displaced pixels, bilinearly, zeros outside the frame.

    ``out[r, c]`` of the module's docstring, for every pixel of every image at
    once: each point's four neighbours are gathered from a copy of the images
    framed by zeros (points beyond the frame are clamped into that zero frame,
    where all four neighbours are 0).  Every step is in x's dtype (float32 on
    the training path), in this order: upper = a + g (b - a), lower =
    e + g (h - e), out = upper + f (lower - upper), where a, b, e, h are
    img[i, j], img[i, j + 1], img[i + 1, j], img[i + 1, j + 1].

    Parameters
    ----------
    x : (N, D) array, square images flattened (D = side * side)
    fields : (2, N, side, side) array of row and column displacements, in pixels
    out : (N, D) array, optional; same dtype as x, not x itself

    Returns
    -------
    (N, D) array of x's dtype.
    """
    xp = get_array_module(x)
    n, side = len(x), image_side(x.shape[1])
    if fields.shape != (2, n, side, side):
        raise ValueError(f"fields must have shape {(2, n, side, side)}, got {fields.shape}")
    if out is x:
        raise ValueError("warp cannot work in place: out must not be x")
    p = side + 3  # one zero row/column before the frame, two after (a clamped point's right neighbour)
    framed = xp.zeros((n, p, p), dtype=x.dtype)
    framed[:, 1:side + 1, 1:side + 1] = x.reshape(n, side, side)
    framed = framed.reshape(-1)
    ramp = xp.arange(side, dtype=x.dtype)
    r = fields[0] + ramp[:, None]  # the sample points (r + Δr, c + Δc) ...
    c = fields[1] + ramp[None, :]
    xp.clip(r, -1, side, out=r)  # ... clamped into the zero frame
    xp.clip(c, -1, side, out=c)
    i, j = xp.floor(r), xp.floor(c)
    r -= i  # now f = r - i
    c -= j  # now g = c - j
    index = xp.int32 if n * p * p < 2**31 else xp.int64  # int32 gathers are faster, while they reach
    top_left = (i.astype(index) + 1) * p + (j.astype(index) + 1)
    top_left += (xp.arange(n, dtype=index) * (p * p))[:, None, None]
    a, b = framed[top_left], framed[top_left + 1]  # img[i, j], img[i, j + 1]
    e, h = framed[top_left + p], framed[top_left + p + 1]  # img[i + 1, j], img[i + 1, j + 1]
    b -= a
    b *= c
    a += b  # upper = (1 - g) img[i, j] + g img[i, j + 1], in a
    h -= e
    h *= c
    e += h  # lower = (1 - g) img[i + 1, j] + g img[i + 1, j + 1], in e
    e -= a
    e *= r
    a += e  # (1 - f) upper + f lower
    result = a.reshape(n, -1)
    if out is None:
        return result.astype(x.dtype, copy=False)
    out[...] = result
    return out


def distort(x, rng, alpha=ALPHA, sigma=SIGMA, out=None):
    """Elastic distortion of every image of x: :func:`displacement_fields` then :func:`warp`.

    Works through x in chunks of :data:`CHUNK` images, drawing each chunk's
    fields from ``rng`` when it gets there (so a seed gives the same images
    for the same CHUNK).
    ``out`` (N, D), optional, may not be x.  ``alpha = 0`` returns a copy of x.
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}")
    xp = get_array_module(x)
    if out is x:
        raise ValueError("distort cannot work in place: out must not be x")
    if out is None:
        out = xp.empty_like(x)
    side = image_side(x.shape[1])
    for s in range(0, len(x), CHUNK):
        xb = x[s:s + CHUNK]
        warp(xb, displacement_fields(rng, len(xb), side, alpha, sigma, x.dtype), out=out[s:s + CHUNK])
    return out
