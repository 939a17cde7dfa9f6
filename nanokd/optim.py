"""Optimizers that update parameter arrays in place, and learning-rate schedules.

An optimizer is built on the model's ``params`` list and its ``step(grads)``
takes the list that ``model.backward`` returns, in the same order.  The
gradient arrays are used as scratch space (weight decay is added into them).
"""

from .backend import get_array_module


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
        self._scratch = [get_array_module(p).empty_like(p) for p in self.params]

    def step(self, grads):
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for w, g, u, tmp in zip(self.params, grads, self.velocity, self._scratch):
            xp = get_array_module(w)
            if self.weight_decay:
                xp.multiply(w, self.weight_decay, out=tmp)
                g += tmp
            if self.momentum:
                u *= self.momentum
                u += g
                if self.nesterov:
                    xp.multiply(u, self.momentum, out=tmp)
                    g += tmp
                else:
                    g = u
            xp.multiply(g, self.lr, out=tmp)
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
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, (b1, b2), eps, weight_decay
        self.m = [get_array_module(p).zeros_like(p) for p in self.params]
        self.s = [get_array_module(p).zeros_like(p) for p in self.params]
        self._scratch = [get_array_module(p).empty_like(p) for p in self.params]
        self.t = 0

    def step(self, grads):
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for w, g, m, s, tmp in zip(self.params, grads, self.m, self.s, self._scratch):
            xp = get_array_module(w)
            if self.weight_decay:
                g += self.weight_decay * w
            m *= b1
            m += (1 - b1) * g
            s *= b2
            xp.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            s += tmp
            # tmp = sqrt(s / c2) + eps;  w -= lr / c1 * m / tmp
            xp.sqrt(s / c2, out=tmp)
            tmp += self.eps
            xp.divide(m, tmp, out=tmp)
            tmp *= self.lr / c1
            w -= tmp

    def state(self):
        return list(self.m) + list(self.s) + [self.t]

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
