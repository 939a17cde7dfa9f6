"""benchmarks.torch_student: the table's students trained by PyTorch autograd, when torch is installed."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch student needs PyTorch: pip install nanokd[bench]")

from nanokd.mlp import MLP  # noqa: E402
from nanokd.data import load, to_float  # noqa: E402
from nanokd.train import evaluate_errors, train_model  # noqa: E402

import benchmarks.torch_student as ts  # noqa: E402
from test_paper_mnist import write_tiny_mnist  # noqa: E402


def _problem(seed=0, n=250, d=12, c=4):
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    y = rng.integers(0, c, n)
    v = 4 * rng.standard_normal((n, c))
    return x, y, v


@pytest.mark.parametrize("alpha", [1.0, 0.7, None])  # None: hard labels only
def test_torch_training_equals_nanokd_in_float64(alpha):
    """Same initial weights, shuffles, schedule and loss: autograd + torch.optim.SGD and nanokd's
    hand-written backward + SGD end at the same weights, epoch losses and all (they differ by
    about 2e-16, float64's last place, after 3 epochs)."""
    x, y, v = _problem()
    sizes, seed, T = [12, 16, 16, 4], 3, 5.0
    hp = dict(epochs=3, batch_size=40, lr=0.05, lr_decay=0.9, momentum=0.9, momentum_start=0.5, momentum_ramp=2)
    model = MLP(sizes, seed=seed, dtype="float64")
    soft = {} if alpha is None else dict(teacher_logits=v, T=T, alpha=alpha)
    history = train_model(model, x, y, seed=seed, progress=False, log=None, **hp, **soft)

    net = ts.make_student(sizes, seed, "nanokd", dtype=torch.float64)
    losses = ts.train(net, torch.from_numpy(x), torch.from_numpy(y), None if alpha is None else torch.from_numpy(v),
                      T=T, alpha=1.0 if alpha is None else alpha, seed=seed, shuffle="nanokd", **hp)
    np.testing.assert_allclose(losses, history["loss"], rtol=1e-13)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    for lin, W, b in zip(linears, model.params[0::2], model.params[1::2]):
        np.testing.assert_allclose(lin.weight.detach().numpy().T, W, rtol=0, atol=1e-14)
        np.testing.assert_allclose(lin.bias.detach().numpy(), b, rtol=0, atol=1e-14)
    moved = np.abs(model.params[0] - MLP(sizes, seed=seed, dtype="float64").params[0]).max()
    assert moved > 1e-3  # the weights did train


def test_torch_defaults_give_a_different_start_and_order():
    a, b = ts.make_student([12, 8, 4], 1, "torch"), ts.make_student([12, 8, 4], 1, "nanokd")
    assert not torch.allclose(a[0].weight, b[0].weight)
    assert torch.equal(a[0].weight, ts.make_student([12, 8, 4], 1, "torch")[0].weight)  # seeded
    with pytest.raises(ValueError, match="init"):
        ts.make_student([12, 8, 4], 1, "jax")
    x, y, _ = _problem()
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def first_loss(shuffle):  # the same start; only the order of the examples differs
        return ts.train(ts.make_student([12, 8, 4], 1, "nanokd", torch.float64), x, y, epochs=1, batch_size=40,
                        seed=1, shuffle=shuffle)[0]

    assert first_loss("torch") != first_loss("nanokd")
    assert first_loss("torch") == first_loss("torch")
    with pytest.raises(ValueError, match="shuffle"):
        first_loss("jax")


def test_soft_loss_is_T2_times_kl():
    rng = np.random.default_rng(5)
    z, v = (torch.from_numpy(rng.standard_normal((6, 5)) * 3) for _ in range(2))
    T = 4.0
    p, logq = torch.softmax(v / T, 1), torch.log_softmax(z / T, 1)
    kl = (p * (torch.log(p) - logq)).sum(1).mean()
    assert float(ts.soft_loss(z, v, T)) == pytest.approx(T * T * float(kl), rel=1e-12)
    assert float(ts.soft_loss(v + 2.5, v, T)) == pytest.approx(0.0, abs=1e-12)  # same logits up to a shift


def test_script_trains_from_a_saved_teacher_and_writes_its_record(tmp_path):
    write_tiny_mnist(tmp_path / "mnist")
    teacher = MLP([784, 16, 10], seed=0)
    teacher.save(tmp_path / "teacher.npz")
    out = tmp_path / "rec.json"
    assert ts.main(["--teacher", str(tmp_path / "teacher.npz"), "--data-dir", str(tmp_path / "mnist"),
                    "--no-verify", "--seeds", "1", "2", "--models", "baseline", "distilled", "--hidden", "8",
                    "--epochs", "2", "--quiet", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert set(rec["models"]) == {"baseline", "distilled"}
    assert all(len(entry["test_errors"]) == 2 for entry in rec["models"].values())
    assert rec["teacher_logits_max_abs_diff_vs_nanokd"] < 1e-4
    ds = load(data_dir=tmp_path / "mnist", verify=False)
    assert rec["teacher_test_errors"] == evaluate_errors(teacher, to_float(ds.x_test), ds.y_test)  # the copy is the teacher
    assert rec["settings"]["init"] == "nanokd" and rec["torch"] == torch.__version__


def test_script_holds_out_the_last_val_images_as_the_cli_does(tmp_path, capsys):
    write_tiny_mnist(tmp_path / "mnist")  # 400 training images
    MLP([784, 16, 10], seed=0).save(tmp_path / "teacher.npz")
    out = tmp_path / "rec.json"
    args = ["--teacher", str(tmp_path / "teacher.npz"), "--data-dir", str(tmp_path / "mnist"), "--no-verify",
            "--models", "baseline", "--hidden", "8", "--epochs", "1", "--quiet"]
    assert ts.main([*args, "--val", "100", "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["n_train"] == 300 and rec["settings"]["val"] == 100 and rec["settings"]["dataset"] == "mnist"
    with pytest.raises(SystemExit):
        ts.main([*args, "--val", "400"])
    assert "argument --val: n_val must be in [0, 400), got 400" in capsys.readouterr().err
