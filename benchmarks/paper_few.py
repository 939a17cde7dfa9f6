r"""Soft targets as a regularizer (the paper's section 6) on MNIST: a 2x800 net trained on 3 % of the data.

In the paper's speech experiment (Table 5) a model trained on 3 % of the data
with hard targets overfit (44.5 % frame accuracy, with early stopping, against
58.9 % on all the data), and the same model trained on the soft targets of the
full-data model reached 57.0 % without early stopping: soft targets recovered
(57.0 - 44.5) / (58.9 - 44.5) = 87 % of what 97 % more data gave.  Here::

    python -m benchmarks.paper_few --teacher teacher.npz --seeds 1 2 3
    python -m benchmarks.paper_few --teacher teacher.npz --seeds 1 2 3 --add-consistent   # two more rows
    python -m benchmarks.paper_few --teacher a.npz b.npz c.npz          # an ensemble teacher
    python -m benchmarks.paper_few --teacher teacher.npz --grid-weight-decay 0 0.005 0.01   # weight decay too

* the 3 %: 1,800 training images, 180 of each digit, drawn once with
  ``--subset-seed`` from the first 55,000 training images
  (:func:`nanokd.data.balanced_subset`); the last 5,000 are the validation
  split, which no model trains on;
* ``hard_3pct_no_stop``: the 2x800 net on the hard labels of the 3 %, for the
  fixed schedule;
* ``hard_3pct``: the same run, early-stopped: the weights of its epoch of
  fewest validation errors;
* ``soft_3pct``: the same net and schedule on the teacher's soft targets for
  the 3 % (T and alpha chosen on validation, from ``--grid-T`` and
  ``--grid-alpha``, with the first seed), no early stopping.  Several
  ``--teacher`` files are an ensemble: its soft targets at T are the mean of
  its members' (:func:`nanokd.teacher.ensemble_logits`), so they are computed
  for each T;
* with ``--grid-weight-decay``, each 3 % run's SGD weight decay is chosen on
  validation too, with the first seed: the hard-label run's by its
  early-stopped validation errors, the soft one's after T and alpha (which are
  chosen at the grid's first weight decay);
* ``hard_full``: the 2x800 baseline on all the training images, from the
  record of the paper's table (``results/paper_table.json``), not retrained;
* with ``--add-consistent``, two rows that leave the paper's setting: the 3 %
  jittered by up to 2 pixels on hard labels (``hard_3pct_jitter``,
  early-stopped), and consistent teaching on it (``soft_3pct_consistent``:
  the teacher's logits of each shifted view, at the chosen T and alpha).

The test set is used once per model, at the end.  The record is
``benchmarks/results/paper_few.json`` and the plot of validation errors per
epoch ``benchmarks/results/paper_few.png``.
"""

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import command_line, git_commit, machine, now
from nanokd import data as nkdata
from nanokd.atomic import save_figure_atomic, write_json_atomic
from nanokd.mlp import MLP
from nanokd.presets import PRESETS, build
from nanokd.teacher import compute_teacher_logits, evaluate_errors
from nanokd.trainer import train_model

RESULTS = Path(__file__).resolve().parent / "results"
STARTED_AT = git_commit()  # the commit of the code this process runs (HEAD may move while it trains)
PAPER = {"hard_full": 58.9, "hard_3pct": 44.5, "soft_3pct": 57.0, "recovered": 0.87}  # frame accuracy %, Table 5


def recipe(args, jitter=0, weight_decay=0.0):
    """The table's 2x800 student with this experiment's schedule (18 steps an epoch on 1,800 images)."""
    return dataclasses.replace(PRESETS["paper"]["student"], epochs=args.epochs, lr=args.lr, lr_decay=args.lr_decay,
                               jitter=jitter, weight_decay=weight_decay)


class Data:
    """The 3 % subset, the validation split and the test set (NumPy, float32)."""

    def __init__(self, args):
        ds = nkdata.load("mnist", args.data_dir)
        x, y, self.x_val, self.y_val = nkdata.split_validation(nkdata.to_float(ds.x_train), ds.y_train, args.val)
        self.index = nkdata.balanced_subset(y, args.subset, args.subset_seed)
        self.x, self.y = x[self.index], y[self.index]
        self.x_test, self.y_test = nkdata.to_float(ds.x_test), ds.y_test


