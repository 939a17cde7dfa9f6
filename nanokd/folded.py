r"""The CPU fast path: SGD's momentum update folded into the backward pass's weight products.

On the plain path a training step computes every layer's weight gradient and
then updates the weights, in two separate passes (mlp.py, optim.py):

    dW = x^T delta                      (Linear.backward, one matrix product)
    u  <- momentum * u + dW             (SGD.step)
    W  <- W - lr * u

``SGD.step`` reads dW, u and W and writes u and W: for the 2x800 student
that is five passes over 5 MB arrays in every step, after the products have
pushed them out of the cache, and it costs about a sixth of the step.  A
BLAS matrix product computes more than A B, though:

    C <- alpha * op(A) op(B) + beta * C          (gemm)

so with C = u, alpha = 1 and beta = momentum, *one* product gives
u <- momentum * u + x^T delta: the momentum update happens while the product
is written out, and dW is never stored.  What is left is W <- W - lr * u,
one pass (an axpy, y <- a x + y).  These are the same formulas as
:meth:`nanokd.optim.SGD.step` (PyTorch's form of momentum), computed in
another order, so the weights agree with the plain path to rounding
(tests/test_folded.py checks both dtypes against ``MLP.backward`` followed by
``SGD.step``).

Each layer is updated as soon as its gradient is known, while it is still
in cache, after the gradient of its input (``delta W^T``, which needs the
old W) has been computed.  The biases get the same two updates with NumPy
(800 numbers).  The products go through scipy's BLAS wrappers
(:mod:`scipy.linalg.blas`), which expose gemm's ``beta`` and ``c``; NumPy's
``matmul`` does not.  The arrays are C-ordered and BLAS is Fortran-ordered,
so each call is written for the transposes: u^T <- delta^T x + beta u^T.

The path is chosen at one point, :func:`nanokd.trainer.train_step`, which
calls :func:`backward_and_step` for ``optimizer.step(model.backward(g))``,
and only where that computes exactly SGD's formula: NumPy arrays, float32 or
float64, an :class:`~nanokd.optim.SGD` with momentum, without Nesterov or
weight decay, over the model's own parameters.  Anything else takes the
plain path.  ``with folded.disabled():`` forces the plain path (to time or
test it).
"""

import contextlib
import functools

import numpy as np

from .optim import SGD

_enabled = True


@functools.lru_cache(maxsize=None)
def routines(dtype):
    """The BLAS routines for ``dtype``: gemm (C <- alpha op(A) op(B) + beta C) and axpy (y <- a x + y).

    None for a dtype BLAS has no routines for.  scipy is imported here, on the
    first training step, not with nanokd (it takes longer to import than nanokd).
    """
    from scipy.linalg import blas

    return {np.dtype(np.float32): (blas.sgemm, blas.saxpy),
            np.dtype(np.float64): (blas.dgemm, blas.daxpy)}.get(np.dtype(dtype))


def active(model, optimizer):
    """True if this training step takes the folded path (see the module docstring for when)."""
    return (_enabled and model.xp is np and type(optimizer) is SGD and routines(model.dtype) is not None
            and bool(optimizer.momentum) and not optimizer.nesterov and not optimizer.weight_decay
            and len(optimizer.params) == len(model.params)
            and all(p is q for p, q in zip(optimizer.params, model.params)))


@contextlib.contextmanager
def disabled():
    """``with disabled():`` every training step runs the plain formulas."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def backward_and_step(model, optimizer, dz):
    """``optimizer.step(model.backward(dz))``, each layer's momentum update folded into its weight product.

    For each layer, from the last: the gradient of its input, delta W^T, with
    the old W; then u_W <- momentum u_W + x^T delta (one gemm), u_b <-
    momentum u_b + sum_n delta; then W <- W - lr u_W, b <- b - lr u_b.
    ``dz`` is used as scratch space, as by ``MLP.backward``.  A ``dz`` of
    another dtype than the model's takes the plain path (BLAS would compute
    on a converted copy and leave u and W as they were).
    """
    if dz.dtype != model.dtype:
        optimizer.step(model.backward(dz))
        return
    gemm, axpy = routines(model.dtype)
    lr, momentum = float(optimizer.lr), float(optimizer.momentum)
    velocity = dict(zip(map(id, optimizer.params), optimizer.velocity))
    g = dz
    for i in range(len(model.blocks) - 1, -1, -1):
        linear, relu, drop = model.blocks[i]
        if drop is not None:
            g = drop.backward(g)
        if relu is not None:
            g = relu.backward(g)
        dx = None
        if i > 0:  # the network's input needs no gradient
            dx = linear.buffer("dx", linear.x.shape, np, g.dtype)
            np.matmul(g, linear.W.T, out=dx)  # with the old W
        u_W, u_b = velocity[id(linear.W)], velocity[id(linear.b)]
        # u <- momentum u + x^T delta, written for the transposes (Fortran order): u^T <- delta^T x + momentum u^T
        out = gemm(1.0, g.T, linear.x.T, beta=momentum, c=u_W.T, trans_b=True, overwrite_c=True)
        g.sum(axis=0, out=linear.db)
        u_b *= momentum
        u_b += linear.db
        W = axpy(u_W.reshape(-1), linear.W.reshape(-1), a=-lr)  # W <- W - lr u, in place
        b = axpy(u_b, linear.b, a=-lr)
        if not (_same(out, u_W) and _same(W, linear.W) and _same(b, linear.b)):
            raise RuntimeError("BLAS did not update the momentum and weights in place")  # a bug, not a user error
        g = dx


def _same(a, b):
    """True if BLAS wrote its result into b's memory (f2py copies an argument it cannot use as it is)."""
    return a.ctypes.data == b.ctypes.data
