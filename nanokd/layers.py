"""The layers of an MLP, each with a hand-written forward and backward.

Shapes: a batch of N examples is a matrix with one example per row.

* :class:`Linear`   a = x W + b         W: (in, out), b: (out,)
* :class:`ReLU`     h = max(a, 0)
* :class:`Dropout`  h = h * m / (1 - p)  (inverted dropout, m ~ Bernoulli(1 - p))
* :func:`max_norm_` the max-norm constraint, a projection applied to W after
  each update (not a term of the loss, so it has no gradient)

Each layer remembers what its backward needs from the last forward (the
input of Linear, the output of ReLU, the mask of Dropout).  To keep the
training loop free of allocations, the layers write into buffers they own and
reuse on the next call with the same shape; so an array returned by a layer is
only valid until that layer's next call.
"""

import math

import numpy as np

from .backend import get_array_module


def _buffer(store, key, shape, xp, dtype):
    """A scratch array of the given shape, allocated once and then reused."""
    buf = store.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = xp.empty(shape, dtype=dtype)
        store[key] = buf
    return buf


class Layer:
    """What the layers share: scratch arrays they own, allocated once and reused on every call."""

    def __init__(self):
        self._bufs = {}

    def buffer(self, key, shape, xp, dtype):
        """The layer's scratch array ``key`` of this shape and dtype (valid until the layer's next call)."""
        return _buffer(self._bufs, key, shape, xp, dtype)


class Linear(Layer):
    r"""Affine map  a = x W + b.

    See docs/gradients.md, section 6.

    Backward, for an upstream gradient da = dL/da of shape (N, out):

        dL/dW = x^T da        (in, out)
        dL/db = sum_n da_n    (out,)
        dL/dx = da W^T        (N, in)

    Each follows from a_nj = sum_i x_ni W_ij + b_j: the derivative of a_nj
    with respect to W_ij is x_ni, with respect to b_j is 1, and with respect to
    x_ni is W_ij; the chain rule sums over every (n, j) that the weight touches.
    """

    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b
        self.dW = get_array_module(W).zeros_like(W)
        self.db = get_array_module(b).zeros_like(b)
        self.x = None

    def forward(self, x, bias=True):
        """a = x W + b, into a buffer of the layer (reused by the next call).

        ``bias=False`` leaves out "+ b", for a caller that adds it itself
        (the GPU fast path adds it in the kernel that also applies the ReLU).
        """
        xp = get_array_module(x)
        self.x = x
        a = self.buffer("a", (x.shape[0], self.W.shape[1]), xp, self.W.dtype)
        xp.matmul(x, self.W, out=a)
        if bias:
            a += self.b
        return a

    def backward(self, da, need_dx=True):
        """Fill ``self.dW``, ``self.db``; return dL/dx (or None if not needed)."""
        xp = get_array_module(da)
        xp.matmul(self.x.T, da, out=self.dW)
        da.sum(axis=0, out=self.db)
        if not need_dx:
            return None
        dx = self.buffer("dx", self.x.shape, xp, da.dtype)
        xp.matmul(da, self.W.T, out=dx)
        return dx


class ReLU:
    r"""Rectified linear unit  h = max(a, 0), computed in place.

    See docs/gradients.md, section 6.

    Backward:  dL/da = dL/dh * [a > 0].  The indicator can be read off the
    output, since h > 0 exactly where a > 0; so only h is kept.  (At a = 0
    the derivative is taken to be 0.)
    """

    def __init__(self):
        self.h = None

    def forward(self, a):
        xp = get_array_module(a)
        self.h = xp.maximum(a, 0, out=a)
        return self.h

    def backward(self, dh):
        xp = get_array_module(dh)
        xp.multiply(dh, self.h > 0, out=dh)
        return dh


class Dropout(Layer):
    r"""Inverted dropout with drop probability p, computed in place.

    See docs/gradients.md, section 6.

    In training, each unit is kept with probability 1 - p and the kept units
    are scaled by 1/(1 - p):  h = x * m,  m_ni = [u_ni >= p] / (1 - p),
    u ~ Uniform[0, 1).  The expected value of h is x, so at test time the
    layer is the identity (no rescaling of the weights is needed).  That is
    exact for the layer; for a network with ReLUs after it, the test-time net
    only approximates the average over masks (the weight-scaling rule).

    Backward:  dL/dx = dL/dh * m, with the mask drawn in the forward pass.
    The mask is drawn on the device of x from the model's generator; the
    indicators [u >= p] come from :func:`bernoulli_keep`, which on the CPU
    reads them off the generator's raw bits (the same indicators, faster).
    """

    def __init__(self, p, inplace=False):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        super().__init__()
        self.p = p
        self.inplace = inplace  # True when x is a buffer of the layer below, never for user input
        self.mask = None

    def forward(self, x, rng, train=True, keep_mask=False):
        """Apply dropout when training; identity otherwise.

        ``keep_mask=True`` reuses the mask of the previous call instead of
        drawing a new one (gradient checks need a fixed mask).
        """
        if not train or self.p == 0.0:
            self.mask = None
            return x
        xp = get_array_module(x)
        if not (keep_mask and self.mask is not None and self.mask.shape == x.shape):
            keep = bernoulli_keep(rng, self.p, x.shape, x.dtype, xp, self._bufs)  # [u >= p]
            m = self.buffer("mask", x.shape, xp, x.dtype)
            xp.multiply(keep, x.dtype.type(1.0 / (1.0 - self.p)), out=m)  # m = [u >= p] / (1 - p)
            self.mask = m
        out = x if self.inplace else self.buffer("h", x.shape, xp, x.dtype)
        return xp.multiply(x, self.mask, out=out)

    def backward(self, dh):
        if self.mask is not None:
            dh *= self.mask
        return dh


