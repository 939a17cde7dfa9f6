"""Choosing NumPy or CuPy."""

import subprocess
import sys

import numpy as np
import pytest

import nanokd as nk
from nanokd import backend


def test_get_array_module_and_devices():
    assert nk.get_array_module(np.zeros(2)) is np
    assert nk.get_array_module(1.0, [1]) is np
    assert nk.get_xp("cpu") is np
    assert nk.resolve_device("cpu") == "cpu"
    assert nk.resolve_device("auto") == ("cuda" if nk.cuda_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        nk.resolve_device("gpu")


def test_import_does_not_need_cupy():
    """Importing nanokd (and building a CPU model) never imports CuPy."""
    code = "import sys, nanokd as nk; nk.MLP([4, 2]); nk.softmax(__import__('numpy').zeros((1, 2))); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cuda_request_without_cupy_names_the_fix(monkeypatch):
    monkeypatch.setattr(backend, "_cupy_or_none", lambda: None)
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    with pytest.raises(RuntimeError, match=r"needs CuPy.*pip install nanokd\[cuda\]"):
        nk.resolve_device("cuda")
    assert nk.resolve_device("auto") == "cpu"


def test_default_rng_is_seeded():
    a = backend.default_rng(np, 3).random(5)
    b = backend.default_rng(np, 3).random(5)
    np.testing.assert_array_equal(a, b)
