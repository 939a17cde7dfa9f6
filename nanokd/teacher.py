r"""The teacher's side of distillation: its logits v (one teacher or an ensemble), and error counts.

This is the one home of teacher logits: the training loop, the experiment
runner, the viewer (``python -m nanokd.show``) and the benchmarks all call
:func:`compute_teacher_logits`.

An *ensemble* (the paper's section 1: "an ensemble of models ... then
transfer the knowledge") is a list of models.  Its soft targets at
temperature T are the mean of the members' tempered probabilities, and
:func:`ensemble_logits` turns that mean back into logits, so that the losses,
which take logits, need no change.
"""

import math

from .backend import get_array_module
from .losses import log_softmax
from .mlp import MLP


def ensemble_logits(vs, T):
    r"""Logits whose tempered softmax is the mean of the teachers' tempered softmaxes.

    For K teachers with logits v_1 .. v_K (each (N, C)), the ensemble's soft
    targets at temperature T are the mean of their probabilities,

        p = (1/K) sum_k softmax(v_k / T).

    The logits

        v_ens = T log p = T log( (1/K) sum_k exp(log softmax(v_k / T)) )

    give exactly that p back: softmax(v_ens / T) = p / sum_i p_i = p, since p
    sums to 1.  So the loss functions, which take logits, need no change.  The
    log of the mean is computed as a log-sum-exp over k, after subtracting the
    largest term, so it never takes the log of an underflowed 0.  v_ens is
    only meaningful at this one T.  One teacher's logits are returned as they
    are (the same soft targets at every T).

    Parameters
    ----------
    vs : list of (N, C) arrays, all on one device
    T : float > 0
    """
    if not isinstance(vs, (list, tuple)) or not vs:
        raise TypeError("vs must be a non-empty list of (N, C) logit arrays")
    if len(vs) == 1:
        return vs[0]
    shapes = {v.shape for v in vs}
    if len(shapes) != 1:
        raise ValueError(f"the teachers' logits must all have one shape, got {sorted(shapes)}")
    xp = get_array_module(*vs)
    logp = xp.stack([log_softmax(v, T, check=False) for v in vs])  # (K, N, C)
    m = logp.max(axis=0)
    logp -= m
    s = xp.log(xp.exp(logp).sum(axis=0)) + m - math.log(len(vs))
    s *= T
    return s


def compute_teacher_logits(teachers, x, T=1.0, batch_size=10000):
    """The teacher's logits v for every row of x (no dropout), in batches of ``batch_size`` rows.

    ``teachers`` is one :class:`~nanokd.mlp.MLP` or a list of them (an
    ensemble, combined at temperature T by :func:`ensemble_logits`).  x must
    be on the teachers' device.  Returns an (N, C) array there, in the teachers' dtype
    (float32 for training).
    """
    teachers = as_teacher_list(teachers)
    n = x.shape[0]
    xp = teachers[0].xp
    out = xp.empty((n, teachers[0].sizes[-1]), dtype=teachers[0].dtype)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size]
        out[i:i + batch_size] = ensemble_logits([t.forward(xb) for t in teachers], T)
    return out


def as_teacher_list(teachers, name="teacher"):
    """One MLP or a list of MLPs, as a list; the members must share inputs, classes and device."""
    if isinstance(teachers, MLP):
        teachers = [teachers]
    if not isinstance(teachers, (list, tuple)) or not teachers or not all(isinstance(t, MLP) for t in teachers):
        raise TypeError(f"{name} must be an MLP or a non-empty list of MLPs")
    first = teachers[0]
    for t in teachers[1:]:
        if t.sizes[0] != first.sizes[0] or t.sizes[-1] != first.sizes[-1] or t.device != first.device:
            raise ValueError(
                f"the teachers must share input size, class count and device, got {t!r} and {first!r}")
    return list(teachers)


def evaluate_errors(model, x, y, batch_size=10000):
    """The number of rows of x that ``model`` misclassifies (no dropout), as an int.

    ``model`` may be a list of models: an ensemble, which predicts the class of
    highest mean probability.  x and y may be NumPy arrays; they are moved to
    the model's device.
    """
    models = as_teacher_list(model, "model")
    xp = models[0].xp
    x, y = xp.asarray(x), xp.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    if x.shape[0] == 0:
        return 0
    if len(models) == 1:
        return int((models[0].predict(x, batch_size) != y).sum())
    # argmax of the mean of softmax(v_k) is the argmax of the ensemble's logits at T = 1
    return int((compute_teacher_logits(models, x, 1.0, batch_size).argmax(axis=1) != y).sum())
