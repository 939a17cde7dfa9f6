r"""Whole runs of ``python -m nanokd.train`` for a few seeds, their test errors and wall times in one record.

    python -m benchmarks.quick_runs --dataset fashion-mnist --seeds 0 1 2 \
        --json benchmarks/results/fashion_quick.json
    python -m benchmarks.quick_runs --dataset mnist --seeds 0 1 2 --json benchmarks/results/mnist_quick.json

Each seed is one run of the command line (a fresh process: the wall time
includes loading and checking the data), with the data set's default preset
unless ``--preset`` says otherwise, into ``--runs/<dataset>-seed<S>``.  The
record holds each run's exact command, its wall time, the load average
around it (other processes on the machine slow a run down) and its
results.json; it is rewritten after every run.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from nanokd.atomic import write_json_atomic

from .common import git_commit, now
from .fashion_val import machine  # common.machine() with the load average at the start


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quick_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--preset", default=None, help="(default: the data set's default preset)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--runs", default="runs/quick_runs", help="where the run folders go")
    parser.add_argument("--json", required=True, help="the record")
    parser.add_argument("--force", action="store_true", help="overwrite --json and the run folders if they exist")
    args = parser.parse_args(argv)
    record_path = Path(args.json)
    if record_path.exists() and not args.force:
        parser.error(f"argument --json: {record_path} exists; pass --force to overwrite it")

    record = {"what": f"python -m nanokd.train on {args.dataset}, one run per seed", "date": now(),
              "git_commit": git_commit(), "machine": machine(),
              "command": "python -m benchmarks.quick_runs " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
              "runs": [], "complete": False}
    for seed in args.seeds:
        out = Path(args.runs) / f"{args.dataset}-seed{seed}"
        if out.exists() and not args.force:
            parser.error(f"{out} exists; pass --force or another --runs")
        cmd = [sys.executable, "-m", "nanokd.train", "--dataset", args.dataset, "--seed", str(seed), "--device", "cpu",
               "--no-progress", "--out", str(out)]
        cmd += ["--preset", args.preset] if args.preset else []
        cmd += ["--data-dir", args.data_dir] if args.data_dir else []
        load_before = [round(v, 2) for v in os.getloadavg()]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if done.returncode:
            sys.exit(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
        results = json.loads((out / "results.json").read_text())
        models = results["models"]
        record["runs"].append({"seed": seed, "command": shlex.join(["python", *cmd[1:]]), "wall_seconds": round(wall, 1),
                               "load_average_before": load_before,
                               "load_average_after": [round(v, 2) for v in os.getloadavg()],
                               "test_errors": {k: m["test_errors"] for k, m in models.items()},
                               "val_errors": {k: m["val_errors"] for k, m in models.items()},
                               "train_seconds": {k: m["seconds"] for k, m in models.items()},
                               "results": results})
        write_json_atomic(record_path, record)
        print(f"seed {seed}: test errors " + ", ".join(f"{k} {m['test_errors']}" for k, m in models.items())
              + f"; {wall:.0f} s wall (load average {load_before[0]:.1f} before)", flush=True)
    record["complete"] = True
    write_json_atomic(record_path, record)


if __name__ == "__main__":
    main()
