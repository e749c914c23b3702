"""Errors the user can fix. The CLI prints their message as one line (no traceback unless --debug)."""


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do next."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A config value, option or class name that cannot work."""


class DataError(UserError, ValueError):
    """A dataset file that is missing, corrupt or inconsistent."""

    exit_code = 1
