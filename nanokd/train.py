r"""Training: a teacher, a baseline student and a distilled student, with one loop for all three.

This is the experiment of section 3 of Hinton, Vinyals & Dean (2015),
"Distilling the Knowledge in a Neural Network" (arXiv 1503.02531)::

    python -m nanokd.train                     # the quick preset: all three roles, then a table
    python -m nanokd.train --preset paper      # the paper's nets and recipe (meant for a GPU)
    python -m nanokd.train --role distill --teacher runs/a/teacher.npz runs/b/teacher.npz

The three roles differ only in the network and in the targets:

=========  ======================================  ==========================================
role       network (paper)                         loss, for student logits z
=========  ======================================  ==========================================
teacher    784-1200-1200-10, dropout, max-norm,    cross_entropy(z, y)
           jittered inputs
baseline   784-800-800-10, no regularisation       cross_entropy(z, y)
distilled  the baseline's net                      alpha T^2 KL(p || q) + (1 - alpha) CE(z, y),
                                                   p = softmax(v / T), v = the teacher's logits
=========  ======================================  ==========================================

so :func:`train_model` is written once and takes the teacher as an option.
One epoch of it, for a batch of N examples (x, y) at a time, is

    z = model.forward(x, train=True)          # dropout masks drawn here
    g = dL/dz                                 # cross_entropy_grad or distillation_loss_grad
    grads = model.backward(g)                 # backpropagation, by hand
    optimizer.step(grads)                     # SGD with momentum
    model.apply_max_norm()                    # projection, if the model has max-norm

Everything random in an epoch (the shuffle, the jitter, the dropout masks) is
drawn from generators seeded from ``(seed, epoch)`` at the start of the epoch.
So the state of a run between two epochs is only the weights, the momentum
buffers and the epoch number: that is what a checkpoint holds, and a run
resumed from one ends with the same weights, bit for bit on the CPU (with the
same number of BLAS threads, which fixes the order of the sums in a matrix
product), as a run that was never interrupted.

The Python API (:func:`train_model`, :func:`evaluate_errors`,
:func:`compute_teacher_logits`, :func:`ensemble_logits`) is what the command line is
built on, and what a benchmark script calls for its many runs.
"""

import argparse
import dataclasses
import hashlib
import json
import math
import numbers
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import data as nkdata
from .atomic import write_json_atomic
from .backend import DEVICES, default_rng, get_array_module, get_xp, resolve_device, to_numpy
from .losses import cross_entropy_and_grad, distillation_loss_and_grad, log_softmax
from .mlp import MLP, save_npz_atomic
from .optim import SGD, exponential_decay, linear_ramp

# ---------------------------------------------------------------------------
# Soft targets: one teacher, or the mean of an ensemble's
# ---------------------------------------------------------------------------


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
    """The teacher's logits v for every row of x, computed once (no dropout).

    ``teachers`` is one :class:`~nanokd.mlp.MLP` or a list of them (an
    ensemble, combined at temperature T by :func:`ensemble_logits`).  x must
    be on the teachers' device.  Returns an (N, C) float32 array there.
    """
    teachers = _as_teacher_list(teachers)
    n = x.shape[0]
    xp = teachers[0].xp
    out = xp.empty((n, teachers[0].sizes[-1]), dtype=xp.float32)
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size]
        out[i:i + batch_size] = ensemble_logits([t.forward(xb) for t in teachers], T)
    return out


def _as_teacher_list(teachers, name="teacher"):
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


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def evaluate_errors(model, x, y, batch_size=10000):
    """The number of rows of x that ``model`` misclassifies (no dropout), as an int.

    ``model`` may be a list of models: an ensemble, which predicts the class of
    highest mean probability.  x and y may be NumPy arrays; they are moved to
    the model's device.
    """
    models = _as_teacher_list(model, "model")
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


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------


def epoch_seeds(seed, epoch):
    """Three independent 32-bit seeds (dropout, jitter, shuffle) for epoch ``epoch`` of run ``seed``.

    Derived with NumPy's SeedSequence from the pair (seed, epoch), so each
    epoch's random draws depend on nothing but these two numbers.
    """
    return [int(s) for s in np.random.SeedSequence([seed, epoch]).generate_state(3)]


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _check_real(name, value, low, high, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}")


def _check_data(model, x, y, name_x="x", name_y="y"):
    if x.ndim != 2 or x.shape[1] != model.sizes[0]:
        raise ValueError(f"{name_x} must have shape (N, {model.sizes[0]}), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name_y} must have shape ({x.shape[0]},), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name_y} must hold integer class labels, got dtype {y.dtype}")


