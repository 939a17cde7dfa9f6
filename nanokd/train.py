r"""The command line ``python -m nanokd.train``: flags in, one run of the experiment out.

    python -m nanokd.train                     # the quick preset: all three roles, then a table
    python -m nanokd.train --preset paper      # the paper's nets and recipe (meant for a GPU)
    python -m nanokd.train --role distill --teacher runs/a/teacher.npz runs/b/teacher.npz
    python -m nanokd.train --dataset fashion-mnist            # Fashion-MNIST's own quick preset
    python -m nanokd.train --dataset custom --data-dir DIR    # any four IDX files named as MNIST's

This module holds only the command line: the flags (one per field of a
:class:`~nanokd.presets.Recipe`, per role), their checks, and :func:`main`.
``--dataset`` picks the table of presets (:data:`~nanokd.presets.DATASET_PRESETS`)
that ``--preset`` chooses from and ``--help`` shows.
What a run does is :func:`nanokd.experiment.run`; the loop it trains with is
:func:`nanokd.trainer.train_model`; the rules every flag's value must follow
are :mod:`nanokd.settings` (config.json is checked by the same rules on
``--resume``).  The names that used to live here are still importable from here.

Errors (:mod:`nanokd.errors`): a mistake ends in a message of a line or two
that names the flag, key or file, without a traceback (``--debug`` or
``NANOKD_DEBUG=1`` shows it); the exit status is 2 for a usage error (a flag,
or a key of the resumed config.json), 1 for a runtime error (a file, folder,
device, the memory, or a diverged run), 130 for Ctrl-C.
"""

import argparse
import dataclasses
import json
import os
import sys
import textwrap
import time
import traceback
from pathlib import Path

from . import data as nkdata
from .backend import DEVICES
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .errors import RunError
from .experiment import FILES, ROLES, FlagError, format_table, run
from .presets import DATASET_PRESETS, DEFAULT_PRESET, PRESETS, Recipe, presets_for
from .settings import RECIPE_RULES, RULES, with_defaults
from .teacher import compute_teacher_logits, ensemble_logits, evaluate_errors
from .trainer import TrainConfig, epoch_seeds, train_model

__all__ = ["build_parser", "dataset_from_argv", "main", "settings_from_args",
           # moved to their own modules, and still importable from here:
           "FILES", "PRESETS", "ROLES", "FlagError", "Recipe", "TrainConfig", "compute_teacher_logits",
           "ensemble_logits", "epoch_seeds", "evaluate_errors", "format_table", "load_checkpoint", "run",
           "save_checkpoint", "train_model"]


def _typed(rule):
    """An argparse type for a :class:`nanokd.settings.Rule`: the same check as config.json's on --resume."""
    def parse(text):
        try:
            value = rule.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {rule.what}") from None
        if not rule.accepts(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {rule.what}")
        return value
    parse.__name__ = rule.what  # argparse names the type in some messages
    return parse


#: field -> (argparse keywords, help).  Each becomes --FIELD, --teacher-FIELD and --student-FIELD, and its type
#: checks the rule of :data:`nanokd.settings.RECIPE_RULES`.
RECIPE_FLAGS = {
    "hidden": (dict(nargs="+", metavar="N"), "hidden layer widths, e.g. --hidden 1200 1200"),
    "epochs": (dict(metavar="N"), "passes over the training set"),
    "batch_size": (dict(metavar="N"), "examples per SGD step"),
    "lr": (dict(metavar="LR"), "learning rate of the first epoch"),
    "lr_decay": (dict(metavar="G"), "multiply the learning rate by G after every epoch"),
    "momentum": (dict(metavar="M"), "SGD momentum (after the ramp)"),
    "momentum_start": (dict(metavar="M"), "momentum of the first epoch, when ramping"),
    "momentum_ramp": (dict(metavar="N"),
                      "ramp momentum linearly from --momentum-start to --momentum over N epochs (0: no ramp)"),
    "dropout_input": (dict(metavar="P"), "drop probability of each input pixel"),
    "dropout_hidden": (dict(metavar="P"), "drop probability of each hidden unit"),
    "max_norm": (dict(metavar="C"),
                 "max-norm radius of each hidden unit's incoming weight vector (0: off)"),
    "jitter": (dict(metavar="PX"),
               "translate each training image by up to PX pixels, new shifts every epoch (0: off; at most 27); for the "
               "distilled student this augments the transfer set, and the soft targets are recomputed per batch"),
    "elastic": (dict(metavar="A"),
                "bend each training image by an elastic distortion of scale A pixels (Simard et al. 2003; 34 for "
                "28 x 28 digits, smoothing sigma 4), new every epoch, after the jitter (0: off); for the distilled "
                "student the soft targets are the teacher's logits of the bent images, computed per batch"),
    "weight_decay": (dict(metavar="L"),
                     "L2 weight decay: SGD adds L * w to the gradient of every weight and bias (0: off)"),
}


def _flag(field, role=None):
    return "--" + (f"{role}-" if role else "") + field.replace("_", "-")


def _fmt_value(v):
    return " ".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)


