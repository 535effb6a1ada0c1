"""The one error family a user can cause. Every message says what to do next."""


class VcsError(Exception):
    """An error caused by user input or environment, with an actionable message.

    The UI shows ``str(err)`` and keeps the session alive; the CLI prints it and exits 2.
    """


class InputError(VcsError):
    """A file, prompt or setting the user gave is unusable."""


class ModelNotFoundError(VcsError):
    """Weights are missing locally and cannot be downloaded."""


class OutOfMemoryError(VcsError):
    """The device ran out of memory; the message suggests smaller settings."""


class DiskFullError(VcsError):
    """A write ran out of disk space; the message says how much the job needed and what was
    kept (nothing half-written stays behind: files are written atomically)."""


class CancelledError(VcsError):
    """The job was cancelled by the user (a checkpoint was kept where one exists)."""