def _fingerprint(teachers, v):
    """A short hash of the teachers' weights (or of given logits v), so a checkpoint knows its teacher."""
    h = hashlib.sha256()
    for a in ([p for t in teachers for p in t.params] if teachers is not None else [v]):
        h.update(np.ascontiguousarray(to_numpy(a)).tobytes())
    return h.hexdigest()[:16]


def _signature(model, settings, n):
    """What a checkpoint must agree on to be resumed: the model, the data size, every hyperparameter but epochs."""
    return json.dumps({"model": model.config, "n_train": n, **settings}, sort_keys=True)


def train_model(model, x, y, *, epochs, batch_size=100, lr=0.1, lr_decay=1.0, momentum=0.9,
                momentum_start=None, momentum_ramp=0, jitter=0, teacher=None, teacher_logits=None,
                T=1.0, alpha=1.0, x_val=None, y_val=None, seed=0, checkpoint_path=None, resume=False,
                progress=True, log=print, name="model", callback=None):
    r"""Train ``model`` in place by minibatch SGD; return the history of the run.

    Without a teacher the loss is the cross-entropy of the hard labels y.
    With one (``teacher`` or ``teacher_logits``) it is the distillation loss

        alpha T^2 KL(p || q) + (1 - alpha) CE(z, y),   q = softmax(z/T), p = softmax(v/T),

    where v are the teacher's logits for the same (possibly jittered) inputs.

    Parameters
    ----------
    model : MLP
        Trained in place, on its own device; x, y (and the rest) are moved there once.
    x, y : (N, D) float array and (N,) integer labels
        The training set (for a student: the transfer set).
    epochs : int
        Number of passes over x.  Resuming may extend a run to more epochs.
    batch_size : int
        N of each minibatch; the last batch of an epoch may be smaller.
    lr, lr_decay : float
        Learning rate of epoch e (from 0) is ``lr * lr_decay**e`` (:func:`~nanokd.optim.exponential_decay`).
    momentum, momentum_start, momentum_ramp : float, float, int
        Momentum ramps linearly from ``momentum_start`` to ``momentum`` over the
        first ``momentum_ramp`` epochs (:func:`~nanokd.optim.linear_ramp`), then stays.
        ``momentum_start=None`` means no ramp.
    jitter : int
        Translate every training image by up to this many pixels, freshly each
        epoch (:func:`nanokd.data.jitter`); 0 for none.  x must then be 28x28 images.
    teacher : MLP or list of MLP, optional
        Distil from this teacher (or from the mean of an ensemble's soft
        targets).  Without jitter its logits for x are computed once and cached;
        with jitter they are recomputed for every jittered batch.
    teacher_logits : (N, C) array, optional
        Precomputed logits v of the teacher for x (exclusive with ``teacher``;
        not allowed with jitter, since they would not follow the shifted images).
    T, alpha : float
        Temperature and the weight of the soft term (1 = soft targets only);
        used only with a teacher.
    x_val, y_val : arrays, optional
        Validation set: its error count is logged after every epoch.
    seed : int >= 0
        Seeds the shuffle, jitter and dropout of every epoch (with the epoch number).
    checkpoint_path : str or Path, optional
        Written atomically after every epoch: weights, momentum, epoch, history.
    resume : bool
        Continue from ``checkpoint_path`` if it exists (else start afresh).  The
        checkpoint must come from the same model and settings (epochs aside).
    progress : bool or None
        Show a tqdm bar per epoch; None shows it only on a terminal.
    log : callable or None
        Called with one line of text per epoch.
    name : str
        The model's name in the progress bar and log.
    callback : callable, optional
        ``callback(epoch, history)`` after each epoch's checkpoint (epoch counts from 1).
        If it returns True, training stops there (e.g. at the end of a time
        budget); the history then ends at that epoch.

    Returns
    -------
    dict
        Per-epoch lists ``epoch, loss, val_errors, lr, momentum, seconds``,
        plus ``setup_seconds`` (time to compute cached soft targets) and
        ``total_seconds``.

    Raises
    ------
    FloatingPointError
        If an epoch's mean training loss is not finite (the run diverged).  It
        is checked once per epoch, when the loss is read anyway; the
        checkpoint then still holds the epoch before.
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a nanokd MLP, got {type(model).__name__}")
    _check_int("epochs", epochs, 0)
    _check_int("batch_size", batch_size, 1)
    _check_real("lr", lr, 0, math.inf, low_open=True, high_open=True)
    _check_real("lr_decay", lr_decay, 0, 1, low_open=True)
    _check_real("momentum", momentum, 0, 1, high_open=True)
    if momentum_start is not None:
        _check_real("momentum_start", momentum_start, 0, 1, high_open=True)
    _check_int("momentum_ramp", momentum_ramp, 0)
    _check_int("jitter", jitter, 0)
    _check_int("seed", seed, 0)
    if teacher is not None and teacher_logits is not None:
        raise ValueError("pass teacher or teacher_logits, not both")
    distil = teacher is not None or teacher_logits is not None
    if distil:
        _check_real("T", T, 0, math.inf, low_open=True, high_open=True)
        _check_real("alpha", alpha, 0, 1)
        T, alpha = float(T), float(alpha)  # a NumPy float64 scalar would turn float32 arithmetic into float64
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")

    xp = model.xp
    x, y = xp.asarray(x), xp.asarray(y)
    _check_data(model, x, y)
    n = x.shape[0]
    if n == 0:
        raise ValueError("x is empty: nothing to train on")
    if jitter and model.sizes[0] != nkdata.IMAGE_SIZE ** 2:
        raise ValueError(f"jitter needs 28x28 images (784 inputs), but the model takes {model.sizes[0]}")
    validate = x_val is not None and y_val is not None and len(x_val) > 0
    if validate:
        x_val, y_val = xp.asarray(x_val), xp.asarray(y_val)
        _check_data(model, x_val, y_val, "x_val", "y_val")

    # ---- the teacher: its soft targets are cached for the whole transfer set, or recomputed per batch
    teachers, v_all, setup_seconds = None, None, 0.0
    if teacher is not None:
        teachers = _as_teacher_list(teacher)
        if teachers[0].sizes[0] != model.sizes[0] or teachers[0].sizes[-1] != model.sizes[-1]:
            raise ValueError(f"teacher {teachers[0].sizes} and student {model.sizes} differ in inputs or classes")
        if teachers[0].device != model.device:
            raise ValueError(f"teacher is on {teachers[0].device} but the student on {model.device}")
    if teacher_logits is not None:
        if jitter:
            raise ValueError("teacher_logits cannot be used with jitter: pass teacher= to recompute them per batch")
        v_all = xp.asarray(teacher_logits, dtype=model.dtype)  # the student's dtype, as every other array
        if v_all.shape != (n, model.sizes[-1]):
            raise ValueError(f"teacher_logits must have shape ({n}, {model.sizes[-1]}), got {v_all.shape}")

    settings = dict(batch_size=batch_size, lr=lr, lr_decay=lr_decay, momentum=momentum,
                    momentum_start=momentum_start, momentum_ramp=momentum_ramp, jitter=jitter, seed=seed,
                    T=T if distil else None, alpha=alpha if distil else None,
                    teacher=_fingerprint(teachers, v_all) if distil else None)
    signature = _signature(model, settings, n)

    optimizer = SGD(model.params, lr=lr, momentum=momentum)
    history = {"epoch": [], "loss": [], "val_errors": [], "lr": [], "momentum": [], "seconds": []}
    start = 0
    if resume and os.path.exists(checkpoint_path):
        start, history = load_checkpoint(checkpoint_path, model, optimizer, signature)
        if start > epochs:  # its weights are not those of `epochs` epochs, and nothing would say so
            raise ValueError(f"checkpoint {checkpoint_path} holds {start} epochs, more than epochs={epochs}: "
                             f"ask for at least {start}, or delete it")
        if log and start:
            log(f"{name}: resumed from {checkpoint_path} after epoch {start}")

    if teachers is not None and not jitter and start < epochs:
        t0 = time.perf_counter()
        v_all = compute_teacher_logits(teachers, x, T).astype(model.dtype, copy=False)
        setup_seconds = time.perf_counter() - t0

    jitter_buf = xp.empty(x.shape, dtype=x.dtype) if jitter else None
    n_batches = -(-n // batch_size)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        optimizer.lr = exponential_decay(lr, lr_decay, epoch)
        optimizer.momentum = (momentum if momentum_start is None
                              else linear_ramp(momentum_start, momentum, momentum_ramp, epoch))
        s_dropout, s_jitter, s_shuffle = epoch_seeds(seed, epoch)
        model.reseed(s_dropout)
        x_epoch = nkdata.jitter(x, default_rng(xp, s_jitter), jitter, out=jitter_buf) if jitter else x
        perm = xp.asarray(np.random.default_rng(s_shuffle).permutation(n))

        loss_sum = xp.zeros((), dtype=xp.float64)  # stays on the device; read every few batches
        bar = tqdm(total=n_batches, desc=f"{name} {epoch + 1}/{epochs}", leave=False, unit="batch",
                   disable=None if progress is None else not progress, dynamic_ncols=True)
        for b in range(n_batches):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            xb, yb = x_epoch[idx], y[idx]
            z = model.forward(xb, train=True)
            if distil:
                vb = (v_all[idx] if v_all is not None else
                      ensemble_logits([t.forward(xb) for t in teachers], T).astype(model.dtype, copy=False))
                loss, g = distillation_loss_and_grad(z, vb, yb, T, alpha, check=False)
                loss_sum += loss
            else:
                loss, g = cross_entropy_and_grad(z, yb, check=False)
                loss_sum += loss
            optimizer.step(model.backward(g))
            model.apply_max_norm()
            bar.update(1)
            if (b + 1) % 20 == 0 and not bar.disable and xp is np:  # on a GPU, reading it would wait for the device
                bar.set_postfix(loss=f"{float(loss_sum) / (b + 1):.4f}", refresh=False)
        bar.close()

        loss = float(loss_sum) / n_batches
        if not math.isfinite(loss):  # read once per epoch: no synchronisation inside the batch loop
            raise FloatingPointError(f"{name}: the training loss of epoch {epoch + 1} is {loss}: training diverged "
                                     f"(lr {optimizer.lr:.4g} is probably too large for batch size {batch_size})")
        val_errors = evaluate_errors(model, x_val, y_val) if validate else None
        seconds = time.perf_counter() - t0
        for key, value in zip(history, (epoch + 1, loss, val_errors, optimizer.lr, optimizer.momentum, seconds)):
            history[key].append(value)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, epoch + 1, history, signature)
        if log:
            val = f"val {val_errors} errors ({100 * val_errors / len(y_val):.2f}%)" if validate else "no validation"
            log(f"{name:9s} epoch {epoch + 1:3d}/{epochs}  loss {loss:.4f}  {val}  "
                f"lr {optimizer.lr:.4g}  momentum {optimizer.momentum:.3g}  {seconds:.1f} s")
        if callback is not None and callback(epoch + 1, history):
            break  # the callback asked to stop: the model holds this epoch's weights

    history["setup_seconds"] = setup_seconds
    history["total_seconds"] = setup_seconds + float(sum(history["seconds"]))
    return history


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def save_checkpoint(path, model, optimizer, epoch, history, signature):
    """Write weights, the optimizer's state, the epoch count and the history to ``path``, atomically.

    The optimizer's state is what its ``state()`` returns (SGD: the momentum
    buffers; Adam: both moment estimates and the step count), stored under
    ``velocity_0``, ``velocity_1``, ... in that order.
    """
    arrays = {f"param_{i}": to_numpy(p) for i, p in enumerate(model.params)}
    arrays.update({f"velocity_{i}": to_numpy(u) for i, u in enumerate(optimizer.state())})
    arrays["epoch"] = np.array(epoch)
    arrays["history"] = np.array(json.dumps(history))
    arrays["signature"] = np.array(signature)
    save_npz_atomic(path, arrays)


def load_checkpoint(path, model, optimizer, signature):
    """Load a checkpoint written by :func:`save_checkpoint` into model and optimizer.

    Returns ``(epochs_done, history)``.  Raises ValueError if it was written for
    another model or other settings (its signature differs).
    """
    with np.load(path, allow_pickle=False) as f:
        if "signature" not in f.files:
            raise ValueError(f"{path} is not a nanokd training checkpoint")
        saved = json.loads(str(f["signature"]))
        if saved != json.loads(signature):
            now = json.loads(signature)
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ValueError(f"checkpoint {path} was written with other settings ({', '.join(diff)}): "
                             f"delete it or resume with the same settings")
        k = len(model.params)
        n = len(optimizer.state())  # SGD: a momentum buffer per parameter; Adam: m, s and the step count
        saved_n = sum(name.startswith("velocity_") for name in f.files)
        if saved_n != n:
            raise ValueError(f"checkpoint {path} holds {saved_n} optimizer arrays, "
                             f"but {type(optimizer).__name__} has {n}: it was written by another optimizer")
        model.load_params([f[f"param_{i}"] for i in range(k)])
        optimizer.load_state([f[f"velocity_{i}"] for i in range(n)])
        return int(f["epoch"]), json.loads(str(f["history"]))


# ---------------------------------------------------------------------------
# Recipes and presets
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one role's network is built and trained (every field is also a command-line flag)."""

    hidden: tuple            # hidden layer widths
    epochs: int
    batch_size: int
    lr: float                # learning rate of the first epoch
    lr_decay: float          # lr of epoch e is lr * lr_decay**e
    momentum: float          # momentum after the ramp
    momentum_start: float    # momentum of epoch 0, ramped linearly to `momentum` ...
    momentum_ramp: int       # ... over this many epochs (0: no ramp)
    dropout_input: float
    dropout_hidden: float
    max_norm: float          # max-norm radius of each hidden unit's incoming weights; 0 = off
    jitter: int              # random translations of up to this many pixels; 0 = off

    def sizes(self, n_in=784, n_classes=10):
        return [n_in, *self.hidden, n_classes]


