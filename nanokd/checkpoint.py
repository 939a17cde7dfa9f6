r"""Checkpoints: the whole state of a training run between two epochs, in one ``.npz`` file.

Everything random in an epoch is drawn from generators seeded from
``(seed, epoch)`` (:func:`nanokd.trainer.epoch_seeds`), so the state of a run
between epochs is only

* the model's weights (:meth:`nanokd.mlp.MLP.state_dict`),
* the optimizer's state (SGD: one momentum buffer per parameter; Adam: both
  moment estimates and the step count), from its ``state()``,
* the number of epochs done and the history so far,
* a *signature*: the model's configuration, the data size and every setting
  but the number of epochs, as JSON.  A checkpoint resumes only a run with
  the same signature.  It names the teacher by a fingerprint of its weights
  (:func:`fingerprint`), so resuming a student with another teacher fails.

A run resumed from a checkpoint ends with the same weights, bit for bit on the
CPU (with the same number of BLAS threads, which fixes the order of the sums
in a matrix product), as one that was never interrupted.
"""

import hashlib
import json

import numpy as np

from .atomic import save_npz_atomic
from .backend import to_numpy
from .mlp import read_npz


class CheckpointError(ValueError):
    """A checkpoint that cannot resume this run: unreadable, corrupt, or written for another model or settings."""


def fingerprint(teachers, v=None):
    """A short hash of the teachers' weights (or, with ``teachers=None``, of given logits v)."""
    h = hashlib.sha256()
    for a in ([p for t in teachers for p in t.params] if teachers is not None else [v]):
        h.update(np.ascontiguousarray(to_numpy(a)).tobytes())
    return h.hexdigest()[:16]


def signature(model, settings, n):
    """What a checkpoint must agree on to be resumed: the model, the data size, every setting but epochs."""
    return json.dumps({"model": model.config, "n_train": n, **settings}, sort_keys=True)


def save_checkpoint(path, model, optimizer, epoch, history, signature):
    """Write weights, the optimizer's state, the epoch count and the history to ``path``, atomically.

    The optimizer's state is what its ``state()`` returns, stored under
    ``velocity_0``, ``velocity_1``, ... in that order.
    """
    arrays = {k: a for k, a in model.state_dict().items() if k.startswith("param_")}
    arrays.update({f"velocity_{i}": to_numpy(u) for i, u in enumerate(optimizer.state())})
    arrays["epoch"] = np.array(epoch)
    arrays["history"] = np.array(json.dumps(history))
    arrays["signature"] = np.array(signature)
    save_npz_atomic(path, arrays)


def _read(path):
    """Every array of the checkpoint at ``path`` and its parsed signature, history and epoch count.

    Raises :class:`CheckpointError` naming the file when it is unreadable,
    truncated, corrupt or not a checkpoint (a model file, say).
    """
    try:
        arrays = read_npz(path)
    except ValueError as e:
        raise CheckpointError(f"checkpoint {e}: delete it, and the run starts this model afresh") from None
    if "signature" not in arrays:
        hint = (" (it is a model file: a checkpoint is the .ckpt.npz beside it)" if "config" in arrays else "")
        raise CheckpointError(f"{path} is not a nanokd training checkpoint{hint}")
    try:
        signature = json.loads(str(arrays["signature"]))
        history = json.loads(str(arrays["history"]))
        epoch = int(arrays["epoch"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(e).__name__}: {e}): delete it, and the run "
                              f"starts this model afresh") from None
    return arrays, signature, history, epoch


def check_checkpoint(path, model):
    """Check, loading nothing, that the checkpoint at ``path`` is whole and holds weights for ``model``.

    Returns the number of epochs it holds.  Reads every array of it, so a
    truncated or corrupt file is found now rather than when training gets to
    it.  Whether it was written with the same settings is checked when
    :func:`load_checkpoint` loads it (the signature needs the run's data and
    teacher).  Raises :class:`CheckpointError` naming the file.
    """
    arrays, saved, _, epoch = _read(path)
    config = json.loads(json.dumps(model.config))
    if saved.get("model") != config:
        raise CheckpointError(f"checkpoint {path} holds another network than this run's "
                              f"{'-'.join(map(str, config['sizes']))} ({_differences(saved.get('model'), config)}): "
                              f"delete it, and the run starts this model afresh")
    for i, p in enumerate(model.params):
        a = arrays.get(f"param_{i}")
        if a is None or a.shape != p.shape:
            raise CheckpointError(f"checkpoint {path} is corrupt: its param_{i} has shape "
                                  f"{None if a is None else a.shape}, expected {p.shape}")
    return epoch


def _differences(saved, config):
    """What differs between a saved network's config and this run's, in words: "seed 0 instead of 1"."""
    if not isinstance(saved, dict):
        return f"its model entry is {saved!r}"
    keys = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    return ", ".join(f"{k} {saved.get(k)} instead of {config.get(k)}" for k in keys)


def load_checkpoint(path, model, optimizer, signature):
    """Load a checkpoint written by :func:`save_checkpoint` into model and optimizer.

    Returns ``(epochs_done, history)``.  Raises :class:`CheckpointError` (a
    ValueError) if it is unreadable, truncated or corrupt, or was written for
    another model, other settings (its signature differs) or another optimizer.
    """
    arrays, saved, history, epoch = _read(path)
    if saved != json.loads(signature):
        now = json.loads(signature)
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise CheckpointError(f"checkpoint {path} was written with other settings ({', '.join(diff)}): "
                              f"delete it or resume with the same settings")
    n = len(optimizer.state())
    saved_n = sum(name.startswith("velocity_") for name in arrays)
    if saved_n != n:
        raise CheckpointError(f"checkpoint {path} holds {saved_n} optimizer arrays, "
                              f"but {type(optimizer).__name__} has {n}: it was written by another optimizer")
    try:
        model.load_params([arrays[f"param_{i}"] for i in range(len(model.params))])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit the model ({e}): delete it or resume with the "
                              f"same settings") from None
    optimizer.load_state([arrays[f"velocity_{i}"] for i in range(n)])
    return epoch, history
