"""The one exception type that the CLI turns into a one-line error and a non-zero exit."""


class EdgeposeError(Exception):
    """A user-facing error: the message names the file or option and what is wrong with it."""
