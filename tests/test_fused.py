"""The GPU fast path (nanokd/fused.py) computes the plain formulas.

* The row kernel's C source, compiled for the CPU with a C++ compiler and run
  one "thread" at a time, gives distillation_loss / cross_entropy and their
  gradients (float64 and float32).  This runs wherever a compiler is, so CI
  checks the kernel's arithmetic without a GPU.
* Each elementwise and reduction kernel of the MLP and of SGD
  (``fused.ELEMENTWISE``, ``fused.SUMSQ``), its C code written into a loop
  over the elements and compiled the same way, gives ReLU, Dropout,
  max_norm_ and SGD.step (bit for bit, but for max-norm's sum of squares).
* On CuPy: the row kernel, the fused forward and backward of the MLP and the
  fused max-norm against the plain methods of the model, and a few training
  steps (:func:`nanokd.trainer.train_step`) with the fast path and inside
  ``fused.disabled()``, which must stay together.
"""

import contextlib
import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import nanokd as nk
from nanokd import fused
from nanokd.backend import cuda_available
from nanokd.losses import distillation_loss, distillation_loss_grad, series_limit
from nanokd.trainer import train_step

CASES = [  # (N, C, T, alpha, logit scale, student-teacher gap)
    (64, 10, 20.0, 1.0, 5.0, 1.0),
    (64, 10, 20.0, 0.9, 5.0, 1.0),
    (64, 10, 1.0, 0.0, 3.0, 1.0),
    (33, 7, 2.5, 0.5, 1.0, 1e-3),  # p ~ q: the series branch of the KL
    (17, 10, 0.5, 0.7, 40.0, 1.0),  # sharp softmaxes, huge log-ratios
    (64, 2, 1.0, 1.0, 12.0, 0.3),  # a rare class whose |l| is past the series: q psi(l)
    (5, 3, 1.0, 1.0, 0.0, 0.0),  # uniform q = p: zero loss, zero gradient
    (8, 1, 3.0, 0.9, 1.0, 1.0),  # one class
]


def make_case(N, C, T, alpha, scale, gap, dtype, seed=0):
    rng = np.random.default_rng(seed)
    v = scale * rng.standard_normal((N, C))
    z = v + gap * rng.standard_normal((N, C))
    y = rng.integers(0, C, N)
    return z.astype(dtype), v.astype(dtype), y.astype(np.int64)


def assert_close(fast, plain, rel):
    fast, plain = np.asarray(fast, dtype=np.float64), np.asarray(plain, dtype=np.float64)
    scale = max(np.abs(plain).max(), np.finfo(np.float64).tiny)
    assert np.abs(fast - plain).max() <= rel * scale, (np.abs(fast - plain).max(), scale)


# ---------------------------------------------------------------------------- the C source on the CPU

SHIM = """
#include <math.h>
struct nanokd_dim { int x; };
static nanokd_dim blockIdx, threadIdx, blockDim;
#define __global__
"""

RUNNER = """
extern "C" void run_rows(const real* z, const real* v, const long long* y, int N, int C, real T, real alpha,
                         real beta, real small, real kd_scale, real* g, real* loss)
{
    blockDim.x = 1; threadIdx.x = 0;
    for (int n = 0; n < N; n++) {
        blockIdx.x = n;
        nanokd_rows(z, v, y, N, C, T, alpha, beta, small, kd_scale, g, loss);
    }
}
"""


@pytest.fixture(scope="module")
def cpu_rows(tmp_path_factory):
    """The row kernel built as a CPU library for each dtype: dtype -> callable like fused.loss_rows."""
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the row kernel's C source for the CPU")
    folder = tmp_path_factory.mktemp("rows")
    libs = {}
    for dtype in ("float32", "float64"):
        src, lib = folder / f"rows_{dtype}.cpp", folder / f"rows_{dtype}.so"
        # -ffp-contract=off: no fused multiply-adds, like NumPy (the GPU may use them: the CuPy tests allow it)
        src.write_text(SHIM + fused.rows_source(dtype) + RUNNER)
        subprocess.run([cxx, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib), str(src)],
                       check=True, capture_output=True)
        libs[dtype] = ctypes.CDLL(str(lib))

    def loss_rows(z, v, y, T, alpha):
        dtype = z.dtype
        real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        g, loss = np.empty_like(z), np.empty(len(z), dtype=dtype)
        ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        libs[dtype.name].run_rows(ptr(z), ptr(v), ptr(y), len(z), z.shape[1], real(T), real(alpha),
                                  real(1 - alpha), real(series_limit(dtype)), real(T / len(z)), ptr(g), ptr(loss))
        return loss, g
    return loss_rows