def fit(args, data, seed, *, teacher_logits=None, teacher=None, jitter=0, T=1.0, alpha=1.0, weight_decay=0.0,
        validate=True):
    """One 2x800 run on the subset; returns (final model, early-stopped weights, info).

    ``teacher`` with ``jitter``: consistent teaching, the teacher's logits of
    each shifted image (:func:`nanokd.trainer.train_model`).
    """
    model, config = build(recipe(args, jitter, weight_decay), seed=seed, T=T, alpha=alpha)
    best = {"errors": None, "epoch": None, "params": None}

    def keep_best(epoch, history):
        errors = history["val_errors"][-1]
        if errors is not None and (best["errors"] is None or errors < best["errors"]):
            best.update(errors=errors, epoch=epoch, params=[p.copy() for p in model.params])

    t0 = time.perf_counter()
    distil = {"teacher_logits": teacher_logits} if teacher_logits is not None else {"teacher": teacher}
    history = train_model(model, data.x, data.y, config, x_val=data.x_val if validate else None,
                          y_val=data.y_val if validate else None, progress=False, log=None, callback=keep_best,
                          **distil)
    info = {"seconds": round(time.perf_counter() - t0, 1), "val_errors": history["val_errors"],
            "final_loss": history["loss"][-1], "best_epoch": best["epoch"], "best_val_errors": best["errors"]}
    return model, best["params"], info


def add_row(row, model, info, data, stopped=False):
    """One seed's entry of a row: its test errors (the test set, used once, here), time and validation errors.

    ``stopped``: the model is the run's early-stopped weights (its best validation epoch).
    """
    row["test_errors"].append(evaluate_errors(model, data.x_test, data.y_test))
    row["seconds"].append(info["seconds"])
    row["val_errors_final"].append(info["best_val_errors"] if stopped else info["val_errors"][-1])
    row["epochs"].append(info["best_epoch"] if stopped else len(info["val_errors"]))


def choose_soft_settings(args, data, teachers):
    """T, alpha and weight decay of fewest validation errors after the fixed schedule (first seed only).

    T and alpha are chosen first, at the first weight decay of the grid; then
    the weight decay, at that T and alpha (ties: the first in grid order).
    """
    grid, wd0 = {}, args.grid_weight_decay[0]

    def try_one(T, alpha, wd, v):
        model, _, _ = fit(args, data, args.seeds[0], teacher_logits=v, T=T, alpha=alpha, weight_decay=wd,
                          validate=False)
        key = f"T={T:g},alpha={alpha:g}" + (f",weight_decay={wd:g}" if len(args.grid_weight_decay) > 1 else "")
        grid[key] = errors = evaluate_errors(model, data.x_val, data.y_val)
        print(f"  soft targets T={T:g} alpha={alpha:g} weight decay {wd:g}: {errors} validation errors", flush=True)
        return errors

    best = None
    for T in args.grid_T:
        v = compute_teacher_logits(teachers, data.x, T)  # an ensemble's logits hold its mean at this T only
        for alpha in args.grid_alpha:
            errors = try_one(T, alpha, wd0, v)
            if best is None or errors < best[0]:
                best = (errors, T, alpha, wd0)
    _, T, alpha, _ = best
    v = compute_teacher_logits(teachers, data.x, T)
    for wd in args.grid_weight_decay[1:]:
        errors = try_one(T, alpha, wd, v)
        if errors < best[0]:
            best = (errors, T, alpha, wd)
    return T, alpha, best[3], grid


def choose_hard_weight_decay(args, data):
    """The weight decay of the hard-label run's fewest early-stopped validation errors (first seed only)."""
    if len(args.grid_weight_decay) == 1:
        return args.grid_weight_decay[0], {}
    grid = {}
    for wd in args.grid_weight_decay:
        _, _, info = fit(args, data, args.seeds[0], weight_decay=wd)
        grid[f"weight_decay={wd:g}"] = info["best_val_errors"]
        print(f"  hard labels, weight decay {wd:g}: {info['best_val_errors']} validation errors at its best epoch "
              f"{info['best_epoch']}", flush=True)
    return min(args.grid_weight_decay, key=lambda wd: grid[f"weight_decay={wd:g}"]), grid  # ties: the first


