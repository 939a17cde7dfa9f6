"""Provenance for the benchmarks' records, and writing one.

Every record a script in benchmarks/ writes says how it was made, so that a
figure in RESULTS.md can be traced back to its code, machine and command:

* :func:`now`           the date, in UTC;
* :func:`git_commit`    the commit checked out, marked when the code differs from it;
* :func:`command_line`  the command that ran, as ``python -m benchmarks.NAME ARGS``;
* :func:`machine`       CPU, Python, NumPy (and the SIMD code it runs) and the BLAS library behind NumPy;
* :func:`numpy_simd`    the SIMD targets NumPy dispatches to on this CPU;
* :func:`write_record`  the record as indented JSON, written atomically
  (:func:`nanokd.atomic.write_json_atomic`: a run killed halfway leaves the
  previous record, never half a file).
"""

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from nanokd.atomic import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"  # the committed records

#: What :func:`git_commit` checks for uncommitted changes: the library and the scripts, not the records.
CODE_PATHS = ("nanokd", "benchmarks/*.py")


def now():
    """The date and time in UTC, e.g. ``2026-11-28 03:47:20 UTC``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


#: A file that ``git archive`` fills with the commit it exported (``export-subst`` in .gitattributes): a copy of
#: the tree made with ``git archive HEAD | tar -x`` (to run a long experiment while the checkout moves on)
#: still knows its commit.  In a checkout it holds the unexpanded placeholder.
ARCHIVE_COMMIT = REPO / "benchmarks" / "ARCHIVE_COMMIT"


def git_commit(paths=CODE_PATHS):
    """The short hash of the checkout's HEAD, with ``+uncommitted-changes`` if ``paths`` differ from it.

    Outside a git checkout: the commit a ``git archive`` copy was made from,
    as ``<hash> (archive copy, no .git)`` (:func:`archive_commit`), else None.
    """
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    if not sha:
        return archive_commit()
    return sha + ("+uncommitted-changes" if dirty else "")


def archive_commit(path=ARCHIVE_COMMIT):
    """``<hash> (archive copy, no .git)`` when ``git archive`` expanded ``path``'s placeholder, else None."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text.startswith("$Format"):
        return None
    return f"{text} (archive copy, no .git)"


def command_line(module, argv=None):
    """``python -m MODULE ARGS``, ARGS being ``argv`` (default: this process's ``sys.argv[1:]``), shell-quoted."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", "-m", module, *(shlex.quote(str(a)) for a in args)])


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threadpools():
    """The thread pools loaded in this process (BLAS, OpenMP), as threadpoolctl reports them.

    Each: ``internal_api`` (e.g. openblas), ``version``, ``architecture``
    (the BLAS kernel, e.g. Haswell or SkylakeX), ``num_threads`` and
    ``prefix`` (the library's file name).  The string ``"threadpoolctl not
    installed"`` without threadpoolctl.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "prefix")}
            for p in threadpool_info()]


def numpy_simd():
    """The SIMD targets NumPy's own loops (exp, log, sums, ...) dispatch to on this CPU, e.g. ``X86_V3+X86_V4``.

    NumPy is compiled for a baseline and for several wider targets, and picks
    the widest this CPU supports at import.  Its AVX-512 loops round some
    results differently in the last bit from its AVX2 ones, so two machines
    with the same NumPy and the same BLAS kernel still train to different bits
    when one has AVX-512.  The list is NumPy's private ``__cpu_dispatch__``
    filtered by ``__cpu_features__`` (what ``numpy.show_runtime()`` prints as
    "found"); ``"unknown"`` where a NumPy lacks them.  The environment variable
    ``NPY_DISABLE_CPU_FEATURES`` (e.g. ``"X86_V4 AVX512_ICL"``) turns targets off.
    """
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:
        return "unknown"
    return "+".join(t for t in __cpu_dispatch__ if __cpu_features__.get(t)) or "baseline"


def machine():
    """The machine a record was made on, as a JSON-able dict.

    BLAS threads change the rounding of every matrix product, so a CPU run is
    repeatable bit for bit only with the same BLAS library, kernel and number
    of threads: ``blas_threads_env`` holds the variables that set the threads
    (unset: OpenBLAS uses every core), ``threadpools`` what was loaded and how
    many threads it had when the record was made (:func:`threadpools`), and
    ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` the variables that override
    OpenBLAS's choice of kernel and cache size; ``numpy_simd`` the SIMD code
    NumPy's own loops run (:func:`numpy_simd`: it changes the last bits too).
    """
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numpy_simd": numpy_simd(),
            "blas_threads_env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"), "threadpools": threadpools()}


def write_record(path, record, default=None):
    """Write ``record`` to ``path`` as indented JSON, atomically, making its folder if need be; returns the path.

    ``default``: as for :func:`json.dump`, for values JSON has no type for (e.g. ``str``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record, default=default)
    return path
