"""What the paper's MNIST experiments print and write: records, tables and the sweep's plot.

* :func:`record` writes an experiment's JSON record (``<out>/paper_<name>.json``)
  with its provenance (:mod:`benchmarks.common`), :func:`record_all` that of
  ``all``;
* :func:`print_table` prints the paper's figure beside ours;
* :func:`plot_sweep` draws the temperature sweep;
* :func:`report` turns the records of a folder into the markdown tables of
  RESULTS.md (``python -m benchmarks.paper_mnist report``), so the two agree.

Nothing here trains or evaluates a model: :mod:`benchmarks.paper_experiments` does.
"""

import json
from pathlib import Path

import numpy as np

from benchmarks.common import command_line, git_commit, machine, now, write_record
from nanokd.atomic import save_figure_atomic

#: The module whose command line the records name.
PROG = "benchmarks.paper_mnist"


#: The paper's figures (section 3), test errors out of 10,000 unless marked %.
PAPER = {
    "teacher": 67, "baseline": 146, "distilled": 74,
    "omit3": {"errors": 206, "errors_on_3": 133, "errors_after": 109, "errors_on_3_after": 14, "shift": 3.5},
    "only78": {"error_pct": 47.3, "error_pct_after": 13.2, "shift": 7.6},
}


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


def record(ctx, experiment, models, wall_s, **extra):
    """The JSON record of one experiment, written to ``<out>/paper_<experiment>.json``."""
    args = ctx.args
    settings = {k: v for k, v in vars(args).items() if k not in ("func",)}
    teacher_seed = args.teacher_seed
    if args.teacher:  # a loaded teacher: its recipe is in teacher.trained, and the teacher flags played no part
        for k in settings:
            if k.startswith("teacher_") or k in ("max_minutes", "save_teacher"):
                settings[k] = None
        teacher_seed = ((ctx.teacher_entry or {}).get("trained") or {}).get("seed")
    rec = {"experiment": experiment, "paper": "Hinton, Vinyals & Dean 2015, arXiv 1503.02531, section 3",
           "command": command_line(PROG), "date": now(), "git_commit": git_commit(), "device": ctx.device,
           "machine": machine(), "wall_seconds": round(wall_s, 1), "seeds": list(args.seeds),
           "teacher_seed": teacher_seed, "teacher": ctx.teacher_entry,
           "settings": settings, "models": models, **extra}
    path = Path(args.out) / f"paper_{experiment}.json"
    write_record(path, rec)
    print(f"wrote {path}", flush=True)
    return rec


def record_all(ctx, jobs, phases, wall_s):
    """The record of ``all`` (``<out>/paper_all.json``): how long each phase took, in how many processes."""
    rec = {"experiment": "all", "command": command_line(PROG), "date": now(), "git_commit": git_commit(),
           "device": ctx.device, "machine": machine(), "wall_seconds": round(wall_s, 1), "jobs": jobs,
           "phase_seconds": phases, "teacher": ctx.teacher_entry}
    write_record(Path(ctx.args.out) / "paper_all.json", rec)
    return rec


# ---------------------------------------------------------------------------
# Printing: paper | ours | difference
# ---------------------------------------------------------------------------


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def fmt_ours(values, pct=False):
    m, s = mean_std(values)
    if m is None:
        return "-"
    unit = " %" if pct else ""
    if s is None:
        return f"{m:.1f}{unit}" if pct else f"{m:g}"  # one seed: a count, or a shift such as 1.75
    return f"{m:.1f} ± {s:.1f}{unit}" if pct else f"{m:.1f} ± {s:.1f}"


def print_table(title, rows):
    """rows: (label, paper figure or None, list of our values, is_percent)."""
    head = ("", "paper", "ours", "difference")
    lines = []
    for label, paper, ours, pct in rows:
        m, _ = mean_std(ours)
        p = "-" if paper is None else (f"{paper:g} %" if pct else f"{paper:g}")
        d = "-" if paper is None or m is None else (f"{m - paper:+.1f}" + (" pts" if pct else ""))
        lines.append((label, p, fmt_ours(ours, pct), d))
    widths = [max(len(r[i]) for r in (head, *lines)) for i in range(4)]
    print(f"\n{title}")
    for r in (head, tuple("-" * w for w in widths), *lines):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(flush=True)


