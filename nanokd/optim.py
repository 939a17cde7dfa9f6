"""Optimizers that update parameter arrays in place, and learning-rate schedules.

An optimizer is built on the model's ``params`` list and its ``step(grads)``
takes the list that ``model.backward`` returns, in the same order and with
the same shapes (:func:`check_grads`: a gradient of another shape would
broadcast silently).  The gradient arrays are used as scratch space (weight
decay is added into them).

Speed.  An update is a few elementwise passes over every parameter, and for
a big layer (784 x 1200 float32 is 3.7 MB) each pass would stream the arrays
through main memory again.  On the CPU the update is therefore applied to
pieces of ``BLOCK`` elements at a time (:func:`pieces`): every pass over a
piece then hits the cache, and the arrays travel from memory once per step.
The arithmetic is the same, element for element (tests/test_optim.py
compares with the formulas written out on whole arrays).  On the GPU each
pass is one kernel over the whole array, so there the piece is the array
(and the training step runs plain momentum SGD as one fused kernel,
``nanokd.fused.momentum_step``: the same two lines).
"""

import numpy as np

from .backend import get_array_module

#: Elements per piece on the CPU: a piece of w, g, u and the scratch (4 x 256 KiB
#: in float32) stays in a core's L2 cache across the passes of one update.
BLOCK = 1 << 16


def pieces(*arrays):
    """Matching pieces of same-shape arrays, of at most ``BLOCK`` elements each, as tuples of views.

    Writing into a piece writes into the array.  NumPy arrays that are all
    C-contiguous are cut into flat pieces; anything else (CuPy arrays, strided
    views) comes back whole, as the single piece ``arrays``.
    """
    n = arrays[0].size
    if n <= BLOCK or not all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays):
        yield arrays
        return
    flat = [a.reshape(-1) for a in arrays]  # views, since the arrays are contiguous
    for start in range(0, n, BLOCK):
        yield tuple(a[start:start + BLOCK] for a in flat)


def check_grads(params, grads):
    """Refuse gradients that do not match the parameters one for one, in number and in shape.

    Without this a gradient of the wrong shape would broadcast: a shape-(1,)
    gradient would move every weight of its parameter by the same step.
    """
    if len(grads) != len(params):
        raise ValueError(f"expected {len(params)} gradients, got {len(grads)}")
    for i, (p, g) in enumerate(zip(params, grads)):
        if getattr(g, "shape", None) != p.shape:
            raise ValueError(f"grads[{i}] has shape {getattr(g, 'shape', type(g).__name__)}, "
                             f"but params[{i}] has shape {p.shape}")


class _Scratch:
    """One scratch array per shape and dtype, reused by every update (a piece of it on the CPU)."""

    def __init__(self):
        self._bufs = {}

    def like(self, a):
        key = (a.size, a.dtype.str, get_array_module(a).__name__)
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = get_array_module(a).empty(a.shape, dtype=a.dtype)
        return buf.reshape(a.shape)


class SGD:
    r"""Stochastic gradient descent with (optionally Nesterov) momentum and weight decay.

    For each parameter w with gradient g:

        g <- g + weight_decay * w
        u <- momentum * u + g                 (u starts at 0)
        w <- w - lr * u                        (plain momentum)
        w <- w - lr * (g + momentum * u)       (Nesterov)

    This is PyTorch's formulation; with a constant learning rate it is the
    classical  u <- momentum * u - lr * g,  w <- w + u.  ``lr`` and
    ``momentum`` are plain attributes, so schedules set them between epochs.
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.params = list(params)
        self.lr, self.momentum, self.nesterov, self.weight_decay = lr, momentum, nesterov, weight_decay
        self.velocity = [get_array_module(p).zeros_like(p) for p in self.params]
        self._scratch = _Scratch()

    def step(self, grads):
        check_grads(self.params, grads)
        # Plain floats, so that a NumPy float64 learning rate never turns a float32 pass into float64.
        lr, momentum, weight_decay = float(self.lr), float(self.momentum), float(self.weight_decay)
        for params in zip(self.params, grads, self.velocity):
            for w, g, u in pieces(*params):
                self._update(w, g, u, self._scratch.like(w), lr, momentum, weight_decay)

    def _update(self, w, g, u, tmp, lr, momentum, weight_decay):
        """The update of the class docstring, in place, for one piece of a parameter w."""
        xp = get_array_module(w)
        if weight_decay:
            xp.multiply(w, weight_decay, out=tmp)  # g <- g + weight_decay * w
            g += tmp
        if momentum:
            u *= momentum                          # u <- momentum * u + g
            u += g
            if self.nesterov:
                xp.multiply(u, momentum, out=tmp)  # g <- g + momentum * u
                g += tmp
            else:
                g = u
        xp.multiply(g, lr, out=tmp)                # w <- w - lr * g
        w -= tmp

    def state(self):
        """The momentum buffers (for checkpoints)."""
        return list(self.velocity)

    def load_state(self, arrays):
        for u, a in zip(self.velocity, arrays):
            u[...] = get_array_module(u).asarray(a, dtype=u.dtype)


class Adam:
    r"""Adam (Kingma & Ba 2015).

        m <- b1 m + (1 - b1) g,    s <- b2 s + (1 - b2) g^2,    t <- t + 1
        w <- w - lr * (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, (b1, b2), eps, weight_decay
        self.m = [get_array_module(p).zeros_like(p) for p in self.params]
        self.s = [get_array_module(p).zeros_like(p) for p in self.params]
        self._scratch = _Scratch()
        self.t = 0

    def step(self, grads):
        check_grads(self.params, grads)
        self.t += 1
        for params in zip(self.params, grads, self.m, self.s):
            for w, g, m, s in pieces(*params):
                self._update(w, g, m, s, self._scratch.like(w))

    def _update(self, w, g, m, s, tmp):
        """The update of the class docstring, in place, for one piece of a parameter w."""
        xp = get_array_module(w)
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        if self.weight_decay:
            xp.multiply(w, float(self.weight_decay), out=tmp)  # g <- g + weight_decay * w
            g += tmp
        m *= b1                                    # m <- b1 m + (1 - b1) g
        xp.multiply(g, 1 - b1, out=tmp)
        m += tmp
        s *= b2                                    # s <- b2 s + (1 - b2) g^2
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        s += tmp
        xp.divide(s, c2, out=tmp)                  # w <- w - lr/c1 * m / (sqrt(s/c2) + eps)
        xp.sqrt(tmp, out=tmp)
        tmp += self.eps
        xp.divide(m, tmp, out=tmp)
        tmp *= float(self.lr) / c1
        w -= tmp

    def state(self):
        """The moment estimates and the step count (for checkpoints)."""
        return list(self.m) + list(self.s) + [np.array(self.t)]

    def load_state(self, arrays):
        n = len(self.params)
        for dst, a in zip(self.m + self.s, arrays[: 2 * n]):
            dst[...] = get_array_module(dst).asarray(a, dtype=dst.dtype)
        self.t = int(arrays[2 * n])


def exponential_decay(lr0, gamma, epoch):
    """Learning rate of epoch ``epoch`` (from 0) decaying by ``gamma`` per epoch:  lr0 * gamma^epoch."""
    return lr0 * gamma ** epoch


def linear_ramp(start, end, ramp_epochs, epoch):
    """Linear ramp from ``start`` to ``end`` over ``ramp_epochs``, then constant.

    The dropout papers ramp momentum from 0.5 to 0.99 over the first few
    hundred epochs this way.
    """
    if ramp_epochs <= 0 or epoch >= ramp_epochs:
        return end
    return start + (end - start) * epoch / ramp_epochs
