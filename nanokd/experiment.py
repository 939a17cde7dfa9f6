r"""One run of the paper's experiment: a teacher, a baseline student and a distilled student, then a table.

This is what ``python -m nanokd.train`` runs (:func:`run`), written on the
library: :func:`nanokd.presets.build` makes each role's network and settings
from its recipe, :func:`nanokd.trainer.train_model` trains it, and
:func:`nanokd.teacher.evaluate_errors` counts its test errors, once, at the
end.  Every model and checkpoint goes into the run's folder, the test
errors into ``results.json`` beside them, and each role's per-epoch training
loss and validation errors into ``curves.json`` (and ``curves.png``, with
matplotlib: :mod:`nanokd.curves`).

The data is loaded and checked before anything is written, so a run on
wrong data leaves no folder behind.  The networks' input size and class count
come from the data (784 and 10 for MNIST; anything for ``--dataset custom``).
"""

import time
from pathlib import Path

from . import data as nkdata
from .atomic import write_json_atomic
from .backend import get_xp, resolve_device
from .curves import write_curves
from .mlp import MLP
from .presets import Recipe, build
from .teacher import evaluate_errors
from .trainer import train_model

ROLES = ("all", "teacher", "student", "distill")

#: name -> (role in results.json, file of final weights, file of per-epoch checkpoints)
FILES = {
    "teacher": ("teacher", "teacher.npz", "teacher.ckpt.npz"),
    "student": ("baseline", "student.npz", "student.ckpt.npz"),
    "distill": ("distilled", "distilled.npz", "distilled.ckpt.npz"),
}


class FlagError(ValueError):
    """A flag's value that is wrong for the data it met (the command line reports it as a usage error)."""


# ---------------------------------------------------------------------------
# One run of the experiment
# ---------------------------------------------------------------------------


def _fit(recipe, data, role, title, *, seed, device, out, resume, progress, log, n_classes, teachers=None, T=1.0,
         alpha=1.0):
    """Build one role's model from its recipe, train it, save it; returns ``(model, history)``."""
    x_train, y_train, x_val, y_val = data
    model, config = build(recipe, n_in=x_train.shape[1], n_classes=n_classes, seed=seed, device=device,
                          T=T, alpha=alpha)
    key, final, checkpoint = FILES[role]
    log(f"\n== {title}: {model!r}, {model.count_params():,} parameters")
    history = train_model(model, x_train, y_train, config, teacher=teachers, x_val=x_val, y_val=y_val,
                          checkpoint_path=out / checkpoint, resume=resume, progress=progress, log=log, name=key)
    model.save(out / final)
    return model, history


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


def run(settings, out, *, resume=False, progress=None, log=print):
    """Run the experiment described by ``settings`` (see :func:`nanokd.train.settings_from_args`) in ``out``.

    Returns the dict that is also written to ``out/results.json``.
    """
    out = Path(out)
    device = resolve_device(settings["device"])
    seed, role = settings["seed"], settings["role"]
    recipes = {r: Recipe(**{**settings[r], "hidden": tuple(settings[r]["hidden"])}) for r in ("teacher", "student")}
    data, (x_test, y_test), about_data = _load_data(settings, device, out, log)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json_atomic(out / "config.json", settings)
    common = dict(device=device, out=out, resume=resume, progress=progress, log=log,
                  n_classes=about_data["n_classes"])

    trained = {}  # results key -> (model or list of models, history or None)
    teachers = None
    if settings["teacher_files"]:
        teachers = [MLP.load(p, device=device) for p in settings["teacher_files"]]
        trained["teacher"] = (teachers, None)
    elif role in ("all", "teacher"):
        teacher, history = _fit(recipes["teacher"], data, "teacher", f"teacher (jitter {recipes['teacher'].jitter})", seed=seed, **common)
        trained["teacher"] = (teacher, history)
        teachers = [teacher]
    # The baseline and the distilled student start from the same weights and see
    # the same shuffles (the same seed): they differ only in their targets.
    student_seed = seed + 1
    if role in ("all", "student"):
        trained["baseline"] = _fit(recipes["student"], data, "student", "baseline student (hard labels)", seed=student_seed, **common)
    if role in ("all", "distill"):
        title = (f"distilled student (T={settings['T']:g}, alpha={settings['alpha']:g}, "
                 f"{len(teachers)} teacher{'s' if len(teachers) > 1 else ''})")
        trained["distilled"] = _fit(recipes["student"], data, "distill", title, seed=student_seed, teachers=teachers,
                                    T=settings["T"], alpha=settings["alpha"], **common)

    models = {key: _entry(key, model, history, settings, data, x_test, y_test)
              for key, (model, history) in trained.items()}
    results = {"dataset": settings["dataset"], "preset": settings["preset"], "seed": seed, "device": device,
               **about_data, "models": models}
    write_json_atomic(out / "results.json", results)
    log("\n" + format_table(models, len(y_test)))
    log(f"\nwrote {out / 'results.json'}")
    write_curves(out, {key: history for key, (_, history) in trained.items()}, len(data[3]), log=log)
    return results


def _load_data(settings, device, out, log):
    """The data set on the device, checked against the flags.

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
        about.update(data_dir=settings["data_dir"], sha256=nkdata.file_sha256s(settings["data_dir"]))
    _check_jitter(settings, about["image_size"])
    xp = get_xp(device)
    n_val = settings["val"]
    if not 0 <= n_val < len(ds.x_train):
        raise FlagError(f"argument --val: must be in [0, {len(ds.x_train)}) for these "
                        f"{len(ds.x_train)} training images, got {n_val}")
    data = nkdata.split_validation(nkdata.to_float(ds.x_train, xp), xp.asarray(ds.y_train), n_val)
    x_test, y_test = nkdata.to_float(ds.x_test, xp), xp.asarray(ds.y_test)
    h, w = about["image_size"]
    log(f"nanokd: {name}, {len(data[0])} training / {n_val} validation / {len(x_test)} test images "
        f"of {h}x{w} pixels, {about['n_classes']} classes ({time.perf_counter() - t0:.1f} s to load); "
        f"preset {settings['preset']}, device {device}, seed {settings['seed']}; writing to {out}")
    return data, (x_test, y_test), about


def _check_jitter(settings, image_size):
    """Jitter shifts square images only: a FlagError naming the flag when a role to train has it on other images."""
    h, w = image_size
    roles = [r for r in ("teacher", "student") if settings[r]["jitter"]]
    if settings["teacher_files"] or settings["role"] == "student":
        roles = [r for r in roles if r != "teacher"]
    if settings["role"] == "teacher":
        roles = [r for r in roles if r != "student"]
    if roles and h != w:
        raise FlagError(f"argument --{roles[0]}-jitter / --jitter: jitter needs square images, but the images of "
                        f"{settings['data_dir'] or settings['dataset']} are {h}x{w}; pass --jitter 0")


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
