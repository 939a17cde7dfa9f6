r"""Choose Fashion-MNIST's recipes (quick, and the full teacher) on a validation split, never on the test set.

    python -m benchmarks.fashion_val                       # stages 1-3, about 8 minutes on 1 core
    python -m benchmarks.fashion_val --stage schedule --after benchmarks/results/fashion_val.json \
        --out benchmarks/results/fashion_val_schedule.json  # stage 4, about 3 minutes
    python -m benchmarks.fashion_val --stage full-teacher \
        --out benchmarks/results/fashion_val_full_teacher.json  # stage 6, 56 minutes on 1 core beside another job
    python -m benchmarks.fashion_val --stage full-jitter \
        --out benchmarks/results/fashion_val_full_jitter.json   # stage 7, about 30 minutes on 1 core
    python -m benchmarks.fashion_val --stage quick-jitter \
        --out benchmarks/results/fashion_val_quick_jitter.json  # stage 8, about 25 minutes on 1 core

MNIST's quick recipe (``nanokd.presets.PRESETS["quick"]``) trained on
Fashion-MNIST gave a teacher worse than the small baseline and a distilled
student worse than the baseline.  This study starts from that recipe and asks,
one question at a time, which change helps on Fashion-MNIST:

1. **The teacher** (784-800-800-10, 8 epochs): with or without the +-2 pixel
   jitter, with or without dropout (0.2 of the pixels, 0.5 of the hidden
   units, with max-norm 3.5): :data:`TEACHERS`.  The one with the fewest
   validation errors after its last epoch wins.
2. **The temperature**: the baseline student (hard labels) and the same
   student distilled from the winning teacher at each T of :data:`TEMPERATURES`
   (alpha 0.9, MNIST's).
3. **The weight of the soft targets**: at the best T, each alpha of :data:`ALPHAS`.
4. ``--stage schedule`` (a second run, reading the choices of the first from
   ``--after``): the chosen teacher trained longer (:data:`SCHEDULES`; its
   8-epoch loss was still falling), and the student distilled from it at the
   chosen T and alpha.  The longer schedule is kept only if it lowers the
   distilled student's validation errors, the number the preset is for.
5. ``--stage seeds`` (a third run, on the preset as it is): the students'
   schedule (:data:`STUDENT_SCHEDULES`) over the CLI's seeds 0-2, each seed
   with its own teacher, kept by the smallest margin of distillation over the
   baseline across the seeds.
6. ``--stage full-teacher`` (the ``full`` preset's teacher): the preset's
   teacher, 784-1200-1200-10 with dropout 0.2/0.5 and max-norm 3.5, ended
   *worse* than its baseline (1143 against 1010 validation errors,
   benchmarks/results/fashion_full_seed0.json).  This stage trains the
   preset's baseline and the teacher candidates of :data:`FULL_TEACHERS`
   (the same net and schedule, less regularisation), then the student
   distilled from the candidate with the fewest validation errors.
7. ``--stage full-jitter`` (the ``full`` preset since 2026-12-03): stage 6's
   best teacher (no dropout, no max-norm: 988, but its student gained
   nothing) trained on images jittered by one pixel (:data:`FULL_JITTER_TEACHER`;
   60 epochs, lr 0.05 decaying by 0.95, as the students' schedule), the
   paper's setting otherwise: the baseline and the distilled students see
   the plain images, the distilled ones the teacher's soft targets of them,
   at each (T, alpha) of :data:`FULL_GRID`.  Beside them, for comparison
   only, the baseline student trained on jittered images itself
   (augmentation instead of distillation).
8. ``--stage quick-jitter`` (the ``quick`` preset's teacher, after stage 7
   found one pixel of jitter good for the full teacher): over the CLI's
   seeds 0-2, the quick preset's teacher as it is, jittered by one pixel,
   and jittered over a longer schedule (:data:`QUICK_TEACHERS`), the
   baseline, and the student distilled from each.  Kept as in stage 5: the
   teacher whose smallest margin of the distilled student over the
   baseline, across the seeds, is largest (the preset's on a tie).

Everything is trained on the first 50,000 training images and scored on the
last 10,000 (the ``--val 10000`` of ``python -m nanokd.train``); the test
images are loaded with the rest of the files but never scored.  Seeds are the
CLI's for ``--seed 0`` in stages 1-4: teacher seed 0, students seed 1.  One seed only, so a
difference of a few tens of validation errors is within noise; the record
keeps every per-epoch curve so that the choice can be checked.

The record (``--out``) is rewritten after every model, so an interrupted study
leaves what it finished, with ``"complete": false``.
"""

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.common import git_commit, now
from nanokd import data as nkdata
from nanokd.atomic import write_json_atomic
from nanokd.presets import PRESETS, Recipe, build
from nanokd.trainer import train_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "fashion_val.json"

