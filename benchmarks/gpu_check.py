"""One prepared command for a CUDA machine: nanokd on CuPy, checked, timed against torch-CUDA, and trained.

    python -m benchmarks.gpu_check --json gpu_check.json [--data-dir DIR] [--budget 280]
    python -m benchmarks.gpu_check --device cpu       # the same script on the CPU, CUDA timings left out

(from the repository root, or with it on PYTHONPATH).

Sections, each wrapped so that a failure prints its traceback and the next
section still runs; the JSON record is rewritten after every section:

1. ``reference``  :mod:`benchmarks.reference` with nanokd on CuPy (float64 and
   float32) against PyTorch autograd in float64 on the host.
2. ``steps``      the three training steps of :mod:`benchmarks.steps` (teacher,
   student, distillation) at batch 128 and 1024: nanokd on CuPy (with the
   fused kernels of nanokd/fused.py, and without them) against torch on CUDA,
   float32 (TF32 off in both: CuPy's default, and torch's for matmul),
   alternating, medians of the ms/step of blocks of steps bracketed by device
   synchronisations.  Skipped on the CPU (:mod:`benchmarks.speed` is the CPU benchmark).
3. ``no_sync``    the body of nanokd.train's batch loop (index, gather, forward,
   loss into a device accumulator, gradient, backward, SGD step, max-norm) run
   for 8 batches (few enough that their launches fit in the device's queue)
   while the GPU is still busy with a spin kernel queued just before: if the
   host gets through all of them before the spin ends, no batch waited for
   the device, i.e. there is no device-to-host copy or
   synchronisation (and no blocking host-to-device copy) inside the loop.
4. ``train``      ``python -m nanokd.train --preset quick --device cuda`` (the
   whole experiment, in this process) and its table.
5. ``cpu_speed``  if time is left: :mod:`benchmarks.speed` on this machine's CPU
   (1 and 2 BLAS threads), whose cores are usually quieter than a laptop's.

Everything it measures is printed as it goes; the whole run is meant to stay
within 5 minutes on an H100 (``--budget`` seconds: sections that would not
fit are skipped and say so).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import nanokd as nk
from benchmarks import steps
from benchmarks.common import REPO, write_record
from nanokd import fused

T0 = time.perf_counter()


def elapsed():
    return time.perf_counter() - T0


def say(*args):
    print(*args, flush=True)


# --------------------------------------------------------------------------- environment


def environment(xp):
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "numpy": np.__version__, "nanokd": nk.__version__, "host": platform.node(), "argv": sys.argv}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            info["torch_cuda_version"] = torch.version.cuda
            info["torch_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception as e:  # noqa: BLE001
        info["torch"] = f"unavailable: {e!r}"
    if xp is not np:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info.update(cupy=cupy.__version__, gpu=props["name"].decode() if isinstance(props["name"], bytes)
                    else str(props["name"]), cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                    cuda_driver=cupy.cuda.runtime.driverGetVersion(),
                    gpu_memory_gib=round(props["totalGlobalMem"] / 2 ** 30, 1),
                    CUPY_TF32=os.environ.get("CUPY_TF32"))
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        info["cpus"] = os.cpu_count()
    except Exception:  # noqa: BLE001
        pass
    return info


# --------------------------------------------------------------------------- 1. reference


def section_reference(xp, quick):
    import torch

    from benchmarks import reference

    torch.set_num_threads(1)  # tiny tensors
    n_cases, n_mlp = (60, 3) if quick else (200, 6)
    say(f"reference checks: nanokd on {'CuPy' if xp is not np else 'NumPy'}, PyTorch float64 on the host; "
        f"{n_cases} loss cases and {n_mlp} MLPs per dtype")
    res = reference.run(xp, n_loss_cases=n_cases, n_mlp_cases=n_mlp, log=say)
    res["sgd"] = check_sgd(xp)
    say("reference: " + ("all within targets" if res["all_within"] else
                         "within targets except float32 rounding inherent to the formula (PyTorch too)"
                         if res["ok"] else "SOME ERRORS ABOVE TARGET"))
    return res


def check_sgd(xp):
    """nk.SGD on xp (the fused kernel on CuPy) against its formula written out in NumPy float64."""
    out = {}
    for dtype in ("float64", "float32"):
        rng = np.random.default_rng(0)
        shapes = [(300, 200), (200,)]
        ref = [rng.normal(size=s) for s in shapes]
        params = [xp.asarray(p.astype(dtype)) for p in ref]
        ref = [p.astype(dtype).astype(np.float64) for p in ref]
        opt = nk.SGD(params, lr=0.05, momentum=0.9)
        u = [np.zeros_like(p) for p in ref]
        for _ in range(4):
            grads = [rng.normal(size=s) for s in shapes]
            opt.step([xp.asarray(g.astype(dtype)) for g in grads])
            for w, g, ui in zip(ref, grads, u):
                ui *= 0.9
                ui += g.astype(dtype).astype(np.float64)
                w -= 0.05 * ui
        out[dtype] = max(float(np.abs(nk.to_numpy(p) - w).max() / np.abs(w).max()) for p, w in zip(params, ref))
        say(f"  SGD with momentum on {'CuPy' if xp is not np else 'NumPy'} {dtype} vs its formula: "
            f"worst relative error {out[dtype]:.2e} (target {'1e-12' if dtype == 'float64' else '1e-5'})")
    return out


# --------------------------------------------------------------------------- 2. step timings


def _timer(device):
    """sync() for the device of a runner, so that a timed block starts and ends with the GPU idle."""
    if device == "cuda":
        import cupy
        import torch

        def sync():
            cupy.cuda.Device().synchronize()
            torch.cuda.synchronize()
        return sync
    return lambda: None


def time_block(fn, n, sync):
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n


def section_steps(device, batches, rounds, block, warmup):
    sync = _timer(device)
    rows = []
    for N in batches:
        for case in ("teacher", "student", "distill"):
            try:
                rows.append(_time_case(case, N, device, sync, rounds, block, warmup))
            except Exception:  # noqa: BLE001  one failing case must not stop the others
                tb = traceback.format_exc()
                say(f"  {case} batch {N}: FAILED\n{tb}")
                rows.append({"case": case, "batch": N, "error": tb})
    breakdown = {}
    for case in ("teacher", "distill"):
        try:
            breakdown[case] = _breakdown(case, max(batches), device, sync)
        except Exception:  # noqa: BLE001
            breakdown[case] = {"error": traceback.format_exc()}
            say(f"  breakdown {case}: FAILED\n{breakdown[case]['error']}")
    big = [r for r in rows if r["batch"] == max(batches) and "ratio" in r]
    verdict = bool(big) and all(r["ratio"] <= 1.0 for r in big)
    ratios = ", ".join(f"{r['case']} {r['ratio']:.2f}" for r in big)
    say(f"GPU target (nanokd <= 1.0x torch at batch {max(batches)}): {'met' if verdict else 'NOT met'} ({ratios})")
    return {"rows": rows, "target_met_at_largest_batch": verdict, "rounds": rounds, "block": block,
            "nanokd_breakdown": breakdown}


def _breakdown(case, N, device, sync, reps=30):
    """Where nanokd's step spends its time: ms per part, each part timed alone between synchronisations."""
    step = steps.NanokdStep(case, N, device=device)
    nk_, m = step.nk, step.model
    T, alpha = steps.T, steps.ALPHA
    state = {}

    fast = fused.active(m.xp)  # the parts of nanokd.fused.train_step, or of the plain step

    def forward():
        z = fused.mlp_forward(m, step.x) if fast else None
        state["z"] = m.forward(step.x, train=True) if z is None else z

    def loss():
        z = state["z"]
        rows = fused.loss_rows(z, step.v if step.distill else None, step.y, T, alpha if step.distill else 0.0) \
            if fast else None
        if rows is not None:
            state["loss"], state["g"] = rows[0].mean(), rows[1]
        elif step.distill:
            state["loss"], state["g"] = nk_.distillation_loss_and_grad(z, step.v, step.y, T, alpha, check=False)
        else:
            state["loss"], state["g"] = nk_.cross_entropy_and_grad(z, step.y, check=False)

    def backward():
        grads = fused.mlp_backward(m, state["g"]) if fast else None
        state["grads"] = m.backward(state["g"]) if grads is None else grads

    def update():
        if not (fast and fused.momentum_step(step.opt, state["grads"])):
            step.opt.step(state["grads"])

    parts = {"forward": forward, "loss+grad": loss, "backward": backward, "SGD": update}
    for _ in range(5):
        for fn in parts.values():
            fn()
    times = {k: [] for k in parts}
    for _ in range(reps):
        for name, fn in parts.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    out = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    say(f"  nanokd {case} batch {N}, ms per part (each alone, synchronised): "
        + "  ".join(f"{k} {v:.3f}" for k, v in out.items()))
    return out


