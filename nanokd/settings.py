r"""The settings of one run of ``python -m nanokd.train``, and the one place where they are checked.

A run's settings are a JSON-able dict: :func:`nanokd.train.settings_from_args`
makes it from the flags, the run saves it as ``config.json``, and ``--resume``
reads it back from there.  Each key has one :class:`Rule` (:data:`RULES`,
:data:`RECIPE_RULES`), and the flags are parsed with the very same rules, so
a value the flags refuse is refused in a resumed config.json too:

    argument --jitter: '30' is not an integer in [0, 27]                   (a flag)
    runs/a/config.json, key "teacher.jitter": must be an integer in [0, 27], got 30   (--resume runs/a)

:func:`check_settings` checks a whole dict: every key present, no other key,
each value of the right type and range, and the combinations (``--role
distill`` needs teacher files).  What only the world can tell (does the
teacher file exist, is there a GPU) is checked by :func:`nanokd.experiment.run`
before it writes anything.
"""

import dataclasses
import json
import math
import numbers
from typing import Callable, NamedTuple

import numpy as np

from . import data as nkdata
from .backend import DEVICES
from .errors import FlagError
from .presets import Recipe, presets_for

ROLES = ("all", "teacher", "student", "distill")

#: The largest jitter: a shift of 28 pixels would move every pixel out of a 28 x 28 image.
MAX_JITTER = nkdata.IMAGE_SIZE - 1

#: The loss is computed in float32, and its soft term is multiplied by T^2: T^2 must be a float32.
T_MAX = math.sqrt(float(np.finfo(np.float32).max))


class Rule(NamedTuple):
    """What one numeric setting must be: an int (``kind=int``) or a number, for which ``ok`` holds."""

    kind: type       # int: an integer; float: any real number (an int too); never a bool
    ok: Callable     # the range, e.g. lambda v: v >= 1; False for NaN, since NaN compares False
    what: str        # the range in words, for messages: "an integer >= 1"

    def accepts(self, value):
        """True when ``value`` (from a flag or from JSON) is of the rule's kind and in its range."""
        kinds = numbers.Integral if self.kind is int else numbers.Real
        return not isinstance(value, bool) and isinstance(value, kinds) and bool(self.ok(value))