def _preset_table(dataset="mnist"):
    """The defaults of the training flags for ``dataset``, one column per preset and role (for --help)."""
    table = presets_for(dataset)
    cols = [(p, r) for p in table for r in ("teacher", "student")]
    lines = [f"defaults of the training flags for --dataset {dataset}, per --preset and role",
             "(each data set has its own table: --dataset NAME --help):",
             "  " + " " * 18 + "".join(f"{p:>13}" for p, _ in cols),  # heading: the preset over its role
             "  " + " " * 18 + "".join(f"{r:>13}" for _, r in cols)]
    for field in RECIPE_FLAGS:
        cells = [_fmt_value(getattr(table[p][r], field)) for p, r in cols]
        lines.append(f"  {_flag(field):18s}" + "".join(f"{c:>13}" for c in cells))
    for key in ("T", "alpha"):  # distilled student only: one value per preset, in its student column
        lines.append(f"  --{key:16s}" + "".join(f"{table[p][key]:>13g}" if r == "student" else " " * 13
                                               for p, r in cols))
    lines.append("")
    lines += [textwrap.fill(f"{p}: {table[p]['about']}", 100, initial_indent="  ", subsequent_indent="    ")
              for p in table]
    return "\n".join(lines)


def dataset_from_argv(argv=None):
    """The ``--dataset`` among the arguments (default mnist), read before the parser is built.

    The parser's ``--preset`` choices and its ``--help`` table depend on the
    data set; an unknown name gives mnist here and is reported by the parser.
    """
    peek = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    peek.add_argument("--dataset", default="mnist")
    args, _ = peek.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args.dataset if args.dataset in DATASET_PRESETS else "mnist"