def _fused(step, enabled):
    """``step`` run with nanokd's fused GPU kernels on, or off (inside ``nanokd.fused.disabled()``)."""
    def run():
        if enabled:
            return step()
        with fused.disabled():
            return step()
    return run


def _time_case(case, N, device, sync, rounds, block, warmup):
    """ms/step of nanokd (fused kernels, and plain) and torch for one case and batch size, alternating."""
    runners = {"nanokd": _fused(steps.NanokdStep(case, N, device=device), True),
               "nanokd_plain": _fused(steps.NanokdStep(case, N, device=device), False),
               "torch": steps.TorchStep(case, N, device=device)}
    for fn in runners.values():
        time_block(fn, warmup, sync)
    samples = {k: [] for k in runners}
    names = list(runners)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            samples[name].append(time_block(runners[name], block, sync))
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    flops = steps.step_flops(steps.CASES[case][0], N)
    row = {"case": case, "batch": N, "nanokd_ms": med["nanokd"], "torch_ms": med["torch"],
           "ratio": med["nanokd"] / med["torch"], "nanokd_plain_ms": med["nanokd_plain"],
           "ratio_plain": med["nanokd_plain"] / med["torch"], "nanokd_tflops": flops / med["nanokd"] / 1e9,
           "torch_tflops": flops / med["torch"] / 1e9, "samples": len(samples["nanokd"]),
           "min_nanokd_ms": min(samples["nanokd"]) * 1e3, "min_torch_ms": min(samples["torch"]) * 1e3}
    say(f"  {case:8s} batch {N:5d}: nanokd {row['nanokd_ms']:7.3f} ms  torch {row['torch_ms']:7.3f} ms  "
        f"ratio {row['ratio']:5.2f}  ({row['nanokd_tflops']:.2f} vs {row['torch_tflops']:.2f} TFLOP/s);  "
        f"without the fused kernels {row['nanokd_plain_ms']:7.3f} ms, ratio {row['ratio_plain']:5.2f}")
    return row


