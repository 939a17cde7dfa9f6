r"""The GPU fast path: the elementwise work of a training step in a few CUDA kernels.

On a GPU every array operation is a kernel launch, and each launch costs the
host tens of microseconds however small the array.  For the nets of the
paper a step of the textbook code (losses.py, layers.py) is about a hundred
launches, and that, not arithmetic, is what it waits for.  This module
computes *the same formulas* with fewer launches:

=========================  ===============================================
kernel                     the formulas it computes
=========================  ===============================================
``nanokd_rows``            :func:`~nanokd.losses.log_softmax`,
(one thread per row)       :func:`~nanokd.losses.log_ratio`,
                           :func:`~nanokd.losses.kd_loss` and its grad,
                           :func:`~nanokd.losses.cross_entropy` and its
                           grad, :func:`~nanokd.losses.distillation_loss`
                           (about a hundred array operations on the plain path)
``bias_relu_dropout``      ``a += b`` (:class:`~nanokd.layers.Linear`),
                           :class:`~nanokd.layers.ReLU`,
                           :class:`~nanokd.layers.Dropout` (the mask from
                           the same uniform draws)
``bias_relu``              the same without dropout
``dropout``                Dropout of the input
``relu_dropout_backward``  Dropout.backward, then ReLU.backward
``relu_backward``          ReLU.backward
``sumsq``,                 :func:`~nanokd.layers.max_norm_`
``max_norm_scale``
``sgd_momentum``           :meth:`~nanokd.optim.SGD.step` with momentum
=========================  ===============================================

Nothing here is a new formula, and the plain code stays what the learner
reads: each kernel below is the lines of those functions written out once
per array element (or per row), in the same order.  The results agree with
the plain path to float rounding (the order of a few sums differs);
tests/test_fused.py checks that on CuPy, and checks every kernel's C code on
the CPU too: the row kernel's source, and each elementwise and reduction
kernel of :data:`ELEMENTWISE` and :data:`SUMSQ`, which are kept as data
(:class:`Elementwise`, :class:`Reduction`) so that the test can compile
their one-element C code into a loop.  What only a GPU run checks is CuPy's
side: its broadcasting of the arguments, its launch, and the fused MLP
forward and backward that call the kernels in order.

The fast path is chosen at one point, the training step
(:func:`nanokd.trainer.train_step` calls :func:`train_step` here), and
only for CuPy arrays: losses.py, layers.py, mlp.py and optim.py hold only the
plain formulas and know nothing of this module.  ``with fused.disabled():``
runs the plain formulas on the GPU too (to time or test them).  If a kernel
cannot be built (no CUDA compiler), a warning says so and the plain path is
used, kernel by kernel.
"""

import contextlib
import warnings
from typing import NamedTuple

import numpy as np

from .losses import FAR, GRAD_SPLIT, PSI_SERIES, PSI_SPLIT, cross_entropy_and_grad, distillation_loss_and_grad, \
    series_limit
from .optim import SGD, check_grads

_enabled = True


def active(xp):
    """True if arrays of module ``xp`` take the fused path (CuPy, and not inside :func:`disabled`)."""
    return _enabled and xp is not np


