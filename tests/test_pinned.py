"""Pinned weights: fixed small CPU runs end with exactly the weights recorded here.

These runs cover every path of the training loop: a teacher with dropout,
max-norm and jitter; a baseline on hard labels; distilled students with cached
soft targets and with soft targets recomputed per jittered batch; an ensemble
teacher; and a run resumed from a checkpoint.  Their final weights are hashed
(sha256 of the float32 bytes) and compared with hashes recorded from the code
at the time the test was written.

So a change that moves code around (a refactor) must leave every hash as it is,
and a change that alters the arithmetic, even in the last bit, must say so by
updating :data:`PINNED`.  Print the new values with
``python -m tests.test_pinned`` (in the repository root).

Bit-for-bit results depend on the BLAS kernel that computes the matrix
products (the order of the sums), and on the SIMD code NumPy's own loops run
(its AVX-512 exp and sums round differently from its AVX2 ones).  So each hash
is recorded per kernel and SIMD level (:func:`platform_key`), and on a
combination with no recorded hashes the test
compares a weaker fingerprint instead, the first moments of every parameter,
to a relative 1e-4: that holds across kernels for runs this short, and still
fails for any change to what is computed beyond rounding.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest

import nanokd as nk
from benchmarks.common import numpy_simd
from nanokd.train import compute_teacher_logits, train_model

N, D, C = 300, 784, 10


def platform_key():
    """numpy version and SIMD level, BLAS library, its kernel and thread count: what fixes the bits of a run."""
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{i['internal_api']}-{i.get('architecture')}-{i['num_threads']}threads"
                for i in threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        blas = ["unknown"]
    return f"numpy{np.__version__}-{numpy_simd()}-{'+'.join(blas) or 'none'}"


def _data():
    """N learnable 28x28 images: noise plus a bright square placed by the label."""
    rng = np.random.default_rng(12345)
    y = rng.integers(0, C, N)
    x = rng.random((N, 28, 28), dtype=np.float32) * 0.2
    for i, c in enumerate(y):
        r, k = 3 + 10 * (c // 5), 3 + 4 * (c % 5)
        x[i, r:r + 6, k:k + 6] = 1.0
    return x.reshape(N, D), y


def _fit(model, x, y, **kw):
    """One call of the library's training loop with the settings every pinned run shares."""
    train_model(model, x, y, **{"epochs": 2, "batch_size": 32, "lr": 0.05, "lr_decay": 0.9, "momentum": 0.9,
                                "progress": False, "log": None, **kw})
    return model


def _teacher(x, y):
    t = nk.MLP([D, 48, 48, C], dropout_input=0.2, dropout_hidden=0.5, max_norm=1.5, seed=0)
    return _fit(t, x, y, jitter=2, momentum_start=0.5, momentum_ramp=2, seed=0)


def _student(seed=1):
    return nk.MLP([D, 32, 32, C], seed=seed)


def run(name, tmp_path):
    """The trained model of the pinned run ``name`` (on the CPU, float32), trained from scratch.

    Each test trains only its own run (with the teacher it needs: the runs are
    tiny), so that a tool which maps each test to the code it calls, as
    mutation testing does, sees every run's code under that run's test.
    """
    x, y = _data()
    if name == "other_teacher":
        return _fit(nk.MLP([D, 40, C], seed=7), x, y, seed=7)
    teacher = _teacher(x, y)
    if name == "teacher":
        return teacher
    if name == "baseline":
        return _fit(_student(), x, y, seed=1)
    if name == "distilled_cached":
        return _fit(_student(), x, y, teacher=teacher, T=4.0, alpha=0.9, seed=1)
    if name == "distilled_logits":
        return _fit(_student(), x, y, teacher_logits=compute_teacher_logits(teacher, x, 1.0), T=1.0, alpha=0.5,
                    seed=1)
    if name == "distilled_jitter":
        return _fit(_student(), x, y, teacher=teacher, T=4.0, alpha=1.0, jitter=1, seed=1)
    if name == "distilled_ensemble":
        other = run("other_teacher", tmp_path)
        return _fit(_student(), x, y, teacher=[teacher, other], T=3.0, alpha=0.9, seed=1)
    if name == "distilled_resumed":  # distilled_cached, stopped after epoch 1 and resumed
        ckpt = tmp_path / "resume.ckpt.npz"
        _fit(_student(), x, y, teacher=teacher, T=4.0, alpha=0.9, seed=1, epochs=1, checkpoint_path=ckpt)
        resumed = _student()  # as a new process builds it; the checkpoint then supplies epoch 1's weights
        return _fit(resumed, x, y, teacher=teacher, T=4.0, alpha=0.9, seed=1, checkpoint_path=ckpt, resume=True)
    raise KeyError(name)