# --------------------------------------------------------------------------- 3. no host<->device sync


SPIN_SRC = r"""
extern "C" __global__ void spin(long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < (unsigned long long)ns);
}
"""


def section_no_sync(n_batches=8, batch_size=100, n=6000):
    """The batch loop of nanokd.train.train_model, run while the GPU is busy: does any batch wait for it?"""
    import cupy

    xp = cupy
    rng = np.random.default_rng(0)
    x_all = xp.asarray(rng.random((n, 784), dtype=np.float32))
    y_all = xp.asarray(rng.integers(0, 10, n))
    v_all = xp.asarray((3 * rng.standard_normal((n, 10))).astype(np.float32))
    perm = xp.asarray(rng.permutation(n))
    out = {}
    for role in ("teacher", "distill"):
        try:
            if role == "teacher":
                model = nk.MLP([784, 1200, 1200, 10], dropout_input=0.2, dropout_hidden=0.5, max_norm=3.5, device="cuda")
            else:
                model = nk.MLP([784, 800, 800, 10], device="cuda")
            optimizer = nk.SGD(model.params, lr=0.1, momentum=0.9)
            loss_sum = xp.zeros((), dtype=xp.float64)

            def batch(b):
                nonlocal loss_sum
                idx = perm[(b * batch_size) % n:(b * batch_size) % n + batch_size]
                xb, yb = x_all[idx], y_all[idx]
                z = model.forward(xb, train=True)
                if role == "distill":
                    vb = v_all[idx]
                    loss, g = nk.distillation_loss_and_grad(z, vb, yb, 20.0, 0.9, check=False)
                    loss_sum += loss
                else:
                    loss, g = nk.cross_entropy_and_grad(z, yb, check=False)
                    loss_sum += loss
                optimizer.step(model.backward(g))
                model.apply_max_norm()

            for b in range(5):  # warm up: kernels compiled, memory pool filled
                batch(b)
            cupy.cuda.Device().synchronize()
            t0 = time.perf_counter()
            for b in range(5):
                batch(b)
            cupy.cuda.Device().synchronize()
            per_batch = (time.perf_counter() - t0) / 5
            spin_s = max(1.0, 5 * per_batch * n_batches)
            spin = cupy.RawKernel(SPIN_SRC, "spin")  # busy-waits spin_s seconds of the GPU's own clock
            spin((1,), (1,), (np.int64(spin_s * 1e9),))
            spin_done = cupy.cuda.Event()
            spin_done.record()
            t0 = time.perf_counter()
            for b in range(n_batches):
                batch(b)
            host_s = time.perf_counter() - t0
            gpu_still_busy = not spin_done.done
            cupy.cuda.Device().synchronize()
            total_s = time.perf_counter() - t0
            ok = gpu_still_busy and host_s < spin_s
            out[role] = {"batches": n_batches, "host_seconds": round(host_s, 4), "spin_seconds": round(spin_s, 3),
                         "until_idle_seconds": round(total_s, 3), "gpu_busy_after_loop": bool(gpu_still_busy),
                         "no_sync_in_loop": bool(ok), "loss_mean": float(loss_sum) / (n_batches + 10)}
            say(f"  {role:8s}: the host issued {n_batches} batches in {host_s * 1e3:.1f} ms while a {spin_s:.2f} s spin "
                f"kernel queued before them was {'still running' if gpu_still_busy else 'ALREADY DONE'}: "
                + ("no batch waited for the device (0 synchronisations, 0 device-to-host copies)" if ok
                   else "SOME BATCH WAITED FOR THE DEVICE (a synchronisation or copy in the loop)"))
        except Exception:  # noqa: BLE001  the other role still runs
            tb = traceback.format_exc()
            say(f"  {role}: FAILED\n{tb}")
            out[role] = {"error": tb}

    if not any("no_sync_in_loop" in v for v in out.values()):
        raise RuntimeError("no role finished the check")
    return out