@pytest.mark.parametrize("dtype,rel", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("case", CASES)
def test_row_kernel_source_on_the_cpu_gives_the_plain_losses(cpu_rows, case, dtype, rel):
    N, C, T, alpha, scale, gap = case
    z, v, y = make_case(*case, dtype=dtype)
    loss, g = cpu_rows(z, v, y, T, alpha)
    assert_close(loss.mean(), distillation_loss(z, v, y, T, alpha), rel)
    assert_close(g, distillation_loss_grad(z, v, y, T, alpha), rel)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_kernel_source_takes_its_constants_from_losses(dtype):
    """Every @NAME@ of the C source is filled in, and the series is losses.psi_series written in C."""
    src = fused.rows_source(dtype)
    assert "@" not in src
    assert "t / (real)5760" in src and "(real)(1.0 / 840)" in src and "(real)30" in src


# ---------------------------------------------------------------------------- the MLP's and SGD's kernels on the CPU

C_TYPES = {"float32": "float", "float64": "double"}


def _names(params):
    """ "T b, T u" -> ["b", "u"] """
    return [p.split()[-1] for p in params.split(",")]


def elementwise_source(spec, dtype):
    """fused.Elementwise ``spec`` as a C loop over the elements: each input a value, each output an element."""
    ins, outs = _names(spec.in_params), _names(spec.out_params)
    args = ", ".join([f"const T* {n}_in" for n in ins] + [f"T* {n}_out" for n in outs])
    reads = " ".join(f"const T {n} = {n}_in[i];" for n in ins)
    defines = "\n".join(f"#define {n} ({n}_out[i])" for n in outs)
    undefs = "\n".join(f"#undef {n}" for n in outs)
    return (f"#include <math.h>\ntypedef {C_TYPES[dtype]} T;\n"
            f'extern "C" void run(long count, {args}) {{\n  for (long i = 0; i < count; i++) {{\n    {reads}\n'
            f"{defines}\n    {spec.operation}\n{undefs}\n  }}\n}}\n")


def reduction_source(spec, dtype):
    """fused.Reduction ``spec`` as a C loop reducing axis 0 of a C-ordered (rows, cols) array, as max_norm_ does."""
    (x,), (out,) = _names(spec.in_params), _names(spec.out_params)
    return (f"#include <math.h>\ntypedef {C_TYPES[dtype]} T;\n"
            f'extern "C" void run(long rows, long cols, const T* {x}_in, T* {out}_out) {{\n'
            f"  for (long j = 0; j < cols; j++) {{\n    T acc = (T)({spec.identity});\n"
            f"    for (long i = 0; i < rows; i++) {{\n      const T {x} = {x}_in[i * cols + j];\n"
            f"      const T mapped = ({spec.map});\n      {{ const T a = acc, b = mapped; acc = ({spec.reduce}); }}\n"
            f"    }}\n    {{ const T a = acc;\n#define {out} ({out}_out[j])\n      {spec.post};\n#undef {out}\n    }}\n"
            f"  }}\n}}\n")


@pytest.fixture(scope="module")
def cpu_kernels(tmp_path_factory):
    """(name, dtype) -> the kernel's C code built for the CPU; call(**inputs_and_outputs) -> the outputs.

    Every array is broadcast to the shape of the first output, as CuPy
    broadcasts a kernel's arguments; the outputs are updated in place.
    """
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to build the kernels' C code for the CPU")
    folder = tmp_path_factory.mktemp("kernels")
    built = {}

    def build(name, dtype):
        if (name, dtype) not in built:
            spec = fused.SUMSQ if name == "sumsq" else fused.ELEMENTWISE[name]
            source = reduction_source(spec, dtype) if name == "sumsq" else elementwise_source(spec, dtype)
            src, lib = folder / f"{name}_{dtype}.cpp", folder / f"{name}_{dtype}.so"
            src.write_text(source)
            subprocess.run([cxx, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib), str(src)],
                           check=True, capture_output=True)
            built[name, dtype] = (spec, ctypes.CDLL(str(lib)))
        return built[name, dtype]

    def call(name, dtype, **arrays):
        spec, lib = build(name, dtype)
        ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        outs = _names(spec.out_params)
        if name == "sumsq":
            (w,) = (np.ascontiguousarray(arrays[n], dtype=dtype) for n in _names(spec.in_params))
            ss = np.empty(w.shape[1], dtype=dtype)
            lib.run(ctypes.c_long(w.shape[0]), ctypes.c_long(w.shape[1]), ptr(w), ptr(ss))
            return ss
        shape = np.shape(arrays[outs[0]])
        ins = [np.ascontiguousarray(np.broadcast_to(np.asarray(arrays[n], dtype=dtype), shape))
               for n in _names(spec.in_params)]
        results = [np.ascontiguousarray(np.broadcast_to(np.asarray(arrays[n], dtype=dtype), shape)).copy()
                   for n in outs]
        lib.run(ctypes.c_long(int(np.prod(shape))), *map(ptr, ins), *map(ptr, results))
        return results[0] if len(results) == 1 else tuple(results)
    return call


