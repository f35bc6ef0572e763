"""Errors caused by the user's input; the CLIs print them as one line, never a traceback."""


class UserError(Exception):
    """A mistake in what the user gave us (a path, a file, a config value); message names it."""


class DatasetError(UserError):
    """A dataset file is missing, unreadable or inconsistent with its partner files."""


class ConfigError(UserError):
    """A config file or `--set` override is malformed, unknown or of the wrong type."""


class OutputError(UserError):
    """A file or folder we write could not be written (disk full, read-only, no permission). Commands that
    skip a bad input and go on stop at this instead: every later output would fail the same way."""
