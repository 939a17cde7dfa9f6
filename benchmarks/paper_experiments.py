r"""The MNIST experiments of section 3 of Hinton, Vinyals & Dean (2015): recipes, training and the experiments.

The command line is :mod:`benchmarks.paper_mnist`; what is printed and
written, :mod:`benchmarks.paper_report`.  Here:

* the recipes of the teacher and the students (:func:`teacher_recipe`,
  :func:`student_recipe`) and :func:`fit`, which trains one;
* :class:`Context`, what every experiment shares (the data, the teacher and
  its logits for the 60,000 training images, computed once: every student's
  soft targets are rows of that one array);
* the experiments: :func:`run_table`, :func:`run_sweep`, :func:`run_transfer`
  (omit3, only78), :func:`run_consistent` (which leaves the paper's setting),
  :func:`run_teacher_only` and :func:`run_all`.

Everything is built on the library: :func:`nanokd.train.train_model` trains
every network (there is no second training loop here),
:func:`nanokd.train.compute_teacher_logits` gives the soft targets (and any
model's logits over a set of images) and :func:`nanokd.train.evaluate_errors`
counts test errors.

What uses which data
--------------------
* The teacher, the table's students and the sweep train on all 60,000
  training images with a fixed schedule: no early stopping, no model
  selection, so no validation split is needed.
* omit3 and only78 must choose a bias shift, which is done on a validation
  split: the last ``--val`` (5,000) training images, which their students
  never see (their transfer sets are drawn from the first 55,000).  The
  teacher did train on those images, but only the student's predictions on
  them are used, and only their labels, never the test labels.
* The 10,000 test images are used once per model, at the end.
"""

import dataclasses
import json
import os
import queue
import time
from pathlib import Path

import numpy as np

from benchmarks.common import command_line, git_commit, machine, now, write_record
from benchmarks.paper_report import PAPER, PROG, mean_std, plot_sweep, print_table, record, record_all
from nanokd import data as nkdata
from nanokd.backend import resolve_device, to_numpy
from nanokd.mlp import MLP
from nanokd.presets import PRESETS
from nanokd.teacher import compute_teacher_logits, evaluate_errors
from nanokd.trainer import train_model

EXPERIMENTS = ("consistent", "table", "sweep", "omit3", "only78")  # longest first (see run_all)
SWEEP_T = (1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 8.0, 10.0, 20.0)


# ---------------------------------------------------------------------------
# Recipes: the paper's nets, with schedules that fit a bounded budget
# ---------------------------------------------------------------------------


def teacher_recipe(args):
    """The paper's teacher (Hinton et al. 2012): 784-1200-1200-10, dropout 0.2 / 0.5, max-norm, +-2 px jitter.

    The architecture and regularisers are those of ``PRESETS["paper"]``; the
    schedule (epochs, learning rate and its per-epoch decay, momentum ramp)
    comes from the flags, whose defaults are the preset's.
    """
    return dataclasses.replace(
        PRESETS["paper"]["teacher"], hidden=tuple(args.teacher_hidden), epochs=args.teacher_epochs, lr=args.teacher_lr, lr_decay=args.teacher_lr_decay,
        momentum=args.teacher_momentum, momentum_start=0.5, momentum_ramp=args.teacher_momentum_ramp)


def student_recipe(args, hidden, epochs, n_images=60000, lr_decay=None):
    """An unregularised student (no dropout, max-norm or jitter): the paper's 2x800 net, or a narrower one.

    ``lr_decay`` (default ``--student-lr-decay``) is the factor per 60,000
    images seen, so that a student of a smaller transfer set (only78's 11,000
    images) anneals at the same pace per update: its per-epoch decay is
    ``decay ** (n_images / 60000)``.
    """
    decay = args.student_lr_decay if lr_decay is None else lr_decay
    return dataclasses.replace(
        PRESETS["paper"]["student"], hidden=tuple(hidden), epochs=epochs, lr=args.student_lr,
        lr_decay=decay ** (n_images / 60000), momentum=0.9, momentum_start=0.5,
        momentum_ramp=args.student_momentum_ramp)


