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
from benchmarks import paper_consistent, paper_experiments, paper_few


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


def test_paper_few_chooses_each_runs_weight_decay_on_validation(teacher_file, mnist_dir, tmp_path, monkeypatch):
    """--grid-weight-decay: the hard run's by its best epoch, the soft run's after T and alpha; the rows use them."""
    runs, real = [], paper_few.train_model

    def spy(model, x, y, config, **kwargs):
        runs.append(("soft" if kwargs.get("teacher_logits") is not None else "hard", config.weight_decay))
        return real(model, x, y, config, **kwargs)

    monkeypatch.setattr(paper_few, "train_model", spy)
    out = tmp_path / "few.json"
    paper_few.main(["--teacher", str(teacher_file), "--seeds", "1", "--subset", "100", "--epochs", "3",
                    "--grid-T", "2", "4", "--grid-alpha", "1", "--grid-weight-decay", "0", "0.5", "--val", "500",
                    "--data-dir", str(mnist_dir), "--no-plot", "--out", str(out)])
    s = json.loads(out.read_text())["settings"]
    assert set(s["grid_hard"]) == {"weight_decay=0", "weight_decay=0.5"}
    assert s["grid_hard"][f"weight_decay={s['hard_weight_decay']:g}"] == min(s["grid_hard"].values())
    # T and alpha over the grid at weight decay 0, then weight decay 0.5 at the chosen T and alpha: three runs
    assert set(s["grid"]) == {"T=2,alpha=1,weight_decay=0", "T=4,alpha=1,weight_decay=0",
                              f"T={s['soft_T']:g},alpha=1,weight_decay=0.5"}
    assert s["grid"][f"T={s['soft_T']:g},alpha=1,weight_decay={s['soft_weight_decay']:g}"] == min(s["grid"].values())
    assert len(runs) == 2 + 3 + 2  # the two grids, then the seed's rows
    assert runs[-2:] == [("hard", s["hard_weight_decay"]), ("soft", s["soft_weight_decay"])]


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


@pytest.mark.parametrize("role, classes, sign", [("omit3", (3,), +1), ("only78", (7, 8), -1)])
def test_paper_consistent_transfer_roles(role, classes, sign, teacher_file, mnist_dir, tmp_path):
    """omit3 / only78 with consistent teaching: the transfer set lacks the classes (or holds only them), and the
    recorded bias shift is the validation best, applied to the saved student's test logits."""
    runs = tmp_path / "runs"
    paper_consistent.main([role, "--teacher", str(teacher_file), "--seeds", "1", "--hidden", "16", "--limit", "600",
                           "--epochs", "1", "--val", "500", "--data-dir", str(mnist_dir), "--runs", str(runs)])
    part = json.loads((runs / f"{role}.json").read_text())
    ds = nk.data.load("mnist", mnist_dir)
    y_fit = ds.y_train[:600]
    kept = (y_fit != 3) if role == "omit3" else np.isin(y_fit, (7, 8))
    assert part["transfer_set_size"] == int(kept.sum()) < 600
    assert part["recipe"]["lr_decay"] == pytest.approx(0.97 ** (kept.sum() / 59500))
    done = part["seeds"]["1"]
    student = nk.MLP.load(runs / f"{role}_seed1.npz")
    x_val, y_val = nk.data.to_float(ds.x_train[-500:]), ds.y_train[-500:]
    z_val = nk.teacher.compute_teacher_logits(student, x_val)
    z_test = nk.teacher.compute_teacher_logits(student, nk.data.to_float(ds.x_test))
    grid = list(paper_consistent.SHIFT_GRID)
    errs = [paper_experiments.shifted_errors(z_val, y_val, classes, sign * s)[0] for s in grid]
    assert done["val_errors_after_shift"] == min(errs) == errs[grid.index(done["shift"])]
    assert done["test_errors"] == nk.teacher.evaluate_errors(student, nk.data.to_float(ds.x_test), ds.y_test)
    assert done["test_errors_after"] == paper_experiments.shifted_errors(z_test, ds.y_test, classes,
                                                                         sign * done["shift"])[0]


