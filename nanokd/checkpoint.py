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


def load_checkpoint(path, model, optimizer, signature):
    """Load a checkpoint written by :func:`save_checkpoint` into model and optimizer.

    Returns ``(epochs_done, history)``.  Raises ValueError if it was written for
    another model, other settings (its signature differs) or another optimizer.
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
        n = len(optimizer.state())
        saved_n = sum(name.startswith("velocity_") for name in f.files)
        if saved_n != n:
            raise ValueError(f"checkpoint {path} holds {saved_n} optimizer arrays, "
                             f"but {type(optimizer).__name__} has {n}: it was written by another optimizer")
        model.load_params([f[f"param_{i}"] for i in range(len(model.params))])
        optimizer.load_state([f[f"velocity_{i}"] for i in range(n)])
        return int(f["epoch"]), json.loads(str(f["history"]))