# --------------------------------------------------------------------------- 4. train


def section_train(device, data_dir, out_dir, extra):
    from nanokd import train

    argv = ["--preset", "quick", "--device", device, "--out", str(out_dir), "--no-progress"] + extra
    if data_dir:
        argv += ["--data-dir", data_dir]
    say("python -m nanokd.train " + " ".join(argv))
    t0 = time.perf_counter()
    status = train.main(argv)
    seconds = time.perf_counter() - t0
    res = {"argv": argv, "exit_status": status, "seconds": round(seconds, 1)}
    results = Path(out_dir) / "results.json"
    if results.is_file():
        res["results"] = json.loads(results.read_text())
    say(f"train: exit status {status}, {seconds:.1f} s")
    if status != 0:
        raise RuntimeError(f"nanokd.train exited with status {status}")
    return res


# --------------------------------------------------------------------------- 5. CPU speed


def section_cpu_speed(rounds, deadline):
    """benchmarks.speed in a child process per thread count (BLAS threads set by environment, threadpoolctl or
    not)."""
    import subprocess

    out = {}
    for threads in (1, 2):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        timeout = deadline - elapsed()
        if timeout < 30:
            out[f"threads_{threads}"] = {"skipped": f"{timeout:.0f} s of the budget left"}
            say(f"benchmarks.speed --threads {threads}: skipped, {timeout:.0f} s of the budget left")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "speed.json"
            cmd = [sys.executable, "-m", "benchmarks.speed", "--threads", str(threads), "--rounds", str(rounds),
                   "--json", str(path)]
            say("python " + " ".join(cmd[1:-2]))
            try:  # from the repository root, where `benchmarks` (and this checkout's nanokd) is found
                proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                out[f"threads_{threads}"] = {"error": f"timed out after {timeout:.0f} s (the budget)"}
                say(f"  timed out after {timeout:.0f} s (the budget)")
                continue
            say(proc.stdout.rstrip())
            if proc.returncode != 0 or not path.is_file():
                say(proc.stderr[-3000:])
                out[f"threads_{threads}"] = {"error": f"exit status {proc.returncode}", "stderr": proc.stderr[-3000:]}
                continue
            out[f"threads_{threads}"] = json.loads(path.read_text())
    if not any("rows" in v for v in out.values()):
        raise RuntimeError(f"no benchmarks.speed run finished: {out}")
    return out


