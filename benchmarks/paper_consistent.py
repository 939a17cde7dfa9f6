r"""Consistent teaching on MNIST: the 2x800 student sees jittered images, and its soft targets are the teacher's.

This leaves the paper's setting (section 3 distils on the untranslated
transfer set) to test the lead of Beyer et al. 2022 ("Knowledge
distillation: A good teacher is patient and consistent", arXiv 2106.05237):
teacher and student see the same augmented view, so the student learns the
teacher's function around each image, not only its answers at the image.
:func:`nanokd.trainer.train_model` does this whenever it is given a teacher
and jitter: it looks the teacher's logits of each shifted image up in a table
of all 25 views of every image.

Two rows, each over seeds, each trained on the first 55,000 training images
with the last 5,000 held out for validation (its errors are logged every
epoch; the test set is used once per model, at the end)::

    python -m benchmarks.paper_consistent baseline --seeds 1 2 3            # hard labels, jittered images
    python -m benchmarks.paper_consistent distilled --teacher a.npz [b.npz ...] --seeds 4 5 6
    python -m benchmarks.paper_consistent merge --teacher a.npz [b.npz ...]  # both into paper_consistent.json

``baseline`` separates the gain from distillation from the gain from the
augmentation: the same net, the same jittered images, the same schedule, on
the hard labels.  Each role writes its part to ``--runs`` after every seed
(with per-epoch checkpoints there, so an interrupted run resumes), and
``merge`` writes the record ``benchmarks/results/paper_consistent.json``.
"""

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from benchmarks.common import command_line, git_commit, machine, now
from nanokd import data as nkdata
from nanokd.atomic import write_json_atomic
from nanokd.mlp import MLP
from nanokd.presets import PRESETS, build
from nanokd.teacher import evaluate_errors
from nanokd.trainer import train_model

REPO = Path(__file__).resolve().parents[1]
STARTED_AT = git_commit()  # the commit of the code this process runs (HEAD may move while it trains)
ROLES = {"baseline": "baseline_jitter", "distilled": "distilled_consistent"}


def recipe(args):
    """The paper preset's 2x800 student with jittered inputs and this run's schedule."""
    return dataclasses.replace(PRESETS["paper"]["student"], epochs=args.epochs, lr=args.lr, lr_decay=args.lr_decay,
                               jitter=args.jitter)


def run_role(args):
    """Train one role for every seed; its part of the record is rewritten after each seed."""
    ds = nkdata.load("mnist", args.data_dir)
    x, y, x_val, y_val = nkdata.split_validation(nkdata.to_float(ds.x_train), ds.y_train, args.val)
    x_test, y_test = nkdata.to_float(ds.x_test), ds.y_test
    teacher = [MLP.load(path) for path in args.teacher] if args.role == "distilled" else None
    runs = Path(args.runs)
    part_path = runs / f"{args.role}.json"
    part = json.loads(part_path.read_text()) if part_path.is_file() else {"seeds": {}}
    r = recipe(args)
    for seed in args.seeds:
        if str(seed) in part["seeds"]:
            print(f"{args.role} seed {seed}: done already ({part['seeds'][str(seed)]['test_errors']} test errors)")
            continue
        model, config = build(r, seed=seed, T=args.T, alpha=args.alpha)
        t0 = time.perf_counter()
        history = train_model(model, x, y, config, teacher=teacher, x_val=x_val, y_val=y_val,
                              checkpoint_path=runs / f"{args.role}_seed{seed}.ckpt.npz", resume=True,
                              progress=False, name=f"{args.role}{seed}")
        model.save(runs / f"{args.role}_seed{seed}.npz")
        part["seeds"][str(seed)] = {
            "test_errors": evaluate_errors(model, x_test, y_test),  # the test set, once, at the end
            "val_errors": history["val_errors"], "loss": history["loss"],
            "seconds": round(history["total_seconds"], 1), "setup_seconds": round(history["setup_seconds"], 1),
            "process_seconds": round(time.perf_counter() - t0, 1)}
        part.update(recipe=dataclasses.asdict(r), T=args.T if teacher else None,
                    alpha=args.alpha if teacher else None, git_commit=STARTED_AT, machine=machine(),
                    command=command_line("benchmarks.paper_consistent"), date=now())
        write_json_atomic(part_path, part)
        print(f"{args.role} seed {seed}: {part['seeds'][str(seed)]['test_errors']} test errors, "
              f"val {history['val_errors'][-1]}", flush=True)


def merge(args):
    """The record: the teacher, and each role's test errors per seed with its settings and times."""
    ds = nkdata.load("mnist", args.data_dir)
    x_test = nkdata.to_float(ds.x_test)
    members = [MLP.load(path) for path in args.teacher]
    models = {"teacher": {"test_errors": [evaluate_errors(members, x_test, ds.y_test)],
                          "members_test_errors": [evaluate_errors(m, x_test, ds.y_test) for m in members],
                          "files": [os.path.abspath(p) for p in args.teacher],
                          "hidden": [m.sizes[1:-1] for m in members],
                          "ensemble": len(members)}}
    for role, key in ROLES.items():
        path = Path(args.runs) / f"{role}.json"
        if not path.is_file():
            continue
        part = json.loads(path.read_text())
        seeds = sorted(part["seeds"], key=int)
        models[key] = {
            "seeds": [int(s) for s in seeds],
            "test_errors": [part["seeds"][s]["test_errors"] for s in seeds],
            "val_errors": [part["seeds"][s]["val_errors"][-1] for s in seeds],
            "val_errors_per_epoch": {s: part["seeds"][s]["val_errors"] for s in seeds},
            "seconds": [part["seeds"][s]["seconds"] for s in seeds],
            "settings": {"recipe": part["recipe"], "T": part["T"], "alpha": part["alpha"]},
            "git_commit": part["git_commit"], "command": part["command"], "date": part["date"],
            "machine": part["machine"]}
    rec = {"experiment": "consistent", "leaves_the_paper_setting": "jittered transfer set, teacher logits of the "
           "same jittered images (the paper distils on the untranslated set)", "date": now(),
           "command": command_line("benchmarks.paper_consistent"), "git_commit": STARTED_AT,
           "data": {"train": 60000 - args.val, "val": args.val, "test": 10000}, "models": models}
    write_json_atomic(args.out, rec)
    for key, m in models.items():
        print(f"{key:22s} test errors {m['test_errors']}")
    print(f"wrote {args.out}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_consistent", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=("baseline", "distilled", "merge"))
    parser.add_argument("--teacher", nargs="+", metavar="PATH",
                        help="teacher.npz files (distilled, merge); several form an ensemble (mean of their "
                             "tempered probabilities)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--lr-decay", type=float, default=0.97)
    parser.add_argument("--jitter", type=int, default=2)
    parser.add_argument("--T", type=float, default=20.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs", default="runs/consistent", help="folder for checkpoints, models and parts")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "paper_consistent.json"))
    args = parser.parse_args(argv)
    if args.role in ("distilled", "merge") and not args.teacher:
        parser.error(f"{args.role} needs --teacher PATH")
    for path in args.teacher or ():
        if not os.path.isfile(path):
            parser.error(f"argument --teacher: no such file: {path}")
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    merge(args) if args.role == "merge" else run_role(args)


if __name__ == "__main__":
    main()