def plot_sweep(rec, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plot]'): no plot", flush=True)
        return
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    Ts = rec["temperatures"]
    for width, marker in ((300, "o"), (30, "s")):
        ms = [mean_std(rec["models"][f"{width}x{width}_T{T:g}"]["test_errors"]) for T in Ts]
        line = ax.errorbar(Ts, [m for m, _ in ms], yerr=[s or 0 for _, s in ms], marker=marker, capsize=2,
                           label=f"{width}-{width} student")
        hard = rec["models"].get(f"{width}x{width}_hard")  # older records have no hard-label reference
        if hard:
            ax.axhline(mean_std(hard["test_errors"])[0], color=line[0].get_color(), linestyle=":", linewidth=1,
                       label=f"{width}-{width}, hard labels only")
    ax.axvspan(2.5, 4, color="tab:orange", alpha=0.15, label="paper: best T for 30 units")
    ax.axvspan(8, max(Ts), color="tab:blue", alpha=0.08, label="paper: flat for >= 300 units")
    ax.set_xscale("log")
    ax.set_xticks(Ts)
    ax.set_xticklabels([f"{T:g}" for T in Ts])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("test errors (of 10,000)")
    ax.set_title("Distilled MNIST students vs temperature")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    print(f"wrote {path}", flush=True)


# ---------------------------------------------------------------------------
# The write-up: markdown tables made from the JSON records (so the two agree)
# ---------------------------------------------------------------------------


def _md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def _md_row(label, paper, values, pct=False, unit=""):
    m, _ = mean_std(values)
    p = "-" if paper is None else (f"{paper:g} %" if pct else f"{paper:g}")
    d = "-" if paper is None or m is None else f"{m - paper:+.1f}" + (" pts" if pct else "")
    return (label, p, fmt_ours(values, pct), d)


def _teacher_note(rec):
    """", teacher N errors" for a record that names its teacher (in older records only the table does)."""
    entry = rec.get("teacher") or rec.get("models", {}).get("teacher")
    return f", teacher {entry['test_errors'][0]} errors" if entry and entry.get("test_errors") else ""


