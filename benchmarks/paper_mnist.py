r"""The MNIST experiments of section 3 of Hinton, Vinyals & Dean (2015), arXiv 1503.02531.

One subcommand per experiment; each writes a JSON record and prints the paper's
figure beside ours (run from the repository root)::

    python -m benchmarks.paper_mnist teacher   # only train the teacher (save it with --save-teacher)
    python -m benchmarks.paper_mnist table     # teacher, baseline 2x800, distilled 2x800 at T = 20
    python -m benchmarks.paper_mnist sweep     # 300- and 30-unit students over T = 1 .. 20
    python -m benchmarks.paper_mnist omit3     # transfer set without any 3, then a class-3 bias shift
    python -m benchmarks.paper_mnist only78    # transfer set of 7s and 8s only, then lowered 7/8 biases
    python -m benchmarks.paper_mnist consistent  # leaves the paper: consistent teaching (benchmarks.paper_consistent)
    python -m benchmarks.paper_mnist all       # all five, the four of the paper sharing one teacher
    python -m benchmarks.paper_mnist report    # markdown tables of the records in --out (trains nothing)

Every subcommand that needs a teacher trains it (the paper's recipe, see
:func:`benchmarks.paper_experiments.teacher_recipe`) or loads it with
``--teacher PATH`` (a ``teacher.npz`` saved by ``--save-teacher``, e.g. by a
run on a GPU).  ``all`` gets the teacher once and computes its logits for the
60,000 training images once; every student's soft targets are rows of that
one array.  ``consistent`` leaves the paper's setting and brings its own
teacher, an ensemble of nets trained on jittered and elastically distorted
images (:func:`benchmarks.paper_experiments.run_consistent`).

This module is the command line (flags, their checks, ``main``); the
experiments are in :mod:`benchmarks.paper_experiments` (which also says what
uses which data: validation split, test set), what they print and write in
:mod:`benchmarks.paper_report`.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, RESULTS
from benchmarks.paper_experiments import EXPERIMENT_FNS, EXPERIMENTS, SWEEP_T, Context, run_all, run_teacher_only
from benchmarks.paper_report import report
from nanokd import data as nkdata
from nanokd.backend import resolve_device
from nanokd.presets import PRESETS

TEACHER, STUDENT = PRESETS["paper"]["teacher"], PRESETS["paper"]["student"]  # the flags' defaults


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.paper_mnist", description=__doc__.split("\n\n")[0],
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
    s.add_argument("--consistent-members", type=int, default=4,
                   help="consistent: nets of the students' shape on jittered images bent by elastic distortions, "
                        "in the teaching ensemble (4, with one jittered net: what validation chose, RESULTS.md)")
    s.add_argument("--consistent-elastic", type=float, default=34.0,
                   help="consistent: the scale of those nets' elastic distortions, in pixels (Simard et al.'s 34)")
    s.add_argument("--consistent-jittered", type=int, default=1,
                   help="consistent: nets on jittered images only, also in the ensemble")
    s.add_argument("--consistent-student-elastic", type=float, default=0.0,
                   help="consistent: elastic distortions of the students' images too (0: jittered only; the soft "
                        "targets are then looked up, not computed per batch)")
    s.add_argument("--consistent-epochs", type=int, default=100, help="consistent: epochs of members and students")
    s.add_argument("--consistent-T", type=float, default=8.0,
                   help="consistent: the students' temperature (8: chosen on validation, RESULTS.md)")
    s.add_argument("--consistent-runs", default=str(REPO / "runs" / "paper_mnist" / "consistent"),
                   help="consistent: folder of its nets, checkpoints and parts (an interrupted run resumes there)")
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
    need(args.consistent_T > 0, "--consistent-T", "> 0", args.consistent_T)
    for flag in ("consistent_elastic", "consistent_student_elastic"):
        need(0 <= getattr(args, flag) < float("inf"), "--" + flag.replace("_", "-"), ">= 0", getattr(args, flag))
    need(args.consistent_members >= 0, "--consistent-members", ">= 0", args.consistent_members)
    need(args.consistent_jittered >= 0, "--consistent-jittered", ">= 0", args.consistent_jittered)
    need(args.consistent_members + args.consistent_jittered >= 1, "--consistent-members",
         ">= 1 when --consistent-jittered is 0", args.consistent_members)
    need(0 <= args.alpha <= 1, "--alpha", "in [0, 1]", args.alpha)
    need(args.hard_alpha <= 1, "--hard-alpha", "in [0, 1] (or negative: skip that student)", args.hard_alpha)
    need(all(T > 0 for T in args.sweep_T) and len(set(args.sweep_T)) == len(args.sweep_T), "--sweep-T",
         "distinct temperatures > 0", args.sweep_T)
    for flag in ("teacher_epochs", "student_epochs", "sweep_epochs_300", "sweep_epochs_30", "omit3_epochs",
                 "only78_epochs", "jobs", "consistent_epochs"):
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
    fn = {"teacher": run_teacher_only, "all": run_all, **EXPERIMENT_FNS}[args.experiment]
    fn(ctx)
    print(f"paper_mnist {args.experiment}: {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
