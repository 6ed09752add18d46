"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: a missing file, an unknown id, a malformed config."""
