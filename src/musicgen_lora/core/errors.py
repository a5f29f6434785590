"""Errors a user can fix: the command line prints their message as one line (no traceback)."""


class UserError(ValueError):
    """Bad data, a missing file or a wrong adapter; the message names the file and what to do."""
