r"""The table's 2x800 students trained by PyTorch autograd: an end-to-end check of nanokd's figures.

nanokd's distilled 2x800 student makes 119.5 +- 5.3 test errors over six
seeds where the paper's makes 74 (benchmarks/RESULTS.md).  Is any of that gap nanokd's own?
This script trains the same students with PyTorch: ``torch.nn.Linear`` layers,
autograd, ``torch.optim.SGD`` and ``F.kl_div``, nothing of nanokd's training
path.  nanokd only reads MNIST and the teacher's saved weights; the teacher's
logits are computed again here, by a PyTorch copy of the teacher.

The recipe is the table's (``python -m benchmarks.paper_mnist table``):
784-800-800-10 ReLU, no dropout, batch 100, SGD with momentum 0.5 -> 0.9 over
the first 2 epochs, lr 0.05 x 0.97^epoch for 60 epochs; the distilled student
minimises alpha T^2 KL(p || q) + (1 - alpha) CE at T = 20, alpha = 1::

    python -m benchmarks.torch_student --teacher teacher.npz --seeds 1 2 3 --json torch_student.json

``--init nanokd`` (the default) starts each student from nanokd's initial
weights for its seed and feeds it nanokd's shuffles, so the two runs differ
only in the rounding of their arithmetic: in float64 the two training loops
end three epochs at weights that differ by about 2e-16, float64's last place
(tests/test_torch_student.py).  ``--init torch`` is a
student as a PyTorch user would write it: ``nn.Linear``'s own initialisation
and ``torch.randperm`` shuffles, seeded by ``torch.manual_seed(seed)``.
"""

import argparse
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import command_line, git_commit, machine, now, write_record
from nanokd import data as nkdata
from nanokd.backend import to_numpy
from nanokd.mlp import MLP
from nanokd.optim import exponential_decay, linear_ramp
from nanokd.teacher import compute_teacher_logits
from nanokd.trainer import epoch_seeds

INITS = ("nanokd", "torch")


def relu_mlp(sizes, dtype=torch.float32):
    """784-...-10 as ``nn.Sequential`` of Linear and ReLU (PyTorch's default initialisation)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def copy_weights(net, mlp):
    """Load a nanokd MLP's weights into ``net`` (nanokd's W is (in, out), torch's weight (out, in))."""
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, W, b in zip(linears, mlp.params[0::2], mlp.params[1::2]):
            lin.weight.copy_(torch.from_numpy(np.asarray(W).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(b)))
    return net


def load_teacher(path, dtype=torch.float32):
    """A saved nanokd teacher as a PyTorch net.  Its dropout is inverted dropout, so at test time it is the identity."""
    mlp = MLP.load(path)
    return copy_weights(relu_mlp(mlp.sizes, dtype), mlp)


def make_student(sizes, seed, init="nanokd", dtype=torch.float32):
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "nanokd":
        return copy_weights(relu_mlp(sizes, dtype), MLP(sizes, seed=seed, dtype="float64"))
    torch.manual_seed(seed)
    return relu_mlp(sizes, dtype)


