"""The array backend: one code path for NumPy (CPU) and CuPy (CUDA).

Every function in nanokd is written against an array module ``xp`` that is
either :mod:`numpy` or :mod:`cupy`.  The module is chosen in one of two ways:

* from the arrays a function is given -- :func:`get_array_module`, as in
  chainer: if any argument is a CuPy array, ``xp`` is CuPy, else NumPy;
* from a device name -- :func:`get_xp` with ``"cpu"``, ``"cuda"`` or
  ``"auto"`` (CUDA when CuPy and a GPU are present, else CPU).

CuPy is optional (``pip install nanokd[cuda]``); importing nanokd never
imports it unless a CuPy array or the ``"cuda"`` device is asked for.
"""

import numpy as np

DEVICES = ("cpu", "cuda", "auto")

_CUPY_HELP = (
    "install CuPy for your CUDA version, e.g. `pip install nanokd[cuda]` "
    "(cupy-cuda12x) or `pip install cupy-cuda13x`, on a machine with an NVIDIA GPU"
)


def _cupy_or_none():
    """Return the cupy module if it is importable *and* sees a GPU, else None."""
    try:
        import cupy
    except Exception:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    return cupy


def cuda_available():
    """True when CuPy is installed and at least one CUDA device is visible."""
    return _cupy_or_none() is not None


def resolve_device(device):
    """Map ``"cpu" | "cuda" | "auto"`` to ``"cpu"`` or ``"cuda"``.

    Raises ValueError for an unknown name and RuntimeError when ``"cuda"`` is
    asked for but CuPy or a GPU is missing.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if device == "auto":
        return "cpu"
    try:
        import cupy  # noqa: F401
    except Exception:
        raise RuntimeError(f"device='cuda' needs CuPy, which is not installed: {_CUPY_HELP}") from None
    raise RuntimeError(f"device='cuda' needs a CUDA GPU, but CuPy sees none: {_CUPY_HELP}")


def get_xp(device="cpu"):
    """The array module for a device name: numpy for ``"cpu"``, cupy for ``"cuda"``."""
    if resolve_device(device) == "cuda":
        import cupy

        return cupy
    return np


def get_array_module(*arrays):
    """The array module of the given arrays (chainer's trick).

    CuPy if any argument is a ``cupy.ndarray``; NumPy otherwise.  Only looks
    at ``type(a).__module__``, so it never imports CuPy for NumPy inputs.
    """
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cupy
    return np


def device_of(a):
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cuda" if get_array_module(a) is not np else "cpu"


def to_numpy(a):
    """Copy an array to the host (a no-op for NumPy arrays).  Never call in a hot loop."""
    if get_array_module(a) is np:
        return np.asarray(a)
    return a.get()


def default_rng(xp, seed):
    """A seeded random generator living on ``xp``'s device.

    NumPy's PCG64 ``Generator`` on the CPU, CuPy's ``Generator`` on the GPU;
    both provide ``random(size, dtype=..., out=...)``.  Dropout masks and
    jitter are drawn from it, so the same seed gives the same run.
    """
    if xp is np:
        return np.random.default_rng(seed)
    return xp.random.default_rng(seed)
