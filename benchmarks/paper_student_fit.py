r"""How closely does a distilled student follow its teacher: on the transfer set, and on the test set?

A diagnostic for the gap between the paper's distilled 2x800 net (74 test
errors) and ours.  It trains a distilled student (soft targets only, T = 20
unless told otherwise) for one or more schedules and, after every epoch,
compares its logits z with the teacher's v::

    python benchmarks/paper_student_fit.py --teacher teacher.npz \
        --schedule 0.05:0.9:30 --schedule 0.05:0.97:60 --json fit.json

For the transfer set (the training images) and for the test images it
records

- ``kd``: the soft-target loss T^2 KL(p || q) at the training temperature,
  the quantity the student minimises (0 when z - v is the same for every class);
- ``rms``: the root-mean-square of the difference of the *centred* logits,
  (z - mean z) - (v - mean v), in logit units (softmax ignores the mean);
- ``disagree``: images where the student's class is not the teacher's;
- ``errors``: the student's errors against the true labels.

If the student is far from the teacher on the transfer set, training it
longer or harder can still help; if it is close there but far on the test
images, the gap is in how the student generalises from the transfer set.
The test images are looked at here to *explain* results, never to choose a
setting: schedules are chosen with ``paper_student_val.py`` (validation
split) and with the transfer-set figures of this script.

``--jitter N`` leaves the paper's setting on purpose: the transfer images are
shifted by up to N pixels, afresh every epoch, and the teacher's logits are
computed for each shifted batch.  It asks whether the 60,000 unshifted images
are what limits the student (the transfer-set figures are still those of the
unshifted images).

``--batch-size`` changes the student's batch (100 in the paper's recipe),
``--init-std`` its initial weights (He's by default), ``--center-inputs``
subtracts the mean transfer image from what the student sees (the teacher
still sees the plain pixels), and ``--average-from E``
also follows the mean of the student's weights over the ends of epochs E,
E+1, ... (Polyak averaging), under ``"averaged"`` in each row of the curve:
things the paper does not say either way, tried here to see whether they move
the test figures.
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
from nanokd.losses import kd_loss  # noqa: E402
from nanokd.mlp import MLP  # noqa: E402
from nanokd.optim import exponential_decay  # noqa: E402
from nanokd.train import compute_teacher_logits, train_model  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from paper_mnist import command_line, git_commit, machine, now, write_json_atomic  # noqa: E402
from paper_student_val import schedule  # noqa: E402


def fit_stats(z, v, y, T):
    """Student logits z against teacher logits v (and labels y): the figures listed in the module docstring.

    Every figure is reduced on the device; only the five scalars come back.
    """
    zc = z - z.mean(axis=1, keepdims=True)
    vc = v - v.mean(axis=1, keepdims=True)
    cz, cv = z.argmax(axis=1), v.argmax(axis=1)
    return {"kd": round(float(kd_loss(z, v, T)), 5),
            "rms": round(float(((zc - vc) ** 2).mean() ** 0.5), 4),
            "disagree": int((cz != cv).sum()),
            "errors": int((cz != y).sum()),
            "teacher_errors": int((cv != y).sum())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="saved teacher.npz")
    p.add_argument("--schedule", type=schedule, action="append", required=True, metavar="LR:DECAY:EPOCHS",
                   help="lr of epoch e is lr * decay**e; repeat for several students")
    p.add_argument("--T", type=float, default=20.0)
    p.add_argument("--hidden", type=int, nargs="+", default=[800, 800])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--init-std", type=float, default=None, help="initial weights N(0, s^2) (default: He's)")
    p.add_argument("--center-inputs", action="store_true",
                   help="the student sees each image minus the mean transfer image (not with --jitter)")
    p.add_argument("--average-from", type=int, default=0, metavar="E",
                   help="also evaluate the mean of the weights at the ends of epochs E, E+1, ... (0: no)")
    p.add_argument("--jitter", type=int, default=0,
                   help="shift the transfer images by up to this many pixels (not the paper's setting)")
    p.add_argument("--data-dir")
    p.add_argument("--no-verify", action="store_true", help="skip the checksums (for home-made test data)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write the record here")
    args = p.parse_args(argv)
    if args.center_inputs and args.jitter:
        p.error("--center-inputs and --jitter cannot be combined: with --jitter teacher and student see the same images")

    device = resolve_device(args.device)
    teacher = MLP.load(args.teacher, device=device)
    xp = teacher.xp
    ds = nkdata.load("mnist", args.data_dir, verify=not args.no_verify)
    sets = {"transfer": (nkdata.to_float(ds.x_train, xp), xp.asarray(ds.y_train)),
            "test": (nkdata.to_float(ds.x_test, xp), xp.asarray(ds.y_test))}
    v = {name: compute_teacher_logits(teacher, x) for name, (x, _) in sets.items()}
    if args.center_inputs:  # from here on the images are the student's; v was computed from the plain pixels
        mean_image = sets["transfer"][0].mean(axis=0)
        sets = {name: (x - mean_image, y) for name, (x, y) in sets.items()}
    runs = []
    for lr, decay, epochs in args.schedule:
        student = MLP([784, *args.hidden, 10], seed=args.seed, init_std=args.init_std, device=device)
        mean = MLP([784, *args.hidden, 10], seed=args.seed, device=device) if args.average_from else None
        curve = []

        def callback(epoch, history):
            row = {"epoch": epoch, "lr": exponential_decay(lr, decay, epoch - 1),
                   "loss": round(float(history["loss"][-1]), 5)}
            for name, (xs, ys) in sets.items():
                z = compute_teacher_logits(student, xs)  # any model's logits, batched, without dropout
                row[name] = fit_stats(z, v[name], ys, args.T)
            if mean is not None and epoch >= args.average_from:
                k = epoch - args.average_from + 1  # epochs in the mean, this one included
                for m, w in zip(mean.params, student.params):
                    m += (w - m) / k  # k = 1 copies w
                row["averaged"] = {name: fit_stats(compute_teacher_logits(mean, xs), v[name], ys, args.T)
                                   for name, (xs, ys) in sets.items()}
            curve.append(row)
            return False

        t0 = time.perf_counter()
        x, y = sets["transfer"]
        soft = dict(teacher=teacher, jitter=args.jitter) if args.jitter else dict(teacher_logits=v["transfer"])
        train_model(student, x, y, epochs=epochs, batch_size=args.batch_size, lr=lr, lr_decay=decay, momentum=0.9,
                    momentum_start=0.5, momentum_ramp=2, T=args.T, alpha=1.0, seed=args.seed, progress=False,
                    log=None, name="distilled", callback=callback, **soft)
        last = curve[-1]
        shifted = f", jitter {args.jitter}" if args.jitter else ""
        print(f"lr {lr:g} decay {decay:g} {epochs} epochs{shifted} ({time.perf_counter() - t0:.0f} s): "
              + "; ".join(f"{name}: kd {last[name]['kd']:.4f}, rms {last[name]['rms']:.3f}, "
                          f"disagree {last[name]['disagree']}, errors {last[name]['errors']} "
                          f"(teacher {last[name]['teacher_errors']})" for name in sets), flush=True)
        if "averaged" in last:
            print(f"  mean of the weights of epochs {args.average_from}-{epochs}: "
                  + "; ".join(f"{name}: rms {last['averaged'][name]['rms']:.3f}, errors {last['averaged'][name]['errors']}"
                              for name in sets), flush=True)
        runs.append({"lr": lr, "lr_decay": decay, "epochs": epochs, "seconds": round(time.perf_counter() - t0, 1),
                     "curve": curve})
        if args.json:
            write_json_atomic(Path(args.json), {
                "what": "a distilled %s student against its teacher after every epoch, on the transfer set "
                        "(all %d training images) and on the %d test images"
                        % ("x".join(map(str, args.hidden)), len(sets["transfer"][1]), len(sets["test"][1])),
                "command": command_line(), "date": now(), "git_commit": git_commit(), "machine": machine(),
                "device": device, "teacher": args.teacher, "jitter": args.jitter, "T": args.T, "alpha": 1.0,
                "hidden": args.hidden, "seed": args.seed, "batch_size": args.batch_size,
                "average_from": args.average_from or None, "init_std": args.init_std,
                "center_inputs": args.center_inputs,
                "momentum": "0.5 -> 0.9 over 2 epochs", "runs": runs,
                "complete": len(runs) == len(args.schedule)})  # False: written after a run, more to come
    return 0


if __name__ == "__main__":
    sys.exit(main())
