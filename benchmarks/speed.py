"""Time a full training step of nanokd against PyTorch on the CPU, and against the machine's sgemm ceiling.

    python -m benchmarks.speed                  # the table of issue 4
    python -m benchmarks.speed --json benchmarks/results/speed.json
    python -m benchmarks.speed --baseline /tmp/old   # also time the nanokd package in /tmp/old/nanokd
    python -m benchmarks.speed --epoch          # also a full MNIST epoch per model and a quick run's peak memory
    python -m benchmarks.speed --threads 1 2    # a table at 1 thread, then one at 2, in one process

For every case of :mod:`benchmarks.steps` (teacher at batch 128 and 256, baseline
student and distillation step at batch 128) it builds the nanokd step and the
PyTorch step on identical shapes, float32, the same number of BLAS threads,
warms both up, and then runs ``--rounds`` rounds.  In each round it times
``--steps`` consecutive steps of each, in alternating order, and the matrix
products of one step alone (``np.matmul`` on the same shapes and transposes,
back to back): that is the *ceiling*, the time nanokd's step would take if
everything but the sgemm calls were free.  Medians over all rounds are
reported, so a burst of load on the (shared) machine hits all three alike.

Threads: ``--threads 1`` by default, for NumPy's BLAS (threadpoolctl) and
``torch.set_num_threads`` alike; ``--threads 2`` on a quiet machine.

Columns: nanokd and PyTorch ms/step, their ratio (< 1: nanokd is faster),
the GFLOP/s of nanokd's step (the flops of its matrix products over the whole
step's time) and that as a fraction of the ceiling's GFLOP/s; then the ceiling
itself (``np gemm ms``) and the same products done by ``torch.mm``, which tell
how much of a ratio comes from the two BLAS libraries alone.  The record also
holds the share of the CPUs that other processes took during the run.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import steps
from benchmarks.common import command_line, machine, now, write_record

DEFAULT_CASES = [("teacher", 128), ("teacher", 256), ("student", 128), ("distill", 128)]


def gemm_ceiling_fn(sizes, N, seed=0):
    """A function doing exactly the matrix products of one step with NumPy's BLAS (preallocated outputs)."""
    rng = np.random.default_rng(seed)
    calls = []
    for _, m, k, n, trans in steps.gemm_shapes(sizes, N):
        # Lay the operands out as nanokd does: x @ W, x.T @ da, da @ W.T.
        a = rng.random((k, m) if trans[0] == "T" else (m, k), dtype=np.float32)
        b = rng.random((n, k) if trans[1] == "T" else (k, n), dtype=np.float32)
        a = a.T if trans[0] == "T" else a
        b = b.T if trans[1] == "T" else b
        out = np.empty((m, n), dtype=np.float32)
        calls.append((a, b, out))

    def run():
        for a, b, out in calls:
            np.matmul(a, b, out=out)
    return run


def torch_gemm_fn(sizes, N, seed=0):
    """The same matrix products with torch.mm (PyTorch's CPU BLAS, MKL in the official wheels), for comparison."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    calls = []
    for _, m, k, n, trans in steps.gemm_shapes(sizes, N):
        a = torch.rand((k, m) if trans[0] == "T" else (m, k), generator=gen)
        b = torch.rand((n, k) if trans[1] == "T" else (k, n), generator=gen)
        a = a.t() if trans[0] == "T" else a
        b = b.t() if trans[1] == "T" else b
        calls.append((a, b, torch.empty(m, n)))

    def run():
        for a, b, out in calls:
            torch.mm(a, b, out=out)
    return run


class MachineLoad:
    """How busy the machine's CPUs were with *other* processes between start() and stop(), from /proc/stat."""

    def start(self):
        self.t0, self.stat0, self.cpu0 = time.perf_counter(), self._stat(), time.process_time()
        return self

    @staticmethod
    def _stat():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return v
        except OSError:
            return None

    def stop(self):
        stat1, cpu1 = self._stat(), time.process_time()
        if self.stat0 is None or stat1 is None:
            return {}
        d = [b - a for a, b in zip(self.stat0, stat1)]
        hz = os.sysconf("SC_CLK_TCK")
        total = sum(d[:8])
        busy = total - d[3] - d[4]  # all but idle and iowait
        ours = (cpu1 - self.cpu0) * hz
        cpus = os.cpu_count() or 1
        try:
            load = open("/proc/loadavg").read().split()[:3]
        except OSError:
            load = None
        return {"cpus": cpus, "others_cpu_share": max(0.0, (busy - ours) / total) if total else None,
                "steal_share": d[7] / total if total else None, "loadavg_at_end": load}


