r"""The "dark knowledge" viewer: what a teacher's soft targets say about an image.

    python -m nanokd.show --model teacher.npz --index 7 --T 1 4 20
    python -m nanokd.show --model teacher.npz --similar
    python -m nanokd.show --model teacher.npz --index 7 --png dark.png
    python -m nanokd.show --curves runs/20250101-120000      # a run's learning curves

A trained teacher puts almost all of its probability on the right class, but
not all of it, and how it spreads the rest is knowledge: a 2 may get 1e-6 of
being a 3 and 1e-9 of being a 7 (Hinton, Vinyals & Dean 2015, section 1).
At T = 1 those numbers are too small to matter in a cross-entropy; raising
the temperature of the softmax, p = softmax(v / T), brings them up to where
a student can learn from them.

The default view shows one test image (as 14 rows of 28 characters, each
character two pixels stacked) and, for each temperature, the teacher's soft
targets as horizontal bars, with the image's label marked.

``--similar`` shows what the teacher has learned about the classes as a
whole: for each class c, the soft targets averaged over all test images of
class c, and the three other classes that get the most of it. The default
temperature for this table is 4, high enough that the ranking is not decided
by the few images the teacher gets wrong (at T = 1 the mean of the small
probabilities is dominated by them), low enough that the classes are still
far apart (as T grows the ranking tends to that of the mean logits).

``--png FILE`` draws the same as a picture (needs matplotlib:
``pip install nanokd[plot]``).

``--curves RUN_DIR`` shows a run's learning curves instead (each role's
training loss and validation errors per epoch, from ``RUN_DIR/curves.json``,
see :mod:`nanokd.curves`) and draws them again into ``RUN_DIR/curves.png``
(or ``--png FILE``).

Images of any size and any number of classes work (``--dataset custom
--data-dir DIR``); the model must take the images' H x W pixels.

The temperature and the gradients it brings are explained in
docs/gradients.md, sections 3 to 5.
"""

import argparse
import math
import os
import sys

import numpy as np

from . import curves as nkcurves
from . import data as nkdata
from .atomic import save_figure_atomic
from .backend import DEVICES, to_numpy
from .losses import softmax
from .mlp import MLP
from .teacher import compute_teacher_logits

#: Class names, in label order (MNIST's are the digits).
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}

DEFAULT_T = (1.0, 4.0, 20.0)   # the image view
DEFAULT_SIMILAR_T = (4.0,)     # the --similar table
BAR_WIDTH = 40

# Characters: Unicode where the terminal can print it, ASCII otherwise.
UNICODE = dict(shades=" ░▒▓█", eighths=" ▏▎▍▌▋▊▉", full="█", frame="┌─┐│└┘", mark="◀")
ASCII = dict(shades=" .:o#", eighths="        ", full="#", frame="+-+|++", mark="<")


# ---------------------------------------------------------------------------
# The pieces of the terminal view
# ---------------------------------------------------------------------------


def render_image(image, chars=UNICODE):
    """An (H, W) uint8 image as ceil(H / 2) strings of W characters (14 of 28 for MNIST).

    Each character stands for two pixels, one above the other (terminal
    characters are about twice as tall as wide), shaded by their mean
    brightness on the ramp " ░▒▓█".  An odd last row is paired with black.
    """
    shades = chars["shades"]
    img = np.asarray(image, dtype=np.float64)
    if len(img) % 2:
        img = np.vstack([img, np.zeros((1, img.shape[1]))])
    pairs = (img[0::2] + img[1::2]) / 2                       # (14, 28) for MNIST
    levels = np.rint(pairs / 255 * (len(shades) - 1)).astype(int)
    return ["".join(shades[k] for k in row) for row in levels]


def framed(lines, chars=UNICODE):
    """Lines of equal width inside a box."""
    tl, h, tr, v, bl, br = chars["frame"]
    width = len(lines[0])
    return [tl + h * width + tr] + [v + line + v for line in lines] + [bl + h * width + br]


def bar(fraction, width=BAR_WIDTH, chars=UNICODE):
    """A horizontal bar ``width`` characters long at fraction 1, in eighths of a character."""
    eighths = int(round(min(max(fraction, 0.0), 1.0) * width * 8))
    full, rest = divmod(eighths, 8)
    text = chars["full"] * full + (chars["eighths"][rest] if rest else "")
    return text.ljust(width)


def format_probability(p):
    """Four decimals, or two significant digits for the tiny ones (the dark knowledge)."""
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def entropy_bits(p):
    """Entropy of a probability vector, in bits (0 log 0 taken as 0)."""
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def soft_target_lines(p, T, names, label, chars=UNICODE):
    """One temperature's soft targets: a header, then one bar per class."""
    width = max(len(n) for n in names)
    lines = [f"T = {T:g}   entropy {entropy_bits(p):.3f} bits (uniform: {math.log2(len(p)):.3f})"]
    for c, (name, pc) in enumerate(zip(names, p)):
        mark = f"  {chars['mark']} label" if c == label else ""
        lines.append(f"  {name:>{width}} {chars['frame'][3]}{bar(pc, chars=chars)}{chars['frame'][3]} "
                     f"{format_probability(pc)}{mark}")
    return lines


