r"""The MNIST experiments of section 3 of Hinton, Vinyals & Dean (2015), arXiv 1503.02531.

One subcommand per experiment; each writes a JSON record and prints the paper's
figure beside ours::

    python benchmarks/paper_mnist.py teacher   # only train the teacher (save it with --save-teacher)
    python benchmarks/paper_mnist.py table     # teacher, baseline 2x800, distilled 2x800 at T = 20
    python benchmarks/paper_mnist.py sweep     # 300- and 30-unit students over T = 1 .. 20
    python benchmarks/paper_mnist.py omit3     # transfer set without any 3, then a class-3 bias shift
    python benchmarks/paper_mnist.py only78    # transfer set of 7s and 8s only, then lowered 7/8 biases
    python benchmarks/paper_mnist.py all       # all four, sharing one teacher

Every subcommand that needs a teacher trains it (the paper's recipe, see
:func:`teacher_recipe`) or loads it with ``--teacher PATH`` (a ``teacher.npz``
saved by ``--save-teacher``, e.g. by a run on a GPU).  ``all`` gets the teacher
once and computes its logits for the 60,000 training images once; every
student's soft targets are rows of that one array.

Everything is built on the library: :func:`nanokd.train.train_model` trains
every network (there is no second training loop here),
:func:`nanokd.train.compute_teacher_logits` gives the soft targets and
:func:`nanokd.train.evaluate_errors` counts test errors.

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

import argparse
import dataclasses
import datetime
import json
import os
import platform
import queue
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout, installed or not
    sys.path.insert(0, str(REPO))

from nanokd import data as nkdata  # noqa: E402
from nanokd.atomic import save_figure_atomic, write_json_atomic  # noqa: E402
from nanokd.backend import resolve_device, to_numpy  # noqa: E402
from nanokd.mlp import MLP  # noqa: E402
from nanokd.train import PRESETS, compute_teacher_logits, evaluate_errors, train_model  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
EXPERIMENTS = ("table", "sweep", "omit3", "only78")
SWEEP_T = (1.0, 2.0, 2.5, 3.0, 4.0, 5.0, 8.0, 10.0, 20.0)
TEACHER, STUDENT = PRESETS["paper"]["teacher"], PRESETS["paper"]["student"]  # the flags' defaults

#: The paper's figures (section 3), test errors out of 10,000 unless marked %.
PAPER = {
    "teacher": 67, "baseline": 146, "distilled": 74,
    "omit3": {"errors": 206, "errors_on_3": 133, "errors_after": 109, "errors_on_3_after": 14, "shift": 3.5},
    "only78": {"error_pct": 47.3, "error_pct_after": 13.2, "shift": 7.6},
}


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
                        date=now(), command=command_line(), machine=machine())
            if args.save_teacher:
                path = Path(args.save_teacher)
                path.parent.mkdir(parents=True, exist_ok=True)
                self.teacher.save(path)
                write_json_atomic(path.with_suffix(".json"), info)
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


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def git_commit():
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "benchmarks/paper_mnist.py", "nanokd"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("+uncommitted-changes" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def command_line():
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # BLAS threads change the rounding of every matrix product, so a CPU run is
    # repeatable bit for bit only with the same setting (unset: OpenBLAS uses every core).
    threads = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "blas_threads_env": threads}


def record(ctx, experiment, models, wall_s, **extra):
    """The JSON record of one experiment, written to ``<out>/paper_<experiment>.json``."""
    args = ctx.args
    settings = {k: v for k, v in vars(args).items() if k not in ("func",)}
    teacher_seed = args.teacher_seed
    if args.teacher:  # a loaded teacher: its recipe is in teacher.trained, and the teacher flags played no part
        for k in settings:
            if k.startswith("teacher_") or k in ("max_minutes", "save_teacher"):
                settings[k] = None
        teacher_seed = ((ctx.teacher_entry or {}).get("trained") or {}).get("seed")
    rec = {"experiment": experiment, "paper": "Hinton, Vinyals & Dean 2015, arXiv 1503.02531, section 3",
           "command": command_line(), "date": now(), "git_commit": git_commit(), "device": ctx.device,
           "machine": machine(), "wall_seconds": round(wall_s, 1), "seeds": list(args.seeds),
           "teacher_seed": teacher_seed, "teacher": ctx.teacher_entry,
           "settings": settings, "models": models, **extra}
    path = Path(args.out) / f"paper_{experiment}.json"
    write_json_atomic(path, rec)
    print(f"wrote {path}", flush=True)
    return rec


# ---------------------------------------------------------------------------
# Printing: paper | ours | difference
# ---------------------------------------------------------------------------


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def fmt_ours(values, pct=False):
    m, s = mean_std(values)
    if m is None:
        return "-"
    unit = " %" if pct else ""
    if s is None:
        return f"{m:.1f}{unit}" if pct else f"{m:g}"  # one seed: a count, or a shift such as 1.75
    return f"{m:.1f} ± {s:.1f}{unit}" if pct else f"{m:.1f} ± {s:.1f}"


def print_table(title, rows):
    """rows: (label, paper figure or None, list of our values, is_percent)."""
    head = ("", "paper", "ours", "difference")
    lines = []
    for label, paper, ours, pct in rows:
        m, _ = mean_std(ours)
        p = "-" if paper is None else (f"{paper:g} %" if pct else f"{paper:g}")
        d = "-" if paper is None or m is None else (f"{m - paper:+.1f}" + (" pts" if pct else ""))
        lines.append((label, p, fmt_ours(ours, pct), d))
    widths = [max(len(r[i]) for r in (head, *lines)) for i in range(4)]
    print(f"\n{title}")
    for r in (head, tuple("-" * w for w in widths), *lines):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(flush=True)


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


def plot_sweep(rec, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plot]'): no plot", flush=True)
        return
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    Ts = rec["temperatures"]
    for width, marker in ((300, "o"), (30, "s")):
        ms = [mean_std(rec["models"][f"{width}x{width}_T{T:g}"]["test_errors"]) for T in Ts]
        line = ax.errorbar(Ts, [m for m, _ in ms], yerr=[s or 0 for _, s in ms], marker=marker, capsize=2,
                           label=f"{width}-{width} student")
        hard = rec["models"].get(f"{width}x{width}_hard")  # older records have no hard-label reference
        if hard:
            ax.axhline(mean_std(hard["test_errors"])[0], color=line[0].get_color(), linestyle=":", linewidth=1,
                       label=f"{width}-{width}, hard labels only")
    ax.axvspan(2.5, 4, color="tab:orange", alpha=0.15, label="paper: best T for 30 units")
    ax.axvspan(8, max(Ts), color="tab:blue", alpha=0.08, label="paper: flat for >= 300 units")
    ax.set_xscale("log")
    ax.set_xticks(Ts)
    ax.set_xticklabels([f"{T:g}" for T in Ts])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("test errors (of 10,000)")
    ax.set_title("Distilled MNIST students vs temperature")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    print(f"wrote {path}", flush=True)


def student_logits(model, x):
    """The student's logits on the host (no dropout), for bias shifts."""
    return to_numpy(model.forward(x))


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
        z_val, z_test = student_logits(model, x_val), student_logits(model, ctx.x_test)
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