def build_parser(dataset="mnist"):
    """The parser of ``python -m nanokd.train``, with ``dataset``'s presets (its --preset choices and --help table)."""
    table = presets_for(dataset)
    parser = argparse.ArgumentParser(
        prog="python -m nanokd.train",
        description=textwrap.fill(
            "Knowledge distillation on MNIST, Fashion-MNIST or your own IDX data (Hinton, Vinyals & Dean 2015, "
            "section 3): train a teacher, a baseline student on the hard labels, and the same student distilled "
            "from the teacher's soft targets at temperature T; then print their test errors side by side, and "
            "write the learning curves (curves.json, and curves.png with matplotlib).", 100),
        epilog=_preset_table(dataset) + "\n\nexamples:\n"
               "  python -m nanokd.train                                # quick preset, all three roles\n"
               "  python -m nanokd.train --preset paper --device cuda\n"
               "  python -m nanokd.train --role distill --teacher runs/A/teacher.npz runs/B/teacher.npz --T 8\n"
               "  python -m nanokd.train --dataset fashion-mnist --preset full\n"
               "  python -m nanokd.train --dataset custom --data-dir ~/data/kmnist  # four IDX files named as MNIST's\n"
               "  python -m nanokd.train --train-subset 1800 --T 10 --alpha 0.7 --student-epochs 60 \\\n"
               "                         --student-lr-decay 0.95     # students on 3 % of the images (section 6)\n"
               "  python -m nanokd.train --resume runs/20250101-120000  # continue an interrupted run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    run = parser.add_argument_group("what to run")
    run.add_argument("--role", choices=ROLES, default=None,
                     help="all: teacher, then baseline student, then distilled student (default); or one of them "
                          "alone (distill needs --teacher)")
    run.add_argument("--preset", choices=tuple(table), default=None,
                     help=f"the defaults of the training flags for the --dataset, see the table below "
                          f"(default: {DEFAULT_PRESET})")
    run.add_argument("--teacher", nargs="+", metavar="PATH", default=None,
                     help="distil from these saved teachers (teacher.npz of earlier runs) instead of training one; "
                          "several form an ensemble whose soft targets are the mean of their tempered probabilities")
    run.add_argument("--T", type=_typed(RULES["T"]), default=None, metavar="T",
                     help="distillation temperature (default: the preset's, see the table)")
    run.add_argument("--alpha", type=_typed(RULES["alpha"]), default=None, metavar="A",
                     help="weight of the soft-target term alpha*T^2*KL(p||q) + (1-alpha)*CE (default: the "
                          "preset's)")
    run.add_argument("--seed", type=_typed(RULES["seed"]), default=None, metavar="S",
                     help="seeds the initial weights, shuffles, dropout and jitter (default: 0)")
    run.add_argument("--device", choices=DEVICES, default=None,
                     help="cuda needs CuPy and a GPU; auto picks cuda when present (default: auto)")
    run.add_argument("--out", metavar="DIR", default=None,
                     help="where models, checkpoints and results.json go (default: runs/<date>-<time>); a folder "
                          "holding an earlier run is refused (see --resume, --overwrite)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the earlier run in --out: its models, checkpoints, config.json and results.json "
                          "are deleted first (other files there are left alone)")
    run.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the interrupted run in DIR from its last checkpoints, with the settings saved "
                          "in DIR/config.json (no other flags but --device, --no-progress and --debug)")
    run.add_argument("--no-progress", action="store_true",
                     help="no progress bars (they are shown only on a terminal anyway)")
    run.add_argument("--debug", action="store_true",
                     help="on an error, show the full traceback as well as the message (or set NANOKD_DEBUG=1)")

    d = parser.add_argument_group("data")
    d.add_argument("--dataset", choices=nkdata.DATASETS, default=None,
                   help="(default: mnist). custom: your own four IDX files, named as MNIST's "
                        "(train-images-idx3-ubyte.gz ...), in --data-dir: images of any size H x W, classes 0 to the "
                        "largest training label; checked, but without checksums")
    d.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder with the four IDX .gz files (default: $NANOKD_DATA, else the cache "
                        "$XDG_CACHE_HOME/nanokd/<dataset> (~/.cache/nanokd/<dataset>), else a system folder such as "
                        "/usr/share/datasets/fashion-mnist, else a download into the cache); needed for "
                        "--dataset custom")
    d.add_argument("--val", type=_typed(RULES["val"]), metavar="N", default=None,
                   help="hold out the last N training images for validation (model selection only; default: 10000; "
                        "0: none). The test set is used once, at the end")
    d.add_argument("--train-subset", type=_typed(RULES["train_subset"]), metavar="N", default=None,
                   help="train the students (baseline and distilled) on N of the training images, the same number "
                        "of each class, drawn with --subset-seed; the teacher still trains on all of them, as in "
                        "the paper's section 6 (default: 0, all)")
    d.add_argument("--subset-seed", type=_typed(RULES["subset_seed"]), metavar="S", default=None,
                   help="seeds the draw of --train-subset (default: 0)")
    d.add_argument("--no-verify", action="store_true",
                   help="skip the checksum and size checks of the data files (for home-made files)")

    t = parser.add_argument_group("training (defaults: the table below)", textwrap.fill(
        "Each flag sets the value for every role this run trains. Each also exists as --teacher-FLAG and "
        "--student-FLAG (e.g. --teacher-epochs 5 --student-hidden 30 30), which set it for one role and win over "
        "the plain flag; the student flags apply to the baseline and the distilled student alike.", 100))
    for field, (kwargs, help_) in RECIPE_FLAGS.items():
        kwargs = dict(kwargs, type=_typed(RECIPE_RULES[field]))
        t.add_argument(_flag(field), dest=field, default=None, help=help_, **kwargs)
        for role in ("teacher", "student"):
            t.add_argument(_flag(field, role), dest=f"{role}_{field}", default=None, help=argparse.SUPPRESS, **kwargs)
    return parser