@contextlib.contextmanager
def disabled():
    """``with disabled():`` every training step runs the plain formulas, on the GPU too."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def train_step(model, optimizer, x, y, v, T, alpha):
    """:func:`nanokd.trainer.train_step` in fused kernels; each part falls back to the plain code on its own."""
    z = mlp_forward(model, x)
    if z is None:
        z = model.forward(x, train=True)
    rows = loss_rows(z, v, y, T, alpha if v is not None else 0.0)
    if rows is not None:
        loss, g = rows[0].mean(), rows[1]
    elif v is None:
        loss, g = cross_entropy_and_grad(z, y, check=False)
    else:
        loss, g = distillation_loss_and_grad(z, v, y, T, alpha, check=False)
    grads = mlp_backward(model, g)
    if grads is None:
        grads = model.backward(g)
    if not momentum_step(optimizer, grads):
        optimizer.step(grads)
    if model.max_norm is not None:
        for block in model.blocks[:-1]:
            if max_norm_(block.linear.W, model.max_norm) is None:
                model.apply_max_norm()
                break
    return loss

# --------------------------------------------------------------------------
# the per-row loss kernel
# --------------------------------------------------------------------------

#: C source of the row kernel, for ``real`` = float or double.  Thread n
#: handles row n of z (N, C): its loss goes to loss[n], dL/dz_n to g[n, :].
#: The names follow losses.py; each block says which function it mirrors.
#: The @NAMES@ are losses.py's constants, filled in by :func:`rows_source`.
ROWS_SOURCE = r"""
extern "C" __global__ void nanokd_rows(
    const real* z, const real* v, const long long* y, const int N, const int C,
    const real T, const real alpha, const real beta, const real small, const real kd_scale,
    real* g, real* loss)
{
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    const real* zn = z + (long long)n * C;
    const real* vn = v + (long long)n * C;
    real* gn = g + (long long)n * C;
    real row_loss = 0;

    if (alpha > 0) {
        /* log_softmax(z, T): s = z/T; m = s[top]; log q_j = (s_j - m) - log1p(sum_{j != top} exp(s_j - m)) */
        int top = 0;
        for (int j = 1; j < C; j++) if (zn[j] / T > zn[top] / T) top = j;
        const real mz = zn[top] / T;
        real sum = 0;
        for (int j = 0; j < C; j++) if (j != top) sum += EXP(zn[j] / T - mz);
        const real lse_z = LOG1P(sum);
        /* the same for v: log p */
        int topv = 0;
        for (int j = 1; j < C; j++) if (vn[j] / T > vn[topv] / T) topv = j;
        const real mv = vn[topv] / T;
        sum = 0;
        for (int j = 0; j < C; j++) if (j != topv) sum += EXP(vn[j] / T - mv);
        const real lse_v = LOG1P(sum);
#define LOGQ(j) ((zn[j] / T - mz) - lse_z)
#define LOGP(j) ((vn[j] / T - mv) - lse_v)

        /* log_ratio: d = (v - z)/T, shifted so that d at argmax z is 0; e = d - sum_j q_j d_j;
           l = e - log1p(max(sum_j q_j expm1(min(e_j, FAR)), 0)), or log p - log q in a row where max e > FAR */
        int topz = 0;
        for (int j = 1; j < C; j++) if (zn[j] > zn[topz]) topz = j;
        const real d_top = (vn[topz] - zn[topz]) / T;
#define D(j) ((vn[j] - zn[j]) / T - d_top)
        real mean = 0;
        for (int j = 0; j < C; j++) mean += EXP(LOGQ(j)) * D(j);
        real s = 0, e_max = D(0) - mean;
        for (int j = 0; j < C; j++) {
            const real e = D(j) - mean;
            s += EXP(LOGQ(j)) * EXPM1(e < (real)@FAR@ ? e : (real)@FAR@);
            if (e > e_max) e_max = e;
        }
        const real log1p_s = LOG1P(s > 0 ? s : (real)0);
        const bool huge = e_max > (real)@FAR@;
#define L(j) (huge ? LOGP(j) - LOGQ(j) : (D(j) - mean) - log1p_s)

        /* kd_loss: T^2 sum_j q_j psi(l_j), psi by its series where |l| < small, by the form that cancels
           least where |l| < FAR (1 - exp(l) (1 - l) below PSI_SPLIT, else l - (1 - l) expm1(l)), else q + p (l - 1);
           kd_loss_grad: T (q - p) / N as -q expm1(l) where |l| < GRAD_SPLIT, else q - p */
        real kd = 0;
        for (int j = 0; j < C; j++) {
            const real logq = LOGQ(j), l = L(j), q = EXP(logq), abs_l = ABS(l);
            const real t = l < -small ? -small : (l > small ? small : l);
            const real series = @PSI_SERIES@;
            const real psi = l < (real)@PSI_SPLIT@ ? 1 - EXP(l) * (1 - l) : l - (1 - l) * EXPM1(l);
            kd += abs_l < small ? q * series : (abs_l < (real)@FAR@ ? q * psi : q + EXP(LOGP(j)) * (l - 1));
            const real lc = l < -(real)@GRAD_SPLIT@ ? -(real)@GRAD_SPLIT@ : (l > (real)@GRAD_SPLIT@ ? (real)@GRAD_SPLIT@ : l);
            real gj = abs_l < (real)@GRAD_SPLIT@ ? -q * EXPM1(lc) : q - EXP(LOGP(j));
            gj *= kd_scale;                    /* T / N */
            if (alpha < 1) gj *= alpha;
            gn[j] = gj;
        }
        row_loss = alpha * (T * T * kd);
#undef LOGQ
#undef LOGP
#undef D
#undef L
    }

    if (alpha < 1) {
        /* cross_entropy: -log softmax(z)_y;  its grad: (softmax(z) - onehot(y)) / N, the y entry
           computed as -(sum of the other q_j);  distillation_loss_grad adds (1 - alpha) times it */
        const long long yn = y[n];
        int top = 0;
        for (int j = 1; j < C; j++) if (zn[j] > zn[top]) top = j;
        const real m = zn[top];
        real sum = 0;
        for (int j = 0; j < C; j++) if (j != top) sum += EXP(zn[j] - m);
        const real lse = LOG1P(sum);
        real others = 0;
        for (int j = 0; j < C; j++) if (j != yn) others += EXP((zn[j] - m) - lse);
        for (int j = 0; j < C; j++) {
            const real ce = (j == yn ? -others : EXP((zn[j] - m) - lse)) / (real)N;
            gn[j] = alpha > 0 ? gn[j] + beta * ce : ce;
        }
        row_loss += beta * -((zn[yn] - m) - lse);
    }
    loss[n] = row_loss;
}
"""

_HEADERS = {
    "float32": "typedef float real;\n#define EXP expf\n#define LOG1P log1pf\n#define EXPM1 expm1f\n#define ABS fabsf\n",
    "float64": "typedef double real;\n#define EXP exp\n#define LOG1P log1p\n#define EXPM1 expm1\n#define ABS fabs\n",
}
_THREADS = 128


def _c_psi_series():
    """losses.psi_series as a C expression in t (the same Horner form, the same constants)."""
    inner = f"t / (real){PSI_SERIES[-1]}"
    for d in reversed(PSI_SERIES[1:-1]):
        inner = f"t * ((real)(1.0 / {d}) + {inner})"
    return f"t * t * ((real)(1.0 / {PSI_SERIES[0]}) + {inner})"


def rows_source(dtype):
    """The complete C source of the row kernel for ``dtype`` (float32 or float64), constants filled in."""
    src = ROWS_SOURCE
    for name, value in (("FAR", FAR), ("PSI_SPLIT", PSI_SPLIT), ("GRAD_SPLIT", GRAD_SPLIT),
                        ("PSI_SERIES", _c_psi_series())):
        src = src.replace(f"@{name}@", str(value))
    return _HEADERS[np.dtype(dtype).name] + src

_KERNELS = {}  # name -> CuPy kernel, or None once building it failed


def _warn_once(name, err):
    warnings.warn(f"nanokd.fused: the CUDA kernel {name!r} could not be built ({err!r}); "
                  "using the plain formulas", RuntimeWarning, stacklevel=3)


def _kernel(name, build):
    kernel = _KERNELS.get(name, False)
    if kernel is False:
        try:
            kernel = build()
        except Exception as err:  # noqa: BLE001  no compiler, or a broken toolkit: plain path
            _warn_once(name, err)
            kernel = None
        _KERNELS[name] = kernel
    return kernel


def _rows_kernel(dtype):
    dtype = np.dtype(dtype).name

    def build():
        kernel = _cupy().RawKernel(rows_source(dtype), "nanokd_rows")
        kernel.compile()  # compile now, so that a failure is caught here
        return kernel
    return _kernel(f"rows_{dtype}", build)


def loss_rows(z, v, y, T, alpha):
    """Per-row loss and dL/dz of ``distillation_loss`` (alpha = 0: cross-entropy) in one kernel.

    Returns ``(loss (N,), g (N, C))``, or None if the kernel is unavailable.
    ``v`` may be None when alpha = 0.  The loss of the batch is ``loss.mean()``.
    """
    if z.dtype not in (np.float32, np.float64) or z.shape[0] == 0:
        return None
    kernel = _rows_kernel(z.dtype)
    if kernel is None:
        return None
    xp = _cupy()
    N, C = z.shape
    z = xp.ascontiguousarray(z)
    v = z if v is None else xp.ascontiguousarray(v, dtype=z.dtype)
    y = xp.ascontiguousarray(y, dtype=np.int64)
    g = xp.empty_like(z)
    loss = xp.empty(N, dtype=z.dtype)
    real = z.dtype.type
    args = (z, v, y, np.int32(N), np.int32(C), real(T), real(alpha), real(1 - alpha),
            real(series_limit(z.dtype)), real(T / N), g, loss)
    kernel(((N + _THREADS - 1) // _THREADS,), (_THREADS,), args)
    return loss, g


def _cupy():
    import cupy

    return cupy


# --------------------------------------------------------------------------
# elementwise kernels of the MLP
# --------------------------------------------------------------------------


class Elementwise(NamedTuple):
    """A CuPy ElementwiseKernel as data: its parameters and the C code of one element (``T``: the dtype).

    Inputs are read-only values, outputs are the elements written (and read,
    when the kernel works in place).  tests/test_fused.py compiles each one's
    ``operation`` for the CPU and checks it against the plain formula.
    """

    in_params: str
    out_params: str
    operation: str


class Reduction(NamedTuple):
    """A CuPy ReductionKernel as data: ``map`` of each element, combined by ``reduce`` of ``a`` and ``b``."""

    in_params: str
    out_params: str
    map: str
    reduce: str
    post: str
    identity: str


#: ReLU.forward of Linear's ``a += b``:  a <- max(a + b, 0)   (a NaN stays NaN, as with maximum)
BIAS_RELU = Elementwise("T b", "T a", "T s = a + b; a = s < (T)0 ? (T)0 : s;")

#: the same, then Dropout.forward:  m = [u >= p] / (1 - p);  a <- max(a + b, 0) * m
BIAS_RELU_DROPOUT = Elementwise(
    "T b, T u, T p, T scale", "T a, T mask",
    "T s = a + b; T m = u >= p ? scale : (T)0; mask = m; a = (s < (T)0 ? (T)0 : s) * m;")

#: Dropout.forward (of the input):  m = [u >= p] / (1 - p);  h = x * m
DROPOUT = Elementwise("T x, T u, T p, T scale", "T h, T mask", "T m = u >= p ? scale : (T)0; mask = m; h = x * m;")

#: Dropout.backward, then ReLU.backward:  g <- g * m * [h > 0]
RELU_DROPOUT_BACKWARD = Elementwise("T h, T mask", "T g", "g = g * mask * (T)(h > (T)0);")

#: ReLU.backward:  g <- g * [h > 0]
RELU_BACKWARD = Elementwise("T h", "T g", "g = g * (T)(h > (T)0);")

#: max_norm_'s squared column norms:  ss_j = sum_i w_ij^2   (over axis 0)
SUMSQ = Reduction("T w", "T ss", "w * w", "a + b", "ss = a", "0")

#: max_norm_'s projection:  w_j <- w_j * min(1, c / max(||w_j||, 1e-12))
MAX_NORM_SCALE = Elementwise("T ss, T c", "T w",
                             "T norm = sqrt(ss); T s = c / (norm > (T)1e-12 ? norm : (T)1e-12); "
                             "w = s < (T)1 ? w * s : w;")

#: SGD._update without weight decay or Nesterov:  u <- momentum * u + g;  w <- w - lr * u
SGD_MOMENTUM = Elementwise("T g, T lr, T momentum", "T w, T u", "u = momentum * u + g; w -= lr * u;")

#: Every elementwise kernel by its name (the CuPy kernel is called nanokd_NAME).
ELEMENTWISE = {"bias_relu": BIAS_RELU, "bias_relu_dropout": BIAS_RELU_DROPOUT, "dropout": DROPOUT,
               "relu_dropout_backward": RELU_DROPOUT_BACKWARD, "relu_backward": RELU_BACKWARD,
               "max_norm_scale": MAX_NORM_SCALE, "sgd_momentum": SGD_MOMENTUM}


def _elementwise(name):
    """The CuPy kernel of ``ELEMENTWISE[name]``, built once (None if it cannot be built)."""
    spec = ELEMENTWISE[name]
    return _kernel(name, lambda: _cupy().ElementwiseKernel(*spec, f"nanokd_{name}"))


def _sumsq():
    return _kernel("sumsq", lambda: _cupy().ReductionKernel(*SUMSQ, "nanokd_sumsq"))


def mlp_forward(model, x):
    """``MLP.forward(x, train=True)``, each block's bias, ReLU and Dropout in one kernel.

    Walks ``model.input_dropout`` and ``model.blocks``.  Returns the logits (a
    new array), or None if a kernel is unavailable.  Sets what the plain
    forward sets and the backward reads: each Linear's input, each ReLU's
    output and each Dropout's mask.
    """
    kernels = (_elementwise("bias_relu"), _elementwise("bias_relu_dropout"), _elementwise("dropout"))
    if any(k is None for k in kernels):
        return None
    bias_relu, bias_relu_dropout, dropout = kernels
    xp, dtype, h = model.xp, x.dtype, x
    drop = model.input_dropout
    if drop is not None:  # on the input: not in place
        u = model.rng.random(h.shape, dtype=dtype)  # as Dropout draws it
        out, mask = drop.buffer("h", h.shape, xp, dtype), drop.buffer("mask", h.shape, xp, dtype)
        dropout(h, u, dtype.type(drop.p), dtype.type(1.0 / (1.0 - drop.p)), out, mask)
        drop.mask, h = mask, out
    for linear, relu, drop in model.blocks:
        a = linear.forward(h, bias=False)  # a = h W, into the layer's buffer
        if relu is None:  # the output layer
            a += linear.b
        elif drop is None:
            bias_relu(linear.b, a)
            relu.h = a
        else:
            u = model.rng.random(a.shape, dtype=dtype)
            mask = drop.buffer("mask", a.shape, xp, dtype)
            bias_relu_dropout(linear.b, u, dtype.type(drop.p), dtype.type(1.0 / (1.0 - drop.p)), a, mask)
            relu.h, drop.mask = a, mask
        h = a
    return h.copy()


def mlp_backward(model, dz):
    """``MLP.backward(dz)``, each block's Dropout and ReLU backward in one kernel.  None if unavailable."""
    kernels = (_elementwise("relu_dropout_backward"), _elementwise("relu_backward"))
    if any(k is None for k in kernels):
        return None
    relu_dropout_backward, relu_backward = kernels
    g = dz
    for i in range(len(model.blocks) - 1, -1, -1):
        linear, relu, drop = model.blocks[i]
        if relu is not None:
            if drop is None:
                relu_backward(relu.h, g)
            else:
                relu_dropout_backward(relu.h, drop.mask, g)
        g = linear.backward(g, need_dx=i > 0)  # the input's gradient is not needed
    grads = []
    for linear in model.linears:
        grads += [linear.dW, linear.db]
    return grads


def max_norm_(W, c):
    """:func:`nanokd.layers.max_norm_` in two kernels; returns W, or None if unavailable."""
    sumsq, scale = _sumsq(), _elementwise("max_norm_scale")
    if sumsq is None or scale is None:
        return None
    scale(sumsq(W, axis=0), W.dtype.type(c), W)
    return W


def momentum_step(optimizer, grads):
    """:meth:`nanokd.optim.SGD.step` for plain momentum SGD, one kernel per parameter.

    Returns False, and changes nothing, when it does not apply (another
    optimizer, Nesterov, weight decay, no momentum) or the kernel is unavailable.
    """
    if type(optimizer) is not SGD or not optimizer.momentum or optimizer.nesterov or optimizer.weight_decay:
        return False
    kernel = _elementwise("sgd_momentum")
    if kernel is None:
        return False
    check_grads(optimizer.params, grads)
    lr, momentum = float(optimizer.lr), float(optimizer.momentum)
    for w, g, u in zip(optimizer.params, grads, optimizer.velocity):
        kernel(g, w.dtype.type(lr), w.dtype.type(momentum), w, u)
    return True
