"""benchmarks.paper_few and benchmarks.paper_consistent end to end, in miniature, on real MNIST.

The experiments themselves take minutes to an hour (benchmarks/RESULTS.md);
these runs shrink them (a 100-image subset, two epochs, one seed) to check
what the records are made of: the subset is class-balanced and fixed by its
seed, the early-stopped model is the best validation epoch of the same run,
the recovered fraction is computed from the rows' means, and the validation
split is never trained on.
"""

import json

import numpy as np
import pytest

import nanokd as nk
from benchmarks import paper_consistent, paper_few


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory, mnist_dir):
    ds = nk.data.load("mnist", mnist_dir)
    t = nk.MLP([784, 32, 10], seed=3)
    nk.trainer.train_model(t, nk.data.to_float(ds.x_train[:3000]), ds.y_train[:3000], epochs=1, progress=False,
                           log=None)
    path = tmp_path_factory.mktemp("few") / "teacher.npz"
    t.save(path)
    return path


def test_paper_few_record(teacher_file, mnist_dir, tmp_path):
    out = tmp_path / "few.json"
    paper_few.main(["--teacher", str(teacher_file), "--seeds", "1", "--subset", "100", "--epochs", "3",
                    "--grid-T", "2", "4", "--grid-alpha", "1", "--val", "500", "--data-dir", str(mnist_dir),
                    "--no-plot", "--out", str(out)])
    rec = json.loads(out.read_text())
    models = rec["models"]
    assert set(models) == {"hard_3pct", "hard_3pct_no_stop", "soft_3pct", "hard_full"}
    for key in ("hard_3pct", "hard_3pct_no_stop", "soft_3pct"):
        assert len(models[key]["test_errors"]) == 1 and 0 < models[key]["test_errors"][0] < 10000
    curve = rec["val_curves"]["1"]["hard"]
    best = rec["val_curves"]["1"]["hard_best_epoch"]
    assert len(curve) == 3 and curve[best - 1] == min(curve) == models["hard_3pct"]["val_errors_final"][0]
    assert models["hard_3pct"]["epochs"] == [best]
    mean = {k: float(np.mean(m["test_errors"])) for k, m in models.items()}
    expected = (mean["hard_3pct"] - mean["soft_3pct"]) / (mean["hard_3pct"] - mean["hard_full"])
    assert rec["recovered_fraction"] == pytest.approx(expected)
    s = rec["settings"]
    assert (s["soft_T"], s["soft_alpha"]) in ((2.0, 1.0), (4.0, 1.0))
    assert s["grid"][f"T={s['soft_T']:g},alpha=1"] == min(s["grid"].values())  # the choice is the validation best


def test_paper_few_with_an_ensemble_teacher(teacher_file, mnist_dir, tmp_path):
    """Two --teacher files are an ensemble: the record gives its test errors (mean probability) and each
    member's, and the soft run's targets are the ensemble's at the chosen T."""
    other = nk.MLP([784, 32, 10], seed=4)
    other.save(tmp_path / "other.npz")
    out = tmp_path / "few.json"
    paper_few.main(["--teacher", str(teacher_file), str(tmp_path / "other.npz"), "--seeds", "1", "--subset", "100",
                    "--epochs", "2", "--grid-T", "3", "--grid-alpha", "1", "--val", "500", "--data-dir",
                    str(mnist_dir), "--no-plot", "--out", str(out)])
    rec = json.loads(out.read_text())
    ds = nk.data.load("mnist", mnist_dir)
    x_test = nk.data.to_float(ds.x_test)
    members = [nk.MLP.load(teacher_file), nk.MLP.load(tmp_path / "other.npz")]
    assert rec["teacher"]["members_test_errors"] == [nk.teacher.evaluate_errors(m, x_test, ds.y_test)
                                                     for m in members]
    assert rec["teacher"]["test_errors"] == nk.teacher.evaluate_errors(members, x_test, ds.y_test)
    assert rec["teacher"]["files"] == [str(teacher_file.resolve()), str((tmp_path / "other.npz").resolve())]

    args = type("A", (), {"data_dir": mnist_dir, "val": 500, "subset": 100, "subset_seed": 0, "epochs": 2,
                          "lr": 0.05, "lr_decay": 0.994, "seeds": [1]})
    data = paper_few.Data(args)
    v = nk.teacher.compute_teacher_logits(members, data.x, 3.0)
    soft, _, _ = paper_few.fit(args, data, 1, teacher_logits=v, T=3.0, alpha=1.0)
    assert rec["models"]["soft_3pct"]["test_errors"] == [nk.teacher.evaluate_errors(soft, x_test, ds.y_test)]


def test_paper_few_subset_is_balanced_and_outside_validation(mnist_dir):
    ns = type("A", (), {"data_dir": mnist_dir, "val": 5000, "subset": 1800, "subset_seed": 0})
    data = paper_few.Data(ns)
    assert np.bincount(data.y).tolist() == [180] * 10
    assert data.index.max() < 55000  # drawn from the first 55,000: the validation split is the last 5,000
    np.testing.assert_array_equal(data.index, paper_few.Data(ns).index)


def test_paper_consistent_needs_a_teacher_to_distil(capsys):
    with pytest.raises(SystemExit) as e:
        paper_consistent.main(["distilled"])
    assert e.value.code == 2 and "distilled needs --teacher" in capsys.readouterr().err
