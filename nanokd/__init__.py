"""nanokd: knowledge distillation (Hinton, Vinyals & Dean 2015) from scratch in NumPy/CuPy.

Every forward and backward is written by hand; the gradient math is derived
in the docstrings and in docs/gradients.md.

>>> import numpy as np, nanokd as nk
>>> z = np.array([[2.0, 1.0, 0.0]]); v = np.array([[3.0, 0.0, 0.0]])
>>> float(nk.kd_loss(z, z, T=4.0))
0.0
"""

from .backend import cuda_available, get_array_module, get_xp, resolve_device, to_numpy
from .gradcheck import GradcheckResult, clear_kinks, gradcheck
from .layers import Dropout, Linear, ReLU, max_norm_
from .losses import (
    cross_entropy,
    cross_entropy_and_grad,
    cross_entropy_grad,
    distillation_loss,
    distillation_loss_and_grad,
    distillation_loss_grad,
    kd_loss,
    kd_loss_grad,
    log_softmax,
    logit_matching_loss,
    logit_matching_loss_grad,
    softmax,
)
from .mlp import MLP
from .optim import SGD, Adam, exponential_decay, linear_ramp

__version__ = "0.1.0"

__all__ = [
    "MLP", "SGD", "Adam", "Dropout", "Linear", "ReLU", "GradcheckResult",
    "clear_kinks", "cross_entropy", "cross_entropy_and_grad", "cross_entropy_grad", "cuda_available", "distillation_loss",
    "distillation_loss_and_grad", "distillation_loss_grad", "exponential_decay", "get_array_module", "get_xp",
    "gradcheck", "kd_loss", "kd_loss_grad", "linear_ramp", "log_softmax",
    "logit_matching_loss", "logit_matching_loss_grad", "max_norm_", "resolve_device",
    "softmax", "to_numpy",
]
