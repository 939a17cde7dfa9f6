"""Files written atomically: to a temporary name beside the target, then renamed onto it.

A reader (or a run interrupted half way) sees either the old file or the whole
new one, never a half-written file: ``os.replace`` within one folder is atomic
on POSIX and Windows.  Used for models, checkpoints, JSON records and plots.

    with atomic_file("results/run.json") as f:
        json.dump(record, f)
"""

import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` when the block ends.

    ``mode`` is "w" (text) or "wb" (binary).  The folder is created if needed.
    If the block raises, the temporary file is removed and ``path`` is left as
    it was.  The file gets a plain file's permissions (``mkstemp`` would leave
    it private to its owner).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path, obj, default=None):
    """Write ``obj`` to ``path`` as indented JSON (ending in a newline), atomically."""
    with atomic_file(path) as f:
        json.dump(obj, f, indent=2, default=default)
        f.write("\n")


def save_figure_atomic(fig, path, **kwargs):
    """``fig.savefig`` to ``path``, atomically; the format comes from the file name (e.g. ``.png``)."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


def save_npz_atomic(path, arrays):
    """``np.savez`` of a dict of arrays to ``path``, atomically (models and checkpoints)."""
    with atomic_file(path, "wb") as f:
        np.savez(f, **arrays)