def run_teacher_only(ctx):
    t0 = time.perf_counter()
    ctx.get_teacher()
    rec = record(ctx, "teacher", {"teacher": ctx.teacher_entry}, time.perf_counter() - t0)
    print_table("MNIST test errors (of 10,000)",
                [("teacher 2x1200, dropout+jitter", PAPER["teacher"], ctx.teacher_entry["test_errors"], False)])
    return rec


_EXPERIMENT_FNS = {"table": run_table, "sweep": run_sweep,
                   "omit3": lambda c: run_transfer(c, "omit3"), "only78": lambda c: run_transfer(c, "only78")}


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
        _EXPERIMENT_FNS[name](ctx)
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
            _EXPERIMENT_FNS[name](ctx)
            phases[name] = round(time.perf_counter() - t, 1)
    total = time.perf_counter() - t0
    rec = {"experiment": "all", "command": command_line(), "date": now(), "git_commit": git_commit(),
           "device": ctx.device, "machine": machine(), "wall_seconds": round(total, 1), "jobs": jobs,
           "phase_seconds": phases, "teacher": ctx.teacher_entry}
    write_json_atomic(Path(ctx.args.out) / "paper_all.json", rec)
    print(f"\nall: {total / 60:.1f} min in total ({', '.join(f'{k} {v / 60:.1f} min' for k, v in phases.items())})",
          flush=True)
    return rec


# ---------------------------------------------------------------------------
# The write-up: markdown tables made from the JSON records (so the two agree)
# ---------------------------------------------------------------------------