def run(args):
    t_start = time.perf_counter()
    data = Data(args)
    teachers = [MLP.load(path) for path in args.teacher]
    teacher = teacher_entry(args, teachers, data)
    print(f"paper_few: {len(data.x)} training images ({np.bincount(data.y).tolist()} per class), "
          f"teacher {teacher['test_errors']} test errors; choosing T and alpha on validation", flush=True)
    wd_hard, grid_hard = choose_hard_weight_decay(args, data)
    T, alpha, wd_soft, grid = choose_soft_settings(args, data, teachers)
    print(f"chosen on validation: T = {T:g}, alpha = {alpha:g}, weight decay {wd_soft:g} (hard labels: "
          f"{wd_hard:g})", flush=True)
    v = compute_teacher_logits(teachers, data.x, T)

    rows = {k: {"test_errors": [], "seconds": [], "val_errors_final": [], "epochs": []}
            for k in ("hard_3pct", "hard_3pct_no_stop", "soft_3pct")}
    curves = {}
    for seed in args.seeds:
        hard, best, info = fit(args, data, seed, weight_decay=wd_hard)
        stopped = MLP(**hard.config, device=hard.device)
        stopped.load_params(best)
        soft, _, soft_info = fit(args, data, seed, teacher_logits=v, T=T, alpha=alpha, weight_decay=wd_soft)
        add_row(rows["hard_3pct"], stopped, info, data, stopped=True)
        add_row(rows["hard_3pct_no_stop"], hard, info, data)
        add_row(rows["soft_3pct"], soft, soft_info, data)
        curves[str(seed)] = {"hard": info["val_errors"], "soft": soft_info["val_errors"],
                             "hard_best_epoch": info["best_epoch"]}
        print(f"seed {seed}: hard {rows['hard_3pct_no_stop']['test_errors'][-1]} test errors "
              f"(early-stopped at epoch {info['best_epoch']}: {rows['hard_3pct']['test_errors'][-1]}), "
              f"soft {rows['soft_3pct']['test_errors'][-1]}", flush=True)

    full = json.loads((RESULTS / "paper_table.json").read_text())
    rows["hard_full"] = {"test_errors": full["models"]["baseline"]["test_errors"],
                         "seconds": full["models"]["baseline"]["seconds"],
                         "from_record": "benchmarks/results/paper_table.json (models.baseline)",
                         "git_commit": full["git_commit"]}
    mean = {k: float(np.mean(r["test_errors"])) for k, r in rows.items()}
    recovered = (mean["hard_3pct"] - mean["soft_3pct"]) / (mean["hard_3pct"] - mean["hard_full"])
    settings = {"recipe": dataclasses.asdict(recipe(args)), "soft_T": T, "soft_alpha": alpha, "grid": grid,
                "soft_weight_decay": wd_soft, "hard_weight_decay": wd_hard, "grid_hard": grid_hard,
                "subset": args.subset, "subset_seed": args.subset_seed, "val": args.val,
                "subset_sha256": hashlib.sha256(data.index.astype(np.int64).tobytes()).hexdigest()}
    rec = {"experiment": "few", "paper": "Hinton, Vinyals & Dean 2015, arXiv 1503.02531, section 6 (Table 5)",
           "command": command_line("benchmarks.paper_few"), "date": now(), "git_commit": STARTED_AT, "machine": machine(),
           "wall_seconds": round(time.perf_counter() - t_start, 1), "seeds": list(args.seeds),
           "teacher": teacher,
           "settings": settings, "models": rows, "mean_test_errors": mean, "recovered_fraction": recovered,
           "paper_table5": PAPER, "val_curves": curves}
    write_json_atomic(args.out, rec)
    print(f"\nmean test errors: {', '.join(f'{k} {m:.1f}' for k, m in mean.items())}")
    print(f"recovered fraction (E_hard3 - E_soft3) / (E_hard3 - E_full) = {recovered:.2f} (paper 0.87)")
    print(f"wrote {args.out}")
    if not args.no_plot:
        plot(rec, Path(args.out).with_suffix(".png"))


