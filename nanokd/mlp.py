"""A multilayer perceptron of ReLU units with dropout and max-norm, forward and backward by hand.

    x -> [Dropout(p_in)] -> Linear -> ReLU -> [Dropout(p_hid)] -> ... -> Linear -> z

``MLP([784, 1200, 1200, 10], dropout_input=0.2, dropout_hidden=0.5, max_norm=3.5)``
is the teacher of the paper (section 3), itself the net of Hinton et al. 2012
(arXiv 1207.0580); ``MLP([784, 800, 800, 10])`` is its unregularised student.
"""

import json
import math
import numbers
import zipfile
import zlib
from typing import NamedTuple, Optional

import numpy as np

from .atomic import save_npz_atomic  # noqa: F401  (importable from here, as before)
from .backend import default_rng, device_of, get_xp, resolve_device, to_numpy
from .layers import Dropout, Linear, ReLU, max_norm_

DTYPES = ("float32", "float64")


def _check_sizes(sizes):
    """The layer widths as a list of ints; refuses a string, a non-integer width, fewer than two widths."""
    ok = isinstance(sizes, (list, tuple)) or (isinstance(sizes, np.ndarray) and sizes.ndim == 1)
    if not ok or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes):
        raise TypeError(f"sizes must be a list of integer widths, e.g. [784, 800, 10], got {sizes!r}")
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive widths, got {sizes}")
    return sizes


