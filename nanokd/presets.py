r"""The recipes: how each role's network is built and trained, as data.

A :class:`Recipe` holds a network's widths and regularisers and its training
schedule, and every field is also a flag of ``python -m nanokd.train``.  A
preset holds one recipe per role (teacher, student), the distillation's T and
alpha, and an "about" text; each data set has its own table of presets
(:data:`DATASET_PRESETS`, chosen with ``--dataset``, one of them with
``--preset``), since a recipe tuned on MNIST need not work elsewhere:

* MNIST (:data:`PRESETS`): ``quick`` and ``paper``, the paper's section 3;
* Fashion-MNIST (:data:`FASHION_PRESETS`): ``quick`` and ``full``, chosen on a
  validation split (``python -m benchmarks.fashion_val``);
* a user's own data (:data:`CUSTOM_PRESETS`): ``quick``, a generic recipe
  without jitter.

:func:`build` turns a recipe into what the library trains: an
:class:`~nanokd.mlp.MLP` and a :class:`~nanokd.trainer.TrainConfig`.
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
    elastic: float = 0.0     # elastic distortions of this scale (pixels; sigma 4), after the jitter; 0 = off
    weight_decay: float = 0.0  # L2 weight decay of SGD: weight_decay * w added to each gradient; 0 = off

    def sizes(self, n_in=784, n_classes=10):
        return [n_in, *self.hidden, n_classes]


#: MNIST's presets: the defaults of every training flag with ``--dataset mnist``.  The baseline and the
#: distilled student share the "student" recipe, so that they differ only in their targets.  (Also
#: ``DATASET_PRESETS["mnist"]``; the name PRESETS stays MNIST's table for the callers that use it.)
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
    "consistent": {
        "about": "consistent teaching, which leaves the paper's setting (Beyer et al. 2022, arXiv 2106.05237): "
                 "teacher and students 784-800-800-10, 100 epochs on images jittered by up to 2 pixels, the "
                 "teachers' images also bent by elastic distortions (--teacher-elastic 34, Simard et al. 2003), "
                 "the distilled student on the teacher's logits of the very shifted images it sees (soft targets "
                 "only, T = 8, chosen on validation); the baseline is the same student on the hard labels of the "
                 "same jittered images. With an ensemble of four such teachers and one jittered-only net "
                 "(--role teacher --seed 1 .. 4, --role teacher --seed 5 --teacher-elastic 0, then --role distill "
                 "--teacher A B C D E; chosen on validation; 49 test errors) the students made 55, 57, 55 (seeds 11-13; "
                 "python -m benchmarks.paper_consistent, benchmarks/RESULTS.md). About 10 minutes a model on a "
                 "2-core CPU, 17 for a bent teacher",
        "teacher": Recipe(hidden=(800, 800), epochs=100, batch_size=100, lr=0.05, lr_decay=0.97, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=2, elastic=34.0),
        "student": Recipe(hidden=(800, 800), epochs=100, batch_size=100, lr=0.05, lr_decay=0.97, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=2),
        "T": 8.0,
        "alpha": 1.0,
    },
}


#: Fashion-MNIST's presets (``--dataset fashion-mnist``).  MNIST's quick recipe does badly there (a
#: teacher worse than the baseline, a distilled student worse than the baseline): the +-2 pixel jitter
#: that helps on digits hurts on clothes in a few epochs (over 60, one pixel helps), and dropout does not
#: pay off in a few epochs.  The quick recipe was chosen on the validation split (the last 10,000 training
#: images), never on the test set, by ``python -m benchmarks.fashion_val``: records
#: benchmarks/results/fashion_val.json (T, alpha), fashion_val_schedule.json and fashion_val_quick_jitter.json
#: (the teacher: jittered by one pixel over 24 epochs, stage 8); the full recipe by stages 6 and 7.
FASHION_PRESETS = {
    "quick": {
        "about": "MNIST's quick nets (teacher 784-800-800-10, student 784-300-300-10) with what Fashion-MNIST's "
                 "validation split preferred (python -m benchmarks.fashion_val, benchmarks/results/fashion_val"
                 "*.json; validation errors of 10,000): T=2, alpha=0.5 (distilled 1128, baseline 1173; T=4 and 8 "
                 "were as good as 2 at alpha 0.9, T=20 worse), and a teacher jittered by one pixel over 24 epochs "
                 "(lr decay 0.88; stage 8, seeds 0-2: 1030, 1067, 1059, distilled students 1076, 1081, 1082 against "
                 "baselines 1189, 1133, 1090). Without jitter and in 12 epochs (the recipe before) its students' "
                 "margin over the baseline was -20 on one seed; MNIST's 2-pixel jitter over 8 epochs hurt (1397 "
                 "against 1098). About 2.5 minutes on a 2-core CPU",
        "teacher": Recipe(hidden=(800, 800), epochs=24, batch_size=100, lr=0.1, lr_decay=0.88, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=1),
        "student": Recipe(hidden=(300, 300), epochs=8, batch_size=100, lr=0.03, lr_decay=0.85, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=0),
        "T": 2.0,
        "alpha": 0.5,
    },
    "full": {
        "about": "bigger nets trained longer, in the paper's setting: teacher 784-1200-1200-10 without dropout or "
                 "max-norm on images jittered by one pixel (60 epochs), student 784-800-800-10 on the plain images "
                 "(40 epochs), T=4, alpha=0.5. Chosen on the validation split (python -m benchmarks.fashion_val "
                 "--stage full-teacher and --stage full-jitter, benchmarks/results/fashion_val_full_*.json; "
                 "validation errors of 10,000, one seed): with dropout and max-norm the teacher was worse than "
                 "the baseline (1143 against 1010), without them on plain images hardly better (988) and its "
                 "student gained nothing; jittered, the teacher made 907 and its distilled student 905 (T=4, "
                 "alpha=0.5; 908 at T=2, 916-919 at alpha 0.9) against the baseline's 994. About 16-18 minutes on "
                 "one core of a 2-core CPU",
        "teacher": Recipe(hidden=(1200, 1200), epochs=60, batch_size=100, lr=0.05, lr_decay=0.95, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=1),
        "student": Recipe(hidden=(800, 800), epochs=40, batch_size=100, lr=0.05, lr_decay=0.95, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=2, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=0),
        "T": 4.0,
        "alpha": 0.5,
    },
}

#: The presets of a user's own data (``--dataset custom``): a generic recipe, safe on data nanokd knows
#: nothing about.  No jitter (a shift need not preserve the label, and it needs square images; ask for
#: it with --jitter), no dropout (it pays off only over many epochs); otherwise Fashion-MNIST's first quick
#: recipe (its teacher of 12 epochs without jitter, chosen on Fashion-MNIST's validation split before stage 8
#: of benchmarks/fashion_val.py jittered it).  Input size and class count come from the files.
CUSTOM_PRESETS = {
    "quick": {
        "about": "a generic recipe for data nanokd does not know: Fashion-MNIST's first quick recipe (teacher "
                 "800-800 for 12 epochs, student 300-300 for 8, no dropout, T=2, alpha=0.5), with jitter off "
                 "(turn it on with --jitter PX, for square images whose labels survive a shift). The input size and the number "
                 "of classes come from the files. Untuned for your data: choose its settings on the "
                 "validation split (--val N), never on the test set",
        "teacher": Recipe(hidden=(800, 800), epochs=12, batch_size=100, lr=0.1, lr_decay=0.8, momentum=0.9,
                          momentum_start=0.5, momentum_ramp=0, dropout_input=0.0, dropout_hidden=0.0,
                          max_norm=0.0, jitter=0),
        "student": FASHION_PRESETS["quick"]["student"],
        "T": FASHION_PRESETS["quick"]["T"],
        "alpha": FASHION_PRESETS["quick"]["alpha"],
    },
}

#: Each data set's table of presets: ``DATASET_PRESETS[dataset][preset][role]`` is a Recipe.
DATASET_PRESETS = {"mnist": PRESETS, "fashion-mnist": FASHION_PRESETS, "custom": CUSTOM_PRESETS}

#: The preset a run uses unless told otherwise; every data set has one of that name.
DEFAULT_PRESET = "quick"


def presets_for(dataset):
    """The table of presets of ``dataset`` (``{name: preset}``); ValueError naming the known data sets."""
    try:
        return DATASET_PRESETS[dataset]
    except KeyError:
        raise ValueError(f"no presets for data set {dataset!r}; known: {', '.join(DATASET_PRESETS)}") from None


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
                         momentum_ramp=recipe.momentum_ramp, weight_decay=recipe.weight_decay, jitter=recipe.jitter,
                         elastic=recipe.elastic, T=T, alpha=alpha, seed=seed)
    return model, config
