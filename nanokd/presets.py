r"""The recipes: how each role's network is built and trained, as data.

A :class:`Recipe` holds a network's widths and regularisers and its training
schedule; :data:`PRESETS` holds one per role (teacher, student) for each
preset of the command line (``--preset quick`` / ``paper``), and every field
is also a flag of ``python -m nanokd.train``.  :func:`build` turns a recipe
into what the library trains: an :class:`~nanokd.mlp.MLP` and a
:class:`~nanokd.trainer.TrainConfig`.
"""

import dataclasses

from .mlp import MLP
from .trainer import TrainConfig


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one role's network is built and trained (every field is also a command-line flag)."""

    hidden: tuple            # hidden layer widths
    epochs: int
    batch_size: int
    lr: float                # learning rate of the first epoch
    lr_decay: float          # lr of epoch e is lr * lr_decay**e
    momentum: float          # momentum after the ramp
    momentum_start: float    # momentum of epoch 0, ramped linearly to `momentum` ...
    momentum_ramp: int       # ... over this many epochs (0: no ramp)
    dropout_input: float
    dropout_hidden: float
    max_norm: float          # max-norm radius of each hidden unit's incoming weights; 0 = off
    jitter: int              # random translations of up to this many pixels; 0 = off

    def sizes(self, n_in=784, n_classes=10):
        return [n_in, *self.hidden, n_classes]


#: The defaults of every training flag.  The baseline and the distilled
#: student share the "student" recipe, so that they differ only in their targets.
PRESETS = {
    "quick": {
        "about": "small nets and few epochs, to see the effect in a minute or two on a 2-core CPU. NOT the "
                 "paper's nets or recipe: the teacher is 784-800-800-10 with jitter but without dropout or "
                 "max-norm (they pay off only over many epochs), the student 784-300-300-10; its numbers are "
                 "not the paper's",
        "teacher": Recipe(hidden=(800, 800), epochs=8, batch_size=100, lr=0.1, lr_decay=0.7, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=2),
        "student": Recipe(hidden=(300, 300), epochs=8, batch_size=100, lr=0.03, lr_decay=0.85, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=0),
        "T": 20.0,
        "alpha": 0.9,
    },
    "paper": {
        "about": "the paper's section 3: teacher 784-1200-1200-10 with dropout, max-norm and jitter, student "
                 "784-800-800-10 without regularisation, with the schedules benchmarks/paper_mnist.py uses "
                 "(the students' chosen on a validation split and by how closely they fit the teacher on the "
                 "transfer set). The teacher takes about 2 hours on a 2-core CPU (benchmarks/RESULTS.md), far "
                 "less on a GPU; each student about 6 minutes on the CPU",
        "teacher": Recipe(hidden=(1200, 1200), epochs=500, batch_size=100, lr=0.1, lr_decay=0.990832, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.2, dropout_hidden=0.5,
                          max_norm=3.5, jitter=2),
        "student": Recipe(hidden=(800, 800), epochs=60, batch_size=100, lr=0.05, lr_decay=0.97, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=0),
        "T": 20.0,
        "alpha": 0.9,
    },
}


def build(recipe, *, n_in=784, n_classes=10, seed=0, device="cpu", T=1.0, alpha=1.0):
    """The recipe's network (initialised from ``seed``) and its training settings: ``(MLP, TrainConfig)``.

    ``T`` and ``alpha`` are the distillation settings, used when the model is
    trained with a teacher.
    """
    model = MLP(recipe.sizes(n_in, n_classes), dropout_input=recipe.dropout_input,
                dropout_hidden=recipe.dropout_hidden, max_norm=recipe.max_norm or None, seed=seed, device=device)
    config = TrainConfig(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, lr_decay=recipe.lr_decay,
                         momentum=recipe.momentum,
                         momentum_start=recipe.momentum_start if recipe.momentum_ramp else None,
                         momentum_ramp=recipe.momentum_ramp, jitter=recipe.jitter, T=T, alpha=alpha, seed=seed)
    return model, config
