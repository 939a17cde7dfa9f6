r"""What does a teacher's output look like, on the digits it trained on and on new ones?

A diagnostic for the transfer experiments of ``paper_mnist.py`` (omit3, only78),
where everything a student learns about the missing classes comes from the
teacher's logits v for the wrong classes.  For each teacher it prints, on the
training images (the first 55,000: the pool the omit3 / only78 transfer sets come
from) and on the test images, for all digits and for ``--classes`` alone::

    python benchmarks/teacher_logits.py --teacher /tmp/pmC/teacher.npz --teacher /tmp/pmA/teacher.npz --classes 7 8

- ``rms``: root-mean-square of the centred logits v - mean(v), in logit units
  (the size of what a student at high temperature regresses onto);
- ``margin``: mean of v_y - max_{j != y} v_j, the true class over the runner-up;
- ``wrong_spread``: mean over images of the standard deviation of the wrong
  classes' logits (how much the dark knowledge says);
- ``nll``: mean cross-entropy -log softmax(v)_y at T = 1;
- ``errors``: images whose arg max is not y.

A teacher whose figures are much larger on the training digits than on the test
digits has fitted its training images in a way that a student, which learns from
those images only, would copy.

With ``--classes`` it also prints ``linear R2``: how much of the teacher's logit
function a linear map of the pixels, fitted on the training images of those
classes only, carries over to the test images of the other classes (see
:func:`linear_extrapolation`).  That is what only78 asks of its student, in the
simplest form: the only78 student sees 7s and 8s and must reproduce the teacher's
logits on every other digit.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nanokd import data as nkdata  # noqa: E402
from nanokd.losses import log_softmax  # noqa: E402
from nanokd.mlp import MLP  # noqa: E402
from nanokd.train import compute_teacher_logits  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from paper_mnist import command_line, git_commit, machine, now, write_json_atomic  # noqa: E402


def logit_stats(v, y):
    """The figures of the module docstring for logits v (N, C) and labels y (N,), as plain floats."""
    v = np.asarray(v, dtype=np.float64)
    y = np.asarray(y)
    n = len(y)
    if v.ndim != 2 or v.shape[0] != n or n == 0:
        raise ValueError(f"v must have shape (N, C) with N = len(y) > 0, got {v.shape} and {n} labels")
    rows = np.arange(n)
    centred = v - v.mean(axis=1, keepdims=True)
    true_class = np.zeros(v.shape, dtype=bool)
    true_class[rows, y] = True
    wrong = np.ma.masked_array(v, mask=true_class)  # the wrong classes' logits only
    return {"n": int(n),
            "errors": int((v.argmax(axis=1) != y).sum()),
            "rms": float(np.sqrt((centred ** 2).mean())),
            "margin": float((v[rows, y] - wrong.max(axis=1)).mean()),
            "wrong_spread": float(wrong.std(axis=1).mean()),
            "nll": float(-log_softmax(v, check=False)[rows, y].mean())}


def linear_extrapolation(x_fit, v_fit, x_new, v_new, ridge=10.0):
    """R^2 of a ridge regression from pixels to centred logits, on the images it was fitted on and on new ones.

    The teacher's logits are centred per image, u = v - mean_j(v_j), since a
    softmax ignores a constant added to a row (the paper's high-temperature limit
    of distillation, logit matching, regresses onto exactly these).  The map
    u ~ x W + b is fitted on (x_fit, u_fit) by least squares with the penalty
    ``ridge`` * ||W||^2 (b is not penalised: x and u are centred on the fit set
    first), i.e. W = (Xc^T Xc + ridge I)^-1 Xc^T Uc, b = mean(u) - mean(x) W.
    It is a linear student trained to convergence by logit matching, in closed form.

    Notes
    -----
    R^2 = 1 - sum ||u - (x W + b)||^2 / sum ||u - mean(u)||^2 over the images of a
    set, each set about its own mean: 1 if the linear map explains the logits
    exactly, about 0 (or below) if it explains nothing beyond their mean.

    Returns ``{"fit": R^2 on the fit images, "new": R^2 on the new ones}``.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    x_fit, x_new = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (x_fit, x_new))
    u_fit, u_new = (np.asarray(v, dtype=np.float64) for v in (v_fit, v_new))
    if len(u_fit) != len(x_fit) or len(u_new) != len(x_new) or u_fit.ndim != 2 or u_fit.shape[1:] != u_new.shape[1:]:
        raise ValueError(f"x and v must have matching rows and v the same classes, got x {x_fit.shape} / "
                         f"{x_new.shape} and v {u_fit.shape} / {u_new.shape}")
    u_fit = u_fit - u_fit.mean(axis=1, keepdims=True)
    u_new = u_new - u_new.mean(axis=1, keepdims=True)
    x_mean, u_mean = x_fit.mean(axis=0), u_fit.mean(axis=0)
    xc = x_fit - x_mean
    W = np.linalg.solve(xc.T @ xc + ridge * np.eye(xc.shape[1]), xc.T @ (u_fit - u_mean))
    b = u_mean - x_mean @ W

    def r2(x, u):
        return float(1 - ((x @ W + b - u) ** 2).sum() / ((u - u.mean(axis=0)) ** 2).sum())

    return {"fit": r2(x_fit, u_fit), "new": r2(x_new, u_new)}