@torch.no_grad()
def logits(net, x, batch_size=10000):
    return torch.cat([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def soft_loss(z, v, T):
    """T^2 KL(p || q) averaged over the batch, with p = softmax(v/T), q = softmax(z/T), by PyTorch's kl_div."""
    return T * T * F.kl_div(F.log_softmax(z / T, dim=1), F.log_softmax(v / T, dim=1),
                            reduction="batchmean", log_target=True)


def train(net, x, y, v=None, *, epochs, lr=0.05, lr_decay=0.97, momentum=0.9, momentum_start=0.5,
          momentum_ramp=2, T=20.0, alpha=1.0, seed=1, batch_size=100, shuffle="nanokd", log=None):
    """Train ``net`` on (x, y), distilled from teacher logits v at T (v None: hard labels only).

    The lr of epoch e is ``lr * lr_decay**e``; the momentum ramps linearly from
    ``momentum_start`` to ``momentum`` over ``momentum_ramp`` epochs.
    ``shuffle="nanokd"`` draws each epoch's order as ``nanokd.train.train_model``
    does, ``"torch"`` with ``torch.randperm``.  Returns the mean loss of each epoch.
    """
    if shuffle not in INITS:
        raise ValueError(f"shuffle must be one of {INITS}, got {shuffle!r}")
    if v is None and alpha != 0.0:
        alpha = 0.0  # no teacher: the hard labels only
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    losses = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        lr_e, m = exponential_decay(lr, lr_decay, epoch), linear_ramp(momentum_start, momentum, momentum_ramp, epoch)
        for group in opt.param_groups:
            group["lr"], group["momentum"] = lr_e, m
        if shuffle == "nanokd":
            perm = torch.from_numpy(np.random.default_rng(epoch_seeds(seed, epoch)[2]).permutation(n))
        else:
            perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            z = net(x[idx])
            loss = 0.0
            if alpha > 0:
                loss = alpha * soft_loss(z, v[idx], T)
            if alpha < 1:
                loss = loss + (1 - alpha) * F.cross_entropy(z, y[idx])
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / math.ceil(n / batch_size))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the training loss of epoch {epoch + 1} is {losses[-1]}")
        if log:
            log(f"epoch {epoch + 1:3d}/{epochs}  loss {losses[-1]:.5f}  lr {lr_e:.4g}  "
                f"momentum {m:.3g}  {time.perf_counter() - t0:.1f} s")
    return losses


def errors(net, x, y):
    return int((logits(net, x).argmax(dim=1) != y).sum())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.torch_student", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True,
                   help="a teacher saved by nanokd (python -m benchmarks.paper_mnist --save-teacher)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--models", nargs="+", choices=("baseline", "distilled"), default=["distilled"])
    p.add_argument("--init", choices=INITS, default="nanokd",
                   help="nanokd: nanokd's initial weights and shuffles; torch: PyTorch's own")
    p.add_argument("--hidden", type=int, nargs="+", default=[800, 800])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--lr-decay", type=float, default=0.97)
    p.add_argument("--T", type=float, default=20.0)
    p.add_argument("--alpha", type=float, default=1.0, help="weight of the soft term (1: soft targets only)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"),
                   help="the data set (fashion-mnist: its presets' students, e.g. --preset full's)")
    p.add_argument("--val", type=int, default=0,
                   help="train on all but the last N training images, as python -m nanokd.train --val N does "
                        "(default 0: all of them, as the paper's table)")
    p.add_argument("--data-dir")
    p.add_argument("--no-verify", action="store_true", help="skip the checksums (for home-made test data)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", help="write the record here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    ds = nkdata.load(args.dataset, args.data_dir, verify=not args.no_verify)
    try:  # the CLI's split: the last --val images are held out
        x_train, y_train, _, _ = nkdata.split_validation(ds.x_train, ds.y_train, args.val)
    except ValueError as e:
        p.error(f"argument --val: {e}")
    x, x_test = (torch.from_numpy(nkdata.to_float(a)) for a in (x_train, ds.x_test))
    y, y_test = (torch.from_numpy(a.astype(np.int64)) for a in (y_train, ds.y_test))
    teacher = load_teacher(args.teacher)
    v = logits(teacher, x)
    v_nanokd = to_numpy(compute_teacher_logits(MLP.load(args.teacher), nkdata.to_float(x_train[:1000])))
    rec = {"what": "the table's students trained by PyTorch autograd (torch.nn, torch.optim.SGD, F.kl_div)",
           "command": command_line("benchmarks.torch_student"), "date": now(), "git_commit": git_commit(),
           "machine": machine(),
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "teacher": args.teacher,
           "teacher_test_errors": errors(teacher, x_test, y_test),
           "teacher_logits_max_abs_diff_vs_nanokd": float(np.abs(v[:1000].numpy() - v_nanokd).max()),
           "settings": {k: val for k, val in vars(args).items() if k not in ("json", "quiet")},
           "n_train": len(y),
           "momentum": "0.5 -> 0.9 over 2 epochs", "batch_size": 100, "models": {}}
    print(f"teacher: {rec['teacher_test_errors']} test errors in PyTorch; its logits differ from nanokd's by at most "
          f"{rec['teacher_logits_max_abs_diff_vs_nanokd']:.2g}", flush=True)
    log = None if args.quiet else print
    for name in args.models:
        entry = rec["models"].setdefault(name, {"test_errors": [], "seconds": [], "final_loss": []})
        for seed in args.seeds:
            net = make_student([784, *args.hidden, 10], seed, args.init)
            t0 = time.perf_counter()
            losses = train(net, x, y, v if name == "distilled" else None, epochs=args.epochs, lr=args.lr,
                           lr_decay=args.lr_decay, T=args.T, alpha=args.alpha, seed=seed, shuffle=args.init, log=log)
            entry["test_errors"].append(errors(net, x_test, y_test))
            entry["seconds"].append(round(time.perf_counter() - t0, 1))
            entry["final_loss"].append(round(losses[-1], 6))
            print(f"{name} seed {seed}: {entry['test_errors'][-1]} test errors, final loss {losses[-1]:.5f}, "
                  f"{entry['seconds'][-1]:.0f} s", flush=True)
            if args.json:  # after every student, so a long run leaves its finished students behind
                rec["complete"] = name == args.models[-1] and seed == args.seeds[-1]
                write_record(args.json, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