NAMES = ("teacher", "other_teacher", "baseline", "distilled_cached", "distilled_logits", "distilled_jitter",
         "distilled_ensemble", "distilled_resumed")


def weights_sha256(model):
    h = hashlib.sha256()
    for p in model.params:
        a = np.ascontiguousarray(nk.backend.to_numpy(p))
        assert a.dtype == np.float32
        h.update(a.tobytes())
    return h.hexdigest()


def moments(model):
    """Per parameter: its sum and its sum of squares, in float64."""
    out = []
    for p in model.params:
        a = nk.backend.to_numpy(p).astype(np.float64)
        out += [float(a.sum()), float((a * a).sum())]
    return out


#: Recorded from the code of the commit that added this test (``python -m tests.test_pinned`` prints them);
#: X86_V3 is an AVX2 CPU, X86_V3+X86_V4+AVX512_ICL one with AVX-512 (an AMD Zen 5).
PINNED = {
    "sha256": {
        'numpy2.4.6-X86_V3-openblas-Haswell-1threads': {
            'teacher': '65e401b115b39109412b8a70e7d4d8e5b78083cd0885fbd63b663bed98b573fa',
            'other_teacher': 'deeedf4f59235a7f906415948bbb03cf286771b11af8c67d134210f08000c4b4',
            'baseline': 'f5d859fa605f45beb22243bd8a30e56b31f34b7c0b5f821b104dc76e88278a4c',
            'distilled_cached': '4174ed6b6e6f3936da38792783cc13dd4fe48959d81a55c3eca37c2fda7bad13',
            'distilled_logits': '19503cfdbb031728b161c99d48d0eab969fba797b8eee5633806f300f8db148f',
            'distilled_jitter': '082e63115aa8406f843e1fe49db790f8f1e10f908a84f41af25b65032864e763',
            'distilled_ensemble': '6383719175e86a4975c86269e3f6db758dcf97554c451983a357414ebaf1e6e4',
            'distilled_resumed': '4174ed6b6e6f3936da38792783cc13dd4fe48959d81a55c3eca37c2fda7bad13',
        },
        'numpy2.4.6-X86_V3-openblas-Haswell-2threads': {
            'teacher': '99079f658d35eaf974820078d8394b4c500e3c1ab26dde0253380988d68950b0',
            'other_teacher': '6e9182bfcd53726f8b01c8716307304e433e05052874bd24c63a0751f7fc16fa',
            'baseline': 'f911ffbda88bd3d7c5b0ca62a2185c27a796ddec6ab301471de30a6c2269e14f',
            'distilled_cached': '06c77362eb6c57ac65c9dca6bbb0cea3d2f8ec1c49f36d6f50d237b073271904',
            'distilled_logits': '0c198975d25aee290ffe31e16f064226ca9dd8e758eec36fa671a183daafddae',
            'distilled_jitter': '588564767d65e298f218183e31bda8759e979f803506c798966b05edfc48cc8f',
            'distilled_ensemble': '5597a28a198a73c21c76be5a492528242811246eedce8a2de7af3ce6871c4e41',
            'distilled_resumed': '06c77362eb6c57ac65c9dca6bbb0cea3d2f8ec1c49f36d6f50d237b073271904',
        },
        'numpy2.4.6-X86_V3+X86_V4+AVX512_ICL-openblas-Haswell-1threads': {
            'teacher': 'e775860814b06daf8a828b36d2b250b82f9ffbbf46ad76ad1e0e40033ec20f14',
            'other_teacher': '1f1870777cc6985d017e93ddc5289607d2951c56ee059c8d25ff049b4bb8dfc4',
            'baseline': '3d59feede4b469e671c336cfa089c4ba719dc316fcacb6df4b0cca1cfa93411d',
            'distilled_cached': '80b4c0e33800514702056149d349ec92339a5940e09fd986d9df66a5976d9958',
            'distilled_logits': '45ccf6f80662d6338154460d7437afded411e0c9d234f43660e5da8ae06253d6',
            'distilled_jitter': '26f6e9bad366035d9d8933cdb73dd78a6e30b9b2ad10a2cb968aa268d491e70b',
            'distilled_ensemble': 'd43ff5ab9e7856803059c8bd69c515a4b1611a8b9df9c155dfba1b3b735229e0',
            'distilled_resumed': '80b4c0e33800514702056149d349ec92339a5940e09fd986d9df66a5976d9958',
        },
        'numpy2.4.6-X86_V3+X86_V4+AVX512_ICL-openblas-Haswell-2threads': {
            'teacher': '779e08c772a42cc63527902f58dd0eb494786b2b1f291dd524237b898ced5c75',
            'other_teacher': '3b23eb84ed1ed063c43d2ede762886f522b040d4be0ea9da58c03ea6fb68893e',
            'baseline': '91e09df39c3d9d07393e2f72b213e00204b9c7d42be7f152c6f22068a5a5e9fa',
            'distilled_cached': '6d4662afe1676b3537c4b015564be791e0079e84d970e057fd08749c31375b4e',
            'distilled_logits': '709884286ef2bafaaf0de41946ded84688a315ad43eb549a4b38d235a43d342b',
            'distilled_jitter': '94762e9e491cbce8aaf2445e26df6078555ebd5368b59825ae8f2f79a5ae431d',
            'distilled_ensemble': '315f3a1fa314b91cbaafb1ad4fa1778dac64225f793fbe2b3b0b7c26c65f85ea',
            'distilled_resumed': '6d4662afe1676b3537c4b015564be791e0079e84d970e057fd08749c31375b4e',
        },
    },
    "moments": {
        'teacher': [-12.28015701, 97.58278071, -0.1745210693, 0.01199642937, -9.754803553, 94.86435215, -0.1943147975, 0.01908457255, -0.06552863563, 20.80198596, -8.847564459e-09, 0.01571475265],
        'other_teacher': [134.4863791, 94.65887288, 1.296121756, 0.1238576563, -7.205153253, 27.04949633, -1.676380634e-08, 0.1724118065],
        'baseline': [113.6201436, 76.9839356, 1.140395691, 0.1243492939, 20.79878383, 67.16829748, 0.9973235636, 0.1877560214, -9.788394696, 24.24213035, 1.536682248e-08, 0.09792182834],
        'distilled_cached': [2.118954387, 64.76613234, 0.1337935242, 0.02856621903, 13.22456893, 62.15318073, 0.1317737448, 0.04801966169, -9.788395447, 18.95045416, 2.281740308e-08, 0.03072308939],
        'distilled_logits': [34.18792708, 68.11072461, 0.4234777199, 0.04438156743, 14.39905153, 63.17685912, 0.5035841132, 0.1021119395, -9.788394704, 20.00925857, 2.549495548e-08, 0.06949848258],
        'distilled_jitter': [-0.7810942984, 63.99963828, 0.1111188952, 0.02211725304, 12.3781115, 61.84994551, -0.06721624389, 0.03743925819, -9.788395682, 18.64754163, -2.235174179e-08, 0.03090986252],
        'distilled_ensemble': [35.30450777, 73.3398401, 0.4346307091, 0.0769493313, 12.12382462, 63.98393982, 0.6599260159, 0.2009712876, -9.788394573, 21.47574, -2.980232239e-08, 0.07898074367],
        'distilled_resumed': [2.118954387, 64.76613234, 0.1337935242, 0.02856621903, 13.22456893, 62.15318073, 0.1317737448, 0.04801966169, -9.788395447, 18.95045416, 2.281740308e-08, 0.03072308939],
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_pinned(name, tmp_path):
    """The run's final weights are bit for bit the recorded ones (on a recorded BLAS kernel)."""
    model = run(name, tmp_path)
    hashes = PINNED["sha256"].get(platform_key())
    if hashes is not None:
        assert weights_sha256(model) == hashes[name], (
            f"{name}: the weights changed; if the arithmetic was meant to change, update PINNED")
    np.testing.assert_allclose(moments(model), PINNED["moments"][name], rtol=1e-4, atol=1e-5)


def test_resumed_run_equals_uninterrupted_one(tmp_path):
    """Resuming after epoch 1 ends where the straight two-epoch run ends, bit for bit."""
    assert weights_sha256(run("distilled_resumed", tmp_path)) == weights_sha256(run("distilled_cached", tmp_path))


def test_a_recorded_kernel_is_this_one_or_the_fallback_is_used():
    """The table has hashes for at least one kernel, and the moments for every run."""
    assert PINNED["sha256"], "no hashes recorded"
    assert all(set(h) == set(NAMES) for h in PINNED["sha256"].values())
    assert set(PINNED["moments"]) == set(NAMES)


if __name__ == "__main__":  # print the values to paste into PINNED
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        models = {name: run(name, Path(d)) for name in NAMES}
    print(f"{platform_key()!r}: {{")
    print("".join(f"    {k!r}: {weights_sha256(m)!r},\n" for k, m in models.items()) + "},")
    print("".join(f"    {k!r}: {[float(f'{v:.10g}') for v in moments(m)]},\n" for k, m in models.items()))
