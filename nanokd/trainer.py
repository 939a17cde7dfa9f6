r"""The training loop: one function for the teacher, the baseline student and the distilled student.

The three roles of the paper's section 3 differ only in the network and in
the targets.  Without a teacher the loss is the cross-entropy of the hard
labels; with one it is the distillation loss

    alpha T^2 KL(p || q) + (1 - alpha) CE(z, y),   q = softmax(z/T), p = softmax(v/T),

where v are the teacher's logits for the same (possibly jittered or distorted) inputs.
So :func:`train_model` is written once and takes the teacher as an option.
One step of it, on a batch (x, y), is :func:`train_step`:

    z = model.forward(x, train=True)          # dropout masks drawn here
    g = dL/dz                                 # cross_entropy_grad or distillation_loss_grad
    grads = model.backward(g)                 # backpropagation, by hand
    optimizer.step(grads)                     # SGD with momentum
    model.apply_max_norm()                    # projection, if the model has max-norm

Everything random in an epoch (the shuffle, the jitter and elastic distortions, the dropout masks) is
drawn from generators seeded from ``(seed, epoch)`` at the start of the epoch
(:func:`epoch_seeds`).  So the state of a run between two epochs is only the
weights, the optimizer's state and the epoch number: that is what a
checkpoint holds (:mod:`nanokd.checkpoint`), and a resumed run ends with the
same weights, bit for bit on the CPU, as one that was never interrupted.
"""

import dataclasses
import math
import numbers
import os
import time

import numpy as np
from tqdm.auto import tqdm

