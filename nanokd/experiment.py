r"""One run of the paper's experiment: a teacher, a baseline student and a distilled student, then a table.

This is what ``python -m nanokd.train`` runs (:func:`run`), written on the
library: :func:`nanokd.presets.build` makes each role's network and settings
from its recipe, :func:`nanokd.trainer.train_model` trains it, and
:func:`nanokd.teacher.evaluate_errors` counts its test errors, once, at the
end.  Every model and checkpoint goes into the run's folder, the test
errors into ``results.json`` beside them, and each role's per-epoch training
loss and validation errors into ``curves.json`` (and ``curves.png``, with
matplotlib: :mod:`nanokd.curves`).  The networks' input size and class
count come from the data (784 and 10 for MNIST; anything for
``--dataset custom``).

A run goes in two phases, so that no mistake costs earlier work:

1. *Check everything, writing nothing*: the settings
   (:func:`nanokd.settings.check_settings`), the folder (an earlier run there
   is refused, unless resumed or ``overwrite``), the device, the data, the
   teacher files, the memory the networks need, and on a resume every
   checkpoint.  A mistake found here leaves the folder as it was.
2. *Write and train*: remove the temporary files of interrupted writes, clear
   the earlier run's files (``overwrite``), write config.json (unless
   resuming), train each role, write results.json.  A failure here (a full
   disk) keeps every finished epoch in the checkpoints, for ``--resume``.
"""

import os
import time
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from . import data as nkdata
from . import download
from .atomic import remove_orphans, write_json_atomic
from .backend import get_array_module, get_xp, resolve_device, to_numpy
from .checkpoint import CheckpointError, check_checkpoint
from .curves import write_curves
from .errors import FlagError, RunError
from .mlp import MLP
from .presets import Recipe, build
from .settings import ROLES, check_settings, name_of
from .teacher import evaluate_errors
from .trainer import TrainConfig, train_model

__all__ = ["FILES", "RUN_FILES", "ROLES", "FlagError", "RunError", "format_table", "run"]

#: name -> (role in results.json, file of final weights, file of per-epoch checkpoints)
FILES = {
    "teacher": ("teacher", "teacher.npz", "teacher.ckpt.npz"),
    "student": ("baseline", "student.npz", "student.ckpt.npz"),
    "distill": ("distilled", "distilled.npz", "distilled.ckpt.npz"),
}

#: Every file a run writes into its folder: a folder holding any of them holds a run.
RUN_FILES = ("config.json", "results.json", "curves.json", "curves.png",
             *(f for _, final, ckpt in FILES.values() for f in (final, ckpt)))

#: Bytes of memory that training needs per parameter: float32 weights, gradients, momentum and scratch, and
#: room for the float64 draw of the initial weights.
BYTES_PER_PARAM = 24


class Job(NamedTuple):
    """One model the run trains: a key of FILES, its title in the log, its network, settings and teachers."""

    role: str
    title: str
    model: MLP
    config: TrainConfig
    teachers: Optional[list] = None


# ---------------------------------------------------------------------------
# One run of the experiment
# ---------------------------------------------------------------------------