#: The defaults of every training flag.  The baseline and the distilled
#: student share the "student" recipe, so that they differ only in their targets.
PRESETS = {
    "quick": {
        "about": "small nets and few epochs, to see the effect in a minute or two on a 2-core CPU. NOT the "
                 "paper's nets or recipe: the teacher is 784-800-800-10 with jitter but without dropout or "
                 "max-norm (they pay off only over many epochs), the student 784-300-300-10; its numbers are "
                 "not the paper's",
        "teacher": Recipe(hidden=(800, 800), epochs=8, batch_size=100, lr=0.1, lr_decay=0.7, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=2),
        "student": Recipe(hidden=(300, 300), epochs=8, batch_size=100, lr=0.03, lr_decay=0.85, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=0),
        "T": 20.0,
        "alpha": 0.9,
    },
    "paper": {
        "about": "the paper's section 3: teacher 784-1200-1200-10 with dropout, max-norm and jitter, student "
                 "784-800-800-10 without regularisation, with the schedules benchmarks/paper_mnist.py uses "
                 "(the students' chosen on a validation split and by how closely they fit the teacher on the "
                 "transfer set). The teacher takes about 2 hours on a 2-core CPU (benchmarks/RESULTS.md), far "
                 "less on a GPU; each student about 6 minutes on the CPU",
        "teacher": Recipe(hidden=(1200, 1200), epochs=500, batch_size=100, lr=0.1, lr_decay=0.990832, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.2, dropout_hidden=0.5,
                          max_norm=3.5, jitter=2),
        "student": Recipe(hidden=(800, 800), epochs=60, batch_size=100, lr=0.05, lr_decay=0.97, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=0),
        "T": 20.0,
        "alpha": 0.9,
    },
}

