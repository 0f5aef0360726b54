"""Errors the command line reports as one line, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (a file, a folder or a setting).

    The message names the offending file or setting and says how to fix it. The command line
    prints it as a single ``error:`` line and exits with status ``exit_status`` (2).
    """

    exit_status = 2


class OutOfMemory(UserError):
    """The GPU ran out of memory; the message names the setting to lower (exit status 3)."""

    exit_status = 3