def run(settings, out, *, resume=False, overwrite=False, progress=None, log=print, source=None, device=None):
    """Run the experiment described by ``settings`` (see :func:`nanokd.train.settings_from_args`) in ``out``.

    ``resume``: continue the run in ``out`` from its checkpoints.
    ``overwrite``: replace an earlier run in ``out`` (its files are deleted
    first; without it such a folder is refused).  ``source``: the config.json
    the settings were read from, named by the messages (None: they came from
    flags).  ``device``: a device to train on instead of ``settings["device"]``
    (``--resume DIR --device cpu``).

    Returns the dict that is also written to ``out/results.json``.  Raises
    :class:`~nanokd.errors.FlagError` for a wrong setting, and
    :class:`~nanokd.errors.RunError`, :class:`~nanokd.data.DataError` or
    :class:`~nanokd.checkpoint.CheckpointError` for a device, file, folder
    or memory that cannot serve the run, all before anything is written (see
    the module's docstring); FloatingPointError if training diverges.
    """
    out = Path(out)
    # Phase 1: check everything, writing nothing.
    device_source = source
    if device is not None and isinstance(settings, dict):
        settings, device_source = {**settings, "device": device}, None  # messages then name --device
    check_settings(settings, source)
    _check_folder(out, settings, resume, overwrite)
    device = _device(settings, device_source)
    data, (x_test, y_test), about_data = _load_data(settings, device, out, log, source)
    n_classes = about_data["n_classes"]
    student_data = _student_data(settings, data, log, source)
    teachers = _load_teachers(settings, device, data[0].shape[1], n_classes, source)
    jobs = _jobs(settings, data[0].shape[1], n_classes, device, teachers, source)
    if resume:
        _check_checkpoints(jobs, out)

    # Phase 2: write and train.
    _prepare_folder(out, settings, resume, overwrite, log)
    trained = {} if teachers is None else {"teacher": (teachers, None)}  # results key -> (model(s), history)
    try:
        for job in jobs:
            seen = data if job.role == "teacher" else student_data
            trained[FILES[job.role][0]] = (job.model, _train(job, seen, out, resume, progress, log))
        models = {key: _entry(key, model, history, settings, data, x_test, y_test)
                  for key, (model, history) in trained.items()}
        results = {"dataset": settings["dataset"], "preset": settings["preset"], "seed": settings["seed"],
                   "device": device, **about_data, "train_subset": settings["train_subset"],
                   "subset_seed": settings["subset_seed"], "models": models}
        write_json_atomic(out / "results.json", results)
        write_curves(out, {key: history for key, (_, history) in trained.items()}, len(data[3]), log=log)
    except OSError as e:
        if not _inside(e.filename, out):
            raise
        raise RunError(f"cannot write {e.filename}: {e.strerror}. Every finished epoch is kept in the checkpoints "
                       f"of {out}: free some space (or make the folder writable), then continue with "
                       f"--resume {out}") from e
    log("\n" + format_table(models, len(y_test)))
    log(f"\nwrote {out / 'results.json'}")
    return results


def _train(job, data, out, resume, progress, log):
    """Train one job's model (from its checkpoint, when resuming), save it; returns its history."""
    x_train, y_train, x_val, y_val = data
    key, final, checkpoint = FILES[job.role]
    log(f"\n== {job.title}: {job.model!r}, {job.model.count_params():,} parameters")
    history = train_model(job.model, x_train, y_train, job.config, teacher=job.teachers, x_val=x_val, y_val=y_val,
                          checkpoint_path=out / checkpoint, resume=resume, progress=progress, log=log, name=key)
    job.model.save(out / final)
    return history


# ---------------------------------------------------------------------------
# Phase 1: the checks, each before anything is written
# ---------------------------------------------------------------------------


def run_files(out):
    """The files of :data:`RUN_FILES` that the folder ``out`` holds (none if it does not exist)."""
    return [f for f in RUN_FILES if (Path(out) / f).exists()]


def _check_folder(out, settings, resume, overwrite):
    """Refuse a folder that cannot take the run, or (neither resuming nor ``overwrite``) holds an earlier one."""
    if resume and overwrite:
        raise FlagError("--overwrite replaces a run and --resume continues it: give only one of them")
    ancestor = next(p for p in (out, *out.parents) if p.exists())
    if not ancestor.is_dir():
        made = "" if ancestor == out else f", so {out} cannot be made in it"
        raise FlagError(f"argument --out: {ancestor} is a file, not a folder{made}: choose a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FlagError(f"argument --out: {ancestor} is not writable (permissions, or a read-only file system): "
                        f"choose another folder")
    if resume:
        return
    found = run_files(out)
    if found and not overwrite:
        raise FlagError(f"argument --out: {out} holds an earlier run ({', '.join(found)}): continue it with "
                        f"--resume {out}, choose a new --out folder, or add --overwrite to replace it")
    doomed = {(out / f).resolve() for f in found}
    for path in settings["teacher_files"] or ():
        if Path(path).resolve() in doomed:
            raise FlagError(f"argument --overwrite: it would delete {path}, the teacher this run distils from: "
                            f"copy it out of {out} first, or choose another --out")