ROLES = ("all", "teacher", "student", "distill")

#: name -> (role in results.json, file of final weights, file of per-epoch checkpoints)
FILES = {
    "teacher": ("teacher", "teacher.npz", "teacher.ckpt.npz"),
    "student": ("baseline", "student.npz", "student.ckpt.npz"),
    "distill": ("distilled", "distilled.npz", "distilled.ckpt.npz"),
}


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def _typed(cast, ok, what):
    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


_pos_int = _typed(int, lambda v: v >= 1, "an integer >= 1")
_nonneg_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
_pos_float = _typed(float, lambda v: 0 < v < math.inf, "a number > 0")
_nonneg_float = _typed(float, lambda v: 0 <= v < math.inf, "a number >= 0")
_unit = _typed(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
_unit_open = _typed(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
_decay = _typed(float, lambda v: 0 < v <= 1, "a number in (0, 1]")

#: field -> (argparse keywords, help).  Each becomes --FIELD, --teacher-FIELD and --student-FIELD.
RECIPE_FLAGS = {
    "hidden": (dict(type=_pos_int, nargs="+", metavar="N"), "hidden layer widths, e.g. --hidden 1200 1200"),
    "epochs": (dict(type=_nonneg_int, metavar="N"), "passes over the training set"),
    "batch_size": (dict(type=_pos_int, metavar="N"), "examples per SGD step"),
    "lr": (dict(type=_pos_float, metavar="LR"), "learning rate of the first epoch"),
    "lr_decay": (dict(type=_decay, metavar="G"), "multiply the learning rate by G after every epoch"),
    "momentum": (dict(type=_unit_open, metavar="M"), "SGD momentum (after the ramp)"),
    "momentum_start": (dict(type=_unit_open, metavar="M"), "momentum of the first epoch, when ramping"),
    "momentum_ramp": (dict(type=_nonneg_int, metavar="N"),
                      "ramp momentum linearly from --momentum-start to --momentum over N epochs (0: no ramp)"),
    "dropout_input": (dict(type=_unit_open, metavar="P"), "drop probability of each input pixel"),
    "dropout_hidden": (dict(type=_unit_open, metavar="P"), "drop probability of each hidden unit"),
    "max_norm": (dict(type=_nonneg_float, metavar="C"),
                 "max-norm radius of each hidden unit's incoming weight vector (0: off)"),
    "jitter": (dict(type=_nonneg_int, metavar="PX"),
               "translate each training image by up to PX pixels, new shifts every epoch (0: off); for the "
               "distilled student this augments the transfer set, and the soft targets are recomputed per batch"),
}


def _flag(field, role=None):
    return "--" + (f"{role}-" if role else "") + field.replace("_", "-")


def _fmt_value(v):
    return " ".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)


def _preset_table():
    """The defaults of the training flags, one column per preset and role (for --help)."""
    cols = [(p, r) for p in PRESETS for r in ("teacher", "student")]
    lines = ["defaults of the training flags, per --preset and role:",
             "  " + " " * 18 + "".join(f"{p + ' ' + r:>17}" for p, r in cols)]
    for field in RECIPE_FLAGS:
        cells = [_fmt_value(getattr(PRESETS[p][r], field)) for p, r in cols]
        lines.append(f"  {_flag(field):18s}" + "".join(f"{c:>17}" for c in cells))
    for key in ("T", "alpha"):  # distilled student only: one value per preset, in its student column
        lines.append(f"  --{key:16s}" + "".join(f"{PRESETS[p][key]:>17g}" if r == "student" else " " * 17
                                               for p, r in cols))
    lines.append("")
    lines += [textwrap.fill(f"{p}: {PRESETS[p]['about']}", 100, initial_indent="  ", subsequent_indent="    ")
              for p in PRESETS]
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m nanokd.train",
        description=textwrap.fill(
            "Knowledge distillation on MNIST (Hinton, Vinyals & Dean 2015, section 3): train a teacher, a baseline "
            "student on the hard labels, and the same student distilled from the teacher's soft targets at "
            "temperature T; then print their test errors side by side.", 100),
        epilog=_preset_table() + "\n\nexamples:\n"
               "  python -m nanokd.train                                # quick preset, all three roles\n"
               "  python -m nanokd.train --preset paper --device cuda\n"
               "  python -m nanokd.train --role distill --teacher runs/A/teacher.npz runs/B/teacher.npz --T 8\n"
               "  python -m nanokd.train --resume runs/20250101-120000  # continue an interrupted run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    run = parser.add_argument_group("what to run")
    run.add_argument("--role", choices=ROLES, default=None,
                     help="all: teacher, then baseline student, then distilled student (default); or one of them "
                          "alone (distill needs --teacher)")
    run.add_argument("--preset", choices=tuple(PRESETS), default=None,
                     help="the defaults of the training flags, see the table below (default: quick)")
    run.add_argument("--teacher", nargs="+", metavar="PATH", default=None,
                     help="distil from these saved teachers (teacher.npz of earlier runs) instead of training one; "
                          "several form an ensemble whose soft targets are the mean of their tempered probabilities")
    run.add_argument("--T", type=_pos_float, default=None, metavar="T",
                     help="distillation temperature (default: 20)")
    run.add_argument("--alpha", type=_unit, default=None, metavar="A",
                     help="weight of the soft-target term alpha*T^2*KL(p||q) + (1-alpha)*CE (default: 0.9)")
    run.add_argument("--seed", type=_nonneg_int, default=None, metavar="S",
                     help="seeds the initial weights, shuffles, dropout and jitter (default: 0)")
    run.add_argument("--device", choices=DEVICES, default=None,
                     help="cuda needs CuPy and a GPU; auto picks cuda when present (default: auto)")
    run.add_argument("--out", metavar="DIR", default=None,
                     help="where models, checkpoints and results.json go (default: runs/<date>-<time>)")
    run.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the interrupted run in DIR from its last checkpoints, with the settings saved "
                          "in DIR/config.json (no other flags but --device and --no-progress)")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bars (they are shown only on a terminal anyway)")

    d = parser.add_argument_group("data")
    d.add_argument("--dataset", choices=nkdata.DATASETS, default=None, help="(default: mnist)")
    d.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder with the four IDX .gz files (default: $NANOKD_DATA, else the cache "
                        "$XDG_CACHE_HOME/nanokd/<dataset> (~/.cache/nanokd/<dataset>), else a system folder such as "
                        "/usr/share/datasets/fashion-mnist, else a download into the cache)")
    d.add_argument("--val", type=_nonneg_int, metavar="N", default=None,
                   help="hold out the last N training images for validation (model selection only; default: 10000; "
                        "0: none). The test set is used once, at the end")
    d.add_argument("--no-verify", action="store_true",
                   help="skip the checksum and size checks of the data files (for home-made files)")

    t = parser.add_argument_group("training (defaults: the table below)", textwrap.fill(
        "Each flag sets the value for every role this run trains. Each also exists as --teacher-FLAG and "
        "--student-FLAG (e.g. --teacher-epochs 5 --student-hidden 30 30), which set it for one role and win over "
        "the plain flag; the student flags apply to the baseline and the distilled student alike.", 100))
    for field, (kwargs, help_) in RECIPE_FLAGS.items():
        t.add_argument(_flag(field), dest=field, default=None, help=help_, **kwargs)
        for role in ("teacher", "student"):
            t.add_argument(_flag(field, role), dest=f"{role}_{field}", default=None, help=argparse.SUPPRESS, **kwargs)
    return parser