def read_npz(path):
    """Every array of the .npz file at ``path``, read whole, as a dict (model files and checkpoints).

    Reading every array at once means that a truncated or corrupt file fails
    here, with a ValueError naming it, and not half way through a run.  An
    OSError (no such file, a folder) passes through as it is.
    """
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{path} is empty")
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path} is a single .npy array, not an .npz file of named arrays")
    if not head.startswith(b"PK"):  # every zip archive, and so every .npz file, starts so
        raise ValueError(f"{path} is not an .npz file (a zip archive of arrays): it starts with {head!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    except (ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from None


class Block(NamedTuple):
    """One layer of the network: Linear, then (except for the output layer) ReLU and maybe Dropout."""

    linear: Linear
    relu: Optional[ReLU] = None
    dropout: Optional[Dropout] = None


class MLP:
    """A ReLU MLP with inverted dropout and an optional max-norm constraint.

    Parameters
    ----------
    sizes : list of int
        Layer widths, input first and number of classes last, e.g. [784, 800, 800, 10].
    dropout_input, dropout_hidden : float
        Drop probabilities for the input pixels and for each hidden layer's units.
    max_norm : float or None
        Radius c of the max-norm constraint on each hidden unit's incoming
        weights, applied by :meth:`apply_max_norm` after each update.
    seed : int
        Seeds the initial weights and the dropout masks: one seed, one run.
    init_std : float or None
        Standard deviation of the initial weights.  None (the default) is He's
        sqrt(2 / fan_in) for each layer; a number uses that for every layer
        (e.g. 0.01, the small Gaussian of Hinton et al. 2012).
    dtype : "float32" or "float64"
        float32 for training, float64 for gradient checks.
    device : "cpu", "cuda" or "auto"

    Attributes
    ----------
    params : list of arrays [W1, b1, W2, b2, ...], updated in place by the optimizers.
    input_dropout : Dropout or None
        The dropout of the input pixels.
    blocks : list of :class:`Block`
        The layers, one (Linear, ReLU, Dropout) block per weight matrix; the
        output block has only its Linear.
    layers : list
        The same layers in the order the forward pass runs them.
    """

    def __init__(self, sizes, *, dropout_input=0.0, dropout_hidden=0.0, max_norm=None,
                 seed=0, init_std=None, dtype="float32", device="cpu"):
        sizes = _check_sizes(sizes)
        try:  # "float32", np.float32 and np.dtype("float32") all mean float32 (np.dtype(None) would be float64)
            name = None if dtype is None else np.dtype(dtype).name
        except TypeError:
            name = None
        if name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        dtype = name
        for arg, p in (("dropout_input", dropout_input), ("dropout_hidden", dropout_hidden)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{arg} must be a drop probability in [0, 1), got {p}")
        if max_norm is not None and (isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real)
                                     or not 0 < max_norm < math.inf):
            raise ValueError(f"max_norm must be None or a finite number > 0, got {max_norm!r}")
        if init_std is not None and not init_std > 0:
            raise ValueError(f"init_std must be None or > 0, got {init_std}")
        self.device = resolve_device(device)
        xp = self.xp = get_xp(self.device)
        self.config = dict(sizes=sizes, dropout_input=float(dropout_input),
                           dropout_hidden=float(dropout_hidden),
                           max_norm=None if max_norm is None else float(max_norm),
                           seed=int(seed), dtype=dtype)
        if init_std is not None:  # only then, so that files and checkpoints made before it stay valid
            self.config["init_std"] = float(init_std)
        self.sizes, self.max_norm = sizes, max_norm

        # He initialisation, drawn on the host in float64 so every device and
        # dtype starts from the same weights: W ~ N(0, 2 / fan_in), b = 0
        # (or W ~ N(0, init_std^2) when init_std is given).
        init = np.random.default_rng(seed)
        self.input_dropout = Dropout(dropout_input, inplace=False) if dropout_input > 0 else None
        self.blocks, self.params = [], []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            std = np.sqrt(2.0 / n_in) if init_std is None else init_std
            W = xp.asarray(init.normal(0.0, std, (n_in, n_out)).astype(dtype))
            b = xp.zeros(n_out, dtype=dtype)
            self.params += [W, b]
            if i == len(sizes) - 2:
                self.blocks.append(Block(Linear(W, b)))
            else:
                self.blocks.append(Block(Linear(W, b), ReLU(),
                                         Dropout(dropout_hidden, inplace=True) if dropout_hidden > 0 else None))
        self.layers = [self.input_dropout] if self.input_dropout else []
        self.layers += [layer for block in self.blocks for layer in block if layer is not None]
        self.linears = [block.linear for block in self.blocks]
        self.reseed(seed + 1)

    def reseed(self, seed):
        """Restart the dropout generator from ``seed`` (the trainer does this each epoch)."""
        self.rng = default_rng(self.xp, seed)

    @property
    def dtype(self):
        return self.params[0].dtype

    def forward(self, x, train=False, keep_masks=False):
        """Logits z for a batch x of shape (N, sizes[0]).

        ``train=True`` applies dropout (drawing new masks unless ``keep_masks``)
        and remembers what :meth:`backward` needs.  x itself is never modified.
        """
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x must have shape (N, {self.sizes[0]}), got {x.shape}")
        if device_of(x) != self.device:
            raise TypeError(f"x lives on {device_of(x)} but the model on {self.device}")
        h = x if x.dtype == self.dtype else x.astype(self.dtype)
        for layer in self.layers:
            if isinstance(layer, Dropout):
                h = layer.forward(h, self.rng, train=train, keep_mask=keep_masks)
            else:
                h = layer.forward(h)
        return h.copy()  # the last layer's buffer is reused by the next call

    def backward(self, dz):
        """Gradients [dW1, db1, dW2, db2, ...] of the loss for the last forward, given dz = dL/dz.

        Runs the layers in reverse, each turning dL/d(its output) into
        dL/d(its input).  dz is used as scratch space.  The returned arrays are
        owned by the layers and overwritten by the next backward.
        """
        g = dz
        first = self.linears[0]
        for layer in reversed(self.layers):
            if layer is first:
                layer.backward(g, need_dx=False)
                break
            g = layer.backward(g)
        grads = []
        for linear in self.linears:
            grads += [linear.dW, linear.db]
        return grads

    def apply_max_norm(self):
        """Project every hidden unit's incoming weights onto the ball of radius ``max_norm``."""
        if self.max_norm is not None:
            for linear in self.linears[:-1]:
                max_norm_(linear.W, self.max_norm)

    def predict(self, x, batch_size=10000):
        """Predicted class of each row of x (an array on the model's device)."""
        xp = self.xp
        out = xp.empty(x.shape[0], dtype=xp.int64)
        for i in range(0, x.shape[0], batch_size):
            out[i:i + batch_size] = self.forward(x[i:i + batch_size]).argmax(axis=1)
        return out

    def count_params(self):
        return int(sum(p.size for p in self.params))

    # ---------------------------------------------------------------- files

    def state_dict(self):
        """Host copies of the weights plus the architecture, as a dict of numpy arrays."""
        state = {f"param_{i}": to_numpy(p) for i, p in enumerate(self.params)}
        state["config"] = np.array(json.dumps(self.config))
        return state

    def load_params(self, arrays):
        """Copy a list of host arrays into ``params`` (in place, shapes checked)."""
        if len(arrays) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arrays, got {len(arrays)}")
        for p, a in zip(self.params, arrays):
            if p.shape != a.shape:
                raise ValueError(f"parameter shape mismatch: model {p.shape}, file {a.shape}")
            p[...] = self.xp.asarray(a, dtype=p.dtype)

    def save(self, path):
        """Write weights and architecture to one ``.npz`` file, atomically.

        The file is written under a temporary name in the same folder and then
        renamed, so an interrupted save never leaves a half-written file.
        """
        save_npz_atomic(path, self.state_dict())

    @classmethod
    def load(cls, path, device="cpu", dtype=None):
        """Rebuild a model saved by :meth:`save` on the given device.

        Raises FileNotFoundError when there is no such file, and ValueError
        naming the file when it is not a model file (not an .npz archive,
        truncated or corrupt, a training checkpoint, a config that makes no
        MLP, weights of the wrong shapes) or when a weight is NaN or infinite
        (a model saved from a diverged run would only train to NaN).
        """
        device = resolve_device(device)  # a missing GPU is not the file's fault: say so first
        arrays = read_npz(path)
        if "config" not in arrays and "signature" in arrays:
            raise ValueError(f"{path} is a training checkpoint, not a model file: give the model file saved beside "
                             f"it (teacher.npz for teacher.ckpt.npz)")
        if "config" not in arrays:
            raise ValueError(f"{path} is not a nanokd model file (no 'config' entry)")
        try:
            config = json.loads(str(arrays["config"]))
            if not isinstance(config, dict):
                raise TypeError(f"config is a {type(config).__name__}, not a dict")
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path} is not a nanokd model file: its 'config' entry is not valid ({e})") from None
        params = [arrays.get(f"param_{i}") for i in range(sum(k.startswith("param_") for k in arrays))]
        for i, a in enumerate(params):
            if a is None or a.dtype.kind != "f":
                raise ValueError(f"{path} is not a nanokd model file: param_{i} is "
                                 f"{'missing' if a is None else f'of dtype {a.dtype}'}")
            if not np.isfinite(a).all():
                raise ValueError(f"{path} holds NaN or infinite weights (param_{i}): it was saved from a run that "
                                 f"diverged, or the file is corrupt; train it again")
        if dtype is not None:
            config["dtype"] = dtype
        try:
            model = cls(**config, device=device)
            model.load_params(params)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path} does not hold a model nanokd can rebuild ({e})") from None
        return model

    def __repr__(self):
        c = self.config
        return (f"MLP({c['sizes']}, dropout_input={c['dropout_input']}, dropout_hidden={c['dropout_hidden']}, "
                f"max_norm={c['max_norm']}, dtype={c['dtype']}, device={self.device!r})")