def _device(settings, source):
    """The device the run trains on ("cpu" or "cuda"); a RunError that says how to fix a missing GPU."""
    try:
        return resolve_device(settings["device"])
    except RuntimeError as e:
        instead = "run on the CPU with --device cpu" if source is None else "resume with --device cpu"
        reason = str(e).removeprefix("device='cuda' ")
        asked = f"{settings['device']}" if source is None else f'is "{settings["device"]}"'
        raise RunError(f"{name_of('device', source=source)} {asked}: {reason}; or {instead}") from None


def _load_data(settings, device, out, log, source):
    """The data set on the device, checked against the settings.

    Returns ``((x_train, y_train, x_val, y_val), (x_test, y_test), about)``,
    where ``about`` holds what results.json records of the data:
    ``n_classes`` and ``image_size`` (H, W), and for custom data its
    ``data_dir`` and the ``sha256`` of each of its four files.
    """
    t0 = time.perf_counter()
    name = settings["dataset"]
    ds = nkdata.load(name, settings["data_dir"], verify=settings["verify"])
    about = {"n_classes": nkdata.num_classes(name, ds), "image_size": list(ds.x_train.shape[1:])}
    if name == nkdata.CUSTOM:
        about.update(data_dir=settings["data_dir"], sha256=download.file_sha256s(settings["data_dir"]))
    _check_jitter(settings, about["image_size"])
    xp = get_xp(device)
    n_val = settings["val"]
    if not 0 <= n_val < len(ds.x_train):
        raise FlagError(f"{name_of('val', source=source)}: must be in [0, {len(ds.x_train)}) for these "
                        f"{len(ds.x_train)} training images, got {n_val}")
    data = nkdata.split_validation(nkdata.to_float(ds.x_train, xp), xp.asarray(ds.y_train), n_val)
    x_test, y_test = nkdata.to_float(ds.x_test, xp), xp.asarray(ds.y_test)
    h, w = about["image_size"]
    log(f"nanokd: {name}, {len(data[0])} training / {n_val} validation / {len(x_test)} test images "
        f"of {h}x{w} pixels, {about['n_classes']} classes ({time.perf_counter() - t0:.1f} s to load); "
        f"preset {settings['preset']}, device {device}, seed {settings['seed']}; writing to {out}")
    return data, (x_test, y_test), about


def _student_data(settings, data, log, source):
    """The students' data: ``data``, or with ``train_subset`` N, N of its training images, as many of each class.

    The teacher still sees all of them (the paper's section 6: a model on 3 %
    of the data, taught by one trained on all of it); the validation split
    is the same for every role.  A FlagError naming the flag when N cannot
    be drawn from these images.
    """
    n = settings["train_subset"]
    if not n:
        return data
    x_train, y_train, x_val, y_val = data
    labels = to_numpy(y_train)
    try:
        index = nkdata.balanced_subset(labels, n, settings["subset_seed"])
    except ValueError as e:
        raise FlagError(f"{name_of('train_subset', source=source)}: {e} (of the {len(labels)} training images "
                        f"left beside the validation split)") from None
    log(f"nanokd: the students train on {n} of the {len(labels)} training images, {n // len(np.unique(labels))} of "
        f"each class (subset seed {settings['subset_seed']}); the teacher on all of them")
    index = get_array_module(x_train).asarray(index)
    return x_train[index], y_train[index], x_val, y_val


def _check_jitter(settings, image_size):
    """Jitter and distortions need square images: a FlagError naming the flag when a role to train has them on
    other images (or a jitter as wide as the images)."""
    h, w = image_size
    roles = [r for r in ("teacher", "student") if settings[r]["jitter"] or settings[r]["elastic"]]
    if settings["teacher_files"] or settings["role"] == "student":
        roles = [r for r in roles if r != "teacher"]
    if settings["role"] == "teacher":
        roles = [r for r in roles if r != "student"]
    if roles and h != w:
        flag = "jitter" if settings[roles[0]]["jitter"] else "elastic"
        raise FlagError(f"argument --{roles[0]}-{flag} / --{flag}: {flag} needs square images, but the images of "
                        f"{settings['data_dir'] or settings['dataset']} are {h}x{w}; pass --{flag} 0")
    side = h
    for r in roles:
        if settings[r]["jitter"] >= side:
            raise FlagError(f"argument --{r}-jitter / --jitter: must be less than the image side {side}, "
                            f"got {settings[r]['jitter']}")