POS_INT = Rule(int, lambda v: v >= 1, "an integer >= 1")
NONNEG_INT = Rule(int, lambda v: v >= 0, "an integer >= 0")
POS_FLOAT = Rule(float, lambda v: 0 < v < math.inf, "a number > 0")
NONNEG_FLOAT = Rule(float, lambda v: 0 <= v < math.inf, "a number >= 0")
UNIT = Rule(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
UNIT_OPEN = Rule(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
DECAY = Rule(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
JITTER = Rule(int, lambda v: 0 <= v <= MAX_JITTER, f"an integer in [0, {MAX_JITTER}]")
TEMPERATURE = Rule(float, lambda v: 0 < v <= T_MAX, f"a number in (0, {T_MAX:.3g}] (T^2 scales the loss, in float32)")

#: field of a :class:`~nanokd.presets.Recipe` -> its rule (for ``hidden``: the rule of each width).
RECIPE_RULES = {
    "hidden": POS_INT,
    "epochs": NONNEG_INT,
    "batch_size": POS_INT,
    "lr": POS_FLOAT,
    "lr_decay": DECAY,
    "momentum": UNIT_OPEN,
    "momentum_start": UNIT_OPEN,
    "momentum_ramp": NONNEG_INT,
    "dropout_input": UNIT_OPEN,
    "dropout_hidden": UNIT_OPEN,
    "max_norm": NONNEG_FLOAT,
    "jitter": JITTER,
    "elastic": NONNEG_FLOAT,
    "weight_decay": NONNEG_FLOAT,
}
assert tuple(RECIPE_RULES) == tuple(f.name for f in dataclasses.fields(Recipe)), "a Recipe field without a rule"

#: The numeric keys of the settings.
RULES = {"val": NONNEG_INT, "train_subset": NONNEG_INT, "subset_seed": NONNEG_INT, "seed": NONNEG_INT,
         "T": TEMPERATURE, "alpha": UNIT}

#: The keys that name one of a few choices.
CHOICES = {"role": ROLES, "dataset": nkdata.DATASETS, "device": DEVICES}  # and "preset": the dataset's presets

#: Every key of the settings, in the order config.json lists them.
KEYS = ("role", "preset", "dataset", "data_dir", "val", "train_subset", "subset_seed", "verify", "seed", "device",
        "teacher_files", "T", "alpha", "teacher", "student")

#: Keys added after config.json was first written, with the value that means what a run without them did:
#: a config.json of an earlier version lacks them, and :func:`with_defaults` fills them in for --resume.
LATER_KEYS = {"train_subset": 0, "subset_seed": 0}
#: The same for the keys of each role's recipe.
LATER_RECIPE_KEYS = {"elastic": 0.0, "weight_decay": 0.0}

#: Keys whose flag is not simply --KEY.
FLAG_NAMES = {"data_dir": "--data-dir", "verify": "--no-verify", "teacher_files": "--teacher"}


def with_defaults(settings):
    """``settings`` read from a config.json, with the :data:`LATER_KEYS` it lacks filled in (a new dict).

    >>> with_defaults({"val": 10000, "teacher": {"epochs": 8}})
    {'val': 10000, 'teacher': {'epochs': 8, 'elastic': 0.0, 'weight_decay': 0.0}, 'train_subset': 0, 'subset_seed': 0}
    """
    if not isinstance(settings, dict):
        return settings  # check_settings says what is wrong with it
    out = {**settings, **{k: v for k, v in LATER_KEYS.items() if k not in settings}}
    for role in ("teacher", "student"):
        if isinstance(out.get(role), dict):
            out[role] = {**out[role], **{k: v for k, v in LATER_RECIPE_KEYS.items() if k not in out[role]}}
    return out


def name_of(key, role=None, source=None):
    """How a message names a setting: its flag, or (``source``: the config.json it came from) its key there.

    >>> name_of("jitter", "teacher")
    'argument --teacher-jitter (or --jitter)'
    >>> name_of("jitter", "teacher", "runs/a/config.json")
    'runs/a/config.json, key "teacher.jitter"'
    """
    if source is not None:
        return f'{source}, key "{key}"' if role is None else f'{source}, key "{role}.{key}"'
    flag = FLAG_NAMES.get(key, "--" + key.replace("_", "-"))
    return f"argument {flag}" if role is None else f"argument --{role}-{flag[2:]} (or {flag})"


def check_settings(settings, source=None):
    """Check a run's settings; raise :class:`~nanokd.errors.FlagError` naming the first wrong key.

    ``source``: the config.json they were read from (messages then name the
    file and the key), or None for settings made from flags (messages name
    the flag).
    """
    where = source or "the settings"
    if not isinstance(settings, dict):
        raise FlagError(f"{where}: must be a JSON object of settings, got {type(settings).__name__}")
    missing = [k for k in KEYS if k not in settings]
    unknown = [k for k in settings if k not in KEYS]
    if unknown:
        raise FlagError(f"{where}: unknown key {_quoted(unknown)}; the keys are {', '.join(KEYS)}")
    if missing:
        raise FlagError(f"{where}: key {_quoted(missing)} is missing")
    for key, choices in CHOICES.items():
        if not isinstance(settings[key], str) or settings[key] not in choices:
            raise FlagError(f"{name_of(key, source=source)}: must be one of {', '.join(choices)}, "
                            f"got {_shown(settings[key])}")
    presets = tuple(presets_for(settings["dataset"]))
    if settings["preset"] not in presets:
        raise FlagError(f"{name_of('preset', source=source)}: must be one of {', '.join(presets)} for "
                        f"--dataset {settings['dataset']}, got {_shown(settings['preset'])}")
    for key, rule in RULES.items():
        _check_value(settings[key], rule, name_of(key, source=source))
    if settings["data_dir"] is not None and not isinstance(settings["data_dir"], str):
        raise FlagError(f"{name_of('data_dir', source=source)}: must be a folder name or null, "
                        f"got {_shown(settings['data_dir'])}")
    if not isinstance(settings["verify"], bool):
        raise FlagError(f"{name_of('verify', source=source)}: must be true or false, got {_shown(settings['verify'])}")
    files = settings["teacher_files"]
    if files is not None and (not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files)):
        raise FlagError(f"{name_of('teacher_files', source=source)}: must be a non-empty list of file names "
                        f"or null, got {_shown(files)}")
    for role in ("teacher", "student"):
        _check_recipe(settings[role], role, source)
    _check_combinations(settings, source)


def _shown(value):
    """A value as config.json writes it ("foo", true, null), for messages."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _quoted(keys):
    """Keys as JSON writes them: "a", "b"."""
    return ", ".join(f'"{k}"' for k in keys)


def _check_value(value, rule, name):
    if not rule.accepts(value):
        raise FlagError(f"{name}: must be {rule.what}, got {_shown(value)}")


def _check_recipe(recipe, role, source):
    """One role's recipe: a dict with exactly the fields of :class:`~nanokd.presets.Recipe`, each in range."""
    where = name_of(role, source=source) if source else f"the {role} settings"
    if not isinstance(recipe, dict):
        raise FlagError(f"{where}: must be an object with the keys {', '.join(RECIPE_RULES)}, got {_shown(recipe)}")
    unknown = [k for k in recipe if k not in RECIPE_RULES]
    missing = [k for k in RECIPE_RULES if k not in recipe]
    if unknown:
        raise FlagError(f"{where}: unknown key {_quoted(unknown)}; "
                        f"the keys are {', '.join(RECIPE_RULES)}")
    if missing:
        raise FlagError(f"{where}: key {_quoted(missing)} is missing")
    hidden = recipe["hidden"]
    if not isinstance(hidden, (list, tuple)) or not hidden or not all(POS_INT.accepts(h) for h in hidden):
        raise FlagError(f"{name_of('hidden', role, source)}: must be a non-empty list of widths (integers >= 1), "
                        f"got {_shown(hidden)}")
    for field, rule in RECIPE_RULES.items():
        if field != "hidden":
            _check_value(recipe[field], rule, name_of(field, role, source))


def _check_combinations(settings, source):
    """What no single key can say: the teacher files a role needs, and --val against the data's known size."""
    role, files = settings["role"], settings["teacher_files"]
    if source is None:
        if role == "distill" and not files:
            raise FlagError("--role distill needs --teacher PATH [PATH ...]")
        if role in ("teacher", "student") and files:
            raise FlagError(f"--teacher is for --role distill or all, not --role {role}")
    else:
        if role == "distill" and not files:
            raise FlagError(f'{source}: key "role" is "distill", which needs teacher files, '
                            f'but key "teacher_files" is {_shown(files)}')
        if role in ("teacher", "student") and files:
            raise FlagError(f'{source}: key "teacher_files" is for role "distill" or "all", not "{role}"')
    n_train = nkdata.EXPECTED_COUNT[nkdata.TRAIN_IMAGES]
    if settings["verify"] and not settings["val"] < n_train:  # the checked files have exactly n_train images
        raise FlagError(f"{name_of('val', source=source)}: must be in [0, {n_train}) for the {n_train} training "
                        f"images of {settings['dataset']}, got {settings['val']}")