from . import fused
from .backend import default_rng, get_array_module
from .checkpoint import CheckpointError, fingerprint, load_checkpoint, save_checkpoint, signature
from .elastic import SIGMA, distort
from .jitter import draw_shifts, image_side, shift_images
from .losses import cross_entropy_and_grad, distillation_loss_and_grad
from .mlp import MLP
from .optim import SGD, exponential_decay, linear_ramp
from .teacher import as_teacher_list, compute_teacher_logits, evaluate_errors


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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run; every field is checked once, when the config is made.

    Attributes
    ----------
    epochs : int
        Number of passes over x.  Resuming may extend a run to more epochs.
    batch_size : int
        N of each minibatch; the last batch of an epoch may be smaller.
    lr, lr_decay : float
        The learning rate of epoch e (from 0) is ``lr * lr_decay**e``
        (:func:`~nanokd.optim.exponential_decay`).
    momentum, momentum_start, momentum_ramp : float, float or None, int
        Momentum ramps linearly from ``momentum_start`` to ``momentum`` over the
        first ``momentum_ramp`` epochs (:func:`~nanokd.optim.linear_ramp`), then
        stays.  ``momentum_start=None`` means no ramp.
    weight_decay : float >= 0
        L2 weight decay of the loop's SGD: each step adds ``weight_decay * w``
        to the gradient of every weight and bias (:class:`~nanokd.optim.SGD`),
        the gradient of ``weight_decay / 2 * ||w||^2``; 0 for none.
    jitter : int
        Translate every training image by up to this many pixels, freshly each
        epoch (:func:`nanokd.jitter.jitter`); 0 for none, else less than the image side
        (at most 27 for MNIST).  x must then be square images (784 = 28 x 28 inputs
        for MNIST).
    elastic, elastic_sigma : float
        Bend every training image by an elastic distortion of scale ``elastic``
        and smoothness ``elastic_sigma`` pixels, freshly each epoch, after the
        jitter (:func:`nanokd.elastic.distort`; Simard et al.'s 34 and 4 for
        28 x 28 digits); ``elastic=0`` for none.  Square images, as for jitter.
    T, alpha : float
        Temperature and the weight of the soft term (1 = soft targets only);
        used only with a teacher.  T^2 must be finite (it scales the loss).
    seed : int >= 0
        Seeds the shuffle, jitter, distortions and dropout of every epoch (with the epoch number).
    """

    epochs: int
    batch_size: int = 100
    lr: float = 0.1
    lr_decay: float = 1.0
    momentum: float = 0.9
    momentum_start: float = None
    momentum_ramp: int = 0
    weight_decay: float = 0.0
    jitter: int = 0
    elastic: float = 0.0
    elastic_sigma: float = SIGMA
    T: float = 1.0
    alpha: float = 1.0
    seed: int = 0

    def __post_init__(self):
        _check_int("epochs", self.epochs, 0)
        _check_int("batch_size", self.batch_size, 1)
        _check_real("lr", self.lr, 0, math.inf, low_open=True, high_open=True)
        _check_real("lr_decay", self.lr_decay, 0, 1, low_open=True)
        _check_real("momentum", self.momentum, 0, 1, high_open=True)
        if self.momentum_start is not None:
            _check_real("momentum_start", self.momentum_start, 0, 1, high_open=True)
        _check_int("momentum_ramp", self.momentum_ramp, 0)
        _check_real("weight_decay", self.weight_decay, 0, math.inf, high_open=True)
        _check_int("jitter", self.jitter, 0)
        _check_real("elastic", self.elastic, 0, math.inf, high_open=True)
        _check_real("elastic_sigma", self.elastic_sigma, 0, math.inf, low_open=True, high_open=True)
        _check_real("T", self.T, 0, math.inf, low_open=True, high_open=True)
        if not math.isfinite(float(self.T) * float(self.T)):  # the soft term of the loss is multiplied by T^2
            raise ValueError(f"T^2 must be finite (the soft term of the loss is multiplied by it), "
                             f"but T = {self.T} gives T^2 = inf")
        _check_real("alpha", self.alpha, 0, 1)
        _check_int("seed", self.seed, 0)
        # plain floats: a NumPy float64 scalar would turn float32 arithmetic into float64
        object.__setattr__(self, "T", float(self.T))
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "elastic", float(self.elastic))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        object.__setattr__(self, "elastic_sigma", float(self.elastic_sigma))

    def momentum_at(self, epoch):
        """The momentum of epoch ``epoch`` (from 0)."""
        if self.momentum_start is None:
            return self.momentum
        return linear_ramp(self.momentum_start, self.momentum, self.momentum_ramp, epoch)


#: The largest lookup of shifted soft targets that train_model builds (60,000 images, 25 views, 10
#: classes in float32 is 60 MB).
SHIFT_CACHE_BYTES = 1 << 30


def shifted_teacher_logits(teachers, x, max_shift, T=1.0, buffer=None):
    """The teacher's logits of every image of x under every whole-pixel shift: ``V[k, i]`` for shift number k.

    Shift numbers as in :func:`nanokd.jitter.draw_shifts`; ``(2 s + 1)**2`` of
    them for ``s = max_shift``.  An ensemble is combined at T, as in
    :func:`~nanokd.teacher.compute_teacher_logits`.  ``buffer``: an array like
    x to shift the images into.
    """
    teachers = as_teacher_list(teachers)
    xp, n = teachers[0].xp, x.shape[0]
    width = 2 * max_shift + 1
    out = xp.empty((width * width, n, teachers[0].sizes[-1]), dtype=teachers[0].dtype)
    for k in range(width * width):
        code = xp.full(n, k, dtype=xp.int64)
        out[k] = compute_teacher_logits(teachers, shift_images(x, code, max_shift, out=buffer), T)
    return out


def epoch_seeds(seed, epoch):
    """Three independent 32-bit seeds (dropout, jitter, shuffle) for epoch ``epoch`` of run ``seed``.

    Derived with NumPy's SeedSequence from the pair (seed, epoch), so each
    epoch's random draws depend on nothing but these two numbers.
    """
    return [int(s) for s in np.random.SeedSequence([seed, epoch]).generate_state(3)]


def train_step(model, optimizer, x, y, v=None, T=1.0, alpha=1.0):
    r"""One step of minibatch training on (x, y); returns the batch's loss (a 0-d array on the device).

    With teacher logits ``v`` (for these x) the loss is the distillation loss,
    else the cross-entropy of y.  On a GPU the same formulas run in a few
    fused kernels (:func:`nanokd.fused.train_step`); this is the only place
    where the fast path is chosen.
    """
    if fused.active(model.xp):
        return fused.train_step(model, optimizer, x, y, v, T, alpha)
    z = model.forward(x, train=True)
    if v is None:
        loss, g = cross_entropy_and_grad(z, y, check=False)
    else:
        loss, g = distillation_loss_and_grad(z, v, y, T, alpha, check=False)
    optimizer.step(model.backward(g))
    model.apply_max_norm()
    return loss


def train_model(model, x, y, config=None, *, teacher=None, teacher_logits=None, x_val=None, y_val=None,
                optimizer=None, checkpoint_path=None, resume=False, progress=True, log=print, name="model",
                callback=None, **fields):
    r"""Train ``model`` in place by minibatch gradient descent; return the history of the run.

    Parameters
    ----------
    model : MLP
        Trained in place, on its own device; x, y (and the rest) are moved there once.
    x, y : (N, D) float array and (N,) integer labels
        The training set (for a student: the transfer set).
    config : TrainConfig, optional
        The settings.  Its fields may also be given as keywords
        (``train_model(m, x, y, epochs=3, lr=0.05)``), alone or to override
        some fields of ``config``.
    teacher : MLP or list of MLP, optional
        Distil from this teacher (or from the mean of an ensemble's soft
        targets).  Without jitter its logits for x are computed once and cached;
        with jitter they are looked up in a table of every shifted view (or
        recomputed for every batch, when the table would be too big), and with
        elastic distortions recomputed for every batch, so that they are the
        teacher's logits of the very images the student sees.
    teacher_logits : (N, C) array, optional
        Precomputed logits v of the teacher for x (exclusive with ``teacher``;
        not allowed with jitter or distortions, since they would not follow the images).
    x_val, y_val : arrays, optional
        Validation set: its error count is logged after every epoch.
    optimizer : optional
        Any nanokd optimizer on ``model.params`` (``SGD``, ``Adam``).  Its
        learning rate follows ``optimizer.lr * lr_decay**epoch`` from the value
        it has when passed; its other settings are its own.  By default the
        loop uses ``SGD(model.params, lr, momentum, weight_decay=weight_decay)``
        and schedules lr and momentum.
    checkpoint_path : str or Path, optional
        Written atomically after every epoch (:func:`nanokd.checkpoint.save_checkpoint`).
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
    ValueError, TypeError
        For arguments that cannot be trained on, checked before the first
        step: shapes, labels outside [0, C), NaN or infinite inputs, weights
        or teacher logits, x_val without y_val, T^2 overflowing the model's dtype.
    CheckpointError
        If ``resume`` finds a checkpoint that is corrupt or from another run.
    FloatingPointError
        If an epoch's mean training loss is not finite (the run diverged).  It
        is checked once per epoch, when the loss is read anyway; the
        checkpoint then still holds the epoch before.  Since everything that
        goes in was checked to be finite, the cause is the optimisation itself,
        and the message says so.
    """
    config = TrainConfig(**fields) if config is None else dataclasses.replace(config, **fields)
    run = _Run(model, x, y, config, teacher, teacher_logits, x_val, y_val)
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    custom = optimizer is not None  # a caller's optimizer keeps its own settings; only its lr is scheduled
    if custom and config.weight_decay:
        raise ValueError(f"weight_decay={config.weight_decay} is for the loop's own SGD; a caller's optimizer "
                         f"has its own (SGD(..., weight_decay=...))")
    base_lr = float(optimizer.lr) if custom else config.lr
    if not custom:
        optimizer = SGD(model.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sig = signature(model, run.settings(optimizer, base_lr, custom), run.n)
    history = {"epoch": [], "loss": [], "val_errors": [], "lr": [], "momentum": [], "seconds": []}
    start = 0
    if resume and os.path.exists(checkpoint_path):
        start, history = load_checkpoint(checkpoint_path, model, optimizer, sig)
        if start > config.epochs:  # its weights are not those of `epochs` epochs, and nothing would say so
            raise CheckpointError(f"checkpoint {checkpoint_path} holds {start} epochs, more than "
                                  f"epochs={config.epochs}: ask for at least {start}, or delete it")
        if log and start:
            log(f"{name}: resumed from {checkpoint_path} after epoch {start}")
    setup_seconds = run.cache_soft_targets() if start < config.epochs else 0.0

    for epoch in range(start, config.epochs):
        t0 = time.perf_counter()
        optimizer.lr = exponential_decay(base_lr, config.lr_decay, epoch)
        if not custom:
            optimizer.momentum = config.momentum_at(epoch)
        loss = run.epoch(optimizer, epoch, progress, name)
        if not math.isfinite(loss):  # read once per epoch: no synchronisation inside the batch loop
            raise FloatingPointError(_divergence(name, epoch, loss, optimizer, config, run))
        val_errors = evaluate_errors(model, run.x_val, run.y_val) if run.validate else None
        momentum = getattr(optimizer, "momentum", None)
        for key, value in zip(history, (epoch + 1, loss, val_errors, optimizer.lr, momentum,
                                        time.perf_counter() - t0)):
            history[key].append(value)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, epoch + 1, history, sig)
        if log:
            log(_epoch_line(name, history, config.epochs, run))
        if callback is not None and callback(epoch + 1, history):
            break  # the callback asked to stop: the model holds this epoch's weights

    history["setup_seconds"] = setup_seconds
    history["total_seconds"] = setup_seconds + float(sum(history["seconds"]))
    return history


def _divergence(name, epoch, loss, optimizer, config, run):
    """The message of a diverged run: the learning rate (or momentum) is too large.

    Everything that went in was checked to be finite before the first step
    (the inputs, the starting weights, the soft targets and T^2), so the
    steps themselves blew up; the message says so rather than guess.
    """
    what = "The inputs, the starting weights, the soft targets and T^2" if run.distil else \
        "The inputs and the starting weights"
    momentum = getattr(optimizer, "momentum", None)
    return (f"{name}: the training loss of epoch {epoch + 1} is {loss}: training diverged. {what} were all finite, "
            f"so the steps blew up: lr {optimizer.lr:.4g} is probably too large for batch size {config.batch_size}"
            + (f" and momentum {momentum:g}" if momentum else "") + " (try a smaller lr)")


def _epoch_line(name, history, epochs, run):
    """The log line of the last epoch in ``history``."""
    val_errors, momentum = history["val_errors"][-1], history["momentum"][-1]
    val = f"val {val_errors} errors ({100 * val_errors / len(run.y_val):.2f}%)" if run.validate else "no validation"
    mom = "" if momentum is None else f"  momentum {momentum:.3g}"
    return (f"{name:9s} epoch {history['epoch'][-1]:3d}/{epochs}  loss {history['loss'][-1]:.4f}  {val}  "
            f"lr {history['lr'][-1]:.4g}{mom}  {history['seconds'][-1]:.1f} s")


def _check_data(model, x, y, name_x="x", name_y="y"):
    """Shapes, dtypes, the label range and finite inputs: each read once, before training starts.

    A label outside [0, C) would not fail: as an index it wraps around (-1 is
    the last class).  A NaN input would only show as a NaN loss at the end of
    the epoch, blamed on the learning rate.
    """
    if x.ndim != 2 or x.shape[1] != model.sizes[0]:
        raise ValueError(f"{name_x} must have shape (N, {model.sizes[0]}), got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name_y} must have shape ({x.shape[0]},), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name_y} must hold integer class labels, got dtype {y.dtype}")
    n_classes = model.sizes[-1]
    if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{name_y} must hold class labels in [0, {n_classes}) for a model with {n_classes} "
                         f"outputs, got values in [{int(y.min())}, {int(y.max())}]")
    _check_finite(x, name_x)


def _check_finite(a, name):
    """Raise a ValueError naming ``a`` and the row of its first NaN or infinite value, if it has one."""
    xp = get_array_module(a)
    if a.dtype.kind == "f" and not bool(xp.isfinite(a).all()):
        row = int(xp.flatnonzero(~xp.isfinite(a).reshape(len(a), -1).all(axis=1))[0])
        raise ValueError(f"found NaN or infinite values in {name} (the first in row {row}): training on them "
                         f"would only give a NaN loss")


class _Run:
    """The data and targets of one call of :func:`train_model`, checked and moved to the model's device."""

    def __init__(self, model, x, y, config, teacher, teacher_logits, x_val, y_val):
        if not isinstance(model, MLP):
            raise TypeError(f"model must be a nanokd MLP, got {type(model).__name__}")
        if teacher is not None and teacher_logits is not None:
            raise ValueError("pass teacher or teacher_logits, not both")
        xp = model.xp
        self.model, self.config, self.xp = model, config, xp
        self.x, self.y = xp.asarray(x), xp.asarray(y)
        _check_data(model, self.x, self.y)
        self.n = self.x.shape[0]
        if self.n == 0:
            raise ValueError("x is empty: nothing to train on")
        if config.jitter or config.elastic:
            side = image_side(model.sizes[0])  # jitter and distortions need square images: ValueError unless
            if config.jitter >= side:
                raise ValueError(f"jitter must be less than the image side {side}, got {config.jitter}")
        if (x_val is None) != (y_val is None):
            raise ValueError(f"x_val and y_val go together: got {'x_val' if y_val is None else 'y_val'} without "
                             f"{'y_val' if y_val is None else 'x_val'}")
        for i, p in enumerate(model.params):
            _check_finite(p, f"the model's weights (params[{i}])")
        self.validate = x_val is not None and len(x_val) > 0
        self.x_val = self.y_val = None
        if self.validate:
            self.x_val, self.y_val = xp.asarray(x_val), xp.asarray(y_val)
            _check_data(model, self.x_val, self.y_val, "x_val", "y_val")
        self.distil = teacher is not None or teacher_logits is not None
        self.teachers, self.v_all = None, None
        if teacher is not None:
            self.teachers = as_teacher_list(teacher)
            t = self.teachers[0]
            if t.sizes[0] != model.sizes[0] or t.sizes[-1] != model.sizes[-1]:
                raise ValueError(f"teacher {t.sizes} and student {model.sizes} differ in inputs or classes")
            if t.device != model.device:
                raise ValueError(f"teacher is on {t.device} but the student on {model.device}")
            for k, member in enumerate(self.teachers):
                for i, p in enumerate(member.params):
                    _check_finite(p, f"the weights of teacher {k} (params[{i}])")
        if self.distil and config.T * config.T > float(np.finfo(model.dtype).max):
            raise ValueError(f"T = {config.T} is too large for a {model.dtype} model: T^2, which scales the soft "
                             f"term of the loss, overflows {model.dtype} (T must be at most "
                             f"{float(np.sqrt(np.finfo(model.dtype).max)):.3g})")
        if teacher_logits is not None:
            if config.jitter or config.elastic:
                what = "jitter" if config.jitter else "elastic distortions"
                raise ValueError(f"teacher_logits cannot be used with {what}: pass teacher= to recompute them "
                                 f"per batch")
            self.v_all = xp.asarray(teacher_logits, dtype=model.dtype)  # the student's dtype, as every other array
            if self.v_all.shape != (self.n, model.sizes[-1]):
                raise ValueError(f"teacher_logits must have shape ({self.n}, {model.sizes[-1]}), "
                                 f"got {self.v_all.shape}")
            _check_finite(self.v_all, "teacher_logits")
        self.jitter_buf = xp.empty(self.x.shape, dtype=self.x.dtype) if config.jitter else None
        self.elastic_buf = xp.empty(self.x.shape, dtype=self.x.dtype) if config.elastic else None
        self.v_shifts = self.shifts = None  # the consistent-teaching lookup (see cache_soft_targets)

    def settings(self, optimizer, base_lr, custom):
        """Every setting a checkpoint must agree on (the signature's content besides the model and N)."""
        c, distil = self.config, self.distil
        out = dict(batch_size=c.batch_size, lr=c.lr, lr_decay=c.lr_decay, momentum=c.momentum,
                   momentum_start=c.momentum_start, momentum_ramp=c.momentum_ramp, jitter=c.jitter, seed=c.seed,
                   T=c.T if distil else None, alpha=c.alpha if distil else None,
                   teacher=fingerprint(self.teachers, self.v_all) if distil else None)
        if c.elastic:  # absent without distortions, so that the checkpoints of earlier versions still resume
            out["elastic"], out["elastic_sigma"] = c.elastic, c.elastic_sigma
        if c.weight_decay:  # likewise (train_model has refused it beside a caller's optimizer)
            out["weight_decay"] = c.weight_decay
        if custom:  # a caller's optimizer: its kind and starting lr (absent from the loop's own SGD's signature)
            out["optimizer"] = {"type": type(optimizer).__name__, "lr": base_lr}
        return out

    def cache_soft_targets(self):
        """The teacher's logits, computed once where they can be; returns the seconds this took.

        Without jitter: the logits of the whole transfer set.  With jitter the
        student sees shifted images, and the soft targets must be the
        teacher's logits of those very images (consistent teaching).  Shifts
        are whole pixels, so an image has only ``(2s + 1)**2`` views: the
        logits of every (view, image) pair are computed once, an array of
        ``(2s + 1)**2 x N x C``, and each batch looks its targets up
        (:meth:`soft_targets`).  Over ``SHIFT_CACHE_BYTES`` they are
        recomputed for every batch instead; either way they are the same
        numbers up to the last bits (a batch's products round differently
        from the whole set's; tests/test_consistent.py).  Elastic distortions
        make every image new, so with them the logits are computed per batch.
        """
        if self.teachers is None:
            return 0.0
        c, n_classes = self.config, self.model.sizes[-1]
        t0 = time.perf_counter()
        if c.elastic:
            return 0.0
        if not c.jitter:
            self.v_all = compute_teacher_logits(self.teachers, self.x, c.T).astype(self.model.dtype, copy=False)
        elif (2 * c.jitter + 1) ** 2 * self.n * n_classes * self.model.dtype.itemsize <= SHIFT_CACHE_BYTES:
            self.v_shifts = shifted_teacher_logits(self.teachers, self.x, c.jitter, c.T, self.jitter_buf)
            self.v_shifts = self.v_shifts.astype(self.model.dtype, copy=False)
        return time.perf_counter() - t0

    def soft_targets(self, xb, idx):
        """The teacher's logits v of the batch xb (rows idx of the transfer set, as the student sees them)."""
        if self.v_all is not None:
            return self.v_all[idx]
        if self.v_shifts is not None:
            return self.v_shifts[self.shifts[idx], idx]
        return compute_teacher_logits(self.teachers, xb, self.config.T).astype(self.model.dtype, copy=False)

    def epoch(self, optimizer, epoch, progress, name):
        """One pass over the (jittered, distorted, shuffled) training set; returns the mean training loss."""
        xp, c, model = self.xp, self.config, self.model
        s_dropout, s_jitter, s_shuffle = epoch_seeds(c.seed, epoch)
        model.reseed(s_dropout)
        x, rng = self.x, default_rng(xp, s_jitter)
        if c.jitter:  # nanokd.jitter.jitter, keeping the shifts for the soft targets' lookup
            self.shifts = draw_shifts(rng, self.n, c.jitter)
            x = shift_images(self.x, self.shifts, c.jitter, out=self.jitter_buf)
        if c.elastic:  # then bent, from the same generator
            x = distort(x, rng, c.elastic, c.elastic_sigma, out=self.elastic_buf)
        perm = xp.asarray(np.random.default_rng(s_shuffle).permutation(self.n))
        n_batches = -(-self.n // c.batch_size)
        loss_sum = xp.zeros((), dtype=xp.float64)  # stays on the device; read every few batches
        bar = tqdm(total=n_batches, desc=f"{name} {epoch + 1}/{c.epochs}", leave=False, unit="batch",
                   disable=None if progress is None else not progress, dynamic_ncols=True)
        for b in range(n_batches):
            idx = perm[b * c.batch_size:(b + 1) * c.batch_size]
            xb, yb = x[idx], self.y[idx]
            vb = self.soft_targets(xb, idx) if self.distil else None
            loss_sum += train_step(model, optimizer, xb, yb, vb, c.T, c.alpha)
            bar.update(1)
            if (b + 1) % 20 == 0 and not bar.disable and xp is np:  # on a GPU, reading it would wait for the device
                bar.set_postfix(loss=f"{float(loss_sum) / (b + 1):.4f}", refresh=False)
        bar.close()
        return float(loss_sum) / n_batches
