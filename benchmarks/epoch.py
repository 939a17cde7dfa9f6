"""Whole-epoch times on real MNIST, and the peak memory of a whole quick-preset run.

    python -m benchmarks.epoch [--device cpu|cuda] [--data-dir DIR] [--threads N] [--no-quick-run]

(also run by ``python -m benchmarks.speed --epoch``).

* One epoch of each of the paper's three models with ``nanokd.train.train_model``
  and the paper preset's recipes (50,000 training images after the 10,000 held
  out for validation; batch 100; the teacher with dropout, max-norm and its
  2-pixel jitter; the distilled student with the teacher's logits for the whole
  transfer set computed once before the epoch, timed apart as ``setup``).
* ``python -m nanokd.train --preset quick`` as a child process: its wall time and
  peak resident memory (the child's ``ru_maxrss``).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nanokd as nk
from benchmarks.common import REPO, write_record
from nanokd import data as nkdata
from nanokd.presets import PRESETS
from nanokd.trainer import train_model


def default_data_dir():
    """$NANOKD_DATA, else shared/data/mnist beside the checkout (the project's copy), else None (the cache)."""
    if os.environ.get("NANOKD_DATA"):
        return os.environ["NANOKD_DATA"]
    for folder in (REPO / "shared" / "data" / "mnist", REPO.parent / "shared" / "data" / "mnist"):
        if folder.is_dir():
            return str(folder)
    return None


def epoch_times(device="cpu", data_dir=None, log=print):
    """Seconds for one training epoch of the paper's teacher, baseline student and distilled student."""
    xp = nk.get_xp(device)
    ds = nkdata.load("mnist", data_dir)
    x, y, _, _ = nkdata.split_validation(nkdata.to_float(ds.x_train, xp), xp.asarray(ds.y_train), 10000)
    paper = PRESETS["paper"]
    out = {"device": device, "n_train": int(len(y))}
    models = {}
    for role, recipe_name, distil in (("teacher", "teacher", False), ("student", "student", False),
                                      ("distill", "student", True)):
        r = paper[recipe_name]
        model = nk.MLP(r.sizes(), dropout_input=r.dropout_input, dropout_hidden=r.dropout_hidden,
                       max_norm=r.max_norm or None, seed=1, device=device)
        extra = dict(teacher=models["teacher"], T=paper["T"], alpha=paper["alpha"]) if distil else {}
        history = train_model(
            model, x, y, epochs=1, batch_size=r.batch_size, lr=r.lr, momentum=r.momentum,
            momentum_start=r.momentum_start if r.momentum_ramp else None, momentum_ramp=r.momentum_ramp,
            jitter=r.jitter, progress=False, log=None, name=role, **extra)
        models[role] = model
        out[role] = {"sizes": model.sizes, "batch_size": r.batch_size, "jitter": r.jitter,
                     "epoch_seconds": round(history["seconds"][0], 3),
                     "setup_seconds": round(history["setup_seconds"], 3)}
        log(f"  {role:8s} {'-'.join(map(str, model.sizes)):>18}  one epoch of {len(y)} images: "
            f"{history['seconds'][0]:6.2f} s" + (f"  (+ {history['setup_seconds']:.2f} s for the teacher's logits)"
                                                   if distil else "") + (f"  jitter {r.jitter}" if r.jitter else ""))
    return out


def quick_run(device="cpu", data_dir=None, threads=None, log=print):
    """Run the quick preset end to end in a child process; its wall time and peak RSS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")  # the child's nanokd is this checkout's
    if threads:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "nanokd.train", "--preset", "quick", "--device", device,
               "--out", out, "--no-progress"] + (["--data-dir", data_dir] if data_dir else [])
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        results = None
        if (Path(out) / "results.json").is_file():
            results = json.loads((Path(out) / "results.json").read_text())
    res = {"command": " ".join(cmd[1:]).replace(out, "TMP"), "returncode": proc.returncode,
           "seconds": round(seconds, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
           "peak_rss_note": None if before < peak_kib else "an earlier child of this process peaked higher",
           "table": proc.stdout.strip().splitlines()[-8:], "results": results}
    if proc.returncode != 0:
        res["stderr"] = proc.stderr[-3000:]
    log(f"  quick preset, whole run: {seconds:.1f} s, peak resident memory {peak_kib / 1024:.0f} MiB "
        f"(target <= 1024 MiB), exit status {proc.returncode}")
    for line in res["table"]:
        log("    " + line)
    if proc.returncode != 0:
        log(res["stderr"])
    return res


def run_all(threads=None, device="cpu", data_dir=None, quick=True, log=print):
    data_dir = data_dir or default_data_dir()
    log(f"\n# real MNIST ({data_dir or 'the nanokd cache'}), device {device}, BLAS threads {threads or 'default'}")
    record = {"epoch": epoch_times(device, data_dir, log)}
    if quick:
        record["quick_run"] = quick_run(device, data_dir, threads, log)
    return record


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.epoch", description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--data-dir", default=None, help="MNIST folder (default: $NANOKD_DATA or shared/data/mnist)")
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads (default: the library's default)")
    ap.add_argument("--no-quick-run", action="store_true", help="only the epoch times")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    limiter = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=args.threads, user_api="blas")  # noqa: F841
    record = run_all(args.threads, args.device, args.data_dir, not args.no_quick_run)
    if args.json:
        write_record(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
