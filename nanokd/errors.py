"""The two kinds of expected failure of a run, and what the command line does with each.

Every mistake a user can make is meant to end in one of these (or in
:class:`nanokd.data.DataError`, :class:`nanokd.checkpoint.CheckpointError`,
a FloatingPointError for a diverged run, a MemoryError or an OSError), with a
message that names the flag, key or file, says what was wrong and what to do.
``python -m nanokd.train`` prints that message in one or two lines, without a
traceback (``--debug`` or ``NANOKD_DEBUG=1`` shows it), and exits

* 2 for a *usage error*, :class:`FlagError`: the command line, or the
  config.json a ``--resume`` reads instead, asks for something wrong;
* 1 for a *runtime error*, everything else: the settings are fine but a file,
  folder, device or the machine's memory cannot serve them, or training
  diverged.

Anything else that escapes is a bug in nanokd and keeps its traceback.
"""


class FlagError(ValueError):
    """A flag's (or a resumed config.json key's) value that is wrong: a usage error, exit status 2."""


class RunError(RuntimeError):
    """A run that cannot start or go on (a device, file, folder or memory); the message says what to do (exit 1)."""