def time_calls(fn, n):
    """Per-call wall times (seconds) of n consecutive calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_case(case, N, rounds, steps_per_round, warmup, torch_ok, baseline=None):
    sizes = steps.CASES[case][0]
    runners = {"nanokd": steps.NanokdStep(case, N), "ceiling": gemm_ceiling_fn(sizes, N)}
    if baseline is not None:
        runners["baseline"] = steps.NanokdStep(case, N, lib=baseline)
    if torch_ok:
        runners["torch"] = steps.TorchStep(case, N)
        runners["torch_gemm"] = torch_gemm_fn(sizes, N)
    for fn in runners.values():
        time_calls(fn, warmup)
    samples = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]  # alternate, so drift hits all alike
        for name in order:
            samples[name] += time_calls(runners[name], steps_per_round)
    med = {name: statistics.median(s) * 1e3 for name, s in samples.items()}
    flops = steps.step_flops(sizes, N)
    row = {"case": case, "batch": N, "sizes": sizes, "gflop_per_step": flops / 1e9,
           "nanokd_ms": med["nanokd"], "ceiling_ms": med["ceiling"],
           "torch_ms": med.get("torch"), "torch_gemm_ms": med.get("torch_gemm"),
           "nanokd_gflops": flops / med["nanokd"] / 1e6, "ceiling_gflops": flops / med["ceiling"] / 1e6,
           "n_samples": len(samples["nanokd"]),
           "nanokd_ms_iqr": _iqr(samples["nanokd"]), "torch_ms_iqr": _iqr(samples.get("torch"))}
    row["ratio"] = row["nanokd_ms"] / row["torch_ms"] if torch_ok else None
    if baseline is not None:
        row["baseline_ms"] = med["baseline"]
        row["baseline_ratio"] = med["baseline"] / row["torch_ms"] if torch_ok else None
        row["speedup_vs_baseline"] = med["baseline"] / row["nanokd_ms"]
    row["torch_gflops"] = flops / row["torch_ms"] / 1e6 if torch_ok else None
    row["fraction_of_ceiling"] = row["ceiling_ms"] / row["nanokd_ms"]
    # the best ratio a step could reach if it were nothing but NumPy's sgemm calls:
    row["ratio_if_only_gemm"] = row["ceiling_ms"] / row["torch_ms"] if torch_ok else None
    return row


def _iqr(s):
    if not s:
        return None
    q = statistics.quantiles(s, n=4)
    return [q[0] * 1e3, q[2] * 1e3]


def kernel_hint(info):
    """A line for a CPU with AVX-512 whose OpenBLAS runs an AVX2 kernel (Haswell, Zen), else None.

    OpenBLAS 0.3.31 has no kernel of its own for AMD's Zen: it runs Haswell's
    AVX2 code there even on a Zen 4 or 5, which executes AVX-512.  On one Zen 5
    its SkylakeX kernel ran the step's products 1.6-1.8 times faster
    (benchmarks/RESULTS.md).  AVX-512 is read from NumPy's dispatch targets.
    """
    pools = info["threadpools"] if isinstance(info.get("threadpools"), list) else []
    kernels = {p["architecture"] for p in pools if p.get("internal_api") == "openblas"}
    if "X86_V4" in str(info.get("numpy_simd", "")).split("+") and kernels & {"Haswell", "Zen"}:
        return ("# this CPU has AVX-512 but OpenBLAS runs its AVX2 kernel: OPENBLAS_CORETYPE=SkylakeX may make the "
                "products faster (it also changes the last bits of every result)")
    return None


def print_table(rows, info):
    print(f"# CPU: {info.get('cpu')}  ({info.get('cpus')} logical CPUs)")
    for p in info["threadpools"] if isinstance(info["threadpools"], list) else []:
        print(f"# threadpool: {p['internal_api']} {p['version']} kernel={p['architecture']} threads={p['num_threads']} ({p['prefix']})")
    print(f"# threads used: {info['threads']}; OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']} OPENBLAS_L2_SIZE={info['OPENBLAS_L2_SIZE']}")
    if info.get("torch"):
        print(f"# torch {info['torch']} threads={info.get('torch_threads')}")
    if kernel_hint(info):
        print(kernel_hint(info))
    head = (f"{'case':<8} {'batch':>5} {'GFLOP':>6} {'nanokd ms':>10} {'torch ms':>9} {'ratio':>6} "
            f"{'nanokd GF/s':>11} {'torch GF/s':>10} {'ceiling GF/s':>12} {'of ceiling':>10} "
            f"{'np gemm ms':>10} {'torch gemm ms':>13}")
    print(head)
    print("-" * len(head))
    for r in rows:
        torch_ms = f"{r['torch_ms']:9.2f}" if r["torch_ms"] else f"{'-':>9}"
        ratio = f"{r['ratio']:6.2f}" if r["ratio"] else f"{'-':>6}"
        tgf = f"{r['torch_gflops']:10.0f}" if r["torch_gflops"] else f"{'-':>10}"
        print(f"{r['case']:<8} {r['batch']:>5} {r['gflop_per_step']:6.3f} {r['nanokd_ms']:10.2f} {torch_ms} {ratio} "
              f"{r['nanokd_gflops']:11.0f} {tgf} {r['ceiling_gflops']:12.0f} {r['fraction_of_ceiling']:10.0%} "
              f"{r['ceiling_ms']:10.2f} " + (f"{r['torch_gemm_ms']:13.2f}" if r["torch_gemm_ms"] else f"{'-':>13}"))
    print("ratio = nanokd / torch ms per step (< 1: nanokd faster); of ceiling = the step's sgemm calls alone "
          "(np gemm ms, NumPy's BLAS) / the whole nanokd step; torch gemm ms = the same products with torch.mm")
    if any("baseline_ms" in r for r in rows):
        print(f"\nbaseline: the nanokd package in {info.get('baseline')}, timed in the same alternation")
        print(f"{'case':<8} {'batch':>5} {'baseline ms':>11} {'ratio':>6} {'of ceiling':>10} {'nanokd ms':>10} "
              f"{'ratio':>6} {'of ceiling':>10} {'speed-up':>8}")
        for r in rows:
            br = f"{r['baseline_ratio']:6.2f}" if r["baseline_ratio"] else f"{'-':>6}"
            nr = f"{r['ratio']:6.2f}" if r["ratio"] else f"{'-':>6}"
            print(f"{r['case']:<8} {r['batch']:>5} {r['baseline_ms']:11.2f} {br} {r['ceiling_ms'] / r['baseline_ms']:10.0%} "
                  f"{r['nanokd_ms']:10.2f} {nr} {r['fraction_of_ceiling']:10.0%} {r['speedup_vs_baseline']:7.2f}x")
    load = info.get("load")
    if load:
        print(f"# during the run, other processes used {load['others_cpu_share']:.0%} of the {load['cpus']} CPUs "
              f"(steal {load['steal_share']:.0%}; load average {' '.join(load['loadavg_at_end'] or [])})")


def _time_at(threads, cases, args, baseline, threadpool_info, threadpool_limits):
    """Every case at ``threads`` BLAS threads (0: NumPy's default); returns (machine info, rows)."""
    if not threads:
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"] if threadpool_info else []
        threads = blas[0]["num_threads"] if blas else os.cpu_count()
    limiter = threadpool_limits(limits=threads, user_api="blas") if threadpool_limits else None
    torch_ok = not args.no_torch
    info = machine()  # CPU model, BLAS library, kernel and threads (after the limit above)
    info["threads"] = threads
    info["cpus"] = info["cpu_count"]  # what the speed records called it before benchmarks.common
    info["threads_limited_by_threadpoolctl"] = limiter is not None
    if torch_ok:
        try:
            import torch

            torch.set_num_threads(threads)
            info["torch"], info["torch_threads"] = torch.__version__, torch.get_num_threads()
            info["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
            info["torch_mkldnn"] = torch.backends.mkldnn.is_available()
        except ImportError:
            print("# torch not installed (pip install nanokd[bench]): timing nanokd and the ceiling only")
            torch_ok = False
    if baseline is not None:
        info["baseline"] = str(Path(baseline.__file__).parent)
    rows = []
    load = MachineLoad().start()
    for case, N in cases:
        rows.append({**bench_case(case, N, args.rounds, args.steps, args.warmup, torch_ok, baseline),
                     "threads": threads})
        print(f"# {case} batch {N}, {threads} thread{'s' if threads > 1 else ''}: done", file=sys.stderr)
    info["load"] = load.stop()
    if limiter is not None:
        limiter.restore_original_limits()
    return info, rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1],
                    help="BLAS threads for NumPy, and torch.set_num_threads, alike (default 1; 0: NumPy's BLAS "
                         "default); several (--threads 1 2) are timed one after the other in this process, a table "
                         "each. On a machine whose cores other jobs share, a 2-thread BLAS stalls whenever one "
                         "of its threads is descheduled, and both libraries' thread pools spin while the other works")
    ap.add_argument("--rounds", type=int, default=15, help="alternating rounds (default 15)")
    ap.add_argument("--steps", type=int, default=8, help="steps timed per runner and round (default 8)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps before the rounds (default 10)")
    ap.add_argument("--cases", default=",".join(f"{c}:{n}" for c, n in DEFAULT_CASES),
                    help="comma-separated case:batch list (default: %(default)s)")
    ap.add_argument("--no-torch", action="store_true", help="time nanokd and the ceiling only")
    ap.add_argument("--epoch", action="store_true",
                    help="also time one full epoch per model on real MNIST and a quick-preset run's peak memory")
    ap.add_argument("--baseline", metavar="DIR", default=None,
                    help="also time the nanokd package in DIR/nanokd (e.g. an older checkout: "
                         "git worktree add /tmp/old REV) in the same alternation, for a before/after table")
    ap.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    args = ap.parse_args(argv)

    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        threadpool_info = threadpool_limits = None
    if threadpool_limits is None and any(args.threads):
        print(f"speed: threadpoolctl is not installed, so --threads {' '.join(map(str, args.threads))} cannot limit "
              f"the BLAS threads (set OPENBLAS_NUM_THREADS instead)", file=sys.stderr)
    baseline = None
    if args.baseline:
        baseline = steps.load_package(args.baseline)
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",") if c]
    rows, infos = [], []
    for threads in args.threads:  # one table per thread count, in this one process
        info, part = _time_at(threads, cases, args, baseline, threadpool_info, threadpool_limits)
        print_table(part, info)
        print()
        rows += part
        infos.append(info)
    info = infos[-1] if len(infos) == 1 else {**infos[-1], "threads": [i["threads"] for i in infos],
                                             "load": [i["load"] for i in infos]}
    threads = infos[0]["threads"]
    record = {"date": now(), "command": command_line("benchmarks.speed", argv), "machine": info, "rows": rows,
              "rounds": args.rounds, "steps_per_round": args.steps}
    if len(infos) > 1:
        record["machine_per_threads"] = infos  # the BLAS pools as each thread count left them
    if args.epoch:
        from benchmarks import epoch

        record["epoch"] = epoch.run_all(threads)
    if args.json:
        write_record(args.json, record)
        print(f"# wrote {args.json}")
    return record


if __name__ == "__main__":
    main()