def settings_from_args(args, parser):
    """The run's complete settings (a JSON-able dict) from parsed flags and the preset."""
    preset_name = args.preset or "quick"
    preset = PRESETS[preset_name]
    settings = {
        "role": args.role or "all",
        "preset": preset_name,
        "dataset": args.dataset or "mnist",
        "data_dir": None if args.data_dir is None else os.path.abspath(args.data_dir),
        "val": 10000 if args.val is None else args.val,
        "verify": not args.no_verify,
        "seed": 0 if args.seed is None else args.seed,
        "device": args.device or "auto",
        "teacher_files": None if args.teacher is None else [os.path.abspath(p) for p in args.teacher],
        "T": preset["T"] if args.T is None else args.T,
        "alpha": preset["alpha"] if args.alpha is None else args.alpha,
    }
    for role in ("teacher", "student"):
        values = {}
        for field in RECIPE_FLAGS:
            value = getattr(args, f"{role}_{field}")
            if value is None:
                value = getattr(args, field)
            if value is not None:
                values[field] = tuple(value) if field == "hidden" else value
        settings[role] = dataclasses.asdict(dataclasses.replace(preset[role], **values))
        settings[role]["hidden"] = list(settings[role]["hidden"])  # as it reads back from config.json

    role, files = settings["role"], settings["teacher_files"]
    if role == "distill" and not files:
        parser.error("--role distill needs --teacher PATH [PATH ...]")
    if role in ("teacher", "student") and files:
        parser.error(f"--teacher is for --role distill or all, not --role {role}")
    for path in files or ():
        if not os.path.isfile(path):
            parser.error(f"argument --teacher: no such file: {path}")
    return settings