def fit(recipe, x, y, *, seed, device, name, teacher_logits=None, T=1.0, alpha=1.0, budget_s=None, log=print,
        checkpoint=None):
    """Build the recipe's MLP and train it with :func:`nanokd.train.train_model`.

    ``budget_s``: after each epoch, stop if the next epoch (as long as the last
    one) would end past the budget; the model then holds the weights of that
    epoch boundary.  ``checkpoint``: a path written after every epoch and, if
    it exists, resumed from (bit for bit, with the same settings and number of
    BLAS threads), so a long run can span several processes.  Returns
    ``(model, info)``, info a JSON-able dict: ``seconds`` is the training time
    of all epochs, over every process that ran them, ``process_seconds`` this
    process's.
    """
    model = MLP(recipe.sizes(x.shape[1], nkdata.NUM_CLASSES), dropout_input=recipe.dropout_input,
                dropout_hidden=recipe.dropout_hidden, max_norm=recipe.max_norm or None, seed=seed, device=device)
    t0 = time.perf_counter()
    state = {"stopped": False}

    def callback(epoch, history):  # True stops train_model after this epoch
        elapsed = time.perf_counter() - t0
        state["stopped"] = budget_s is not None and epoch < recipe.epochs and elapsed + history["seconds"][-1] > budget_s
        return state["stopped"]

    distil = {} if teacher_logits is None else dict(teacher_logits=teacher_logits, T=T, alpha=alpha)
    history = train_model(model, x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                          lr_decay=recipe.lr_decay, momentum=recipe.momentum,
                          momentum_start=recipe.momentum_start if recipe.momentum_ramp else None,
                          momentum_ramp=recipe.momentum_ramp, jitter=recipe.jitter, seed=seed, progress=False,
                          log=log, name=name, callback=callback, checkpoint_path=checkpoint,
                          resume=checkpoint is not None, **distil)
    stopped = state["stopped"]
    if stopped and log:
        log(f"{name}: stopped after epoch {len(history['epoch'])} of {recipe.epochs}: "
            f"the next epoch would pass the {budget_s / 60:.1f} min budget")
    info = {"epochs_run": len(history["epoch"]), "epochs_planned": recipe.epochs, "stopped_by_budget": stopped,
            "seconds": round(history["total_seconds"], 2), "process_seconds": round(time.perf_counter() - t0, 2),
            "final_loss": history["loss"][-1] if history["loss"] else None,
            "epoch_seconds_all_runs": round(float(sum(history["seconds"])), 1),
            "recipe": dataclasses.asdict(recipe)}
    return model, info


# ---------------------------------------------------------------------------
# Data, teacher and records
# ---------------------------------------------------------------------------