P_DROP = 0.3


def _pre_activations(dtype, shape=(33, 20), seed=0):
    """Pre-activations with exact zeros, a NaN and both signs, a bias, and uniform draws, some exactly p."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    a[0, :5] = 0
    a[1, 1] = np.nan
    b = rng.standard_normal(shape[1]).astype(dtype)
    b[:3] = 0
    u = rng.random(shape, dtype=dtype)
    u[2, :4] = dtype.type(P_DROP)  # kept: the mask is [u >= p]
    return a, b, u


def _plain_dropout_mask(u, p, dtype):
    """Dropout's mask from the uniform draws u:  m = [u >= p] / (1 - p)  (layers.Dropout's docstring)."""
    return (u >= dtype.type(p)) * dtype.type(1 / (1 - p))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bias_relu_kernels_on_the_cpu_give_linear_relu_and_dropout(cpu_kernels, dtype):
    """bias_relu is ReLU.forward(a + b); bias_relu_dropout and dropout add Dropout's mask; bit for bit."""
    dt = np.dtype(dtype)
    a, b, u = _pre_activations(dt)
    relu = nk.ReLU().forward(a + b)
    np.testing.assert_array_equal(cpu_kernels("bias_relu", dtype, a=a, b=b), relu)

    m = _plain_dropout_mask(u, P_DROP, dt)
    h, mask = cpu_kernels("bias_relu_dropout", dtype, a=a, b=b, u=u, p=P_DROP, scale=1 / (1 - P_DROP),
                          mask=np.zeros_like(a))
    np.testing.assert_array_equal(mask, m)
    np.testing.assert_array_equal(h, relu * m)
    assert 0 < (mask == 0).mean() < 1

    h, mask = cpu_kernels("dropout", dtype, x=a, u=u, p=P_DROP, scale=1 / (1 - P_DROP), h=np.zeros_like(a),
                          mask=np.zeros_like(a))
    np.testing.assert_array_equal(mask, m)
    np.testing.assert_array_equal(h, a * m)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_backward_kernels_on_the_cpu_give_dropout_then_relu_backward(cpu_kernels, dtype):
    dt = np.dtype(dtype)
    a, b, u = _pre_activations(dt)
    relu, drop = nk.ReLU(), nk.Dropout(P_DROP)
    h = relu.forward(a + b)
    drop.mask = _plain_dropout_mask(u, P_DROP, dt)
    g = np.random.default_rng(1).standard_normal(a.shape).astype(dt)
    np.testing.assert_array_equal(cpu_kernels("relu_backward", dtype, h=h, g=g), relu.backward(g.copy()))
    np.testing.assert_array_equal(cpu_kernels("relu_dropout_backward", dtype, h=h, mask=drop.mask, g=g),
                                  relu.backward(drop.backward(g.copy())))