def _md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _md_row(label, paper, values, pct=False, unit=""):
    m, _ = mean_std(values)
    p = "-" if paper is None else (f"{paper:g} %" if pct else f"{paper:g}")
    d = "-" if paper is None or m is None else f"{m - paper:+.1f}" + (" pts" if pct else "")
    return (label, p, fmt_ours(values, pct), d)


def _teacher_note(rec):
    """", teacher N errors" for a record that names its teacher (in older records only the table does)."""
    entry = rec.get("teacher") or rec.get("models", {}).get("teacher")
    return f", teacher {entry['test_errors'][0]} errors" if entry and entry.get("test_errors") else ""


def report(folder):
    """Markdown tables of the records in ``folder`` (paper | ours | difference), for RESULTS.md."""
    folder = Path(folder)
    load = lambda name: json.loads((folder / f"paper_{name}.json").read_text()) \
        if (folder / f"paper_{name}.json").is_file() else None
    out, head = [], ("", "paper", "ours", "difference")
    tab = load("table")
    if tab:
        m = tab["models"]
        rows = [_md_row("teacher 2x1200, dropout, max-norm, jitter", PAPER["teacher"], m["teacher"]["test_errors"]),
                _md_row("baseline 2x800, hard labels", PAPER["baseline"], m["baseline"]["test_errors"]),
                _md_row(f"distilled 2x800, T = {m['distilled']['T']:g}, alpha = {m['distilled']['alpha']:g}",
                        PAPER["distilled"], m["distilled"]["test_errors"])]
        if "distilled_hard" in m:
            d = m["distilled_hard"]
            rows.append(_md_row(f"distilled 2x800, T = {d['T']:g}, alpha = {d['alpha']:g}", PAPER["distilled"],
                                d["test_errors"]))
        out += [f"**table** ({tab['device']}, {tab['date']}, commit {tab['git_commit']}, seeds {tab['seeds']}, "
                f"{tab['wall_seconds'] / 60:.1f} min{_teacher_note(tab)}): test errors of 10,000", "", _md_table(head, rows), ""]
    sw = load("sweep")
    if sw:
        Ts = sw["temperatures"]
        rows = []
        hard = lambda width: sw["models"].get(f"{width}x{width}_hard")  # older records have none
        with_hard = all(hard(width) for width in (300, 30))
        for width in (300, 30):
            cells = [fmt_ours(sw["models"][f"{width}x{width}_T{T:g}"]["test_errors"]) for T in Ts]
            rows.append((f"{width}-{width}", *([fmt_ours(hard(width)["test_errors"])] if with_hard else []), *cells))
        head_sw = ("units per layer", *(["hard labels"] if with_hard else []), *[f"T = {T:g}" for T in Ts])
        out += [f"**sweep** ({sw['device']}, {sw['date']}, commit {sw['git_commit']}, seeds {sw['seeds']}, "
                f"{sw['wall_seconds'] / 60:.1f} min{_teacher_note(sw)}): test errors of 10,000 by temperature", "",
                _md_table(head_sw, rows), ""]
    for name in ("omit3", "only78"):
        r = load(name)
        if not r:
            continue
        e, paper = r["models"]["student"], PAPER[name]
        pc = e["errors_per_class"]
        if name == "omit3":
            on3 = lambda key: [c["3"] if "3" in c else c[3] for c in pc[key]]
            rows = [_md_row("errors, no shift", paper["errors"], e["test_errors"]),
                    _md_row(f"of them on the {e['test_class_counts']['3']} test 3s", paper["errors_on_3"], on3("before")),
                    _md_row("class-3 bias raised by the shift chosen on validation", paper["shift"], e["shift"]),
                    _md_row("errors after that shift", paper["errors_after"], e["test_errors_after"]),
                    _md_row("of them on the test 3s", paper["errors_on_3_after"], on3("after")),
                    _md_row(f"errors after the paper's shift {paper['shift']:g}", paper["errors_after"],
                            e["test_errors_paper_shift"]),
                    _md_row("of them on the test 3s", paper["errors_on_3_after"], on3("paper_shift"))]
            what = f"transfer set without 3s ({e['transfer_set_size']} images): test errors of 10,000"
        else:
            n_test = sum(e["test_class_counts"].values())
            pct = lambda key: [100.0 * e_ / n_test for e_ in e[key]]
            rows = [_md_row("test error, no shift", paper["error_pct"], pct("test_errors"), pct=True),
                    _md_row("7 and 8 biases lowered by the shift chosen on validation", paper["shift"], e["shift"]),
                    _md_row("test error after that shift", paper["error_pct_after"], pct("test_errors_after"), pct=True),
                    _md_row(f"test error after the paper's shift {paper['shift']:g}", paper["error_pct_after"],
                            pct("test_errors_paper_shift"), pct=True)]
            what = f"transfer set of only 7s and 8s ({e['transfer_set_size']} images): test error"
        out += [f"**{name}** ({r['device']}, {r['date']}, commit {r['git_commit']}, seeds {r['seeds']}, "
                f"{r['wall_seconds'] / 60:.1f} min{_teacher_note(r)}): {what}", "", _md_table(head, rows), ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def build_parser():
    p = argparse.ArgumentParser(prog="python benchmarks/paper_mnist.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    p.add_argument("experiment", choices=("teacher", *EXPERIMENTS, "all", "report"),
                   help="report: print markdown tables of the records in --out (trains nothing)")
    g = p.add_argument_group("run")
    g.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    g.add_argument("--data-dir", default=None, help="MNIST folder (default: $NANOKD_DATA, else shared/data/mnist in "
                                                     "or beside the checkout, else nanokd's cache or a download)")
    g.add_argument("--no-verify", action="store_true", help="skip the checksums (for home-made test data)")
    g.add_argument("--out", default=str(RESULTS), help="folder of the JSON records (and the plot)")
    g.add_argument("--seeds", type=int, nargs="+", default=[1], help="student seeds (one run per seed)")
    g.add_argument("--val", type=int, default=5000,
                   help="last N training images: validation split for the bias shifts of omit3 / only78")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines for the students")
    g.add_argument("--no-plot", action="store_true")
    g.add_argument("--skip", nargs="*", choices=EXPERIMENTS, default=[], help="(all) experiments to leave out")
    g.add_argument("--jobs", type=int, default=1,
                   help="(all, cpu) run the student experiments in this many processes, after the teacher; "
                        "give each one BLAS thread (OPENBLAS_NUM_THREADS=1)")
    t = p.add_argument_group("teacher")
    t.add_argument("--teacher", metavar="PATH", default=None,
                   help="load this teacher.npz instead of training one (its .json beside it is copied into the record)")
    t.add_argument("--save-teacher", metavar="PATH", default=str(REPO / "runs" / "paper_mnist" / "teacher.npz"),
                   help="where a trained teacher goes (with a .json of how it was trained); '' for nowhere")
    t.add_argument("--teacher-hidden", type=int, nargs="+", default=[1200, 1200], help="the paper's 2x1200")
    t.add_argument("--teacher-epochs", type=int, default=TEACHER.epochs)
    t.add_argument("--teacher-lr", type=float, default=TEACHER.lr)
    t.add_argument("--teacher-lr-decay", type=float, default=TEACHER.lr_decay,
                   help="lr of epoch e is lr * decay**e (0.990832: about 1%% of lr after 500 epochs)")
    t.add_argument("--teacher-momentum", type=float, default=TEACHER.momentum, help="ramped up from 0.5")
    t.add_argument("--teacher-momentum-ramp", type=int, default=TEACHER.momentum_ramp,
                   help="epochs of the momentum ramp")
    t.add_argument("--teacher-seed", type=int, default=0)
    t.add_argument("--teacher-checkpoint", metavar="PATH", default=None,
                   help="save the teacher's training state here after every epoch, and continue from it if it "
                        "exists (same settings; --teacher-epochs may grow): a long teacher over several runs")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="stop training the teacher at the last epoch boundary that fits in this many minutes "
                        "(recorded as stopped_by_budget)")
    s = p.add_argument_group("students (no dropout, no max-norm, no jitter)")
    s.add_argument("--student-hidden", type=int, nargs="+", default=[800, 800],
                   help="table, omit3 and only78 students")
    s.add_argument("--student-epochs", type=int, default=STUDENT.epochs, help="table students")
    s.add_argument("--student-lr", type=float, default=STUDENT.lr)
    s.add_argument("--student-lr-decay", type=float, default=STUDENT.lr_decay,
                   help="lr factor per 60,000 images seen (per epoch of the full set)")
    s.add_argument("--student-momentum-ramp", type=int, default=STUDENT.momentum_ramp,
                   help="momentum 0.5 -> 0.9 over N epochs")
    s.add_argument("--T", type=float, default=20.0, help="temperature of table, omit3, only78")
    s.add_argument("--alpha", type=float, default=1.0, help="weight of the soft term (1: soft targets only)")
    s.add_argument("--hard-alpha", type=float, default=0.9,
                   help="table: also a distilled student with this alpha (a small hard-label weight); "
                        "pass a negative number to skip it")
    s.add_argument("--sweep-T", type=float, nargs="+", default=list(SWEEP_T))
    s.add_argument("--sweep-epochs-300", type=int, default=20)
    s.add_argument("--sweep-epochs-30", type=int, default=30)
    s.add_argument("--sweep-lr-decay", type=float, default=0.9,
                   help="the sweep students' lr factor per 60,000 images (their runs are shorter)")
    s.add_argument("--omit3-epochs", type=int, default=60)
    s.add_argument("--only78-epochs", type=int, default=150,
                   help="epochs of the 11,000-image set (150 did as well on validation as 330, which makes about "
                        "as many updates as 60 full epochs)")
    s.add_argument("--shift-max", type=float, default=20.0, help="bias-shift grid: 0 .. this")
    s.add_argument("--shift-step", type=float, default=0.25)
    return p