# ---------------------------------------------------------------------------
# The teacher's outputs
# ---------------------------------------------------------------------------


def teacher_logits(model, images, batch_size=1000):
    """The model's logits for uint8 images (N, H, W), as a float64 host array (N, C).

    :func:`nanokd.teacher.compute_teacher_logits`, on the images converted
    ``batch_size`` at a time (so a whole test set is never held as floats twice).
    """
    out = [to_numpy(compute_teacher_logits(model, nkdata.to_float(images[i:i + batch_size], model.xp), 1.0,
                                           batch_size)).astype(np.float64)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.sizes[-1]))


def mean_soft_targets(v, y, T, n_classes):
    """Row c: the soft targets softmax(v / T) averaged over the examples of true class c (NaN if none)."""
    p = softmax(v, T)
    means = np.full((n_classes, n_classes), np.nan)
    for c in range(n_classes):
        if (y == c).any():
            means[c] = p[y == c].mean(axis=0)
    return means


def most_similar(means, k=3):
    """For each class, the k other classes with the largest mean soft target, largest first."""
    ranked = []
    for c, row in enumerate(means):
        if np.isnan(row).any():
            ranked.append([])
            continue
        others = [j for j in np.argsort(-row, kind="stable") if j != c]
        ranked.append([int(j) for j in others[:k]])
    return ranked


def similar_lines(means, T, names, counts, chars=UNICODE):
    """The --similar table at one temperature: one row per class."""
    sep = chars["frame"][3]
    lines = [f"T = {T:g}: mean soft targets of the teacher over the test images of each class,",
             "the three other classes it finds most alike (mean probability)"]
    width = max(len(n) for n in names)
    for c, others in enumerate(most_similar(means)):
        if not others:
            lines.append(f"  {names[c]:>{width}} {sep} (no test images)")
            continue
        alike = "   ".join(f"{names[j]} {format_probability(means[c, j])}" for j in others)
        lines.append(f"  {names[c]:>{width}} {sep} {alike}   ({counts[c]} images)")
    return lines


# ---------------------------------------------------------------------------
# The picture
# ---------------------------------------------------------------------------


