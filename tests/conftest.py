"""Shared pytest fixtures, and the hypothesis profiles: ``ci`` by default, ``--hypothesis-profile thorough``
for a long run.

``--hypothesis-profile mutation`` (what ``mutmut run`` passes, pyproject.toml) is ``ci`` with fixed
examples and no example database: a failing example one mutant's run saved must not replay on the
next mutants, which would count them killed when the mutant did not fail the test.
"""

import os
from pathlib import Path

import pytest

try:
    from hypothesis import settings

    import nanokd.testing as nkt
except ImportError:  # hypothesis is missing: the property tests will say so when they import it
    pass
else:
    nkt.register_profiles()
    settings.register_profile("mutation", parent=settings.get_profile("ci"), derandomize=True, database=None)
    settings.load_profile("ci")  # hypothesis's pytest plugin loads --hypothesis-profile after this, when given

# tqdm guards its bars with a lock that spans processes (a multiprocessing semaphore). A forked test
# process killed while holding it (mutmut kills workers that time out) blocks every later one at its
# first progress bar; the tests run in one process each, so a thread lock is all they need.
try:
    import threading

    import tqdm
except ImportError:
    pass
else:
    tqdm.tqdm.set_lock(threading.RLock())

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@pytest.fixture(scope="session")
def mnist_dir():
    """The folder with the real MNIST files, or skip the test.

    Taken from ``NANOKD_DATA`` (the folder itself or its ``mnist/`` subfolder),
    else ``shared/data/mnist`` beside the repository root.  Session-scoped, so
    it reads ``NANOKD_DATA`` before any test's monkeypatch changes it.
    """
    env = os.environ.get("NANOKD_DATA")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if (folder / "mnist").is_dir():
        folder = folder / "mnist"
    missing = [f for f in MNIST_FILES if not (folder / f).is_file()]
    if missing:
        pytest.skip(f"real MNIST not found: {folder} lacks {', '.join(missing)} (set NANOKD_DATA)")
    return folder


def _backend_params():
    """NumPy always; CuPy when it and a GPU are present, else a skip that says why."""
    from nanokd.backend import cuda_available

    return [
        pytest.param("numpy", id="numpy"),
        pytest.param("cupy", id="cupy", marks=pytest.mark.skipif(
            not cuda_available(), reason="CuPy with a CUDA GPU is not available here")),
    ]


@pytest.fixture(scope="session", params=_backend_params())
def xp(request):
    """The array module to run a test on: every backend test runs on NumPy and on CuPy."""
    if request.param == "cupy":
        import cupy

        return cupy
    import numpy

    return numpy


@pytest.fixture
def preset_columns():
    """A function: the (preset, role) columns of the table of defaults in a --help text (its two heading
    lines, the preset over its role)."""
    def columns(text):
        lines = text.splitlines()
        i = next(k for k, line in enumerate(lines) if line.startswith("defaults of the training flags"))
        return list(zip(lines[i + 2].split(), lines[i + 3].split()))
    return columns