class Context:
    """What every experiment shares: the data on the device, the teacher and its logits."""

    def __init__(self, args):
        self.args = args
        self.device = resolve_device(args.device)
        xp = MLP([1, 1], device=self.device).xp
        self.xp = xp
        t0 = time.perf_counter()
        ds = nkdata.load("mnist", args.data_dir, verify=not args.no_verify)
        self.x = nkdata.to_float(ds.x_train, xp)
        self.y = xp.asarray(ds.y_train)
        self.x_test = nkdata.to_float(ds.x_test, xp)
        self.y_test = xp.asarray(ds.y_test)
        self.y_test_np = np.asarray(ds.y_test)
        if not 0 < args.val < len(self.x):
            raise SystemExit(f"--val must be in (0, {len(self.x)}), got {args.val}")
        self.n_fit = len(self.x) - args.val  # omit3 / only78 transfer sets come from x[:n_fit]
        print(f"paper_mnist: {len(self.x)} training / {len(self.x_test)} test images on {self.device} "
              f"({time.perf_counter() - t0:.1f} s to load)", flush=True)
        self.teacher = None
        self.teacher_entry = None
        self.logits = None

    def get_teacher(self):
        """Train the teacher (the paper's recipe) or load ``--teacher``; then its logits for every training image."""
        if self.teacher is not None:
            return self.teacher
        args = self.args
        if args.teacher:
            self.teacher = MLP.load(args.teacher, device=self.device)
            sidecar = Path(args.teacher).with_suffix(".json")
            trained = json.loads(sidecar.read_text()) if sidecar.is_file() else None
            errors = evaluate_errors(self.teacher, self.x_test, self.y_test)
            if trained and trained.get("test_errors") not in (None, errors):
                raise SystemExit(f"{sidecar} says its teacher makes {trained['test_errors']} test errors, but the "
                                 f"weights in {args.teacher} make {errors}: the two files come from different runs")
            self.teacher_entry = {"test_errors": [errors], "loaded_from": os.path.abspath(args.teacher),
                                  "hidden": self.teacher.sizes[1:-1], "trained": trained,
                                  "seconds": [trained["seconds"]] if trained else [None]}
            print(f"teacher loaded from {args.teacher}: {errors} test errors", flush=True)
        else:
            recipe = teacher_recipe(args)
            print(f"\n== teacher {recipe.sizes()}, dropout {recipe.dropout_input}/{recipe.dropout_hidden}, "
                  f"max-norm {recipe.max_norm}, jitter {recipe.jitter}, {recipe.epochs} epochs "
                  f"(budget {args.max_minutes} min)", flush=True)
            budget = None if args.max_minutes is None else 60 * args.max_minutes
            self.teacher, info = fit(recipe, self.x, self.y, seed=args.teacher_seed, device=self.device,
                                     name="teacher", budget_s=budget, checkpoint=args.teacher_checkpoint)
            errors = evaluate_errors(self.teacher, self.x_test, self.y_test)
            info.update(seed=args.teacher_seed, device=self.device, git_commit=git_commit(), test_errors=errors,
                        date=now(), command=command_line(PROG), machine=machine())
            if args.save_teacher:
                path = Path(args.save_teacher)
                path.parent.mkdir(parents=True, exist_ok=True)
                self.teacher.save(path)
                write_record(path.with_suffix(".json"), info)
                print(f"saved the teacher to {path} (and {path.with_suffix('.json').name})", flush=True)
            self.teacher_entry = {"test_errors": [errors], "hidden": list(recipe.hidden), "seconds": [info["seconds"]],
                                  "trained": info}
            print(f"teacher: {errors} test errors, {info['epochs_run']} epochs, {info['seconds']:.0f} s", flush=True)
        t0 = time.perf_counter()
        self.logits = compute_teacher_logits(self.teacher, self.x)  # T plays no part for one teacher
        print(f"teacher logits for {len(self.x)} training images: {time.perf_counter() - t0:.1f} s", flush=True)
        return self.teacher

    def student(self, hidden, epochs, rows, *, seed, T=None, alpha=1.0, name="student", lr_decay=None):
        """Train a student on training rows ``rows`` (None: all), distilled at T (None: hard labels)."""
        x, y = (self.x, self.y) if rows is None else (self.x[rows], self.y[rows])
        v = None
        if T is not None:
            v = self.logits if rows is None else self.logits[rows]
        return fit(student_recipe(self.args, hidden, epochs, len(x), lr_decay), x, y, seed=seed, device=self.device, name=name,
                   teacher_logits=v, T=1.0 if T is None else T, alpha=alpha, log=self.log)

    def log(self, line):
        if not self.args.quiet:
            print(line, flush=True)


# ---------------------------------------------------------------------------
# The experiments
# ---------------------------------------------------------------------------