# Bit generators whose ``random(dtype=float32)`` reads the low then the high half of
# each 64-bit output, as ``random_raw().view(uint32)`` does (MT19937 makes 32 bits at a time).
_RAW_BITS_OK = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)


def bernoulli_keep(rng, p, shape, dtype, xp=np, bufs=None):
    r"""The keep indicators  [u >= p]  for u ~ Uniform[0, 1) drawn as ``rng.random(shape, dtype=dtype)``.

    Plain formula (and the path on CuPy):  ``rng.random(shape, dtype=dtype) >= p``.

    Fast path (NumPy, float32 or float64).  NumPy makes a uniform float32 from
    the next 32 random bits b as u = (b >> 8) 2^-24, and a float64 from the next
    64 as u = (b >> 11) 2^-53.  With p' = p rounded to the dtype (the
    comparison is made in that dtype), u >= p' is therefore the integer test

        b >= ceil(p' 2^24) 2^8         (float32; 2^53 and 2^11 for float64)

    on the raw bits, which skips the conversion to floating point and is about
    twice as fast.  The indicators are the very ones of the plain formula
    (equal bit for bit from the same generator state: tests/test_fastpath.py).

    A float32 takes half of a 64-bit output.  NumPy keeps an unused half for
    its next float32, which raw draws cannot do.  So the fast path runs only
    when it uses whole outputs: an even count, and no half left over from an
    earlier call.  Otherwise the plain formula runs (a dropout layer of a
    batch of 100 always has an even count).
    Returns a boolean array (a buffer from ``bufs`` when given: valid until the next call).
    """
    bit_generator = getattr(rng, "bit_generator", None)
    if xp is not np or not isinstance(bit_generator, _RAW_BITS_OK) or dtype not in (np.float32, np.float64):
        return rng.random(shape, dtype=dtype) >= p
    dtype, n = np.dtype(dtype), math.prod(shape)
    if dtype == np.float32 and (n % 2 or bit_generator.state["has_uint32"]):  # a half-word in play
        return rng.random(shape, dtype=dtype) >= p
    if dtype == np.float32:
        mantissa, uint = 24, np.uint32
        bits = bit_generator.random_raw(n // 2).view(np.uint32)  # low half first, as NumPy reads them
    else:
        mantissa, uint = 53, np.uint64
        bits = bit_generator.random_raw(n)
    k = math.ceil(float(dtype.type(p)) * 2.0 ** mantissa)  # u >= p'  <=>  (b >> (width - mantissa)) >= k
    keep = np.empty(shape, dtype=bool) if bufs is None else _buffer(bufs, "keep", shape, np, np.dtype(bool))
    if k >= 2 ** mantissa:  # p' rounded up to 1: every unit is dropped
        keep[...] = False
        return keep
    shift = 8 * np.dtype(uint).itemsize - mantissa
    return np.greater_equal(bits.reshape(shape), uint(k << shift), out=keep)


def max_norm_(W, c):
    r"""Project each column of W (one hidden unit's incoming weights) onto the ball of radius c.

    See docs/gradients.md, section 6.

        w_j  <-  w_j * min(1, c / ||w_j||)

    Notes
    -----
    This is the weight constraint of the dropout papers (Hinton et al. 2012;
    Srivastava et al. 2014): after each update, a unit whose incoming weight
    vector has grown longer than c is scaled back onto the sphere of radius c.
    It is a projection, not a penalty: it adds nothing to the loss or its
    gradient, it only keeps the iterate inside the feasible set (projected
    momentum SGD, as nanokd trains: the momentum buffer is not projected).
    Works in place and returns W.

    The squared norms are summed by ``einsum`` without forming W * W.  On the
    CPU only the columns outside the ball are rescaled (the others would be
    multiplied by exactly 1); on the GPU, where picking them out would wait
    for the device, every column is multiplied by its factor.
    """
    xp = get_array_module(W)
    norms = xp.sqrt(xp.einsum("ij,ij->j", W, W))
    scale = xp.minimum(1.0, c / xp.maximum(norms, 1e-12)).astype(W.dtype, copy=False)
    if xp is np:
        outside = np.flatnonzero(scale < 1)
        W[:, outside] *= scale[outside]
    else:
        W *= scale
    return W