def check_args(args, parser):
    """Refuse, before anything trains, the flag values that a run would meet only hours later."""
    def need(ok, flag, what, value):
        if not ok:
            parser.error(f"argument {flag}: must be {what}, got {value}")

    need(all(s >= 0 for s in args.seeds) and len(set(args.seeds)) == len(args.seeds), "--seeds",
         "distinct integers >= 0", args.seeds)
    need(args.T > 0, "--T", "> 0", args.T)
    need(0 <= args.alpha <= 1, "--alpha", "in [0, 1]", args.alpha)
    need(args.hard_alpha <= 1, "--hard-alpha", "in [0, 1] (or negative: skip that student)", args.hard_alpha)
    need(all(T > 0 for T in args.sweep_T) and len(set(args.sweep_T)) == len(args.sweep_T), "--sweep-T",
         "distinct temperatures > 0", args.sweep_T)
    for flag in ("teacher_epochs", "student_epochs", "sweep_epochs_300", "sweep_epochs_30", "omit3_epochs",
                 "only78_epochs", "jobs"):
        need(getattr(args, flag) >= 1, "--" + flag.replace("_", "-"), ">= 1", getattr(args, flag))
    for flag in ("teacher_lr", "student_lr"):
        need(getattr(args, flag) > 0, "--" + flag.replace("_", "-"), "> 0", getattr(args, flag))
    for flag in ("teacher_lr_decay", "student_lr_decay", "sweep_lr_decay"):
        need(0 < getattr(args, flag) <= 1, "--" + flag.replace("_", "-"), "in (0, 1]", getattr(args, flag))
    need(0 <= args.teacher_momentum < 1, "--teacher-momentum", "in [0, 1)", args.teacher_momentum)
    need(args.shift_step > 0, "--shift-step", "> 0", args.shift_step)
    need(args.shift_max >= args.shift_step, "--shift-max", ">= --shift-step", args.shift_max)
    if args.teacher and (args.teacher_checkpoint or args.max_minutes is not None):
        parser.error("--teacher loads a trained teacher; --teacher-checkpoint and --max-minutes are for training one")
    if args.experiment != "all" and (args.jobs > 1 or args.skip):
        parser.error(f"--jobs and --skip are for 'all', not '{args.experiment}'")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.experiment != "report":
        check_args(args, parser)
    if args.hard_alpha is not None and args.hard_alpha < 0:
        args.hard_alpha = None
    if args.save_teacher == "":
        args.save_teacher = None
    if args.data_dir is None and os.environ.get("NANOKD_DATA"):
        args.data_dir = os.environ["NANOKD_DATA"]
    if args.data_dir is None:  # a shared copy in or beside the checkout, else nanokd's cache / download
        for folder in (REPO / "shared" / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist"):
            if (folder / nkdata.TRAIN_IMAGES).is_file():
                args.data_dir = str(folder)
                break
    if args.experiment == "report":
        print(report(args.out))
        return 0
    if args.jobs > 1 and resolve_device(args.device) != "cpu":
        raise SystemExit("--jobs > 1 forks worker processes, which CUDA does not survive: use --jobs 1 on a GPU")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx = Context(args)
    fn = {"teacher": run_teacher_only, "all": run_all, **_EXPERIMENT_FNS}[args.experiment]
    fn(ctx)
    print(f"paper_mnist {args.experiment}: {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