def teacher_stats(teacher, sets, classes=None, ridge=10.0):
    """``{set name: {"all": stats, "classes": stats or None}}`` for ``sets`` = {name: (x, y)}.

    With ``classes`` also ``"linear_r2"``: :func:`linear_extrapolation` fitted on
    the classes' images of ``sets["train"]`` and tested on the other classes'
    images of ``sets["test"]``.
    """
    out = {}
    logits = {name: np.asarray(compute_teacher_logits(teacher, x)) for name, (x, y) in sets.items()}
    for name, (x, y) in sets.items():
        v = logits[name]
        row = {"all": logit_stats(v, y), "classes": None}
        if classes:
            keep = np.isin(y, classes)
            row["classes"] = logit_stats(v[keep], y[keep])
        out[name] = row
    if classes:
        (x, y), (xt, yt) = sets["train"], sets["test"]
        fit, new = np.isin(y, classes), ~np.isin(yt, classes)
        out["linear_r2"] = linear_extrapolation(x[fit], logits["train"][fit], xt[new], logits["test"][new], ridge)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", action="append", required=True, help="a saved teacher.npz (repeat for several)")
    ap.add_argument("--classes", type=int, nargs="+", default=None,
                    help="also the images of these classes alone (only78's are 7 8)")
    ap.add_argument("--val", type=int, default=5000,
                    help="leave out the last N training images, as paper_mnist.py's omit3 / only78 do")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $NANOKD_DATA, else nanokd's cache)")
    ap.add_argument("--no-verify", action="store_true", help="skip the checksums (for home-made test data)")
    ap.add_argument("--ridge", type=float, default=10.0,
                    help="penalty of the linear map of linear R2 (pixels in [0, 1]; default 10)")
    ap.add_argument("--json", help="write the record here")
    args = ap.parse_args(argv)
    ds = nkdata.load("mnist", args.data_dir, verify=not args.no_verify)
    if not 0 <= args.val < len(ds.y_train):
        raise SystemExit(f"--val must be in [0, {len(ds.y_train)}), got {args.val}")
    n_fit = len(ds.y_train) - args.val
    sets = {"train": (nkdata.to_float(ds.x_train[:n_fit], np), np.asarray(ds.y_train[:n_fit])),
            "test": (nkdata.to_float(ds.x_test, np), np.asarray(ds.y_test))}
    record = {"command": command_line(), "date": now(), "git_commit": git_commit(), "machine": machine(),
              "classes": args.classes, "n_train": n_fit, "ridge": args.ridge, "teachers": {}}
    keys = ("errors", "rms", "margin", "wrong_spread", "nll")
    print(f"{'teacher':40s} {'images':>14s} " + " ".join(f"{k:>12s}" for k in keys))
    linear = {}
    for path in args.teacher:
        stats = teacher_stats(MLP.load(path), sets, args.classes, ridge=args.ridge)
        if args.classes:
            linear[path] = stats["linear_r2"]
        record["teachers"][path] = stats
        for name in sets:
            for part, s in stats[name].items():
                if s is None:
                    continue
                label = f"{name} {'all' if part == 'all' else ','.join(map(str, args.classes))}"
                print(f"{path:40s} {label:>14s} " + " ".join(
                    f"{s[k]:12d}" if k == "errors" else f"{s[k]:12.3f}" for k in keys))
    if linear:
        names = ",".join(map(str, args.classes))
        print(f"\nlinear R2 (ridge {args.ridge:g}): fitted on the training {names}s, tested on the other digits' test images")
        for path, r in linear.items():
            print(f"{path:40s} fit {r['fit']:.3f}   other digits {r['new']:.3f}")
    if args.json:
        write_json_atomic(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
