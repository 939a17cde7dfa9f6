"""Files written atomically: to a temporary name beside the target, then renamed onto it.

A reader (or a run interrupted half way) sees either the old file or the whole
new one, never a half-written file: ``os.replace`` within one folder is atomic
on POSIX and Windows.  Used for models, checkpoints, JSON records and plots.

    with atomic_file("results/run.json") as f:
        json.dump(record, f)

A process killed half way through a write (SIGKILL, a power cut: anything
that skips the cleanup below) leaves its temporary file behind, named
``.tmp-XXXXXXXX.npz`` beside the target (:data:`TEMP_NAME`).
:func:`remove_orphans` deletes such files; ``python -m nanokd.train`` calls it
on its run folder whenever a run starts or resumes there.
"""

import contextlib
import json
import os
import re
import tempfile

import numpy as np


#: What the name of every temporary file starts with.
TEMP_PREFIX = ".tmp-"

#: The whole name of a temporary file: the prefix, mkstemp's 8 random characters, the target's extension.
TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[a-z0-9_]{8}(\.[A-Za-z0-9]+)?")


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` when the block ends.

    ``mode`` is "w" (text) or "wb" (binary).  The folder is created if needed.
    If the block raises, the temporary file is removed and ``path`` is left as
    it was; an OSError (a full disk, a read-only folder) then names ``path``,
    not the temporary file.  The file gets a plain file's permissions
    (``mkstemp`` would leave it private to its owner).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and (e.filename is None or os.path.basename(e.filename).startswith(TEMP_PREFIX)):
            e.filename = path  # a full disk or a read-only folder: name the file being written, not its temporary
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


def remove_orphans(folder):
    """Delete the temporary files that interrupted writes left in ``folder``; return their names, sorted.

    Only regular files whose whole name matches :data:`TEMP_NAME` (what
    :func:`atomic_file` creates) are touched, and only in ``folder`` itself.
    Call it where no other process is writing into the folder at the time.
    """
    names = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                os.remove(entry.path)
                names.append(entry.name)
    return sorted(names)