# --------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                    help="cuda (default when CuPy sees a GPU) or cpu (everything but the CUDA timings)")
    ap.add_argument("--json", metavar="PATH", default=None, help="write the record here (after every section)")
    ap.add_argument("--data-dir", default=None, help="MNIST folder for the training section (default: $NANOKD_DATA, "
                                                     "shared/data/mnist, or nanokd's cache)")
    ap.add_argument("--budget", type=float, default=280.0, help="seconds for the whole run (default 280)")
    ap.add_argument("--batches", default="128,1024", help="batch sizes of the step timings (default 128,1024)")
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds per step timing (default 10)")
    ap.add_argument("--train-args", default=None, metavar="'FLAGS'",
                    help="extra flags for nanokd.train (default: none on cuda; '--epochs 1' on the CPU, to keep "
                         "the check short)")
    ap.add_argument("--skip", default="", help="comma-separated sections to leave out "
                                               "(reference, steps, no_sync, train, cpu_speed)")
    args = ap.parse_args(argv)

    device = nk.resolve_device(args.device) if args.device != "cuda" else "cuda"
    xp = nk.get_xp(device) if device == "cuda" else np
    record = {"environment": None, "sections": {}, "device": device}
    skip = {s for s in args.skip.split(",") if s}

    def save():
        if args.json:
            write_record(args.json, record, default=str)

    def section(name, need_seconds, fn, *a):
        left = args.budget - elapsed()
        say(f"\n===== {name}  (t = {elapsed():.0f} s, {left:.0f} s of the budget left)")
        if name in skip:
            record["sections"][name] = {"status": "skipped", "why": "--skip"}
            say("skipped (--skip)")
        elif left < need_seconds:
            record["sections"][name] = {"status": "skipped", "why": f"budget: {left:.0f} s left, needs ~{need_seconds}"}
            say(f"skipped: {left:.0f} s left of the budget, the section needs about {need_seconds} s")
        else:
            t0 = time.perf_counter()
            try:
                res = fn(*a)
                record["sections"][name] = {"status": "ok", "seconds": round(time.perf_counter() - t0, 1),
                                            "result": res}
            except Exception:  # noqa: BLE001  one failing section must not stop the others
                tb = traceback.format_exc()
                say(tb)
                record["sections"][name] = {"status": "failed", "seconds": round(time.perf_counter() - t0, 1),
                                            "traceback": tb}
        save()

    say(f"nanokd gpu_check: device {device}")
    try:
        record["environment"] = environment(xp)
        for k, v in record["environment"].items():
            say(f"  {k}: {v}")
    except Exception:  # noqa: BLE001
        record["environment"] = {"error": traceback.format_exc()}
        say(record["environment"]["error"])
    save()

    batches = [int(b) for b in args.batches.split(",") if b]
    if args.data_dir is None:
        from benchmarks import epoch

        args.data_dir = epoch.default_data_dir()
    section("reference", 20, section_reference, xp, device != "cuda")
    if device == "cuda":
        section("steps", 60, section_steps, "cuda", batches, args.rounds, 20, 10)
        section("no_sync", 20, section_no_sync)
    else:
        for name in ("steps", "no_sync"):
            record["sections"][name] = {"status": "skipped", "why": "CUDA timings: no GPU (device cpu)"}
            say(f"\n===== {name}: skipped on the CPU (no CUDA); benchmarks.speed times the CPU")
    with tempfile.TemporaryDirectory() as out_dir:
        extra = args.train_args.split() if args.train_args is not None else ([] if device == "cuda" else
                                                                            ["--epochs", "1"])
        section("train", 60 if device == "cuda" else 100, section_train, device, args.data_dir, out_dir, extra)
    section("cpu_speed", 75, section_cpu_speed, 5, args.budget - 5)

    record["seconds"] = round(elapsed(), 1)
    failed = [k for k, v in record["sections"].items() if v["status"] == "failed"]
    say(f"\ngpu_check done in {elapsed():.0f} s; sections: "
        + ", ".join(f"{k} {v['status']}" for k, v in record["sections"].items()))
    save()
    if args.json:
        say(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
