"""nanokd's losses and MLP gradients against PyTorch autograd.

    python -m benchmarks.reference                 # NumPy, float64 and float32
    python -m benchmarks.reference --device cuda   # nanokd on CuPy (PyTorch stays on the CPU, float64)
    python -m benchmarks.reference --json benchmarks/results/reference.json

For random batch sizes, class counts, temperatures (0.5 to 50, log-uniform),
alphas and logit scales, every loss of nanokd and its gradient with respect
to z is compared with PyTorch autograd computing the same formula in float64
on the same inputs (the float32 inputs of a float32 check, cast up):

* ``kd_loss``            ``F.kl_div(F.log_softmax(z/T), F.log_softmax(v/T), log_target=True, reduction="batchmean") * T^2``
* ``cross_entropy``      ``F.cross_entropy(z, y)``
* ``distillation_loss``  ``alpha * kd + (1 - alpha) * cross_entropy``
* ``logit_matching_loss`` ``0.5 * ((z - v)^2).sum(1).mean()``
* ``log_softmax``, ``softmax`` (values only) ``F.log_softmax(z/T)``, ``F.softmax(z/T)``

and every parameter gradient of an MLP with dropout (``distillation_loss``
through the whole net, with the dropout masks that nanokd drew applied as
fixed multipliers in PyTorch).

The error of a quantity is the largest absolute difference, divided by the
largest magnitude of the reference quantity (for a loss value: by the value
itself).  The worst over all cases is reported per quantity, against the
targets 1e-9 (float64) and 1e-5 (float32).

The checks are functions of the array module ``xp`` and the dtype, used by
this script, by :mod:`benchmarks.gpu_check` (xp = cupy) and by tests/test_reference_torch.py.
"""

import argparse
import math
import sys

import numpy as np

import nanokd as nk
from benchmarks.common import write_record

TARGETS = {"float64": 1e-9, "float32": 1e-5}


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


def _host(a):
    return np.asarray(nk.to_numpy(a), dtype=np.float64)


def _rel_error(mine, ref):
    """max |mine - ref| / max |ref|  (both on the host, float64)."""
    mine, ref = _host(mine), np.asarray(ref, dtype=np.float64)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return float(np.abs(mine - ref).max()) / max(scale, 1e-300)


def draw_loss_case(rng):
    """Random N, C, T, alpha, logit scale, as the issue asks: T log-uniform in [0.5, 50], scale in [0.1, 30]."""
    return dict(N=int(rng.integers(1, 65)), C=int(rng.integers(2, 101)),
                T=float(math.exp(rng.uniform(math.log(0.5), math.log(50.0)))),
                alpha=float(rng.uniform(0.0, 1.0)),
                scale=float(math.exp(rng.uniform(math.log(0.1), math.log(30.0)))))


def torch_losses(z, v, y, T, alpha, dtype="float64"):
    """Loss values and gradients w.r.t. z from PyTorch autograd, on the host, computed in ``dtype``."""
    torch, F = _torch()
    out = {}
    zt = torch.tensor(z, dtype=getattr(torch, dtype))
    vt = torch.tensor(v, dtype=getattr(torch, dtype))
    yt = torch.tensor(y, dtype=torch.int64)

    def value_and_grad(fn):
        zz = zt.clone().requires_grad_(True)
        loss = fn(zz)
        loss.backward()
        return float(loss.detach()), zz.grad.numpy().astype(np.float64)

    def kd(zz):
        return F.kl_div(F.log_softmax(zz / T, dim=1), F.log_softmax(vt / T, dim=1),
                        log_target=True, reduction="batchmean") * (T * T)

    out["kd_loss"] = value_and_grad(kd)
    out["cross_entropy"] = value_and_grad(lambda zz: F.cross_entropy(zz, yt))
    out["distillation_loss"] = value_and_grad(lambda zz: alpha * kd(zz) + (1 - alpha) * F.cross_entropy(zz, yt))
    out["logit_matching_loss"] = value_and_grad(lambda zz: 0.5 * ((zz - vt) ** 2).sum(dim=1).mean())
    out["log_softmax"] = (None, F.log_softmax(zt / T, dim=1).numpy().astype(np.float64))
    out["softmax"] = (None, F.softmax(zt / T, dim=1).numpy().astype(np.float64))
    return out


def nanokd_losses(z, v, y, T, alpha):
    """The same quantities from nanokd (arrays on z's device)."""
    return {
        "kd_loss": (nk.kd_loss(z, v, T), nk.kd_loss_grad(z, v, T)),
        "cross_entropy": (nk.cross_entropy(z, y), nk.cross_entropy_grad(z, y)),
        "distillation_loss": (nk.distillation_loss(z, v, y, T, alpha), nk.distillation_loss_grad(z, v, y, T, alpha)),
        "logit_matching_loss": (nk.logit_matching_loss(z, v), nk.logit_matching_loss_grad(z, v)),
        "log_softmax": (None, nk.log_softmax(z, T)),
        "softmax": (None, nk.softmax(z, T)),
    }


