"""Float64 finite-difference checks of every element: distillation_loss_grad and a 784-30-30-10 MLP.

    python -m benchmarks.gradcheck_full

Prints the worst error (relative to the largest gradient entry of each input) over
every element, with the four-point central stencil of nk.gradcheck.
"""

import time

import numpy as np

import nanokd as nk


def main():
    rng = np.random.default_rng(0)
    z, v = rng.normal(size=(64, 10)) * 4, rng.normal(size=(64, 10)) * 4
    y = rng.integers(0, 10, size=64)
    for T in (1.0, 4.0, 20.0):
        for alpha in (0.0, 0.5, 0.9, 1.0):
            g = nk.distillation_loss_grad(z, v, y, T, alpha)
            r = nk.gradcheck(lambda: nk.distillation_loss(z, v, y, T, alpha), [z], [g])
            print(f"distillation_loss_grad  N=64 C=10 T={T:<4} alpha={alpha:<3}  worst rel. error {r.max_rel_error:.2e}  "
                  f"({r.n_evaluations} evaluations)")

    model = nk.MLP([784, 30, 30, 10], dropout_input=0.2, dropout_hidden=0.5, seed=0, dtype="float64")
    x = rng.uniform(0, 1, size=(8, 784)) * (rng.uniform(size=(8, 784)) < 0.2)
    v, y = rng.normal(size=(8, 10)) * 3, rng.integers(0, 10, size=8)
    model.forward(x, train=True)  # draw the dropout masks, kept from here on
    nk.clear_kinks(model, x, 0.02)
    z = model.forward(x, train=True, keep_masks=True)
    grads = [g.copy() for g in model.backward(nk.distillation_loss_grad(z, v, y, 20.0, 0.9))]
    t = time.perf_counter()
    r = nk.gradcheck(lambda: nk.distillation_loss(model.forward(x, train=True, keep_masks=True), v, y, 20.0, 0.9),
                     model.params, grads, eps=1e-4, directions=10)
    print(f"MLP 784-30-30-10 backward (dropout masks fixed), all {model.count_params()} parameters: "
          f"worst rel. error {r.max_rel_error:.2e} at {r.worst} ({r.n_evaluations} evaluations, "
          f"{time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
