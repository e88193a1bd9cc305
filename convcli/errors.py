"""The one exception type convcli raises for bad input.

Library functions raise :class:`ConvcliError` (a ``ValueError``) with a
message that names the option or file and the reason; the CLI prints it as
one line on stderr and exits with ``exit_code``.
"""


class ConvcliError(ValueError):
    """Bad input: an option, a kernel, a file. The message is user-facing."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def describe(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none), for an error line."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
