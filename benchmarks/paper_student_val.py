r"""Choose the students' schedule for ``paper_mnist.py`` on a validation split, never on the test set.

Trains students (2x800 unless ``--hidden`` says otherwise; hard labels, or
distilled from a saved teacher at T) on the first 55,000 training images and
counts their errors on the last 5,000 after every epoch, for one or more
schedules::

    python benchmarks/paper_student_val.py --teacher teacher.npz \
        --schedule 0.05:0.85:15 --schedule 0.05:0.92:40 --json out.json

A schedule is ``lr:decay:epochs`` (lr of epoch e is lr * decay**e).  The
test images are not loaded.  The record holds every per-epoch curve, so the
choice it supports (which schedule, how many epochs) can be checked later.
"""

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nanokd import data as nkdata  # noqa: E402
from nanokd.backend import resolve_device  # noqa: E402
from nanokd.mlp import MLP  # noqa: E402
from nanokd.train import PRESETS, compute_teacher_logits, train_model  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from paper_mnist import git_commit, machine, now, write_json_atomic  # noqa: E402


def schedule(text):
    try:
        lr, decay, epochs = text.split(":")
        return float(lr), float(decay), int(epochs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not lr:decay:epochs") from None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", help="saved teacher.npz; without it only hard-label students are trained")
    p.add_argument("--schedule", type=schedule, action="append", required=True, metavar="LR:DECAY:EPOCHS")
    p.add_argument("--roles", nargs="+", choices=("baseline", "distilled"), default=["baseline", "distilled"])
    p.add_argument("--T", type=float, default=20.0)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--hidden", type=int, nargs="+", default=[800, 800])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--val", type=int, default=5000)
    p.add_argument("--data-dir")
    p.add_argument("--no-verify", action="store_true", help="skip the checksums (for home-made test data)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the curves here")
    args = p.parse_args(argv)
    if "distilled" in args.roles and not args.teacher:
        p.error("--roles distilled needs --teacher")

    device = resolve_device(args.device)
    xp = MLP([1, 1], device=device).xp
    ds = nkdata.load("mnist", args.data_dir, verify=not args.no_verify)
    x = nkdata.to_float(ds.x_train, xp)
    y = xp.asarray(ds.y_train)
    if not 0 < args.val < len(x):
        p.error(f"--val must be in (0, {len(x)})")
    n = len(x) - args.val
    v = None
    if args.teacher:
        v = compute_teacher_logits(MLP.load(args.teacher, device=device), x[:n])
    base = PRESETS["paper"]["student"]
    runs = []
    for lr, decay, epochs in args.schedule:
        for role in args.roles:
            model = MLP([784, *args.hidden, 10], seed=args.seed, device=device)
            distil = dict(teacher_logits=v, T=args.T, alpha=args.alpha) if role == "distilled" else {}
            t0 = time.perf_counter()
            h = train_model(model, x[:n], y[:n], epochs=epochs, batch_size=base.batch_size, lr=lr, lr_decay=decay,
                            momentum=0.9, momentum_start=0.5, momentum_ramp=2, x_val=x[n:], y_val=y[n:],
                            seed=args.seed, progress=False, log=None, name=role, **distil)
            curve = [int(e) for e in h["val_errors"]]
            best = min(range(len(curve)), key=curve.__getitem__)
            print(f"{role:9s} lr {lr:g} decay {decay:g} {epochs:3d} epochs: val errors at the end {curve[-1]:4d}, "
                  f"best {curve[best]} at epoch {best + 1}; {time.perf_counter() - t0:.0f} s; "
                  f"curve {' '.join(map(str, curve))}", flush=True)
            runs.append({"role": role, "lr": lr, "lr_decay": decay, "epochs": epochs, "val_errors": curve,
                         "final_loss": h["loss"][-1], "seconds": round(time.perf_counter() - t0, 1)})
            if args.json:
                write_json_atomic(Path(args.json), {
                    "what": "%s students on the first %d training images, errors on the last %d"
                            % ("x".join(map(str, args.hidden)), n, args.val),
                    "date": now(), "git_commit": git_commit(), "machine": machine(), "teacher": args.teacher,
                    "T": args.T, "alpha": args.alpha, "hidden": args.hidden, "seed": args.seed,
                    "momentum": "0.5 -> 0.9 over 2 epochs", "batch_size": base.batch_size, "runs": runs,
                    "complete": len(runs) == len(args.schedule) * len(args.roles),  # False: still running
                    "settings": {k: str(val) for k, val in vars(args).items()}})


if __name__ == "__main__":
    main()
