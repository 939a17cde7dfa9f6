r"""Would folding SGD's momentum into the weight-gradient product pay?  A measurement, not a fast path.

Issue 23's first idea: the momentum update  u <- mu u + g,  with g = h^T da
(:meth:`nanokd.optim.SGD.step`), is what a BLAS gemm computes when it is given
beta:  u <- 1 * h^T da + mu * u  in one call, so that g is never written and
read back.  NumPy's matmul has no beta; ``scipy.linalg.blas.sgemm`` has.  This
script times the student step (784-800-800-10, batch 128, cross-entropy, SGD
momentum 0.9) three ways, alternating, in one process:

* ``plain``: nanokd's step (:func:`nanokd.trainer.train_step`);
* ``folded``: the same step with each layer's  u <- h^T da + mu u  one scipy
  sgemm (beta = mu), then  w <- w - lr u  in :func:`nanokd.optim.pieces`; the
  other products stay NumPy's;
* ``folded_all_scipy``: the same, every product of the step through scipy,
  so that one BLAS (scipy's) serves the whole step.

and checks that all three give the same weights, bit for bit (they do: the
gemm's beta term is the same rounding as ``u *= mu; u += g``).  NumPy and scipy
each bundle their own OpenBLAS, with their own thread pools.  Run::

    python -m benchmarks.sgemm_fold --threads 1 2 --json benchmarks/results/sgemm_fold-cpu-DATE.json
"""

import argparse
import time

import numpy as np

import nanokd as nk
from nanokd.trainer import train_step
from benchmarks.common import command_line, git_commit, machine, now, write_record
from benchmarks.steps import make_batch
from nanokd.losses import cross_entropy_and_grad
from nanokd.optim import pieces

SIZES, N, LR, MOMENTUM = [784, 800, 800, 10], 128, 0.01, 0.9


def _make(seed=0):
    model = nk.MLP(SIZES, seed=seed)
    return model, nk.SGD(model.params, lr=LR, momentum=MOMENTUM)


def plain(model, opt, x, y):
    train_step(model, opt, x, y)


def _forward_scipy(model, x, blas):
    h = x
    for linear, relu, _ in model.blocks:
        linear.x = h
        a = blas.sgemm(1.0, linear.W.T, h.T).T  # (h W)^T = W^T h^T, Fortran order for scipy
        a += linear.b
        if relu is not None:
            relu.h = np.maximum(a, 0, out=a)
        h = a
    return h


def folded(model, opt, x, y, all_scipy=False):
    from scipy.linalg import blas

    z = _forward_scipy(model, x, blas) if all_scipy else model.forward(x, train=True)
    _, g = cross_entropy_and_grad(z, y, check=False)
    lr, mu = np.float32(opt.lr), float(opt.momentum)
    for i in range(len(model.blocks) - 1, -1, -1):
        linear, relu, _ = model.blocks[i]
        if relu is not None:
            g = relu.backward(g)
        uW, ub = opt.velocity[2 * i], opt.velocity[2 * i + 1]
        # u <- h^T da + mu u, as (u^T) <- da^T h + mu u^T in scipy's Fortran order: no transposed copies
        blas.sgemm(1.0, g.T, linear.x.T, beta=mu, c=uW.T, trans_b=1, overwrite_c=1)
        ub *= mu
        ub += g.sum(axis=0)
        dx = None
        if i > 0:  # before W changes
            dx = np.ascontiguousarray(blas.sgemm(1.0, linear.W.T, g.T, trans_a=1).T) if all_scipy \
                else np.matmul(g, linear.W.T)
        for w, u in pieces(linear.W, uW):  # w <- w - lr u, as SGD._update does it
            w -= u * lr
        linear.b -= ub * lr
        g = dx


def run(threads, rounds, steps):
    from threadpoolctl import threadpool_limits

    x, y, _ = make_batch(N)
    ways = {"plain": plain, "folded": folded,
            "folded_all_scipy": lambda m, o, x, y: folded(m, o, x, y, all_scipy=True)}
    state = {name: _make() for name in ways}
    for name, fn in ways.items():  # three steps each, then the same weights?
        for _ in range(3):
            fn(*state[name], x, y)
    same = {name: all(np.array_equal(a, b) for a, b in zip(state["plain"][0].params, state[name][0].params))
            for name in ways}
    times = {name: [] for name in ways}
    with threadpool_limits(limits=threads, user_api="blas"):
        for name, fn in ways.items():
            for _ in range(5):
                fn(*state[name], x, y)
        for _ in range(rounds):
            for name, fn in ways.items():
                t0 = time.perf_counter()
                for _ in range(steps):
                    fn(*state[name], x, y)
                times[name].append((time.perf_counter() - t0) / steps * 1e3)
    return {"threads": threads, "same_weights_as_plain": same,
            "median_ms": {k: round(float(np.median(v)), 3) for k, v in times.items()},
            "all_ms": {k: [round(t, 3) for t in v] for k, v in times.items()}}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sgemm_fold", description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    parts = [run(t, args.rounds, args.steps) for t in args.threads]
    for part in parts:
        print(f"{part['threads']} thread(s): " + ", ".join(f"{k} {v} ms" for k, v in part["median_ms"].items())
              + f"; same weights as plain: {part['same_weights_as_plain']}")
    if args.json:
        write_record(args.json, {"what": "student step with SGD momentum folded into scipy's sgemm (beta = mu)",
                                 "date": now(), "git_commit": git_commit(), "machine": machine(),
                                 "command": command_line("benchmarks.sgemm_fold", argv), "parts": parts})


if __name__ == "__main__":
    main()
