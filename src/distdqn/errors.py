"""Errors caused by what the user asked for.

The CLI turns any `UserError` into one line on stderr and exit code 2; everything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a config value, an env id, a path."""


class ConfigError(UserError):
    """A config file, preset or `--set` override that cannot be used."""


class EnvError(UserError):
    """An environment id that cannot be made or that DQN cannot drive."""


class CheckpointError(UserError):
    """A checkpoint or run directory that is missing or unreadable."""


class TrainingDiverged(UserError):
    """The loss or the weights went non-finite (a learning rate far too high, say); the run stops
    and keeps its last finite checkpoint."""


class DiskFull(UserError):
    """A write in the run directory found the disk (or the user's quota) full; the run stops and
    keeps its last complete checkpoint."""


class RoleLost(UserError):
    """A role the run cannot go on without (a learner, a shard, the evaluator, the last actor)
    cannot come back: its node is gone, or it stayed down past the restart bound. The run stops
    and keeps its last complete checkpoint, which `--resume` continues on the cluster as it is then."""


class MissingExtra(UserError, ImportError):
    """An optional package that what the user asked for needs is not installed; the message names
    the extra that brings it (see `distdqn.extras`). Also an ImportError, so that code which
    checks for an optional package with `except ImportError` still does."""