def check_losses(xp=np, dtype="float64", n_cases=200, seed=0):
    """Worst relative error per quantity ("kd_loss value", "kd_loss grad", ...) over n_cases random cases.

    Returns {quantity: {"error": worst, "case": where it occurred, "torch_same_dtype": worst error
    of PyTorch itself computing in ``dtype`` (float32 only)}}.  The last one tells rounding that
    is inherent to evaluating the formula in float32 from a defect of nanokd.
    """
    rng = np.random.default_rng(seed)
    worst = {}
    for i in range(n_cases):
        case = draw_loss_case(rng)
        N, C = case["N"], case["C"]
        z = (rng.normal(size=(N, C)) * case["scale"]).astype(dtype)
        v = (rng.normal(size=(N, C)) * case["scale"]).astype(dtype)
        y = rng.integers(0, C, size=N)
        ref = torch_losses(z, v, y, case["T"], case["alpha"])
        same = torch_losses(z, v, y, case["T"], case["alpha"], dtype) if dtype != "float64" else None
        mine = nanokd_losses(xp.asarray(z), xp.asarray(v), xp.asarray(y), case["T"], case["alpha"])
        for name, (ref_value, ref_grad) in ref.items():
            value, grad = mine[name]
            kinds = [("grad" if ref_value is not None else "value", grad, ref_grad, 1)]
            if ref_value is not None:
                kinds.append(("value", np.asarray(float(value)), np.asarray(ref_value), 0))
            for kind, got, want, k in kinds:
                key = f"{name} {kind}"
                w = worst.setdefault(key, {"error": -1.0, "case": None, "torch_same_dtype": None})
                err = _rel_error(got, want)
                if err > w["error"]:
                    w["error"], w["case"] = err, dict(case, index=i)
                if same is not None:
                    theirs = same[name][k] if k == 1 or same[name][0] is None else np.asarray(same[name][0])
                    w["torch_same_dtype"] = max(w["torch_same_dtype"] or 0.0, _rel_error(theirs, want))
    return worst


def check_mlp(xp=np, dtype="float64", n_cases=6, seed=0, sizes=None):
    """Worst relative error of every parameter gradient (dW1, db1, ...) of an MLP with dropout.

    nanokd draws its dropout masks in a training forward; PyTorch multiplies by
    the same masks, so both differentiate the same function of the weights.
    The loss is ``distillation_loss`` with random T and alpha.
    """
    torch, F = _torch()
    rng = np.random.default_rng(seed)
    worst = {}
    device = "cuda" if xp is not np else "cpu"
    for i in range(n_cases):
        case = draw_loss_case(rng)
        N = case["N"]
        net_sizes = sizes or [int(rng.integers(5, 60)), int(rng.integers(5, 40)), int(rng.integers(5, 40)), case["C"]]
        model = nk.MLP(net_sizes, dropout_input=0.2, dropout_hidden=0.5, seed=int(rng.integers(1 << 30)),
                       dtype=dtype, device=device)
        x = rng.uniform(0, 1, size=(N, net_sizes[0])).astype(dtype)
        v = (rng.normal(size=(N, net_sizes[-1])) * case["scale"]).astype(dtype)
        y = rng.integers(0, net_sizes[-1], size=N)
        T, alpha = case["T"], case["alpha"]
        xd, vd, yd = xp.asarray(x), xp.asarray(v), xp.asarray(y)
        z = model.forward(xd, train=True)
        grads = [_host(g).copy() for g in model.backward(nk.distillation_loss_grad(z, vd, yd, T, alpha))]
        loss = float(nk.distillation_loss(z, vd, yd, T, alpha))
        masks = [_host(layer.mask) for layer in model.layers if isinstance(layer, nk.Dropout)]

        # PyTorch: the same net, the same weights and masks, float64.
        params = [torch.tensor(_host(p), requires_grad=True) for p in model.params]
        h = torch.tensor(x.astype(np.float64)) * torch.tensor(masks[0])
        n_layers = len(net_sizes) - 1
        for k in range(n_layers):
            h = h @ params[2 * k] + params[2 * k + 1]
            if k < n_layers - 1:
                h = torch.relu(h) * torch.tensor(masks[k + 1])
        vt, yt = torch.tensor(v.astype(np.float64)), torch.tensor(y)
        kd = F.kl_div(F.log_softmax(h / T, dim=1), F.log_softmax(vt / T, dim=1),
                      log_target=True, reduction="batchmean") * (T * T)
        ref_loss = alpha * kd + (1 - alpha) * F.cross_entropy(h, yt)
        ref_loss.backward()
        errors = {"mlp loss value": abs(loss - ref_loss.item()) / max(abs(ref_loss.item()), 1e-300)}
        for k, (g, p) in enumerate(zip(grads, params)):
            name = f"mlp d{'W' if k % 2 == 0 else 'b'}{k // 2 + 1}"
            errors[name] = _rel_error(g, p.grad.numpy())
        for key, err in errors.items():
            if key not in worst or err > worst[key]["error"]:
                worst[key] = {"error": err, "case": dict(case, index=i, sizes=net_sizes), "torch_same_dtype": None}
    return worst