def run_table(ctx):
    """Teacher; baseline 2x800 on hard labels; 2x800 distilled at T = 20 (soft only, and with a small hard weight)."""
    args = ctx.args
    t0 = time.perf_counter()
    ctx.get_teacher()
    h, ep = args.student_hidden, args.student_epochs
    variants = [("baseline", None, 1.0), ("distilled", args.T, args.alpha)]
    if args.hard_alpha is not None:
        variants.append(("distilled_hard", args.T, args.hard_alpha))
    models = {"teacher": ctx.teacher_entry}
    for name, T, alpha in variants:
        entry = {"test_errors": [], "seconds": [], "hidden": list(h), "epochs": [], "T": T,
                 "alpha": alpha if T is not None else None}
        for seed in args.seeds:
            print(f"\n== {name} {h}, seed {seed}" + (f", T={T:g}, alpha={alpha:g}" if T else ", hard labels"),
                  flush=True)
            model, info = ctx.student(h, ep, None, seed=seed, T=T, alpha=alpha, name=name)
            errors = evaluate_errors(model, ctx.x_test, ctx.y_test)
            print(f"{name} seed {seed}: {errors} test errors ({info['seconds']:.0f} s)", flush=True)
            entry["test_errors"].append(errors)
            entry["seconds"].append(info["seconds"])
            entry["epochs"].append(info["epochs_run"])
            entry["recipe"] = info["recipe"]
        models[name] = entry
    rec = record(ctx, "table", models, time.perf_counter() - t0)
    rows = [("teacher 2x1200, dropout+jitter", PAPER["teacher"], models["teacher"]["test_errors"], False),
            ("baseline 2x800, hard labels", PAPER["baseline"], models["baseline"]["test_errors"], False),
            (f"distilled 2x800, T={args.T:g}, alpha={args.alpha:g}", PAPER["distilled"],
             models["distilled"]["test_errors"], False)]
    if "distilled_hard" in models:
        rows.append((f"distilled 2x800, T={args.T:g}, alpha={args.hard_alpha:g}", PAPER["distilled"],
                     models["distilled_hard"]["test_errors"], False))
    print_table("MNIST test errors (of 10,000)", rows)
    return rec


def run_sweep(ctx):
    """Students of 300 and 30 units per layer, distilled at each temperature of SWEEP_T.

    Each width also gets a student of the same seeds on the hard labels alone
    (``<width>x<width>_hard``): the reference that says whether a temperature
    helps at all.
    """
    args = ctx.args
    t0 = time.perf_counter()
    ctx.get_teacher()
    models = {}
    for width, epochs in ((300, args.sweep_epochs_300), (30, args.sweep_epochs_30)):
        for T in (None, *args.sweep_T):
            name = f"{width}x{width}_" + ("hard" if T is None else f"T{T:g}")
            entry = {"test_errors": [], "seconds": [], "hidden": [width, width], "T": T,
                     "alpha": None if T is None else args.alpha, "epochs": epochs}
            for seed in args.seeds:
                model, info = ctx.student((width, width), epochs, None, seed=seed, T=T, alpha=args.alpha, name=name,
                                          lr_decay=args.sweep_lr_decay)
                errors = evaluate_errors(model, ctx.x_test, ctx.y_test)
                print(f"{name} seed {seed}: {errors} test errors ({info['seconds']:.0f} s)", flush=True)
                entry["test_errors"].append(errors)
                entry["seconds"].append(info["seconds"])
            models[name] = entry
    rec = record(ctx, "sweep", models, time.perf_counter() - t0, temperatures=list(args.sweep_T))
    rows = []
    for width in (300, 30):
        rows.append((f"{width}x{width}, hard labels", None, models[f"{width}x{width}_hard"]["test_errors"], False))
        for T in args.sweep_T:
            rows.append((f"{width}x{width}, T={T:g}", None, models[f"{width}x{width}_T{T:g}"]["test_errors"], False))
    print_table("Temperature sweep, test errors (the paper gives no numbers: >= 300 units flat for T > 8, "
                "30 units best at T = 2.5-4)", rows)
    for width in (300, 30):
        means = {T: mean_std(models[f"{width}x{width}_T{T:g}"]["test_errors"])[0] for T in args.sweep_T}
        best = min(means, key=means.get)
        hard = mean_std(models[f"{width}x{width}_hard"]["test_errors"])[0]
        print(f"{width} units: fewest test errors at T = {best:g} ({means[best]:.1f}; hard labels alone {hard:.1f}; "
              f"a description of the test set, which chooses nothing)", flush=True)
    if not args.no_plot:
        plot_sweep(rec, Path(args.out) / "paper_sweep.png")
    return rec