#: MNIST's quick recipe, the study's starting point.
BASE = PRESETS["quick"]

#: Stage 1: teacher candidates, as changes to MNIST's quick teacher.
DROPOUT = dict(dropout_input=0.2, dropout_hidden=0.5, max_norm=3.5)
TEACHERS = {
    "jitter (MNIST's quick teacher)": dict(jitter=2),
    "no jitter": dict(jitter=0),
    "dropout, no jitter": dict(jitter=0, **DROPOUT),
    "dropout, jitter": dict(jitter=2, **DROPOUT),
}

#: Stage 2: temperatures of the distilled student (20 is MNIST's).
TEMPERATURES = (2.0, 4.0, 8.0, 20.0)
#: Stage 3: weights of the soft targets at the best T (0.9 is MNIST's, already run in stage 2).
ALPHAS = (0.5, 0.9, 1.0)

#: Stage 4: longer schedules of the chosen teacher (MNIST's is 8 epochs, lr decay 0.7).
SCHEDULES = {"12 epochs, lr decay 0.8": dict(epochs=12, lr_decay=0.8)}

TEACHER_SEED, STUDENT_SEED = 0, 1  # the CLI's for --seed 0 (students: seed + 1)

#: Stage 5 (``--stage seeds``): the students' schedule, over the CLI's seeds 0-2 (the preset's is the first).
STUDENT_SCHEDULES = {
    "8 epochs, lr decay 0.85 (the preset's)": {},
    "12 epochs, lr decay 0.75": dict(epochs=12, lr_decay=0.75),
    "16 epochs, lr decay 0.8": dict(epochs=16, lr_decay=0.8),
}
SEEDS = (0, 1, 2)

#: Stage 6 (``--stage full-teacher``): the full preset's teacher with less regularisation; its own recipe
#: (input dropout 0.2, hidden 0.5, max-norm 3.5) is in benchmarks/results/fashion_full_seed0.json.
FULL_TEACHERS = {
    "hidden dropout 0.5 and max-norm 3.5, no input dropout": dict(dropout_input=0.0),
    "no dropout, no max-norm": dict(dropout_input=0.0, dropout_hidden=0.0, max_norm=0.0),
}


#: The full preset's recipes before stage 7 chose its teacher (2026-12-02): stages 6 and 7 start from these, so that
#: they rerun as recorded whatever the preset says now.
FULL_BEFORE = {
    "teacher": Recipe(hidden=(1200, 1200), epochs=100, batch_size=100, lr=0.1, lr_decay=0.97, momentum=0.9,
                      momentum_start=0.5, momentum_ramp=2, dropout_input=0.2, dropout_hidden=0.5, max_norm=3.5,
                      jitter=0),
    "student": Recipe(hidden=(800, 800), epochs=40, batch_size=100, lr=0.05, lr_decay=0.95, momentum=0.9,
                      momentum_start=0.5, momentum_ramp=2, dropout_input=0.0, dropout_hidden=0.0, max_norm=0.0,
                      jitter=0),
    "T": 2.0,
    "alpha": 0.5,
}

#: The quick preset before stage 8 chose its teacher (2026-12-02): stages 5 and 8 start from it, so that they rerun
#: as recorded whatever the preset says now.
QUICK_BEFORE = {
    "teacher": Recipe(hidden=(800, 800), epochs=12, batch_size=100, lr=0.1, lr_decay=0.8, momentum=0.9,
                      momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0, max_norm=0.0,
                      jitter=0),
    "student": Recipe(hidden=(300, 300), epochs=8, batch_size=100, lr=0.03, lr_decay=0.85, momentum=0.9,
                      momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0, max_norm=0.0,
                      jitter=0),
    "T": 2.0,
    "alpha": 0.5,
}