def _pyplot():
    """matplotlib.pyplot with a file-only backend, or an ImportError that says how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--png needs matplotlib, which is not installed: "
                          "pip install matplotlib (or pip install nanokd[plot])") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_png(path, names, image=None, title="", probs=(), temps=(), label=None,
              similar=(), similar_temps=()):
    """Draw the image view (image and one bar chart per T) and/or the mean soft-target matrices."""
    plt = _pyplot()
    top = image is not None
    rows = int(top) + int(bool(similar))
    cols = max(1 + len(temps) if top else 0, len(similar))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    ticks = np.arange(len(names))
    if top:
        ax = axes[0, 0]
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        for ax, p, T in zip(axes[0, 1:], probs, temps):
            ax.axis("on")
            colors = ["tab:orange" if c == label else "tab:blue" for c in range(len(p))]
            ax.barh(ticks, p, color=colors)
            ax.set_yticks(ticks, names, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.set_title(f"T = {T:g}  (entropy {entropy_bits(p):.2f} bits)", fontsize=9)
    if similar:
        for ax, means, T in zip(axes[-1], similar, similar_temps):
            ax.axis("on")
            off = means.copy()
            np.fill_diagonal(off, np.nan)                   # the diagonal would drown the rest
            im = ax.imshow(off, cmap="viridis")
            ax.set_xticks(ticks, names, fontsize=6, rotation=90)
            ax.set_yticks(ticks, names, fontsize=6)
            ax.set_xlabel("soft target for class", fontsize=8)
            ax.set_ylabel("true class", fontsize=8)
            ax.set_title(f"mean soft targets, T = {T:g}\n(diagonal hidden)", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def _chars_for(stream):
    """Unicode characters if ``stream`` can encode them, else ASCII."""
    encoding = getattr(stream, "encoding", None)
    if encoding is None:  # a text-only stream such as io.StringIO
        return UNICODE
    try:
        "".join(UNICODE.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII
    return UNICODE


def _positive_float(text):
    T = float(text)
    if not (T > 0 and math.isfinite(T)):
        raise argparse.ArgumentTypeError(f"temperatures must be finite and > 0, got {text}")
    return T


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m nanokd.show",
        description="Show a teacher's soft targets (its 'dark knowledge') for a test image at several "
                    "temperatures, or, with --similar, which classes it finds alike; or, with --curves, "
                    "a run's learning curves.")
    parser.add_argument("--model", default=None,
                        help="a model file saved by nanokd (python -m nanokd.train); needed unless --curves")
    parser.add_argument("--curves", metavar="RUN_DIR", default=None,
                        help="show the learning curves of the run in RUN_DIR (its curves.json) and draw them "
                             "into RUN_DIR/curves.png, or --png FILE (the picture needs matplotlib)")
    parser.add_argument("--index", type=int, default=None,
                        help="which test image to show (default 0; with --similar, none unless given)")
    parser.add_argument("--T", type=_positive_float, nargs="+", default=None, metavar="T",
                        help="temperatures (default: 1 4 20 for the image, 4 for --similar)")
    parser.add_argument("--dataset", choices=nkdata.DATASETS, default="mnist")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the four IDX files (default: $NANOKD_DATA, the cache, or download; "
                             "needed for --dataset custom)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the checksum and size checks of the data files (for home-made files)")
    parser.add_argument("--similar", action="store_true",
                        help="for each class, the three classes its images' mean soft targets rank highest")
    parser.add_argument("--png", metavar="FILE", default=None, help="also write the view as a PNG picture (needs matplotlib)")
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    return parser


def main(argv=None):
    """Run the viewer; returns the exit status (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.curves is not None:
        return show_curves(args.curves, args.png)
    if args.model is None:
        parser.error("the following argument is required: --model (or --curves RUN_DIR)")
    out = sys.stdout
    chars = _chars_for(out)
    show_image = args.index is not None or not args.similar
    index = 0 if args.index is None else args.index
    image_temps = args.T or DEFAULT_T
    similar_temps = args.T or DEFAULT_SIMILAR_T

    def fail(message):
        print(f"nanokd.show: error: {message}", file=sys.stderr)
        return 1

    try:
        if args.png:
            _pyplot()  # fail before the slow part if matplotlib is missing
        if not os.path.isfile(args.model):
            return fail(f"no model file {args.model} (train one with: python -m nanokd.train)")
        model = MLP.load(args.model, device=args.device)
        ds = nkdata.load(args.dataset, args.data_dir, verify=not args.no_verify)
    except (OSError, ValueError, ImportError, RuntimeError) as e:  # RuntimeError: no CUDA
        return fail(e)
    h, w = ds.x_test.shape[1:]
    if model.sizes[0] != h * w:
        return fail(f"{args.model} takes inputs of size {model.sizes[0]}, not {h} x {w} = {h * w} pixels "
                    f"(the images of {args.data_dir or args.dataset})")
    x, y = ds.x_test, ds.y_test
    n_classes = model.sizes[-1]
    if len(y) and y.max() >= n_classes:
        return fail(f"{args.model} has {n_classes} outputs, but the test labels go up to {y.max()}: "
                    f"is it a model of another data set?")
    known = CLASS_NAMES.get(args.dataset, ())
    names = known if n_classes == len(known) else tuple(str(c) for c in range(n_classes))
    if show_image and not 0 <= index < len(x):
        return fail(f"--index must be in [0, {len(x) - 1}] ({len(x)} test images), got {index}")

    png = {}
    if show_image:
        v = teacher_logits(model, x[index:index + 1])
        label, pred = int(y[index]), int(v[0].argmax())
        title = f"{args.dataset} test image {index}: label {names[label]}, teacher says {names[pred]}"
        print(title, file=out)
        print("\n".join(framed(render_image(x[index], chars), chars)), file=out)
        probs = [softmax(v, T)[0] for T in image_temps]
        for p, T in zip(probs, image_temps):
            print(file=out)
            print("\n".join(soft_target_lines(p, T, names, label, chars)), file=out)
        png.update(image=x[index], title=title, probs=probs, temps=image_temps, label=label)

    if args.similar:
        v = teacher_logits(model, x)
        counts = np.bincount(y, minlength=n_classes)
        tables = [mean_soft_targets(v, y, T, n_classes) for T in similar_temps]
        for means, T in zip(tables, similar_temps):
            if show_image or means is not tables[0]:
                print(file=out)
            print("\n".join(similar_lines(means, T, names, counts, chars)), file=out)
        png.update(similar=tables, similar_temps=similar_temps)

    if args.png:
        try:
            write_png(args.png, names, **png)
        except OSError as e:
            return fail(f"could not write {args.png}: {e}")
        print(f"\nwrote {args.png}", file=out)
    return 0


def show_curves(run_dir, png=None):
    """``--curves RUN_DIR``: print the run's learning curves and draw them; returns the exit status.

    The picture goes to ``png``, by default ``RUN_DIR/curves.png``.  Without
    matplotlib the numbers are still printed, with one line saying how to get
    the picture; that is an error (status 1) only when ``--png`` asked for it.
    """
    try:
        record = nkcurves.read_curves(run_dir)
    except ValueError as e:
        print(f"nanokd.show: error: {e}", file=sys.stderr)
        return 1
    print("\n".join(nkcurves.curve_lines(record)))
    path = png or os.path.join(run_dir, nkcurves.CURVES_PNG)
    try:
        nkcurves.plot_curves(record, path)
    except ImportError:
        print(f"nanokd.show: no picture: matplotlib is not installed ({nkcurves.PLOT_HINT})", file=sys.stderr)
        return 1 if png else 0
    except OSError as e:
        print(f"nanokd.show: error: could not write {path}: {e}", file=sys.stderr)
        return 1
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