def _load_teachers(settings, device, n_in, n_classes, source):
    """The saved teachers of ``teacher_files`` (None if there are none), each checked to fit the data."""
    files = settings["teacher_files"]
    if not files:
        return None
    name, dataset = name_of("teacher_files", source=source), settings["dataset"]
    teachers = []
    for path in files:
        if not os.path.isfile(path):
            raise FlagError(f"{name}: no such file: {path}")
        try:
            teacher = MLP.load(path, device=device)
        except (ValueError, OSError) as e:
            raise RunError(f"{name}: {e}") from None
        sizes = "-".join(map(str, teacher.sizes))
        if teacher.sizes[0] != n_in:
            raise RunError(f"{name}: {path} is a {sizes} network, for {teacher.sizes[0]} inputs, but the {dataset} "
                           f"images have {n_in} pixels: give a teacher trained on {dataset}")
        if teacher.sizes[-1] != n_classes:
            raise RunError(f"{name}: {path} is a {sizes} network with {teacher.sizes[-1]} outputs, but {dataset} "
                           f"has {n_classes} classes: give a teacher trained on {dataset}")
        teachers.append(teacher)
    return teachers


def _jobs(settings, n_in, n_classes, device, teachers, source):
    """The models this run trains, built (with their initial weights) and with their settings, in order."""
    role, seed = settings["role"], settings["seed"]
    recipes = {r: Recipe(**{**settings[r], "hidden": tuple(settings[r]["hidden"])}) for r in ("teacher", "student")}
    # The baseline and the distilled student start from the same weights and see
    # the same shuffles (the same seed): they differ only in their targets.
    plan = []  # (key of FILES, recipe, seed)
    if teachers is None and role in ("all", "teacher"):
        plan.append(("teacher", "teacher", seed))
    if role in ("all", "student"):
        plan.append(("student", "student", seed + 1))
    if role in ("all", "distill"):
        plan.append(("distill", "student", seed + 1))
    _check_memory([(r, recipes[r].sizes(n_in, n_classes)) for _, r, _ in plan], device, source)

    jobs = []
    for key, r, s in plan:
        distil = key == "distill"
        model, config = build(recipes[r], n_in=n_in, n_classes=n_classes, seed=s, device=device,
                              **(dict(T=settings["T"], alpha=settings["alpha"]) if distil else {}))
        if key == "teacher":
            title = f"teacher (jitter {recipes['teacher'].jitter}" + (
                f", elastic {recipes['teacher'].elastic:g})" if recipes["teacher"].elastic else ")")
        elif not distil:
            title = "baseline student (hard labels)"
        else:
            teachers = teachers or [jobs[0].model]  # the teacher this run trains first
            title = (f"distilled student (T={settings['T']:g}, alpha={settings['alpha']:g}, "
                     f"{len(teachers)} teacher{'s' if len(teachers) > 1 else ''})")
        jobs.append(Job(key, title, model, config, teachers if distil else None))
    return jobs


def _check_memory(networks, device, source):
    """Refuse networks whose training would not fit in the device's memory, before any is built.

    ``networks``: (recipe role, sizes) of each.  A coarse bound (training
    needs more, for the data and activations), meant to catch a mistyped
    width such as ``--hidden 100000000`` with a message instead of a
    MemoryError, or worse, a machine driven into swap.
    """
    available = _memory_bytes(device)
    counts = [(role, sizes, sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))) for role, sizes in networks]
    need = BYTES_PER_PARAM * sum(n for _, _, n in counts)
    if available is None or need <= available:
        return
    role, sizes, n = max(counts, key=lambda c: c[2])
    raise RunError(f"{name_of('hidden', role, source)}: the {role} network {'-'.join(map(str, sizes))} has {n:,} "
                   f"parameters; training this run's networks needs about {_fmt_bytes(need)} of memory, more than "
                   f"the {_fmt_bytes(available)} {'the GPU' if device == 'cuda' else 'this machine'} has: "
                   f"choose smaller widths")