def test_paper_consistent_merge_pools_parts(teacher_file, mnist_dir, tmp_path, capsys):
    """Parts of one role from two --runs folders pool their seeds; a seed in both, or another recipe, is refused."""
    common = ["baseline", "--hidden", "8", "--limit", "300", "--epochs", "1", "--val", "500", "--data-dir",
              str(mnist_dir)]
    for seed, folder in ((1, "a"), (2, "b"), (2, "c")):
        paper_consistent.main(common + ["--seeds", str(seed), "--runs", str(tmp_path / folder)])
    out = tmp_path / "rec.json"
    merge = ["merge", "--teacher", str(teacher_file), "--val", "500", "--data-dir", str(mnist_dir), "--out", str(out),
             "--parts"]
    paper_consistent.main(merge + [str(tmp_path / "a" / "baseline.json"), str(tmp_path / "b" / "baseline.json")])
    entry = json.loads(out.read_text())["models"]["baseline_jitter"]
    parts = [json.loads((tmp_path / f / "baseline.json").read_text()) for f in "ab"]
    assert entry["seeds"] == [1, 2]
    teacher = json.loads(out.read_text())["models"]["teacher"]
    ds = nk.data.load("mnist", mnist_dir)
    assert teacher["val_errors"] == [nk.teacher.evaluate_errors(nk.MLP.load(teacher_file),
                                                                nk.data.to_float(ds.x_train[-500:]), ds.y_train[-500:])]
    assert entry["test_errors"] == [parts[0]["seeds"]["1"]["test_errors"], parts[1]["seeds"]["2"]["test_errors"]]
    with pytest.raises(SystemExit, match="holds baseline runs of other settings"):  # not passed off as this run's
        paper_consistent.main(common[:2] + ["16"] + common[3:] + ["--seeds", "1", "--runs", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match=r"seeds \['2'\] are in an earlier baseline part"):
        paper_consistent.main(merge + [str(tmp_path / "b" / "baseline.json"), str(tmp_path / "c" / "baseline.json")])
    # a distilled control on the paper's untranslated transfer set (--jitter 0) is recorded as such
    paper_consistent.main(["distilled", "--teacher", str(teacher_file), *common[1:], "--seeds", "4", "--jitter", "0",
                           "--runs", str(tmp_path / "e")])
    paper_consistent.main(merge + [str(tmp_path / "e" / "distilled.json")])
    models = json.loads(out.read_text())["models"]
    assert set(models) == {"teacher", "distilled_untranslated"}
    assert models["distilled_untranslated"]["settings"]["recipe"]["jitter"] == 0
    paper_consistent.main(common[:2] + ["16"] + common[3:] + ["--seeds", "3", "--runs", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="its recipe .* differs"):
        paper_consistent.main(merge + [str(tmp_path / "a" / "baseline.json"), str(tmp_path / "d" / "baseline.json")])
    # a part written before --elastic existed (its recipe lacks the key) still resumes and pools as elastic 0
    old = json.loads((tmp_path / "a" / "baseline.json").read_text())
    del old["recipe"]["elastic"]
    (tmp_path / "a" / "baseline.json").write_text(json.dumps(old))
    paper_consistent.main(common + ["--seeds", "1", "--runs", str(tmp_path / "a")])  # done already: not refused
    paper_consistent.main(merge + [str(tmp_path / "a" / "baseline.json"), str(tmp_path / "b" / "baseline.json")])
    assert json.loads(out.read_text())["models"]["baseline_jitter"]["seeds"] == [1, 2]
    with pytest.raises(SystemExit, match="holds baseline runs of other settings"):
        paper_consistent.main(common + ["--seeds", "5", "--elastic", "34", "--runs", str(tmp_path / "a")])
    # elastic runs have their own entries
    paper_consistent.main(common + ["--seeds", "5", "--elastic", "34", "--runs", str(tmp_path / "f")])
    paper_consistent.main(["distilled", "--teacher", str(teacher_file), *common[1:], "--seeds", "6", "--elastic", "34",
                           "--runs", str(tmp_path / "f")])
    paper_consistent.main(merge + [str(tmp_path / "f" / "baseline.json"), str(tmp_path / "f" / "distilled.json")])
    models = json.loads(out.read_text())["models"]
    assert set(models) == {"teacher", "baseline_elastic", "distilled_consistent_elastic"}
    assert models["baseline_elastic"]["settings"]["recipe"]["elastic"] == 34.0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        paper_consistent.main(common + ["--elastic", "-1"])
    assert e.value.code == 2 and "argument --elastic: must be a number >= 0, got -1.0" in capsys.readouterr().err


def test_paper_consistent_teachers_reports_validation_errors(teacher_file, mnist_dir, tmp_path, capsys):
    other = nk.MLP([784, 32, 10], seed=4)
    other.save(tmp_path / "other.npz")
    paper_consistent.main(["teachers", "--teacher", str(teacher_file), str(tmp_path / "other.npz"), "--val", "500",
                           "--data-dir", str(mnist_dir), "--runs", str(tmp_path / "unused"), "--json",
                           str(tmp_path / "choice.json")])
    ds = nk.data.load("mnist", mnist_dir)
    x_val, y_val = nk.data.to_float(ds.x_train[-500:]), ds.y_train[-500:]
    members = [nk.MLP.load(teacher_file), other]
    lines = capsys.readouterr().out.splitlines()
    assert lines.pop() == f"wrote {tmp_path / 'choice.json'}"
    expected = [nk.teacher.evaluate_errors(m, x_val, y_val) for m in members]
    assert [int(line.split()[0]) for line in lines] == expected + [nk.teacher.evaluate_errors(members, x_val, y_val)]
    assert lines[-1].endswith("the ensemble of the first 2") and not (tmp_path / "unused").exists()
    rec = json.loads((tmp_path / "choice.json").read_text())
    assert rec["members_val_errors"] == expected and rec["ensemble_val_errors"] == {"2": int(lines[-1].split()[0])}


def test_paper_consistent_teachers_plus_tries_each_extra_net(teacher_file, mnist_dir, tmp_path, capsys):
    extras = []
    for seed in (4, 5):
        nk.MLP([784, 32, 10], seed=seed).save(tmp_path / f"x{seed}.npz")
        extras.append(str(tmp_path / f"x{seed}.npz"))
    paper_consistent.main(["teachers", "--teacher", str(teacher_file), "--plus", *extras, "--val", "500",
                           "--data-dir", str(mnist_dir), "--json", str(tmp_path / "choice.json")])
    ds = nk.data.load("mnist", mnist_dir)
    x_val, y_val = nk.data.to_float(ds.x_train[-500:]), ds.y_train[-500:]
    rec = json.loads((tmp_path / "choice.json").read_text())
    t = nk.MLP.load(teacher_file)
    assert rec["plus_val_errors"] == {path: nk.teacher.evaluate_errors([t, nk.MLP.load(path)], x_val, y_val)
                                      for path in extras}
    assert "all 1, and " + extras[1] in capsys.readouterr().out
    with pytest.raises(SystemExit):
        paper_consistent.main(["teachers", "--teacher", str(teacher_file), "--plus", str(tmp_path / "none.npz")])
    assert "argument --plus: no such file" in capsys.readouterr().err