def settings_from_args(args, parser):
    """The run's complete settings (a JSON-able dict) from parsed flags and the preset."""
    dataset = args.dataset or "mnist"
    table = presets_for(dataset)
    preset_name = args.preset or DEFAULT_PRESET
    if preset_name not in table:  # a parser built for another data set's presets let it through
        parser.error(f"argument --preset: --dataset {dataset} has the presets {', '.join(table)}, "
                     f"not {preset_name!r}")
    if dataset == nkdata.CUSTOM and args.data_dir is None:
        parser.error(f"--dataset {nkdata.CUSTOM} needs --data-dir DIR, the folder with your four IDX files "
                     f"({', '.join(nkdata.FILES)})")
    preset = table[preset_name]
    settings = {
        "role": args.role or "all",
        "preset": preset_name,
        "dataset": dataset,
        "data_dir": None if args.data_dir is None else os.path.abspath(args.data_dir),
        "val": 10000 if args.val is None else args.val,
        "train_subset": 0 if args.train_subset is None else args.train_subset,
        "subset_seed": 0 if args.subset_seed is None else args.subset_seed,
        "verify": not args.no_verify,
        "seed": 0 if args.seed is None else args.seed,
        "device": args.device or "auto",
        "teacher_files": None if args.teacher is None else [os.path.abspath(p) for p in args.teacher],
        "T": preset["T"] if args.T is None else args.T,
        "alpha": preset["alpha"] if args.alpha is None else args.alpha,
    }
    for role in ("teacher", "student"):
        values = {}
        for field in RECIPE_FLAGS:
            value = getattr(args, f"{role}_{field}")
            if value is None:
                value = getattr(args, field)
            if value is not None:
                values[field] = tuple(value) if field == "hidden" else value
        settings[role] = dataclasses.asdict(dataclasses.replace(preset[role], **values))
        settings[role]["hidden"] = list(settings[role]["hidden"])  # as it reads back from config.json

    role, files = settings["role"], settings["teacher_files"]
    if settings["train_subset"] and role == "teacher":
        parser.error("argument --train-subset: it sets the students' training images, and --role teacher trains "
                     "no student: leave it out")
    if args.subset_seed is not None and not settings["train_subset"]:
        parser.error("argument --subset-seed: it seeds the draw of --train-subset N, which is not given: add "
                     "--train-subset N, or leave it out")
    if role == "distill" and not files:
        parser.error("--role distill needs --teacher PATH [PATH ...]")
    if role in ("teacher", "student") and files:
        parser.error(f"--teacher is for --role distill or all, not --role {role}")
    for path in files or ():
        if not os.path.isfile(path):
            parser.error(f"argument --teacher: no such file: {path}")
    if files:  # the teacher is loaded, not trained: what would set its training would change nothing
        ignored = [_flag(field, "teacher") for field in RECIPE_FLAGS if getattr(args, f"teacher_{field}") is not None]
        if ignored:
            parser.error(f"{' '.join(ignored)}: the teacher is loaded from --teacher, not trained, so "
                         f"{'these flags' if len(ignored) > 1 else 'this flag'} would change nothing: leave "
                         f"{'them' if len(ignored) > 1 else 'it'} out")
    return settings


#: The flags --resume takes besides itself: none that changes what is computed.
RESUME_FLAGS = ("--resume", "--device", "--no-progress", "--debug")

#: The errors a run is expected to meet, reported in a line or two with exit status 1 (FlagError: 2).
RUNTIME_ERRORS = (RunError, nkdata.DataError, CheckpointError, FloatingPointError, MemoryError, OSError)


def read_config(folder, parser):
    """The settings saved in ``folder/config.json``, for --resume; a usage error if they cannot be read."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        parser.error(f"argument --resume: {config} not found: is {folder} the --out folder of a run?")
    try:
        return with_defaults(json.loads(config.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FlagError(f"argument --resume: {config} cannot be read as JSON ({e}): restore it, or start the run "
                        f"again with --out and --overwrite") from None


def main(argv=None):
    """``python -m nanokd.train``: parse the flags, run, return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(dataset_from_argv(argv))
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("NANOKD_DEBUG", "") not in ("", "0")
    out = None
    try:
        if args.resume is not None:
            given = [a for a in argv if a.startswith("--") and a.split("=")[0] not in RESUME_FLAGS]
            if given:
                parser.error(f"--resume continues with the settings saved in {args.resume}/config.json; "
                             f"leave out {' '.join(given)}")
            out = Path(args.resume)
            settings = read_config(out, parser)
            source = out / "config.json"
        else:
            settings = settings_from_args(args, parser)
            out = Path(args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")))
            source = None
        run(settings, out, resume=args.resume is not None, overwrite=args.overwrite,
            progress=False if args.no_progress else None, source=source, device=args.device)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        started = out is not None and (out / "config.json").is_file()  # else nothing was written: nothing to resume
        resume = f" Continue with:  python -m nanokd.train --resume {out}" if started else ""
        print(f"\ninterrupted.{resume}", file=sys.stderr)
        return 130
    except FlagError as e:  # a usage error, as argparse reports its own: exit status 2
        if debug:
            traceback.print_exc()
        parser.error(str(e))
    except RUNTIME_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"nanokd: {_message(e)}", file=sys.stderr)
        return 1
    return 0


def _message(e):
    """The one-line message of an expected error (an OSError and a MemoryError say what they are about)."""
    if isinstance(e, MemoryError):
        return (f"out of memory ({type(e).__name__}: {e}): choose smaller --hidden widths or --batch-size, or a "
                f"machine with more memory")
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}"
    return str(e)


if __name__ == "__main__":
    sys.exit(main())
