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

from .backend import get_array_module


def _buffer(store, key, shape, xp, dtype):
    """A scratch array of the given shape, allocated once and then reused."""
    buf = store.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = xp.empty(shape, dtype=dtype)
        store[key] = buf
    return buf


class Linear:
    r"""Affine map  a = x W + b.

    Backward, for an upstream gradient da = dL/da of shape (N, out):

        dL/dW = x^T da        (in, out)
        dL/db = sum_n da_n    (out,)
        dL/dx = da W^T        (N, in)

    Each follows from a_nj = sum_i x_ni W_ij + b_j: the derivative of a_nj
    with respect to W_ij is x_ni, with respect to b_j is 1, and with respect to
    x_ni is W_ij; the chain rule sums over every (n, j) that the weight touches.
    """

    def __init__(self, W, b):
        self.W, self.b = W, b
        self.dW = get_array_module(W).zeros_like(W)
        self.db = get_array_module(b).zeros_like(b)
        self._bufs = {}
        self.x = None

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        a = _buffer(self._bufs, "a", (x.shape[0], self.W.shape[1]), xp, self.W.dtype)
        xp.matmul(x, self.W, out=a)
        a += self.b
        return a

    def backward(self, da, need_dx=True):
        """Fill ``self.dW``, ``self.db``; return dL/dx (or None if not needed)."""
        xp = get_array_module(da)
        xp.matmul(self.x.T, da, out=self.dW)
        da.sum(axis=0, out=self.db)
        if not need_dx:
            return None
        dx = _buffer(self._bufs, "dx", self.x.shape, xp, da.dtype)
        xp.matmul(da, self.W.T, out=dx)
        return dx


class ReLU:
    r"""Rectified linear unit  h = max(a, 0), computed in place.

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


class Dropout:
    r"""Inverted dropout with drop probability p, computed in place.

    In training, each unit is kept with probability 1 - p and the kept units
    are scaled by 1/(1 - p):  h = x * m,  m_ni = [u_ni >= p] / (1 - p),
    u ~ Uniform[0, 1).  The expected value of h is x, so at test time the
    layer is the identity (no rescaling of the weights is needed).

    Backward:  dL/dx = dL/dh * m, with the mask drawn in the forward pass.
    The mask is drawn on the device of x from the model's generator.
    """

    def __init__(self, p, inplace=False):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.inplace = inplace  # True when x is a buffer of the layer below, never for user input
        self.mask = None
        self._bufs = {}

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
            m = _buffer(self._bufs, "mask", x.shape, xp, x.dtype)
            xp.greater_equal(rng.random(x.shape, dtype=x.dtype), self.p, out=m)
            m *= 1.0 / (1.0 - self.p)
            self.mask = m
        out = x if self.inplace else _buffer(self._bufs, "h", x.shape, xp, x.dtype)
        return xp.multiply(x, self.mask, out=out)

    def backward(self, dh):
        if self.mask is not None:
            dh *= self.mask
        return dh


def max_norm_(W, c):
    r"""Project each column of W (one hidden unit's incoming weights) onto the ball of radius c.

        w_j  <-  w_j * min(1, c / ||w_j||)

    Notes
    -----
    This is the weight constraint of the dropout papers (Hinton et al. 2012;
    Srivastava et al. 2014): after each update, a unit whose incoming weight
    vector has grown longer than c is scaled back onto the sphere of radius c.
    It is a projection, not a penalty: it adds nothing to the loss or its
    gradient, it only keeps the iterate inside the feasible set (projected
    gradient descent).  Works in place and returns W.
    """
    xp = get_array_module(W)
    norms = xp.sqrt((W * W).sum(axis=0))
    scale = xp.minimum(1.0, c / xp.maximum(norms, 1e-12))
    W *= scale.astype(W.dtype, copy=False)
    return W
