"""The one exception type that reaches the user as a single line and exit code 2, and the
warning type that reaches the user of the CLI as a single ``note:`` line."""


class UserError(Exception):
    """Bad input from the user (a path, a file, an argument).

    The CLI prints ``error: <message>`` on standard error and exits with code 2, with no
    traceback. The message should say what was wrong, what was expected and what to do.
    """


class Note(UserWarning):
    """Something the user should know that does not stop the work (an old file that cannot be
    verified, say). Raised with ``warnings.warn``, so a library user filters it as any warning;
    the CLI prints ``note: <message>`` on standard error, once per message."""