#: Stage 7 (``--stage full-jitter``): stage 6's best teacher, unregularised, on images jittered by one pixel, with
#: the students' schedule (60 epochs); and the distilled students' grid.
FULL_JITTER_TEACHER = dict(dropout_input=0.0, dropout_hidden=0.0, max_norm=0.0, jitter=1, epochs=60, lr=0.05,
                           lr_decay=0.95)
FULL_GRID = ((2.0, 0.5), (4.0, 0.5), (2.0, 0.9), (4.0, 0.9))


#: Stage 8 (``--stage quick-jitter``): the quick preset's teacher as it is, jittered by one pixel, and jittered
#: over a longer schedule, since stage 7's jittered teacher needed many epochs to pay (24 keep a run within the
#: quick preset's budget of 5 minutes).
QUICK_TEACHERS = {"the preset's (no jitter)": {}, "jitter 1": dict(jitter=1),
                  "jitter 1, 24 epochs, lr decay 0.88": dict(jitter=1, epochs=24, lr_decay=0.88)}


def machine():
    """:func:`benchmarks.common.machine` and the load average at the start (other processes slow a run)."""
    return {**common.machine(), "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def fit(recipe, data, *, seed, name, teacher=None, T=1.0, alpha=1.0):
    """Train one model of ``recipe`` on the training split; returns (model, its record)."""
    x_train, y_train, x_val, y_val = data
    model, config = build(recipe, n_in=x_train.shape[1], n_classes=nkdata.NUM_CLASSES, seed=seed, T=T, alpha=alpha)
    t0 = time.perf_counter()
    history = train_model(model, x_train, y_train, config, teacher=teacher, x_val=x_val, y_val=y_val,
                          progress=False, log=None, name=name)
    curve = [int(e) for e in history["val_errors"]]
    rec = {"name": name, "recipe": dataclasses.asdict(recipe), "seed": seed, "val_errors": curve[-1],
           "val_errors_per_epoch": curve, "best_epoch": int(np.argmin(curve)) + 1,
           "loss_per_epoch": [round(float(v), 5) for v in history["loss"]],
           "seconds": round(time.perf_counter() - t0, 1)}
    if teacher is not None:
        rec.update(T=T, alpha=alpha)
    print(f"{name:45s} val errors {curve[-1]:5d} / {len(y_val)} ({100 * curve[-1] / len(y_val):.2f} %), "
          f"per epoch {' '.join(map(str, curve))}; {rec['seconds']:.0f} s", flush=True)
    return model, rec


def best(records):
    """The record with the fewest validation errors after the last epoch (the first, on a tie)."""
    return min(records, key=lambda r: r["val_errors"])


def choose_teacher(base, candidates, data, record, save, epochs):
    """Train each candidate (a change to the recipe ``base``); the name and model of the fewest validation errors."""
    teachers = {}
    for name, change in candidates.items():
        recipe = dataclasses.replace(base, **change, **epochs)
        teachers[name], rec = fit(recipe, data, seed=TEACHER_SEED, name=f"teacher: {name}")
        rec["candidate"] = name
        record["teachers"].append(rec)
        save()
    chosen = best(record["teachers"])["candidate"]
    record["choice"]["teacher"] = chosen
    return chosen, teachers[chosen]


def stage_choose(data, record, save, epochs):
    """Stages 1-3: the teacher candidates, then T, then alpha; each choice by the fewest validation errors."""
    chosen, teacher = choose_teacher(BASE["teacher"], TEACHERS, data, record, save, epochs)

    student = dataclasses.replace(BASE["student"], **epochs)
    _, rec = fit(student, data, seed=STUDENT_SEED, name="baseline (hard labels)")
    record["students"].append(rec)
    save()
    alpha0 = BASE["alpha"]
    for T in TEMPERATURES:
        _, rec = fit(student, data, seed=STUDENT_SEED, name=f"distilled T={T:g} alpha={alpha0:g}",
                     teacher=teacher, T=T, alpha=alpha0)
        record["students"].append(rec)
        save()
    T_best = best([r for r in record["students"] if "T" in r])["T"]
    record["choice"]["T"] = T_best
    for alpha in ALPHAS:
        if alpha == alpha0:
            continue
        _, rec = fit(student, data, seed=STUDENT_SEED, name=f"distilled T={T_best:g} alpha={alpha:g}",
                     teacher=teacher, T=T_best, alpha=alpha)
        record["students"].append(rec)
        save()
    record["choice"]["alpha"] = best([r for r in record["students"] if r.get("T") == T_best])["alpha"]
    return (f"teacher '{chosen}', T={T_best:g}, alpha={record['choice']['alpha']:g}")


def stage_schedule(data, record, save, epochs, after):
    """Stage 4: the teacher chosen in ``after`` (a record of stages 1-3) trained longer, and its distilled student."""
    first = json.loads(Path(after).read_text())
    if not first.get("complete"):
        raise SystemExit(f"{after} is not a complete record of stages 1-3")
    choice = first["choice"]
    previous = next(r for r in first["students"] if r.get("T") == choice["T"] and r.get("alpha") == choice["alpha"])
    record["after"] = {"file": str(after), "choice": choice, "distilled_val_errors": previous["val_errors"],
                       "teacher_val_errors": best(first["teachers"])["val_errors"]}
    student = dataclasses.replace(BASE["student"], **epochs)
    for name, change in SCHEDULES.items():
        recipe = dataclasses.replace(BASE["teacher"], **TEACHERS[choice["teacher"]], **change)
        if epochs:
            recipe = dataclasses.replace(recipe, **epochs)
        teacher, rec = fit(recipe, data, seed=TEACHER_SEED, name=f"teacher: {choice['teacher']}, {name}")
        rec["candidate"] = name
        record["teachers"].append(rec)
        save()
        _, rec = fit(student, data, seed=STUDENT_SEED, name=f"distilled from it, T={choice['T']:g} "
                     f"alpha={choice['alpha']:g}", teacher=teacher, T=choice["T"], alpha=choice["alpha"])
        rec["teacher_schedule"] = name
        record["students"].append(rec)
        save()
    winner = best(record["students"])
    longer = winner["val_errors"] < previous["val_errors"]
    record["choice"]["teacher_schedule"] = winner["teacher_schedule"] if longer else "8 epochs, lr decay 0.7 (MNIST's)"
    return f"teacher schedule '{record['choice']['teacher_schedule']}'"


def stage_seeds(data, record, save, epochs):
    """Stage 5: the preset's teacher for each of the CLI's seeds 0-2, and the students under each schedule.

    What the preset must deliver is a distilled student better than the
    baseline for every seed, so the schedule kept is the one whose *smallest*
    margin (baseline minus distilled validation errors, over the seeds) is
    largest; on a tie, the first listed (the preset's, then the shorter).
    """
    preset = QUICK_BEFORE
    T, alpha = preset["T"], preset["alpha"]
    record["base"] = "QUICK_BEFORE (FASHION_PRESETS['quick'] of 2026-12-02)"
    margins = {name: [] for name in STUDENT_SCHEDULES}
    for seed in SEEDS:
        teacher, rec = fit(dataclasses.replace(preset["teacher"], **epochs), data, seed=seed,
                           name=f"teacher, seed {seed}")
        record["teachers"].append(rec)
        save()
        for name, change in STUDENT_SCHEDULES.items():
            recipe = dataclasses.replace(preset["student"], **{**change, **epochs})
            errors = {}
            for role, kw in (("baseline", {}), ("distilled", dict(teacher=teacher, T=T, alpha=alpha))):
                _, rec = fit(recipe, data, seed=seed + 1, name=f"{role}, seed {seed + 1}, {name}", **kw)
                rec.update(schedule=name, role=role)
                record["students"].append(rec)
                errors[role] = rec["val_errors"]
                save()
            margins[name].append(errors["baseline"] - errors["distilled"])
    record["margins"] = margins
    chosen = max(STUDENT_SCHEDULES, key=lambda name: min(margins[name]))  # max keeps the first on a tie
    record["choice"] = {"student_schedule": chosen, "student_change": STUDENT_SCHEDULES[chosen]}
    return f"student schedule '{chosen}' (margins per seed: {margins})"


def stage_full_teacher(data, record, save, epochs):
    """Stage 6: the full preset's baseline, the teacher candidates, and the student distilled from the best."""
    preset = FULL_BEFORE
    T, alpha = preset["T"], preset["alpha"]
    record["base"] = "FULL_BEFORE (FASHION_PRESETS['full'] of 2026-12-02)"
    student = dataclasses.replace(preset["student"], **epochs)
    _, rec = fit(student, data, seed=STUDENT_SEED, name="baseline (hard labels)")
    rec["role"] = "baseline"
    record["students"].append(rec)
    save()
    chosen, teacher = choose_teacher(preset["teacher"], FULL_TEACHERS, data, record, save, epochs)
    _, rec = fit(student, data, seed=STUDENT_SEED, name=f"distilled T={T:g} alpha={alpha:g}",
                 teacher=teacher, T=T, alpha=alpha)
    rec.update(role="distilled", teacher=chosen)
    record["students"].append(rec)
    save()
    return f"full teacher '{chosen}'"


def stage_full_jitter(data, record, save, epochs):
    """Stage 7: the jittered teacher, the plain baseline, the distilled grid and, for comparison, a jittered baseline.

    The choice is the (T, alpha) whose distilled student has the fewest
    validation errors.  Whether the teacher beats the baseline is recorded
    too (``record["choice"]["teacher_beats_baseline"]``): without that the
    recipe would not be worth taking.
    """
    student = dataclasses.replace(FULL_BEFORE["student"], **epochs)
    teacher_recipe = dataclasses.replace(FULL_BEFORE["teacher"], **{**FULL_JITTER_TEACHER, **epochs})
    record["base"] = "FULL_BEFORE (FASHION_PRESETS['full'] of 2026-12-02)"
    teacher, rec = fit(teacher_recipe, data, seed=TEACHER_SEED, name="teacher: jitter 1, no dropout, 60 epochs")
    record["teachers"].append(rec)
    save()
    _, rec = fit(student, data, seed=STUDENT_SEED, name="baseline (hard labels)")
    rec["role"] = "baseline"
    record["students"].append(rec)
    save()
    for T, alpha in FULL_GRID:
        _, rec = fit(student, data, seed=STUDENT_SEED, name=f"distilled T={T:g} alpha={alpha:g}",
                     teacher=teacher, T=T, alpha=alpha)
        rec["role"] = "distilled"
        record["students"].append(rec)
        save()
    _, rec = fit(dataclasses.replace(student, jitter=1), data, seed=STUDENT_SEED,
                 name="baseline on jittered images (comparison only)")
    rec["role"] = "baseline, jitter 1"
    record["students"].append(rec)
    save()
    chosen = best([r for r in record["students"] if r["role"] == "distilled"])
    baseline = next(r for r in record["students"] if r["role"] == "baseline")
    record["choice"] = {"T": chosen["T"], "alpha": chosen["alpha"],
                        "teacher_beats_baseline": record["teachers"][0]["val_errors"] < baseline["val_errors"]}
    return f"T={chosen['T']:g}, alpha={chosen['alpha']:g} ({chosen['val_errors']} validation errors)"


def stage_quick_jitter(data, record, save, epochs):
    """Stage 8: the quick preset's teacher candidates of :data:`QUICK_TEACHERS`, over the CLI's seeds 0-2."""
    preset = QUICK_BEFORE
    T, alpha = preset["T"], preset["alpha"]
    record["base"] = "QUICK_BEFORE (FASHION_PRESETS['quick'] of 2026-12-02)"
    student = dataclasses.replace(preset["student"], **epochs)
    margins = {name: [] for name in QUICK_TEACHERS}
    for seed in SEEDS:
        _, rec = fit(student, data, seed=seed + 1, name=f"baseline, seed {seed + 1}")
        rec["role"] = "baseline"
        record["students"].append(rec)
        save()
        baseline = rec["val_errors"]
        for name, change in QUICK_TEACHERS.items():
            teacher, rec = fit(dataclasses.replace(preset["teacher"], **{**change, **epochs}), data, seed=seed,
                               name=f"teacher {name}, seed {seed}")
            rec["candidate"] = name
            record["teachers"].append(rec)
            save()
            _, rec = fit(student, data, seed=seed + 1, name=f"distilled from {name}, seed {seed + 1}",
                         teacher=teacher, T=T, alpha=alpha)
            rec.update(role="distilled", teacher=name)
            record["students"].append(rec)
            save()
            margins[name].append(baseline - rec["val_errors"])
    record["margins"] = margins
    chosen = max(QUICK_TEACHERS, key=lambda name: min(margins[name]))  # max keeps the first (the preset's) on a tie
    record["choice"] = {"teacher": chosen, "teacher_change": QUICK_TEACHERS[chosen]}
    return f"quick teacher '{chosen}' (margins per seed: {margins})"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fashion_val", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage",
                        choices=("choose", "schedule", "seeds", "full-teacher", "full-jitter", "quick-jitter"),
                        default="choose",
                        help="choose: stages 1-3 (teacher, T, alpha); schedule: stage 4, needs --after; seeds: "
                             "stage 5, the students' schedule over seeds 0-2; full-teacher: stage 6, the full "
                             "preset's teacher; full-jitter: stage 7, the full preset's jittered teacher and T, "
                             "alpha; quick-jitter: stage 8, the quick teacher as it is, jittered, and jittered "
                             "over 24 epochs, seeds 0-2")
    parser.add_argument("--after", metavar="JSON", help="the record of stages 1-3, for --stage schedule")
    parser.add_argument("--data-dir", default=None, help="the Fashion-MNIST files (default: nanokd's search order)")
    parser.add_argument("--no-verify", action="store_true", help="skip the checksums (home-made test files)")
    parser.add_argument("--val", type=int, default=10000, help="validation images, the last of the training set")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (for a quick check)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"the JSON record (default: {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        parser.error(f"argument --out: {out} exists; pass --force to overwrite it, or another --out")
    if args.stage == "schedule" and not args.after:
        parser.error("--stage schedule needs --after JSON, the record of stages 1-3")

    ds = nkdata.load("fashion-mnist", args.data_dir, verify=not args.no_verify)
    if not 0 < args.val < len(ds.x_train):
        parser.error(f"argument --val: must be in (0, {len(ds.x_train)}), got {args.val}")
    data = nkdata.split_validation(nkdata.to_float(ds.x_train), ds.y_train, args.val)
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    record = {"what": "Fashion-MNIST recipe chosen on validation errors (first %d training images, last %d "
                      "scored); the test set is not scored" % (len(data[0]), args.val),
              "stage": args.stage,
              "command": "python -m benchmarks.fashion_val " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
              "date": now(), "git_commit": git_commit(), "machine": machine(), "base": "PRESETS['quick'] (MNIST's)",
              "teachers": [], "students": [], "choice": {}, "complete": False}
    save = lambda: write_json_atomic(out, record)
    t_start = time.perf_counter()
    if args.stage == "choose":
        said = stage_choose(data, record, save, epochs)
    elif args.stage == "seeds":
        said = stage_seeds(data, record, save, epochs)
    elif args.stage == "full-teacher":
        said = stage_full_teacher(data, record, save, epochs)
    elif args.stage == "full-jitter":
        said = stage_full_jitter(data, record, save, epochs)
    elif args.stage == "quick-jitter":
        said = stage_quick_jitter(data, record, save, epochs)
    else:
        said = stage_schedule(data, record, save, epochs, args.after)
    record.update(complete=True, wall_seconds=round(time.perf_counter() - t_start, 1),
                  load_average_at_end=[round(v, 2) for v in os.getloadavg()])
    save()
    print(f"\nchosen on the validation split: {said}; wrote {out}")


if __name__ == "__main__":
    main()
