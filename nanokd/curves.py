r"""Learning curves: each role's training loss and validation errors, per epoch, as numbers and as a picture.

A run of ``python -m nanokd.train`` writes both into its folder:

* ``curves.json``, always: per role (teacher, baseline, distilled), the lists
  ``epoch``, ``loss`` (the mean training loss of the epoch) and ``val_errors``
  (errors on the validation split after the epoch; ``null`` without one);
* ``curves.png``, when matplotlib is installed (``pip install nanokd[plot]``):
  the same numbers, one line per role.

``python -m nanokd.show --curves RUN_DIR`` prints the numbers and draws the
picture again.  The distilled student's loss is the distillation loss
alpha T^2 KL(p || q) + (1 - alpha) CE, not the cross-entropy the other two
minimise, so its loss curve is comparable to theirs in shape, not in height;
the validation errors are comparable across roles.
"""

import json
from pathlib import Path

from .atomic import save_figure_atomic, write_json_atomic

CURVES_JSON = "curves.json"
CURVES_PNG = "curves.png"
PLOT_HINT = "pip install nanokd[plot]"


def curves_record(histories, n_val):
    """The content of curves.json from ``{role: history}`` (histories of :func:`nanokd.trainer.train_model`).

    ``n_val`` is the size of the validation split, to turn errors into
    percentages.  Roles without a history (a loaded teacher) are left out.
    """
    roles = {}
    for role, h in histories.items():
        if h is None:
            continue
        val = [None if e is None else int(e) for e in h["val_errors"]]
        roles[role] = {"epoch": [int(e) for e in h["epoch"]], "loss": [float(v) for v in h["loss"]],
                       "val_errors": val,
                       "val_error_pct": [None if e is None or not n_val else 100.0 * e / n_val for e in val]}
    return {"n_val": int(n_val), "roles": roles}


def write_curves(out, histories, n_val, log=print):
    """Write ``out/curves.json`` and, when matplotlib is installed, ``out/curves.png``; return the record.

    Without matplotlib one line (through ``log``) says how to get the picture.
    """
    out = Path(out)
    record = curves_record(histories, n_val)
    write_json_atomic(out / CURVES_JSON, record)
    try:
        plot_curves(record, out / CURVES_PNG)
    except ImportError:
        if log:
            log(f"curves: {out / CURVES_JSON} (no {CURVES_PNG}: matplotlib is not installed; {PLOT_HINT})")
        return record
    if log:
        log(f"curves: {out / CURVES_JSON} and {out / CURVES_PNG}")
    return record


def read_curves(run_dir):
    """The record in ``run_dir/curves.json``; ValueError naming the file when it is missing or not one."""
    path = Path(run_dir) / CURVES_JSON
    if not path.is_file():
        raise ValueError(f"no {path}: is {run_dir} the folder of a run of python -m nanokd.train "
                         f"(runs before learning curves were recorded have none)?")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("roles"), dict):
        raise ValueError(f"{path} has no 'roles' table: it is not a curves.json of nanokd")
    return record


def curve_lines(record):
    """The record as a text table: one row per epoch, loss and validation errors per role."""
    roles = record["roles"]
    if not roles:
        return ["no trained roles in this run (a loaded teacher has no curves)"]
    n = max(len(r["epoch"]) for r in roles.values())
    head = ["epoch"] + [f"{role} {what}" for role in roles for what in ("loss", "val err")]
    rows = []
    for i in range(n):
        row = [str(i + 1)]
        for r in roles.values():
            if i < len(r["epoch"]):
                e = r["val_errors"][i]
                row += [f"{r['loss'][i]:.4f}", "-" if e is None else str(e)]
            else:
                row += ["", ""]
        rows.append(row)
    widths = [max(len(x[j]) for x in (head, *rows)) for j in range(len(head))]
    fmt = lambda row: "  ".join(c.rjust(w) for c, w in zip(row, widths))
    n_val = record.get("n_val")
    return ([f"learning curves (validation errors out of {n_val})" if n_val else
             "learning curves (no validation split)", fmt(head), "  ".join("-" * w for w in widths)]
            + [fmt(r) for r in rows])


def _pyplot():
    """matplotlib.pyplot with a file-only backend, or an ImportError that says how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"drawing the curves needs matplotlib, which is not installed: {PLOT_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(record, path):
    """Draw the record: training loss (left, log scale) and validation error in % (right), one line per role."""
    plt = _pyplot()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8))
    for role, r in record["roles"].items():
        ax_loss.plot(r["epoch"], r["loss"], marker=".", label=role)
        pct = r.get("val_error_pct") or []
        if any(p is not None for p in pct):
            ax_val.plot(r["epoch"], [float("nan") if p is None else p for p in pct], marker=".", label=role)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("training loss (distilled: its distillation loss)", fontsize=9)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation error (%)")
    ax_val.set_title(f"validation errors ({record.get('n_val', 0)} images)" if record.get("n_val") else
                     "no validation split", fontsize=9)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=100)
    plt.close(fig)