def add_consistent(args):
    """Two rows that leave the paper's setting, added to the record at ``--out``: the 3 % jittered by up to
    ``--jitter`` pixels, on hard labels (``hard_3pct_jitter``, early-stopped on validation) and on the
    teacher's logits of the same shifted views (``soft_3pct_consistent``, at the record's T and alpha,
    chosen on validation for the untranslated run).  Each uses the record's weight decay for its kind of
    run (0 in a record made without ``--grid-weight-decay``)."""
    t_start = time.perf_counter()
    rec = json.loads(Path(args.out).read_text())
    s = rec["settings"]
    if (s["subset"], s["subset_seed"], s["val"]) != (args.subset, args.subset_seed, args.val):
        raise SystemExit(f"{args.out} was made with another subset or validation split: pass the same flags")
    data = Data(args)
    teacher = [MLP.load(path) for path in args.teacher]
    rows = {k: {"test_errors": [], "seconds": [], "val_errors_final": [], "epochs": [], "jitter": args.jitter}
            for k in ("hard_3pct_jitter", "soft_3pct_consistent")}
    for seed in args.seeds:
        hard, best, info = fit(args, data, seed, jitter=args.jitter, weight_decay=s.get("hard_weight_decay", 0.0))
        stopped = MLP(**hard.config, device=hard.device)
        stopped.load_params(best)
        soft, _, soft_info = fit(args, data, seed, teacher=teacher, jitter=args.jitter, T=s["soft_T"],
                                 alpha=s["soft_alpha"], weight_decay=s.get("soft_weight_decay", 0.0))
        add_row(rows["hard_3pct_jitter"], stopped, info, data, stopped=True)
        add_row(rows["soft_3pct_consistent"], soft, soft_info, data)
        print(f"seed {seed}: jittered hard {rows['hard_3pct_jitter']['test_errors'][-1]} (early-stopped at epoch "
              f"{info['best_epoch']}), consistent soft {rows['soft_3pct_consistent']['test_errors'][-1]}", flush=True)
    rec["models"].update(rows)
    for key in rows:
        rec["mean_test_errors"][key] = float(np.mean(rows[key]["test_errors"]))
    m = rec["mean_test_errors"]
    rec["recovered_fraction_consistent"] = (m["hard_3pct"] - m["soft_3pct_consistent"]) / (m["hard_3pct"] - m["hard_full"])
    rec["consistent_rows"] = {"command": command_line("benchmarks.paper_few"), "date": now(),
                              "git_commit": STARTED_AT, "wall_seconds": round(time.perf_counter() - t_start, 1)}
    write_json_atomic(args.out, rec)
    print(f"recovered fraction with consistent teaching: {rec['recovered_fraction_consistent']:.2f}; wrote {args.out}")


def teacher_entry(args, teachers, data):
    """The record's teacher: its files, its test errors and, for an ensemble, each member's."""
    entry = {"files": [str(Path(path).resolve()) for path in args.teacher],
             "test_errors": evaluate_errors(teachers if len(teachers) > 1 else teachers[0], data.x_test, data.y_test)}
    if len(teachers) > 1:
        entry["members_test_errors"] = [evaluate_errors(t, data.x_test, data.y_test) for t in teachers]
    return entry


def plot(rec, path):
    """Validation errors per epoch of the three 3 % runs of the first seed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: pip install nanokd[plot] (matplotlib)")
        return
    seed = str(rec["seeds"][0])
    c = rec["val_curves"][seed]
    n_val = rec["settings"]["val"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    epochs = np.arange(1, len(c["hard"]) + 1)
    ax.plot(epochs, np.array(c["hard"]) / n_val * 100, label="hard labels (3 %): hard_3pct_no_stop at the end")
    ax.plot(epochs, np.array(c["soft"]) / n_val * 100, label=f"soft targets (3 %), T = {rec['settings']['soft_T']:g}")
    b = c["hard_best_epoch"]
    ax.plot([b], [c["hard"][b - 1] / n_val * 100], "o", color="C0", label=f"hard_3pct: early stop, epoch {b}")
    ax.set(xlabel="epoch (1,800 images each)", ylabel="validation error (%)", yscale="log",
           title=f"2x800 on 3 % of MNIST, seed {seed}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.paper_few", description=__doc__.split("\n")[0])
    p.add_argument("--teacher", required=True, nargs="+", metavar="PATH",
                   help="the full-data teacher (teacher.npz); several form an ensemble")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--subset", type=int, default=1800, help="training images, the same number of each class")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--val", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--lr-decay", type=float, default=0.994)
    p.add_argument("--grid-T", type=float, nargs="+", default=[2.0, 5.0, 10.0, 20.0])
    p.add_argument("--grid-alpha", type=float, nargs="+", default=[0.7, 1.0])
    p.add_argument("--grid-weight-decay", type=float, nargs="+", default=[0.0], metavar="L",
                   help="weight decays to choose from on validation, for the hard-label run and (after T and alpha, "
                        "chosen at the first) for the soft one")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--add-consistent", action="store_true",
                   help="add the two jittered rows (hard labels; consistent teaching) to the record at --out")
    p.add_argument("--jitter", type=int, default=2, help="the shifts of --add-consistent, in pixels")
    p.add_argument("--out", default=str(RESULTS / "paper_few.json"))
    args = p.parse_args(argv)
    for path in args.teacher:
        if not Path(path).is_file():
            p.error(f"argument --teacher: no such file: {path}")
    add_consistent(args) if args.add_consistent else run(args)


if __name__ == "__main__":
    main()