def main(argv=None):
    """``python -m nanokd.train``: parse the flags, run, return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        given = [a for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")
                 and a.split("=")[0] not in ("--resume", "--device", "--no-progress")]
        if given:
            parser.error(f"--resume continues with the settings saved in {args.resume}/config.json; "
                         f"leave out {' '.join(given)}")
        config = Path(args.resume) / "config.json"
        if not config.is_file():
            parser.error(f"argument --resume: {config} not found: is {args.resume} the --out folder of a run?")
        settings = json.loads(config.read_text())
        if args.device:
            settings["device"] = args.device
        out = Path(args.resume)
    else:
        settings = settings_from_args(args, parser)
        out = Path(args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")))
    progress = False if args.no_progress else None
    try:
        run(settings, out, resume=args.resume is not None, progress=progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted. Continue with:  python -m nanokd.train --resume {out}", file=sys.stderr)
        return 130
    except FlagError as e:  # a flag that only the data could show to be wrong
        parser.error(str(e))
    except (nkdata.DataError, FloatingPointError) as e:
        print(f"nanokd: {e}", file=sys.stderr)
        return 1
    return 0


class FlagError(ValueError):
    """A flag's value that is wrong for the data it met (the command line reports it as a usage error)."""


# ---------------------------------------------------------------------------
# One run of the experiment
# ---------------------------------------------------------------------------


