"""The one error type users see: a single line that says what, where and what to do."""


class CnnError(Exception):
    """Bad input from the user. The CLI prints it on one line and exits with status 2."""

    exit_code = 2