def _memory_bytes(device):
    """The device's total memory in bytes, or None where it cannot be found out."""
    try:
        if device == "cuda":
            import cupy

            return int(cupy.cuda.runtime.memGetInfo()[1])
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError, ImportError, RuntimeError):
        return None


def _fmt_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _check_checkpoints(jobs, out):
    """On a resume: every checkpoint there is whole, fits its model, and holds no more epochs than asked for."""
    for job in jobs:
        path = out / FILES[job.role][2]
        if path.exists():
            epochs = check_checkpoint(path, job.model)
            if epochs > job.config.epochs:
                raise CheckpointError(f"checkpoint {path} holds {epochs} epochs, more than the {job.config.epochs} "
                                      f"this run asks for: ask for at least {epochs}, or delete it")


# ---------------------------------------------------------------------------
# Phase 2: the first writes
# ---------------------------------------------------------------------------


def _prepare_folder(out, settings, resume, overwrite, log):
    """Make the folder, remove what must go, and write config.json (unless resuming): the run's first writes.

    If one of them fails, the folders this made are removed again (when
    still empty) and a RunError says so.
    """
    made = [p for p in (out, *out.parents) if not p.exists()]  # the folders mkdir will make, innermost first
    try:
        out.mkdir(parents=True, exist_ok=True)
        orphans = remove_orphans(out)
        if orphans:
            log(f"nanokd: removed {len(orphans)} temporary file{'s' if len(orphans) > 1 else ''} of interrupted "
                f"writes from {out}: {', '.join(orphans)}")
        if overwrite and not resume:
            old = run_files(out)
            for f in old:
                (out / f).unlink()
            if old:
                log(f"nanokd: --overwrite: removed the earlier run's {', '.join(old)} from {out}")
        if not resume:
            write_json_atomic(out / "config.json", settings)
    except OSError as e:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:
                break
        raise RunError(f"argument --out: cannot write into {out} ({e.strerror}: {e.filename}): choose another "
                       f"folder, or make it writable") from e


def _inside(path, folder):
    """True when ``path`` (a file name, or None) lies in ``folder``."""
    return path is not None and Path(os.fspath(path)).resolve().parent == Path(folder).resolve()


# ---------------------------------------------------------------------------
# results.json and the table
# ---------------------------------------------------------------------------


def _fmt_seconds(s):
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:04.1f} s"


def format_table(models, n_test):
    """The final side-by-side table of test errors, as text."""
    head = ("model", "hidden", "test errors", "test error", "parameters", "training time")
    rows = []
    for name, r in models.items():
        label = name + (f" (T={r['T']:g}, alpha={r['alpha']:g})" if name == "distilled" else "")
        if r.get("ensemble", 1) > 1:
            label += f" (ensemble of {r['ensemble']})"
        time_ = "loaded" if r["epochs"] == 0 and r.get("files") else _fmt_seconds(r["seconds"])
        rows.append((label, "-".join(map(str, r["hidden"])), f"{r['test_errors']} / {n_test}",
                     f"{r['test_error_pct']:.2f} %", f"{r['params']:,}", time_))
    widths = [max(len(str(row[i])) for row in (head, *rows)) for i in range(len(head))]
    left = {0, 1}
    fmt = lambda row: "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def _entry(key, model, history, settings, data, x_test, y_test):
    """The results.json entry of one model: its test errors (the test set is used here, once) and its run."""
    x_val, y_val = data[2], data[3]
    members = model if isinstance(model, list) else [model]
    errors = evaluate_errors(model, x_test, y_test)
    n_test = len(y_test)
    entry = {
        "test_errors": errors,
        "test_error_pct": 100.0 * errors / n_test if n_test else 0.0,
        "val_errors": (history["val_errors"][-1] if history and history["val_errors"] else None)
                      if history else (evaluate_errors(model, x_val, y_val) if len(y_val) else None),
        "hidden": members[0].sizes[1:-1],
        "params": sum(m.count_params() for m in members),
        "epochs": len(history["epoch"]) if history else 0,
        "seconds": round(history["total_seconds"], 3) if history else 0.0,
    }
    if history is None:
        entry["files"] = settings["teacher_files"]
        entry["ensemble"] = len(members)
    if key == "distilled":
        entry.update(T=float(settings["T"]), alpha=float(settings["alpha"]))
    return entry