FLOAT32_NOTE = """
  note: with T large next to the logits, p and q are both close to uniform and
  KL(p || q) is of second order in (z - v)/T, while each term p_i (log p_i - log q_i)
  of the textbook sum is of first order: summed as written in float32, the value's
  relative error grows like 6e-8 log(C) / KL, and T (q - p)/N, a difference of two
  nearly equal probabilities, like 6e-8 / |q - p|.  The column 'PyTorch float32'
  shows that formula's rounding.  nanokd sums KL = sum_i q_i psi(l_i) with
  l = log p - log q computed from (v - z)/T (losses.log_ratio, docs/gradients.md
  appendix A), which keeps float32 within the target there.  A row above target
  here means that this no longer holds: a bug, not rounding."""


def run(xp=np, dtypes=("float64", "float32"), n_loss_cases=200, n_mlp_cases=6, seed=0, log=print):
    """All checks for each dtype; prints a table and returns {dtype: {quantity: {...}}, "ok": bool}."""
    results, ok, strict = {}, True, True
    for dtype in dtypes:
        worst = check_losses(xp, dtype, n_loss_cases, seed)
        worst.update(check_mlp(xp, dtype, n_mlp_cases, seed))
        target = TARGETS[dtype]
        log(f"\n{dtype} on {'CuPy' if xp is not np else 'NumPy'}: worst error relative to the largest "
            f"reference magnitude, target <= {target:g}")
        same = dtype != "float64"
        log(f"  {'quantity':<28} {'worst error':>12}" + (f" {'PyTorch ' + dtype:>16}" if same else "") + "  where")
        for key, w in worst.items():
            c = w["case"]
            where = (f"N={c['N']} C={c['C']} T={c['T']:.3g} alpha={c['alpha']:.2f} scale={c['scale']:.3g}"
                     + (f" sizes={c['sizes']}" if "sizes" in c else ""))
            theirs = w["torch_same_dtype"]
            col = (f" {theirs:16.3e}" if theirs is not None else f" {'-':>16}") if same else ""
            above = w["error"] > target
            inherent = above and theirs is not None and theirs > target
            flag = "" if not above else ("  <-- above target; PyTorch too (see note)" if inherent else "  <-- ABOVE TARGET")
            log(f"  {key:<28} {w['error']:12.3e}{col}  {where}{flag}")
            w["above_target"], w["inherent_to_dtype"] = above, inherent
            ok &= (not above) or inherent
            strict &= not above
        if any(w["above_target"] for w in worst.values()):
            log(FLOAT32_NOTE)
        results[dtype] = worst
    results["ok"] = bool(ok)            # nothing above target that PyTorch meets in the same dtype
    results["all_within"] = bool(strict)  # nothing above target at all
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reference", description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where nanokd runs (default cpu)")
    ap.add_argument("--cases", type=int, default=200, help="random loss cases per dtype (default 200)")
    ap.add_argument("--mlp-cases", type=int, default=6, help="random MLPs per dtype (default 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="write the worst errors to this JSON file")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("benchmarks.reference needs PyTorch: pip install nanokd[bench]  (torch==2.13.0)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    xp = nk.get_xp(args.device)
    print(f"nanokd {nk.__version__} on {args.device}, torch {torch.__version__}; "
          f"{args.cases} loss cases and {args.mlp_cases} MLPs per dtype, seed {args.seed}")
    results = run(xp, n_loss_cases=args.cases, n_mlp_cases=args.mlp_cases, seed=args.seed)
    if results["all_within"]:
        print("\nall within targets")
    elif results["ok"]:
        above = sorted({k for d in results.values() if isinstance(d, dict) for k, w in d.items() if w["above_target"]})
        print(f"\nwithin targets except where float32 rounding of the formula itself exceeds them, for "
              f"PyTorch too: {', '.join(above)} (see the note)")
    else:
        print("\nSOME ERRORS ABOVE TARGET")
    if args.json:
        write_record(args.json, results)
        print(f"wrote {args.json}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
