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
    python -m benchmarks.paper_consistent teachers --teacher a.npz b.npz c.npz ...  # the ensemble, on validation
    python -m benchmarks.paper_consistent omit3 --teacher a.npz [b.npz ...] --seeds 1 2 3   # then merge
    python -m benchmarks.paper_consistent only78 --teacher a.npz [b.npz ...] --seeds 1 2 3

``baseline`` separates the gain from distillation from the gain from the
augmentation: the same net, the same jittered images, the same schedule, on
the hard labels.  Each role writes its part to ``--runs`` after every seed
(with per-epoch checkpoints there, so an interrupted run resumes), and
``merge`` writes the record ``benchmarks/results/paper_consistent.json``.

``--elastic A`` bends every training image by an elastic distortion of scale
A pixels (:mod:`nanokd.elastic`; Simard et al.'s 34) after its jitter: nets
of another kind for the teacher's ensemble (``baseline --elastic 34``), and
students whose soft targets are the teacher's logits of the bent images,
computed per batch (``distilled --elastic 34``).  Their entries in the record
are ``baseline_elastic`` and ``*_consistent_elastic``.

``teachers`` helps choose the teacher on validation: it prints the
validation errors of each net and of the ensembles of the first k nets (it
reads no test label).

``omit3`` and ``only78`` are section 3's transfer experiments with consistent
teaching: the student's transfer set lacks every 3 (omit3) or holds only the
7s and 8s (only78) of the first 55,000 images, it is jittered and taught by the
teacher's logits of each shifted view, and afterwards the biases of the
missing classes are shifted by the amount that minimises the validation
errors (:func:`benchmarks.paper_experiments.choose_shift`, the grid of
``paper_mnist``).  The learning rate decays by ``--lr-decay`` per 55,000
images seen, so a smaller transfer set anneals at the same pace per update.
"""

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import command_line, git_commit, machine, now
from benchmarks.paper_experiments import choose_shift, shifted_errors
from benchmarks.paper_report import PAPER
from nanokd import data as nkdata
from nanokd.atomic import write_json_atomic
from nanokd.backend import resolve_device, to_numpy
from nanokd.mlp import MLP
from nanokd.presets import PRESETS, build
from nanokd.teacher import compute_teacher_logits, evaluate_errors
from nanokd.trainer import train_model

REPO = Path(__file__).resolve().parents[1]
STARTED_AT = git_commit()  # the commit of the code this process runs (HEAD may move while it trains)
ROLES = {"baseline": "baseline_jitter", "distilled": "distilled_consistent", "omit3": "omit3_consistent",
         "only78": "only78_consistent"}
TEACHER_ROLES = ("distilled", "omit3", "only78")
# the transfer experiments: the classes whose biases move afterwards, and which way (omit3 raises the 3's bias,
# only78 lowers those of 7 and 8, the only classes the student saw)
TRANSFER = {"omit3": ((3,), +1), "only78": ((7, 8), -1)}
EPOCHS = {"only78": 150}  # only78's 11,000 images: paper_mnist's schedule of that set; the rest 100
SHIFT_GRID = np.arange(0, 20 + 1e-9, 0.25)  # paper_mnist's --shift-max / --shift-step defaults


def recipe(args, n_images, n_fit):
    """The paper preset's 2x800 student with jittered inputs and this run's schedule.

    The per-epoch lr decay is ``--lr-decay ** (n_images / n_fit)``: the flag's
    factor per pass over the n_fit (55,000) fitting images, so a smaller
    transfer set anneals at the same pace per update (for the full set it is
    the flag's value itself).
    """
    epochs = args.epochs or EPOCHS.get(args.role, 100)
    return dataclasses.replace(PRESETS["paper"]["student"], hidden=tuple(args.hidden), epochs=epochs, lr=args.lr,
                               lr_decay=args.lr_decay ** (n_images / n_fit), jitter=args.jitter,
                               elastic=args.elastic)


def part_settings(part):
    """A part's recipe, T and alpha, as this version records them (parts written before ``elastic`` existed
    trained without it)."""
    return {"recipe": {**part.get("recipe", {}), "elastic": part.get("recipe", {}).get("elastic", 0.0)},
            "T": part.get("T"), "alpha": part.get("alpha")}


def model_key(role, recipe):
    """The role's name in the record's ``models``: ROLES[role], ``*_untranslated`` for a distilled control on the
    paper's untranslated transfer set (no jitter, no distortions), ``baseline_elastic`` and ``*_consistent_elastic``
    for runs on elastically distorted images."""
    if recipe.get("elastic"):
        return "baseline_elastic" if role == "baseline" else ROLES[role] + "_elastic"
    if role in TEACHER_ROLES and not recipe["jitter"]:
        return ROLES[role].replace("_consistent", "_untranslated")
    return ROLES[role]


def transfer_rows(role, y):
    """The rows of the fitting images that form ``role``'s transfer set (None: all of them)."""
    if role == "omit3":
        return np.flatnonzero(y != 3)
    if role == "only78":
        return np.flatnonzero((y == 7) | (y == 8))
    return None


def bias_shift(role, model, x_val, y_val, x_test, y_test):
    """Choose the bias shift of the transfer experiment's classes on validation; test errors before and after."""
    classes, sign = TRANSFER[role]
    # any model's logits (float32), on the host for the shifts
    z_val, z_test = (to_numpy(compute_teacher_logits(model, x)) for x in (x_val, x_test))
    shift, val_curve = choose_shift(z_val, y_val, classes, SHIFT_GRID, sign)
    before, per_class_before = shifted_errors(z_test, y_test, classes, 0.0)
    after, per_class_after = shifted_errors(z_test, y_test, classes, sign * shift)
    at_paper, _ = shifted_errors(z_test, y_test, classes, sign * PAPER[role]["shift"])
    return {"test_errors": before, "test_errors_after": after, "test_errors_paper_shift": at_paper, "shift": shift,
            "val_errors_before_shift": val_curve[0], "val_errors_after_shift": min(val_curve),
            "errors_per_class": {"before": per_class_before, "after": per_class_after}}


def run_role(args):
    """Train one role for every seed; its part of the record is rewritten after each seed."""
    ds, (x, y, x_val, y_val) = validation_split(args)
    n_fit = len(x)  # the schedule's unit (see recipe), also under --limit
    x, y = x[:args.limit], y[:args.limit]  # --limit: the first N fitting images (a quick look; tests)
    rows = transfer_rows(args.role, y)
    if rows is not None:
        x, y = x[rows], y[rows]
    x_test, y_test = nkdata.to_float(ds.x_test), ds.y_test
    teacher = [MLP.load(path, device=args.device) for path in args.teacher] if args.role in TEACHER_ROLES else None
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    part_path = runs / f"{args.role}.json"
    part = json.loads(part_path.read_text()) if part_path.is_file() else {"seeds": {}}
    r = recipe(args, len(x), n_fit)
    settings = {"recipe": json.loads(json.dumps(dataclasses.asdict(r))), "T": args.T if teacher else None,
                "alpha": args.alpha if teacher else None}
    if part["seeds"] and part_settings(part) != settings:  # its seeds would pass as this run's
        raise SystemExit(f"{part_path} holds {args.role} runs of other settings (recipe, T or alpha): "
                         f"use another --runs folder")
    for seed in args.seeds:
        if str(seed) in part["seeds"]:
            print(f"{args.role} seed {seed}: done already ({part['seeds'][str(seed)]['test_errors']} test errors)")
            continue
        model, config = build(r, seed=seed, device=args.device, T=args.T, alpha=args.alpha)
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
        if args.role in TRANSFER:
            shifted = bias_shift(args.role, model, x_val, y_val, x_test, y_test)
            assert shifted["test_errors"] == part["seeds"][str(seed)]["test_errors"]
            part["seeds"][str(seed)].update(shifted)
        part.update(settings, transfer_set_size=len(x), git_commit=STARTED_AT, machine=machine(),
                    command=command_line("benchmarks.paper_consistent"), date=now())
        write_json_atomic(part_path, part)
        done = part["seeds"][str(seed)]
        after = f", {done['test_errors_after']} after a shift of {done['shift']:g}" if args.role in TRANSFER else ""
        print(f"{args.role} seed {seed}: {done['test_errors']} test errors{after}, val {history['val_errors'][-1]}",
              flush=True)


def read_parts(paths):
    """The parts (``<role>.json``) by their entry in the record (:func:`model_key`), the seeds of several parts
    of one entry pooled; each keeps its ``role``.

    Parts of one entry may come from several ``--runs`` folders (runs side by
    side, one process each); their recipe, T and alpha must agree, and their
    commits, commands, dates and machines are kept as lists.  Parts of one
    role but other entries (elastic or not; jittered or not) stay apart.
    """
    pooled = {}
    for path in paths:
        role = Path(path).stem
        if role not in ROLES:
            raise SystemExit(f"{path}: a part is named <role>.json, role one of {', '.join(ROLES)}")
        part = json.loads(Path(path).read_text())
        part.update(part_settings(part))
        key = model_key(role, part["recipe"])
        if key not in pooled:
            pooled[key] = dict(part, role=role, seeds={}, sources=[])
        first = pooled[key]
        for k in ("recipe", "T", "alpha"):
            if part.get(k) != first.get(k):
                raise SystemExit(f"{path}: its {k} ({part.get(k)}) differs from an earlier {role} part's "
                                 f"({first.get(k)})")
        overlap = set(part["seeds"]) & set(first["seeds"])
        if overlap:
            raise SystemExit(f"{path}: seeds {sorted(overlap, key=int)} are in an earlier {role} part too")
        first["seeds"].update(part["seeds"])
        first["sources"].append({k: part.get(k) for k in ("git_commit", "command", "date", "machine")})
    return pooled


def validation_split(args):
    """The first 55,000 training images for fitting, the last ``--val`` (5,000) for validation, as float32."""
    ds = nkdata.load("mnist", args.data_dir, verify=not args.no_verify)
    return ds, nkdata.split_validation(nkdata.to_float(ds.x_train), ds.y_train, args.val)


def teachers(args):
    """Validation errors of each --teacher net and of the ensembles of the first k of them (k = 2 .. n)."""
    _, (_, _, x_val, y_val) = validation_split(args)
    members = [MLP.load(path, device=args.device) for path in args.teacher]
    rec = {"files": [os.path.abspath(p) for p in args.teacher], "hidden": [m.sizes[1:-1] for m in members],
           "members_val_errors": [evaluate_errors(m, x_val, y_val) for m in members],
           "ensemble_val_errors": {k: evaluate_errors(members[:k], x_val, y_val) for k in range(2, len(members) + 1)}}
    for path, errors in zip(args.teacher, rec["members_val_errors"]):
        print(f"{errors:5d} validation errors  {path}")
    for k, errors in rec["ensemble_val_errors"].items():
        print(f"{errors:5d} validation errors  the ensemble of the first {k}")
    if args.plus:  # which one net more helps: the ensemble of all of them with each --plus net
        rec["plus_val_errors"] = {}
        for path in args.plus:
            extra = MLP.load(path, device=args.device)
            errors = rec["plus_val_errors"][os.path.abspath(path)] = evaluate_errors([*members, extra], x_val, y_val)
            print(f"{errors:5d} validation errors  all {len(members)}, and {path}")
    if args.json:
        rec.update(val=args.val, command=command_line("benchmarks.paper_consistent"), git_commit=STARTED_AT,
                   date=now())
        write_json_atomic(args.json, rec)
        print(f"wrote {args.json}")


def merge(args):
    """The record: the teacher, and each role's test errors per seed with its settings and times."""
    ds, (_, _, x_val, y_val) = validation_split(args)
    x_test = nkdata.to_float(ds.x_test)
    members = [MLP.load(path, device=args.device) for path in args.teacher]
    models = {"teacher": {"test_errors": [evaluate_errors(members, x_test, ds.y_test)],
                          "members_test_errors": [evaluate_errors(m, x_test, ds.y_test) for m in members],
                          "val_errors": [evaluate_errors(members, x_val, y_val)],
                          "members_val_errors": [evaluate_errors(m, x_val, y_val) for m in members],
                          "files": [os.path.abspath(p) for p in args.teacher],
                          "hidden": [m.sizes[1:-1] for m in members],
                          "ensemble": len(members)}}
    paths = args.parts or [p for role in ROLES if (p := Path(args.runs) / f"{role}.json").is_file()]
    for key, part in read_parts(paths).items():
        role = part["role"]
        seeds = sorted(part["seeds"], key=int)
        sources = part["sources"]
        entry = {
            "seeds": [int(s) for s in seeds],
            "test_errors": [part["seeds"][s]["test_errors"] for s in seeds],
            "val_errors": [part["seeds"][s]["val_errors"][-1] for s in seeds],
            "val_errors_per_epoch": {s: part["seeds"][s]["val_errors"] for s in seeds},
            "seconds": [part["seeds"][s]["seconds"] for s in seeds],
            "settings": {"recipe": part["recipe"], "T": part["T"], "alpha": part["alpha"]},
            "transfer_set_size": part.get("transfer_set_size")}
        for k in ("git_commit", "command", "date", "machine"):  # one value, or a list where the parts differ
            values = [src[k] for src in sources]
            entry[k] = values[0] if all(v == values[0] for v in values) else values
        if role in TRANSFER:
            for k in ("test_errors_after", "test_errors_paper_shift", "shift", "val_errors_after_shift",
                      "errors_per_class"):
                entry[k] = [part["seeds"][s][k] for s in seeds]
            entry["paper"] = PAPER[role]
        models[key] = entry
    rec = {"experiment": "consistent", "leaves_the_paper_setting": "*_consistent and baseline_jitter: jittered "
           "transfer set, teacher logits of the same jittered images (the paper distils on the untranslated set); "
           "*_untranslated: controls on the untranslated set; *_elastic: on elastically distorted images too", "date": now(),
           "command": command_line("benchmarks.paper_consistent"), "git_commit": STARTED_AT,
           "data": {"train": len(ds.y_train) - args.val, "val": args.val, "test": len(ds.y_test)}, "models": models}
    write_json_atomic(args.out, rec)
    for key, m in models.items():
        after = f", after the bias shift {m['test_errors_after']}" if "test_errors_after" in m else ""
        print(f"{key:22s} test errors {m['test_errors']}{after}")
    print(f"wrote {args.out}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_consistent", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=(*ROLES, "teachers", "merge"))
    parser.add_argument("--teacher", nargs="+", metavar="PATH",
                        help="teacher.npz files (distilled, omit3, only78, teachers, merge); several form an ensemble "
                             "(mean of their tempered probabilities)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=None, help="default: 150 for only78, else 100")
    parser.add_argument("--hidden", type=int, nargs="+", default=[800, 800], help="the student's hidden layers")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on only the first N of the 55,000 fitting images (a quick look)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--lr-decay", type=float, default=0.97)
    parser.add_argument("--jitter", type=int, default=2)
    parser.add_argument("--elastic", type=float, default=0.0, metavar="A",
                        help="also bend the images by elastic distortions of scale A pixels (nanokd.elastic; "
                             "Simard et al.'s 34), after the jitter; 0: off")
    parser.add_argument("--T", type=float, default=20.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-verify", action="store_true", help="skip the checksums (for home-made test data)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--runs", default="runs/consistent", help="folder for checkpoints, models and parts")
    parser.add_argument("--parts", nargs="+", metavar="ROLE.json",
                        help="(merge) the parts to merge, from any folders (default: those in --runs)")
    parser.add_argument("--plus", nargs="+", metavar="PATH",
                        help="(teachers) also the ensemble of all --teacher nets with each of these nets, one at a "
                             "time")
    parser.add_argument("--json", metavar="PATH", help="(teachers) also write what it prints to this JSON record")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "paper_consistent.json"))
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    if (args.role in (*TEACHER_ROLES, "teachers", "merge")) and not args.teacher:
        parser.error(f"{args.role} needs --teacher PATH")
    for flag in ("epochs", "limit"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"argument --{flag}: must be >= 1, got {getattr(args, flag)}")
    if not (0 <= args.elastic < float("inf")):
        parser.error(f"argument --elastic: must be a number >= 0, got {args.elastic}")
    for path in [*(args.teacher or ()), *(args.plus or ())]:
        if not os.path.isfile(path):
            parser.error(f"argument {'--plus' if path in (args.plus or ()) else '--teacher'}: no such file: {path}")
    {"merge": merge, "teachers": teachers}.get(args.role, run_role)(args)


if __name__ == "__main__":
    main()