@pytest.mark.parametrize("dtype,rel", [("float32", 4e-7), ("float64", 1e-15)])
def test_max_norm_kernels_on_the_cpu_give_max_norm(cpu_kernels, dtype, rel):
    """sumsq then max_norm_scale is layers.max_norm_: columns outside the ball are scaled onto it, the
    others (and a zero column) are left as they are; up to the order of the sum of squares."""
    rng = np.random.default_rng(2)
    W = (rng.standard_normal((50, 12)) * np.linspace(0.01, 0.4, 12)).astype(dtype)
    W[:, 3] = 0
    c = 1.0
    ss = cpu_kernels("sumsq", dtype, w=W)
    np.testing.assert_allclose(ss, (W.astype(np.float64) ** 2).sum(axis=0), rtol=rel * 50)
    got = cpu_kernels("max_norm_scale", dtype, ss=ss, c=c, w=W)
    want = nk.layers.max_norm_(W.copy(), c)
    outside = np.sqrt((W.astype(np.float64) ** 2).sum(axis=0)) > c
    assert 0 < outside.sum() < len(outside)
    np.testing.assert_array_equal(got[:, ~outside], W[:, ~outside])
    np.testing.assert_allclose(got, want, rtol=4 * rel, atol=0)
    np.testing.assert_allclose(np.sqrt((got.astype(np.float64) ** 2).sum(axis=0))[outside], c, rtol=8 * rel)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_momentum_kernel_on_the_cpu_gives_sgd_step(cpu_kernels, dtype):
    """sgd_momentum is SGD.step with momentum (no weight decay, no Nesterov), bit for bit, two steps."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((30, 7)).astype(dtype)
    opt = nk.SGD([w.copy()], lr=0.05, momentum=0.9)
    w_fast, u_fast = w.copy(), np.zeros_like(w)
    for _ in range(2):
        g = rng.standard_normal(w.shape).astype(dtype)
        opt.step([g.copy()])
        w_fast, u_fast = cpu_kernels("sgd_momentum", dtype, g=g, lr=0.05, momentum=0.9, w=w_fast, u=u_fast)
    np.testing.assert_array_equal(u_fast, opt.velocity[0])
    np.testing.assert_array_equal(w_fast, opt.params[0])


def test_every_kernel_of_the_mlp_and_sgd_is_checked_on_the_cpu():
    """The tests above cover every entry of fused.ELEMENTWISE (a new kernel needs its CPU check)."""
    checked = {"bias_relu", "bias_relu_dropout", "dropout", "relu_backward", "relu_dropout_backward",
               "max_norm_scale", "sgd_momentum"}
    assert set(fused.ELEMENTWISE) == checked


def test_fast_path_is_off_on_numpy_and_inside_disabled():
    assert not fused.active(np)
    with fused.disabled():
        assert not fused._enabled
        with fused.disabled():
            pass
        assert not fused._enabled  # nested: still off until the outer block ends
    assert fused._enabled


def test_row_kernel_source_on_the_cpu_sees_a_wrong_label(cpu_rows):
    # the comparison above is not vacuous: another label changes both loss and gradient
    z, v, y = make_case(16, 10, 1.0, 0.0, 3.0, 1.0, np.float64)
    y2 = (y + 1) % 10
    loss, g = cpu_rows(z, v, y2, 1.0, 0.0)
    assert abs(loss.mean() - distillation_loss(z, v, y, 1.0, 0.0)) > 1e-3
    assert np.abs(g - distillation_loss_grad(z, v, y, 1.0, 0.0)).max() > 1e-3


# ---------------------------------------------------------------------------- on the GPU

cuda = pytest.mark.skipif(not cuda_available(), reason="CuPy with a CUDA GPU is not available here")


@cuda
@pytest.mark.parametrize("dtype,rel", [(np.float64, 1e-12), (np.float32, 4e-6)])
@pytest.mark.parametrize("case", CASES)
def test_row_kernel_gives_the_plain_losses(case, dtype, rel):
    import cupy

    N, C, T, alpha, scale, gap = case
    z, v, y = (cupy.asarray(a) for a in make_case(*case, dtype=dtype))
    out = fused.loss_rows(z, v, y, T, alpha)
    assert out is not None, "the row kernel could not be built"
    loss, g = out
    assert_close(nk.to_numpy(loss).mean(), nk.to_numpy(distillation_loss(z, v, y, T, alpha)), rel)
    assert_close(nk.to_numpy(g), nk.to_numpy(distillation_loss_grad(z, v, y, T, alpha)), rel)


def _model_pair(dtype, dropout):
    sizes = [50, 40, 30, 10]
    kw = dict(dropout_input=0.2 if dropout else 0.0, dropout_hidden=0.5 if dropout else 0.0, max_norm=0.5,
              seed=3, dtype=dtype, device="cuda")
    return nk.MLP(sizes, **kw), nk.MLP(sizes, **kw)


@cuda
@pytest.mark.parametrize("dtype,rel", [("float64", 1e-13), ("float32", 2e-6)])
@pytest.mark.parametrize("dropout", [True, False])
def test_fused_mlp_step_equals_the_plain_step(dtype, rel, dropout):
    import cupy

    fast, plain = _model_pair(dtype, dropout)
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.random((64, 50)).astype(dtype))
    y = cupy.asarray(rng.integers(0, 10, 64))
    for m in (fast, plain):
        m.reseed(11)  # the same dropout draws
    z_fast = fused.mlp_forward(fast, x)
    _, g = nk.cross_entropy_and_grad(z_fast, y)
    grads_fast = [a.copy() for a in fused.mlp_backward(fast, g)]
    for block in fast.blocks[:-1]:
        assert fused.max_norm_(block.linear.W, fast.max_norm) is not None
    z_plain = plain.forward(x, train=True)  # the model's own methods are the plain formulas
    grads_plain = plain.backward(nk.cross_entropy_grad(z_plain, y))
    plain.apply_max_norm()
    assert_close(nk.to_numpy(z_fast), nk.to_numpy(z_plain), rel)
    for a, b in zip(fast.layers, plain.layers):
        if isinstance(a, nk.Dropout):  # the same masks, bit for bit
            cupy.testing.assert_array_equal(a.mask, b.mask)
    for ga, gb in zip(grads_fast, grads_plain):
        assert_close(nk.to_numpy(ga), nk.to_numpy(gb), rel)
    for pa, pb in zip(fast.params, plain.params):  # after max-norm, which the tiny radius makes bite
        assert_close(nk.to_numpy(pa), nk.to_numpy(pb), rel)
    norms = cupy.sqrt((fast.params[0] ** 2).sum(axis=0))
    assert float(norms.max()) <= 0.5 * (1 + 1e-5)


@cuda
def test_fused_training_follows_the_plain_training():
    """Ten SGD steps of a small teacher: the two paths stay together (float64, so rounding cannot split them)."""
    import cupy

    fast, plain = _model_pair("float64", True)
    rng = np.random.default_rng(1)
    x = cupy.asarray(rng.random((640, 50)))
    y = cupy.asarray(rng.integers(0, 10, 640))
    v = cupy.asarray(rng.normal(size=(640, 10)))
    for m, fast_path in ((fast, True), (plain, False)):
        opt = nk.SGD(m.params, lr=0.1, momentum=0.9)
        m.reseed(5)
        with contextlib.nullcontext() if fast_path else fused.disabled():
            for b in range(10):
                rows = slice(64 * b, 64 * (b + 1))
                train_step(m, opt, x[rows], y[rows], v[rows] if b % 2 else None, T=4.0, alpha=0.9)
    assert fused.active(cupy)
    for pa, pb in zip(fast.params, plain.params):
        assert_close(nk.to_numpy(pa), nk.to_numpy(pb), 1e-11)


@cuda
def test_kernels_build():
    import cupy

    assert fused.active(cupy)
    for name in fused.ELEMENTWISE:
        assert fused._elementwise(name) is not None
    assert fused._sumsq() is not None
    assert fused._rows_kernel(np.float32) is not None and fused._rows_kernel(np.float64) is not None
