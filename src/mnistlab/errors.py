"""The one exception type that reaches the user as a single line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (a path, a file, an argument).

    The CLI prints ``error: <message>`` on standard error and exits with code 2, with no
    traceback. The message should say what was wrong, what was expected and what to do.
    """
