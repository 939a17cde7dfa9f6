"""The three training steps that the benchmarks time, for nanokd and for PyTorch.

One *step* is what the training loop does for one mini-batch: forward,
loss, backward, optimizer update.  The cases (issue 4):

=========  ======================  =========================================
case       network                 loss
=========  ======================  =========================================
teacher    784-1200-1200-10,       cross-entropy on the hard labels
           dropout 0.2 / 0.5
student    784-800-800-10          cross-entropy on the hard labels
distill    784-800-800-10          ``distillation_loss`` at T = 20 against
                                   precomputed teacher logits v
=========  ======================  =========================================

All three use SGD with momentum 0.9.  nanokd runs on NumPy or CuPy
(``device="cpu" | "cuda"``), PyTorch on its CPU or CUDA backend; both start
from the same weights and see the same batch.  Nothing here times anything:
:mod:`benchmarks.speed` and :mod:`benchmarks.gpu_check` do.
"""

import sys
from pathlib import Path

import numpy as np

import nanokd as nk

CASES = {
    #  name      sizes                   dropout (input, hidden)  distill?
    "teacher": ([784, 1200, 1200, 10], (0.2, 0.5), False),
    "student": ([784, 800, 800, 10], (0.0, 0.0), False),
    "distill": ([784, 800, 800, 10], (0.0, 0.0), True),
}
LR, MOMENTUM = 0.01, 0.9
T, ALPHA = 20.0, 0.9


def gemm_shapes(sizes, N):
    """The (M, K, N') of every matrix product in one step, as (label, m, k, n, transposes).

    Forward  a = h W          (N, in) x (in, out)
    Backward dW = h^T da      (in, N) x (N, out)
             dh = da W^T      (N, out) x (out, in)   (not for the first layer)
    """
    shapes = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes.append((f"fwd{i + 1}", N, n_in, n_out, "NN"))
        shapes.append((f"dW{i + 1}", n_in, N, n_out, "TN"))
        if i > 0:
            shapes.append((f"dx{i + 1}", N, n_out, n_in, "NT"))
    return shapes


def step_flops(sizes, N):
    """Floating-point operations of the matrix products of one step (2 m k n each)."""
    return sum(2 * m * k * n for _, m, k, n, _ in gemm_shapes(sizes, N))


def load_package(folder, name="nanokd_baseline"):
    """Import the ``nanokd`` package found in ``folder`` (e.g. an older checkout) under another name."""
    import importlib.util

    init = Path(folder) / "nanokd" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_batch(N, seed=0, n_classes=10, n_in=784):
    """A fixed float32 batch on the host: pixels x in [0, 1), labels y, teacher logits v."""
    rng = np.random.default_rng(seed)
    x = rng.random((N, n_in), dtype=np.float32)
    y = rng.integers(0, n_classes, N).astype(np.int64)
    v = (3.0 * rng.standard_normal((N, n_classes))).astype(np.float32)
    return x, y, v


# --------------------------------------------------------------------- nanokd


class NanokdStep:
    """One training step of nanokd, called as ``step()``; the batch lives on the model's device."""

    def __init__(self, case, N, device="cpu", seed=0, lib=None):
        self.nk = nk = lib or globals()["nk"]  # lib: another copy of the package, e.g. an older version
        sizes, (p_in, p_hid), self.distill = CASES[case]
        self.model = nk.MLP(sizes, dropout_input=p_in, dropout_hidden=p_hid, seed=seed, device=device)
        self.opt = nk.SGD(self.model.params, lr=LR, momentum=MOMENTUM)
        xp = self.model.xp
        x, y, v = make_batch(N, seed)
        self.x, self.y, self.v = xp.asarray(x), xp.asarray(y), xp.asarray(v)
        self.xp = xp

    def __call__(self):
        nk = self.nk
        v = self.v if self.distill else None
        if hasattr(nk, "trainer"):  # what train_model calls (on a GPU: the fused kernels)
            return nk.trainer.train_step(self.model, self.opt, self.x, self.y, v, T, ALPHA)
        z = self.model.forward(self.x, train=True)  # an older nanokd, timed as a baseline
        if self.distill:
            loss = nk.distillation_loss(z, self.v, self.y, T, ALPHA, check=False)
            dz = nk.distillation_loss_grad(z, self.v, self.y, T, ALPHA, check=False)
        else:
            loss = nk.cross_entropy(z, self.y, check=False)
            dz = nk.cross_entropy_grad(z, self.y, check=False)
        self.opt.step(self.model.backward(dz))
        return loss


# --------------------------------------------------------------------- torch


class TorchStep:
    """The same step in PyTorch autograd (``nn.Sequential`` + ``torch.optim.SGD``)."""

    def __init__(self, case, N, device="cpu", seed=0):
        import torch
        import torch.nn.functional as F
        from torch import nn

        self.torch, self.F = torch, F
        sizes, (p_in, p_hid), self.distill = CASES[case]
        ref = nk.MLP(sizes, dropout_input=p_in, dropout_hidden=p_hid, seed=seed)  # same initial weights
        layers = [nn.Dropout(p_in)] if p_in > 0 else []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = nn.Linear(n_in, n_out)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(ref.params[2 * i].T)))
                lin.bias.copy_(torch.from_numpy(ref.params[2 * i + 1]))
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
                if p_hid > 0:
                    layers.append(nn.Dropout(p_hid))
        self.net = nn.Sequential(*layers).to(device).train()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)
        x, y, v = make_batch(N, seed)
        self.x, self.y, self.v = (torch.from_numpy(a).to(device) for a in (x, y, v))

    def __call__(self):
        F = self.F
        self.opt.zero_grad(set_to_none=True)
        z = self.net(self.x)
        if self.distill:
            soft = F.kl_div(F.log_softmax(z / T, dim=1), F.log_softmax(self.v / T, dim=1),
                            log_target=True, reduction="batchmean") * (T * T)
            loss = ALPHA * soft + (1 - ALPHA) * F.cross_entropy(z, self.y)
        else:
            loss = F.cross_entropy(z, self.y)
        loss.backward()
        self.opt.step()
        return loss