def choose_shift(z_val, y_val, classes, grid, sign):
    """The shift (from ``grid``) of the biases of ``classes`` that minimises validation errors.

    The logits move by ``sign * shift`` in those classes, exactly what moving
    the output biases does.  Ties: the middle of the best grid points.
    Returns ``(shift, validation errors at each grid point)``.
    """
    errs = [shifted_errors(z_val, y_val, classes, sign * s)[0] for s in grid]
    best = min(errs)
    ties = [s for s, e in zip(grid, errs) if e == best]
    return float(ties[len(ties) // 2]), errs


def shifted_errors(z, y, classes, delta):
    """Errors overall and per class after adding ``delta`` to the logits of ``classes``."""
    z = z.copy()
    z[:, list(classes)] += delta
    wrong = z.argmax(axis=1) != y
    return int(wrong.sum()), {int(c): int(wrong[y == c].sum()) for c in range(z.shape[1])}


def run_transfer(ctx, experiment):
    """omit3 / only78: distil a 2x800 student on a transfer set lacking classes, then shift biases."""
    args = ctx.args
    t0 = time.perf_counter()
    ctx.get_teacher()
    y_fit = to_numpy(ctx.y[:ctx.n_fit])
    if experiment == "omit3":
        keep = np.flatnonzero(y_fit != 3)
        classes, sign, grid, epochs = (3,), +1, np.arange(0, args.shift_max + 1e-9, args.shift_step), args.omit3_epochs
    else:
        keep = np.flatnonzero((y_fit == 7) | (y_fit == 8))
        classes, sign, grid, epochs = (7, 8), -1, np.arange(0, args.shift_max + 1e-9, args.shift_step), args.only78_epochs
    rows = ctx.xp.asarray(keep)
    x_val, y_val = ctx.x[ctx.n_fit:], to_numpy(ctx.y[ctx.n_fit:])
    paper = PAPER[experiment]
    entry = {"test_errors": [], "test_errors_after": [], "test_errors_paper_shift": [], "errors_on": {}, "shift": [],
             "val_errors": [], "val_errors_after": [], "seconds": [], "transfer_set_size": int(len(keep)),
             "hidden": list(args.student_hidden), "T": args.T, "alpha": args.alpha, "epochs": epochs,
             "paper_shift": paper["shift"]}
    per_class = {"before": [], "after": [], "paper_shift": []}
    for seed in args.seeds:
        print(f"\n== {experiment}: {len(keep)} transfer images, seed {seed}", flush=True)
        model, info = ctx.student(args.student_hidden, epochs, rows, seed=seed, T=args.T, alpha=args.alpha,
                                  name=experiment)
        # the student's logits on the host, for the bias shifts (compute_teacher_logits: any model's, without
        # dropout, float32, in batches of 10,000 rows: one batch each for the validation and the test images)
        z_val, z_test = (to_numpy(compute_teacher_logits(model, x)) for x in (x_val, ctx.x_test))
        shift, val_curve = choose_shift(z_val, y_val, classes, grid, sign)
        before, pc_before = shifted_errors(z_test, ctx.y_test_np, classes, 0.0)
        after, pc_after = shifted_errors(z_test, ctx.y_test_np, classes, sign * shift)
        at_paper, pc_paper = shifted_errors(z_test, ctx.y_test_np, classes, sign * paper["shift"])
        assert before == evaluate_errors(model, ctx.x_test, ctx.y_test)
        entry["test_errors"].append(before)
        entry["test_errors_after"].append(after)
        entry["test_errors_paper_shift"].append(at_paper)
        entry["shift"].append(shift)
        entry["val_errors"].append(val_curve[0])
        entry["val_errors_after"].append(min(val_curve))
        entry["seconds"].append(info["seconds"])
        entry["recipe"] = info["recipe"]
        per_class["before"].append(pc_before)
        per_class["after"].append(pc_after)
        per_class["paper_shift"].append(pc_paper)
        print(f"{experiment} seed {seed}: {before} test errors, {after} after a shift of {sign * shift:+g} "
              f"(chosen on validation), {at_paper} with the paper's {sign * paper['shift']:+g}", flush=True)
    entry["errors_per_class"] = per_class
    entry["shift_grid"] = [float(s) for s in grid]
    n_test = len(ctx.y_test_np)
    counts = {int(c): int((ctx.y_test_np == c).sum()) for c in range(nkdata.NUM_CLASSES)}
    entry["test_class_counts"] = counts
    rec = record(ctx, experiment, {"student": entry}, time.perf_counter() - t0)
    if experiment == "omit3":
        on3 = lambda key: [pc[3] for pc in per_class[key]]
        rows = [("errors, no shift", paper["errors"], entry["test_errors"], False),
                (f"  of them on the {counts[3]} test 3s", paper["errors_on_3"], on3("before"), False),
                ("errors, shift chosen on validation", paper["errors_after"], entry["test_errors_after"], False),
                ("  of them on the test 3s", paper["errors_on_3_after"], on3("after"), False),
                ("  the shift chosen", paper["shift"], entry["shift"], False),
                (f"errors, the paper's shift {paper['shift']:g}", paper["errors_after"],
                 entry["test_errors_paper_shift"], False),
                ("  of them on the test 3s", paper["errors_on_3_after"], on3("paper_shift"), False)]
        title = "Transfer set without 3s: test errors (of 10,000)"
    else:
        pct = lambda key: [100.0 * e / n_test for e in entry[key]]
        rows = [("test error, no shift", paper["error_pct"], pct("test_errors"), True),
                ("test error, shift chosen on validation", paper["error_pct_after"], pct("test_errors_after"), True),
                ("  the shift chosen (7 and 8 lowered by)", paper["shift"], entry["shift"], False),
                (f"test error, the paper's shift {paper['shift']:g}", paper["error_pct_after"],
                 pct("test_errors_paper_shift"), True)]
        title = "Transfer set of only 7s and 8s: test error"
    print_table(title, rows)
    return rec


def run_consistent(ctx):
    """Consistent teaching, which leaves the paper's setting: :mod:`benchmarks.paper_consistent`, run whole.

    Its own teacher is an ensemble of nets of the students' shape trained on
    hard labels: ``--consistent-members`` nets on jittered images bent by
    elastic distortions of scale ``--consistent-elastic`` (seeds 101, 102, ...),
    and ``--consistent-jittered`` nets on jittered images only (the seeds after
    them; no student seed starts from a member's initial weights).  It teaches
    the ``--seeds`` students on its logits of the very images they see (jittered,
    and bent when ``--consistent-student-elastic`` is not 0).  Each kind of net
    trains in its own folder under ``--consistent-runs``; the record
    ``paper_consistent.json`` goes to ``--out``.  The paper's teacher plays no
    part.
    """
    from benchmarks import paper_consistent  # here, not at the top: paper_consistent imports this module

    args = ctx.args
    runs = Path(args.consistent_runs)
    n_bent, n_jittered = args.consistent_members, args.consistent_jittered
    seeds = [str(100 + k) for k in range(1, n_bent + n_jittered + 1)]
    common = ["--val", str(args.val), "--device", ctx.device, "--epochs", str(args.consistent_epochs),
              "--hidden", *map(str, args.student_hidden), "--T", str(args.consistent_T), "--alpha", str(args.alpha),
              *(["--data-dir", args.data_dir] if args.data_dir else []), *(["--no-verify"] if args.no_verify else [])]
    kinds = [("bent", seeds[:n_bent], args.consistent_elastic), ("jittered", seeds[n_bent:], 0.0)]
    teacher = []
    for kind, members, elastic in kinds:
        if members:
            paper_consistent.main(["baseline", "--seeds", *members, "--elastic", str(elastic),
                                   "--runs", str(runs / kind), *common])
            teacher += [str(runs / kind / f"baseline_seed{seed}.npz") for seed in members]
    students = runs / "students"
    paper_consistent.main(["distilled", "--teacher", *teacher, "--seeds", *map(str, args.seeds), "--elastic",
                           str(args.consistent_student_elastic), "--runs", str(students), *common])
    parts = [str(runs / kind / "baseline.json") for kind, members, _ in kinds if members]
    paper_consistent.main(["merge", "--teacher", *teacher, "--out", str(Path(args.out) / "paper_consistent.json"),
                           "--parts", *parts, str(students / "distilled.json"), *common])


def run_teacher_only(ctx):
    t0 = time.perf_counter()
    ctx.get_teacher()
    rec = record(ctx, "teacher", {"teacher": ctx.teacher_entry}, time.perf_counter() - t0)
    print_table("MNIST test errors (of 10,000)",
                [("teacher 2x1200, dropout+jitter", PAPER["teacher"], ctx.teacher_entry["test_errors"], False)])
    return rec


EXPERIMENT_FNS = {"table": run_table, "sweep": run_sweep,
                  "omit3": lambda c: run_transfer(c, "omit3"), "only78": lambda c: run_transfer(c, "only78"),
                  "consistent": run_consistent}


def _worker(ctx, todo, done):
    """A forked worker of ``all --jobs N``: run experiments from the queue ``todo`` until it yields None.

    Each finished one goes to ``done`` as (name, seconds).  Nothing is pickled
    but names and numbers: the worker inherits ``ctx`` (data, teacher logits)
    from the fork.  The worker stops at a None (one per worker, queued after
    the names), never at an empty queue: a multiprocessing queue is filled by
    a background thread, so a worker that started early could find it empty
    for a moment and quit with experiments left undone.
    """
    for name in iter(todo.get, None):
        t = time.perf_counter()
        EXPERIMENT_FNS[name](ctx)
        done.put((name, round(time.perf_counter() - t, 1)))


def run_all(ctx):
    """The teacher, then every experiment not in ``--skip``: one after the other, or in ``--jobs`` processes.

    With ``--jobs N`` the student experiments run in N forked worker
    processes, the longest first (they share nothing but the teacher's logits,
    which the fork hands over).  Each experiment writes its own record exactly
    as it would alone: a student's numbers depend on its seed, not on the
    process it ran in.  On a machine with 2 cores, ``--jobs 2`` with one BLAS
    thread per process (OPENBLAS_NUM_THREADS=1) finishes the students in about
    the time of the longest two (see RESULTS.md).
    """
    t0 = time.perf_counter()
    phases = {}
    t = time.perf_counter()
    ctx.get_teacher()
    phases["teacher"] = round(time.perf_counter() - t, 1)
    names = [name for name in EXPERIMENTS if name not in ctx.args.skip]  # EXPERIMENTS: longest first
    jobs = min(ctx.args.jobs, len(names))
    if jobs > 1:
        import multiprocessing

        mp = multiprocessing.get_context("fork")
        todo, done = mp.Queue(), mp.Queue()
        for name in names + [None] * jobs:  # a None tells one worker to stop (see _worker)
            todo.put(name)
        workers = [mp.Process(target=_worker, args=(ctx, todo, done)) for _ in range(jobs)]
        for w in workers:
            w.start()
        for _ in names:  # a worker that dies leaves its experiment unreported: stop waiting then
            while True:
                try:
                    name, seconds = done.get(timeout=5)
                    break
                except queue.Empty:  # check that a worker is still alive
                    if not any(w.is_alive() for w in workers) and done.empty():
                        bad = [w.exitcode for w in workers]
                        raise SystemExit(f"all --jobs {jobs}: a worker failed (exit codes {bad})") from None
            phases[name] = seconds
        for w in workers:
            w.join()
        phases["students_wall"] = round(time.perf_counter() - t0 - phases["teacher"], 1)
    else:
        for name in names:
            t = time.perf_counter()
            EXPERIMENT_FNS[name](ctx)
            phases[name] = round(time.perf_counter() - t, 1)
    total = time.perf_counter() - t0
    rec = record_all(ctx, jobs, phases, total)
    print(f"\nall: {total / 60:.1f} min in total ({', '.join(f'{k} {v / 60:.1f} min' for k, v in phases.items())})",
          flush=True)
    return rec