def report(folder):
    """Markdown tables of the records in ``folder`` (paper | ours | difference), for RESULTS.md."""
    folder = Path(folder)
    load = lambda name: json.loads((folder / f"paper_{name}.json").read_text()) \
        if (folder / f"paper_{name}.json").is_file() else None
    out, head = [], ("", "paper", "ours", "difference")
    tab = load("table")
    if tab:
        m = tab["models"]
        rows = [_md_row("teacher 2x1200, dropout, max-norm, jitter", PAPER["teacher"], m["teacher"]["test_errors"]),
                _md_row("baseline 2x800, hard labels", PAPER["baseline"], m["baseline"]["test_errors"]),
                _md_row(f"distilled 2x800, T = {m['distilled']['T']:g}, alpha = {m['distilled']['alpha']:g}",
                        PAPER["distilled"], m["distilled"]["test_errors"])]
        if "distilled_hard" in m:
            d = m["distilled_hard"]
            rows.append(_md_row(f"distilled 2x800, T = {d['T']:g}, alpha = {d['alpha']:g}", PAPER["distilled"],
                                d["test_errors"]))
        out += [f"**table** ({tab['device']}, {tab['date']}, commit {tab['git_commit']}, seeds {tab['seeds']}, "
                f"{tab['wall_seconds'] / 60:.1f} min{_teacher_note(tab)}): test errors of 10,000", "", _md_table(head, rows), ""]
    sw = load("sweep")
    if sw:
        Ts = sw["temperatures"]
        rows = []
        hard = lambda width: sw["models"].get(f"{width}x{width}_hard")  # older records have none
        with_hard = all(hard(width) for width in (300, 30))
        for width in (300, 30):
            cells = [fmt_ours(sw["models"][f"{width}x{width}_T{T:g}"]["test_errors"]) for T in Ts]
            rows.append((f"{width}-{width}", *([fmt_ours(hard(width)["test_errors"])] if with_hard else []), *cells))
        head_sw = ("units per layer", *(["hard labels"] if with_hard else []), *[f"T = {T:g}" for T in Ts])
        out += [f"**sweep** ({sw['device']}, {sw['date']}, commit {sw['git_commit']}, seeds {sw['seeds']}, "
                f"{sw['wall_seconds'] / 60:.1f} min{_teacher_note(sw)}): test errors of 10,000 by temperature", "",
                _md_table(head_sw, rows), ""]
    for name in ("omit3", "only78"):
        r = load(name)
        if not r:
            continue
        e, paper = r["models"]["student"], PAPER[name]
        pc = e["errors_per_class"]
        if name == "omit3":
            on3 = lambda key: [c["3"] if "3" in c else c[3] for c in pc[key]]
            rows = [_md_row("errors, no shift", paper["errors"], e["test_errors"]),
                    _md_row(f"of them on the {e['test_class_counts']['3']} test 3s", paper["errors_on_3"], on3("before")),
                    _md_row("class-3 bias raised by the shift chosen on validation", paper["shift"], e["shift"]),
                    _md_row("errors after that shift", paper["errors_after"], e["test_errors_after"]),
                    _md_row("of them on the test 3s", paper["errors_on_3_after"], on3("after")),
                    _md_row(f"errors after the paper's shift {paper['shift']:g}", paper["errors_after"],
                            e["test_errors_paper_shift"]),
                    _md_row("of them on the test 3s", paper["errors_on_3_after"], on3("paper_shift"))]
            what = f"transfer set without 3s ({e['transfer_set_size']} images): test errors of 10,000"
        else:
            n_test = sum(e["test_class_counts"].values())
            pct = lambda key: [100.0 * e_ / n_test for e_ in e[key]]
            rows = [_md_row("test error, no shift", paper["error_pct"], pct("test_errors"), pct=True),
                    _md_row("7 and 8 biases lowered by the shift chosen on validation", paper["shift"], e["shift"]),
                    _md_row("test error after that shift", paper["error_pct_after"], pct("test_errors_after"), pct=True),
                    _md_row(f"test error after the paper's shift {paper['shift']:g}", paper["error_pct_after"],
                            pct("test_errors_paper_shift"), pct=True)]
            what = f"transfer set of only 7s and 8s ({e['transfer_set_size']} images): test error"
        out += [f"**{name}** ({r['device']}, {r['date']}, commit {r['git_commit']}, seeds {r['seeds']}, "
                f"{r['wall_seconds'] / 60:.1f} min{_teacher_note(r)}): {what}", "", _md_table(head, rows), ""]
    con = load("consistent")
    if con:
        m = con["models"]
        t = m["teacher"]
        rows = [_md_row(f"teacher: ensemble of {t['ensemble']} nets", PAPER["teacher"], t["test_errors"])]
        members = {"baseline_elastic": "members: hard labels, jittered and bent images",
                   "baseline_jitter": "members: hard labels, jittered images"}
        for key, label in members.items():
            if key in m:
                rows.append(_md_row(label, PAPER["baseline"], m[key]["test_errors"]))
        for key in ("distilled_consistent", "distilled_consistent_elastic"):
            if key in m:
                d = m[key]
                bent = ", bent images" if key.endswith("_elastic") else ""
                rows.append(_md_row(f"consistent student, T = {d['settings']['T']:g}{bent}", PAPER["distilled"],
                                    d["test_errors"]))
        out += [f"**consistent** (leaves the paper's setting; {con['date']}, commit {con['git_commit']}): "
                "test errors of 10,000", "", _md_table(head, rows), ""]
    return "\n".join(out)
