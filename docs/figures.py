"""Draw the pictures of docs/gradients.md into docs/img/, with nanokd's own functions.

    python docs/figures.py                  # all three pictures
    python docs/figures.py fd_error mlp     # only some of them

Needs matplotlib (``pip install nanokd[plot]``).  ``soft_targets`` also needs
the real MNIST files (found as nanokd.data.load finds them: ``--data-dir``,
``NANOKD_DATA``, the cache folder, or ``shared/data/mnist`` beside the
repository); it never downloads.  Each PNG is written atomically
(nanokd.atomic.save_figure_atomic), without a "Software" stamp, so that
redrawing with the same library versions gives the same file.

The pictures:

* ``fd_error.png``: the error of three finite-difference formulas against
  the step h, in float32 and float64 (section 7 of the guide);
* ``soft_targets.png``: one MNIST test digit's soft targets at T = 1, 4, 20,
  from a 784-100-10 net trained here for one epoch (section 3);
* ``mlp.png``: the forward and backward passes of nk.MLP, naming the arrays
  that ``forward`` stores and ``backward`` reads (section 6).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import nanokd as nk  # noqa: E402
from nanokd import data as nkdata  # noqa: E402
from nanokd import download  # noqa: E402
from nanokd.atomic import save_figure_atomic  # noqa: E402

IMG = ROOT / "docs" / "img"
SAVE = dict(dpi=100, metadata={"Software": None})


def pyplot():
    try:
        import matplotlib
    except ImportError:
        sys.exit("docs/figures.py needs matplotlib: pip install matplotlib (or pip install nanokd[plot])")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------
# 1. finite-difference error against the step
# ---------------------------------------------------------------------------

def fd_errors(dtype, steps):
    """Errors of the forward, central and four-point estimates of d kd_loss / d z_00.

    f(t) = kd_loss(z + t e_00, v, T) is evaluated in ``dtype`` (the perturbed
    logit rounded to it, as a checker in that precision would do); the
    differences and divisions are done in float64, and the exact derivative
    is kd_loss_grad in float64.
    """
    z = np.array([[1.0, 2.0, -1.0, 0.5]])
    v = np.array([[3.0, 1.0, -2.0, 0.0]])
    T = 4.0
    exact = float(nk.kd_loss_grad(z, v, T)[0, 0])
    zd, vd = z.astype(dtype), v.astype(dtype)

    def f(t):
        moved = zd.copy()
        moved[0, 0] = dtype(z[0, 0] + t)
        return float(nk.kd_loss(moved, vd, T))

    out = {"forward": [], "central": [], "four-point": []}
    f0 = f(0.0)
    for h in steps:
        fp, fm, f2p, f2m = f(h), f(-h), f(2 * h), f(-2 * h)
        out["forward"].append((fp - f0) / h)
        out["central"].append((fp - fm) / (2 * h))
        out["four-point"].append((8 * (fp - fm) - (f2p - f2m)) / (12 * h))
    return {k: np.abs(np.array(val) - exact) for k, val in out.items()}, abs(exact)


def draw_fd_error(plt):
    steps = np.logspace(-10, 0, 81)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    colors = {"forward": "tab:red", "central": "tab:blue", "four-point": "tab:green"}
    orders = {"forward": 1, "central": 2, "four-point": 4}
    for ax, dtype in zip(axes, (np.float32, np.float64)):
        errors, scale = fd_errors(dtype, steps)
        eps = float(np.finfo(dtype).eps)
        for name, err in errors.items():
            rel = np.maximum(err / scale, 1e-17)  # an exact 0 would fall off a log axis
            ax.loglog(steps, rel, ".-", ms=3, lw=0.8, color=colors[name], label=name)
            kappa = orders[name]
            best = eps ** (1 / (kappa + 1))   # truncation h^kappa against rounding eps/h
            ax.axvline(best, color=colors[name], lw=0.6, ls=":")
        ax.set_title(f"{np.dtype(dtype).name}: machine epsilon ε = {eps:.2g}", fontsize=10)
        ax.set_xlabel("step h")
        ax.grid(True, which="major", lw=0.3)
        ax.set_ylim(1e-17, 10)
    axes[0].set_ylabel("|estimate - exact| / |exact|")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("d kd_loss / d z_1 at T = 4 by finite differences; dotted lines: h = ε^(1/(κ+1)), "
                 "κ = 1, 2, 4 the order of the truncation error", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, IMG / "fd_error.png", **SAVE)
    plt.close(fig)


# ---------------------------------------------------------------------------
# 2. soft targets of one MNIST digit
# ---------------------------------------------------------------------------

def mnist_folder(data_dir):
    """The MNIST folder as nanokd.download finds it, else shared/data/mnist beside the repository."""
    try:
        return download.find_or_download("mnist", data_dir, download=False)
    except nkdata.DataError:
        shared = ROOT.parent / "shared" / "data" / "mnist"
        if data_dir is None and shared.is_dir():
            return shared
        raise


def train_small_net(data, seed=0, epochs=1, batch=100, lr=0.1, momentum=0.9):
    """A 784-100-10 ReLU net, plain momentum SGD on the hard labels, no dropout."""
    x, y = nkdata.to_float(data.x_train), data.y_train
    model = nk.MLP([784, 100, 10], seed=seed)
    opt = nk.SGD(model.params, lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            z = model.forward(x[idx], train=True)
            opt.step(model.backward(nk.cross_entropy_grad(z, y[idx])))
    return model


def pick_digit(p1, labels):
    """The first correctly classified test digit whose runner-up has between 1% and 10% at T = 1."""
    for i, (p, label) in enumerate(zip(p1, labels)):
        order = np.argsort(p)[::-1]
        if order[0] == label and 0.01 <= p[order[1]] <= 0.10:
            return i
    return 0


def draw_soft_targets(plt, data_dir):
    folder = mnist_folder(data_dir)
    data = nkdata.load("mnist", folder, download=False)
    start = time.perf_counter()
    model = train_small_net(data)
    x_test = nkdata.to_float(data.x_test)
    z = model.forward(x_test).astype(np.float64)
    errors = int((z.argmax(axis=1) != data.y_test).sum())
    p1 = nk.softmax(z)
    index = pick_digit(p1, data.y_test)
    label = int(data.y_test[index])
    print(f"soft_targets: 784-100-10, 1 epoch in {time.perf_counter() - start:.1f} s, "
          f"{errors} test errors; test image {index} (a {label})")

    temps = (1, 4, 20)
    fig, axes = plt.subplots(1, 1 + len(temps), figsize=(11, 2.9),
                             gridspec_kw={"width_ratios": [0.8] + [1] * len(temps)})
    axes[0].imshow(data.x_test[index], cmap="gray_r", vmin=0, vmax=255)
    axes[0].set_title(f"MNIST test image {index}\n(label {label})", fontsize=9)
    axes[0].axis("off")
    for ax, T in zip(axes[1:], temps):
        p = nk.softmax(z[index:index + 1], T)[0]
        colors = ["tab:orange" if c == label else "tab:blue" for c in range(10)]
        ax.bar(np.arange(10), p, color=colors)
        ax.set_xticks(np.arange(10))
        ax.set_ylim(0, 1)
        ax.set_title(f"softmax(z / {T})", fontsize=9)
        for c in range(10):
            if p[c] >= 0.005 and c != label:
                ax.text(c, p[c] + 0.02, f"{p[c]:.2f}", ha="center", fontsize=6)
    axes[1].set_ylabel("probability")
    fig.suptitle(f"Soft targets of a 784-100-10 net trained for 1 epoch ({errors} test errors), "
                 f"not the paper's teacher", fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, IMG / "soft_targets.png", **SAVE)
    plt.close(fig)


# ---------------------------------------------------------------------------
# 3. the MLP's forward and backward passes
# ---------------------------------------------------------------------------

# (box label, what forward keeps on the layer, what backward reads and gives)
LAYERS = [
    ("Dropout(ρ_in)", "self.mask = m", "never run:\nx needs no gradient"),
    ("Linear 1\na = x W1 + b1", "self.x  (its input)", "reads self.x, W1\n→ self.dW, self.db\n(need_dx=False)"),
    ("ReLU\nr = max(a, 0)", "self.h = r\n(in place over a)", "reads self.h:\nG ⊙ [h > 0]"),
    ("Dropout(ρ_hid)", "self.mask = m\n(applied in place to r)", "reads self.mask:\nG ⊙ m"),
    ("Linear 2\nz = x W2 + b2", "self.x  (its input)", "reads self.x, W2\n→ self.dW, self.db,\nand dx = G W2ᵀ"),
]


def draw_mlp(plt):
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(12, 4.4))
    ax.set_xlim(0, 12.6)
    ax.set_ylim(0, 4.4)
    ax.axis("off")
    w, hgt, y_box = 1.3, 0.8, 2.5
    xs = [1.25 + 2.2 * i for i in range(len(LAYERS))]

    def arrow(a, b, color, text=None, dy=0.12, va="bottom"):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=11, color=color, lw=1.2))
        if text:
            ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + dy, text, ha="center", va=va, fontsize=8,
                    color=color)

    for x, (name, kept, back) in zip(xs, LAYERS):
        ax.add_patch(FancyBboxPatch((x - w / 2, y_box - hgt / 2), w, hgt, boxstyle="round,pad=0.03",
                                    fc="#eef3fb", ec="tab:blue"))
        ax.text(x, y_box, name, ha="center", va="center", fontsize=9)
        ax.text(x, y_box + hgt / 2 + 0.15, "keeps " + kept, ha="center", va="bottom", fontsize=7.5,
                color="tab:blue")
        ax.text(x, y_box - hgt / 2 - 0.55, back, ha="center", va="top", fontsize=7.5, color="tab:red")
    # forward, left to right, naming the arrays passed on
    ax.text(0.05, y_box, "x", ha="left", va="center", fontsize=11)
    arrow((0.25, y_box), (xs[0] - w / 2, y_box), "tab:blue")
    passed = ["x ⊙ m", "a", "r", "r ⊙ m"]
    for i, text in enumerate(passed):
        arrow((xs[i] + w / 2, y_box), (xs[i + 1] - w / 2, y_box), "tab:blue", text)
    arrow((xs[-1] + w / 2, y_box), (12.55, y_box), "tab:blue", "z (a copy)")
    ax.text(12.55, y_box - 0.15, "(drawn for one hidden layer;\na deeper net repeats\nLinear, ReLU, Dropout)", ha="right", va="top", fontsize=7,
            color="gray")
    # backward, right to left, below the boxes
    y_back = y_box - hgt / 2 - 0.3
    arrow((12.55, y_back), (xs[-1] + w / 2, y_back), "tab:red", "dz = ∂L/∂z", dy=-0.08, va="top")
    grads = {4: "∂L/∂(r ⊙ m)", 3: "∂L/∂r", 2: "∂L/∂a"}
    for i in range(len(LAYERS) - 1, 1, -1):
        arrow((xs[i] - w / 2, y_back), (xs[i - 1] + w / 2, y_back), "tab:red", grads[i], dy=-0.08, va="top")
    ax.text(6.3, 4.2, "model.forward(x, train=True): each layer keeps what its backward needs (blue)",
            ha="center", fontsize=10, color="tab:blue")
    ax.text(6.3, 0.1, "model.backward(dz): the layers in reverse (red), G = the gradient passed down "
            "(dz is scratch); returns [dW1, db1, dW2, db2, …]", ha="center", fontsize=10, color="tab:red")
    fig.tight_layout()
    save_figure_atomic(fig, IMG / "mlp.png", **SAVE)
    plt.close(fig)


FIGURES = ("fd_error", "soft_targets", "mlp")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="*", metavar="NAME", help=f"pictures to draw, of {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--data-dir", default=None, help="folder of the MNIST files")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.which) - set(FIGURES))
    if unknown:
        parser.error(f"unknown picture {', '.join(unknown)}: choose from {', '.join(FIGURES)}")
    plt = pyplot()
    for name in args.which or FIGURES:
        if name == "fd_error":
            draw_fd_error(plt)
        elif name == "soft_targets":
            draw_soft_targets(plt, args.data_dir)
        else:
            draw_mlp(plt)
        print(f"wrote {IMG / (name + '.png')}")


if __name__ == "__main__":
    main()
