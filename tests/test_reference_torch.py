"""nanokd against PyTorch autograd (benchmarks.reference), when torch is installed (the [bench] extra)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the reference checks need PyTorch: pip install nanokd[bench]")

from benchmarks import reference  # noqa: E402

torch.set_num_threads(1)  # tiny tensors: a thread pool only adds wake-up latency


def test_losses_match_pytorch_float64(xp):
    worst = reference.check_losses(xp, "float64", n_cases=40, seed=1)
    assert {k: w["error"] for k, w in worst.items() if w["error"] > 1e-9} == {}


def test_losses_match_pytorch_float32(xp):
    """float32 within 1e-5 of PyTorch float64 everywhere, including the corner (T large next to the
    logits) where PyTorch's own float32 evaluation of the plain formula misses it."""
    worst = reference.check_losses(xp, "float32", n_cases=40, seed=1)
    assert {k: w["error"] for k, w in worst.items() if w["error"] > 1e-5} == {}
    assert worst["kd_loss value"]["torch_same_dtype"] > 1e-5  # the corner is in these cases


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 1e-5)])
def test_mlp_gradients_match_pytorch(xp, dtype, tol):
    worst = reference.check_mlp(xp, dtype, n_cases=3, seed=2)
    assert {k: w["error"] for k, w in worst.items() if w["error"] > tol} == {}
    assert {"mlp dW1", "mlp db1", "mlp dW3", "mlp db3"} <= set(worst)


def test_reference_script_runs(capsys):
    results = reference.run(np, dtypes=("float64",), n_loss_cases=5, n_mlp_cases=1)
    assert results["ok"] and results["all_within"]
    assert "kd_loss grad" in capsys.readouterr().out