def _model_for(recipe, seed, device, n_in, n_classes):
    return MLP(recipe.sizes(n_in, n_classes), dropout_input=recipe.dropout_input,
               dropout_hidden=recipe.dropout_hidden, max_norm=recipe.max_norm or None, seed=seed, device=device)


def _fit(recipe, model, x, y, x_val, y_val, *, name, seed, out, resume, progress, log, **distil):
    """Train one role with its recipe; returns the history."""
    return train_model(
        model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, lr_decay=recipe.lr_decay,
        momentum=recipe.momentum, momentum_start=recipe.momentum_start if recipe.momentum_ramp else None,
        momentum_ramp=recipe.momentum_ramp, jitter=recipe.jitter, x_val=x_val, y_val=y_val, seed=seed,
        checkpoint_path=out / FILES[name][2], resume=resume, progress=progress, log=log, name=FILES[name][0],
        **distil)


def _fmt_seconds(s):
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:04.1f} s"


def format_table(models, n_test):
    """The final side-by-side table of test errors, as text."""
    head = ("model", "hidden", "test errors", "test error", "parameters", "training time")
    rows = []
    for name, r in models.items():
        label = name + (f" (T={r['T']:g}, alpha={r['alpha']:g})" if name == "distilled" else "")
        if r.get("ensemble", 1) > 1:
            label += f" (ensemble of {r['ensemble']})"
        time_ = "loaded" if r["epochs"] == 0 and r.get("files") else _fmt_seconds(r["seconds"])
        rows.append((label, "-".join(map(str, r["hidden"])), f"{r['test_errors']} / {n_test}",
                     f"{r['test_error_pct']:.2f} %", f"{r['params']:,}", time_))
    widths = [max(len(str(row[i])) for row in (head, *rows)) for i in range(len(head))]
    left = {0, 1}
    fmt = lambda row: "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def run(settings, out, *, resume=False, progress=None, log=print):
    """Run the experiment described by ``settings`` (see :func:`settings_from_args`), writing into ``out``.

    Returns the dict that is also written to ``out/results.json``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json_atomic(out / "config.json", settings)
    device = resolve_device(settings["device"])
    seed, role = settings["seed"], settings["role"]
    teacher_recipe = Recipe(**{**settings["teacher"], "hidden": tuple(settings["teacher"]["hidden"])})
    student_recipe = Recipe(**{**settings["student"], "hidden": tuple(settings["student"]["hidden"])})

    # ---- data: loaded once, moved to the device once
    t0 = time.perf_counter()
    ds = nkdata.load(settings["dataset"], settings["data_dir"], verify=settings["verify"])
    xp = get_xp(device)
    n_val = settings["val"]
    if not 0 <= n_val < len(ds.x_train):
        raise FlagError(f"argument --val: must be in [0, {len(ds.x_train)}) for these "
                        f"{len(ds.x_train)} training images, got {n_val}")
    x_train, y_train, x_val, y_val = nkdata.split_validation(
        nkdata.to_float(ds.x_train, xp), xp.asarray(ds.y_train), n_val)
    x_test, y_test = nkdata.to_float(ds.x_test, xp), xp.asarray(ds.y_test)
    n_in, n_classes = x_train.shape[1], nkdata.NUM_CLASSES
    log(f"nanokd: {settings['dataset']}, {len(x_train)} training / {n_val} validation / {len(x_test)} test images "
        f"({time.perf_counter() - t0:.1f} s to load); preset {settings['preset']}, device {device}, seed {seed}; "
        f"writing to {out}")

    trained = {}  # results key -> (model or list of models, history or None)
    teachers = None
    if settings["teacher_files"]:
        teachers = [MLP.load(p, device=device) for p in settings["teacher_files"]]
        trained["teacher"] = (teachers, None)
    elif role in ("all", "teacher"):
        teacher = _model_for(teacher_recipe, seed, device, n_in, n_classes)
        log(f"\n== teacher: {teacher!r}, jitter {teacher_recipe.jitter}, {teacher.count_params():,} parameters")
        history = _fit(teacher_recipe, teacher, x_train, y_train, x_val, y_val, name="teacher", seed=seed,
                       out=out, resume=resume, progress=progress, log=log)
        teacher.save(out / FILES["teacher"][1])
        trained["teacher"] = (teacher, history)
        teachers = [teacher]

    # The baseline and the distilled student start from the same weights and see
    # the same shuffles (the same seed): they differ only in their targets.
    student_seed = seed + 1
    if role in ("all", "student"):
        student = _model_for(student_recipe, student_seed, device, n_in, n_classes)
        log(f"\n== baseline student (hard labels): {student!r}, {student.count_params():,} parameters")
        history = _fit(student_recipe, student, x_train, y_train, x_val, y_val, name="student", seed=student_seed,
                       out=out, resume=resume, progress=progress, log=log)
        student.save(out / FILES["student"][1])
        trained["baseline"] = (student, history)
    if role in ("all", "distill"):
        student = _model_for(student_recipe, student_seed, device, n_in, n_classes)
        log(f"\n== distilled student (T={settings['T']:g}, alpha={settings['alpha']:g}, "
            f"{len(teachers)} teacher{'s' if len(teachers) > 1 else ''}): {student!r}")
        history = _fit(student_recipe, student, x_train, y_train, x_val, y_val, name="distill", seed=student_seed,
                       out=out, resume=resume, progress=progress, log=log,
                       teacher=teachers, T=settings["T"], alpha=settings["alpha"])
        student.save(out / FILES["distill"][1])
        trained["distilled"] = (student, history)

    # ---- the test set, used once, here
    models = {}
    n_test = len(y_test)
    for key, (model, history) in trained.items():
        members = model if isinstance(model, list) else [model]
        errors = evaluate_errors(model, x_test, y_test)
        entry = {
            "test_errors": errors,
            "test_error_pct": 100.0 * errors / n_test if n_test else 0.0,
            "val_errors": (history["val_errors"][-1] if history and history["val_errors"] else None)
                          if history else (evaluate_errors(model, x_val, y_val) if n_val else None),
            "hidden": members[0].sizes[1:-1],
            "params": sum(m.count_params() for m in members),
            "epochs": len(history["epoch"]) if history else 0,
            "seconds": round(history["total_seconds"], 3) if history else 0.0,
        }
        if history is None:
            entry["files"] = settings["teacher_files"]
            entry["ensemble"] = len(members)
        if key == "distilled":
            entry.update(T=float(settings["T"]), alpha=float(settings["alpha"]))
        models[key] = entry
    results = {"dataset": settings["dataset"], "preset": settings["preset"], "seed": seed, "device": device,
               "models": models}
    write_json_atomic(out / "results.json", results)
    log("\n" + format_table(models, n_test))
    log(f"\nwrote {out / 'results.json'}")
    return results


if __name__ == "__main__":
    sys.exit(main())
