"""Errors caused by the user's input; the CLIs print them as one line, never a traceback."""


class UserError(Exception):
    """A mistake in what the user gave us (a path, a file, a config value); message names it."""


class DatasetError(UserError):
    """A dataset file is missing, unreadable or inconsistent with its partner files."""


class ConfigError(UserError):
    """A config file or `--set` override is malformed, unknown or of the wrong type."""
