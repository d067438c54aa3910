"""The one exception type fxp raises for bad input.

A ``FxpError`` message is one line that names the problem and the fix; the CLI prints it and exits
with status 2. It subclasses ``ValueError`` so plain Python callers can catch it as such.
"""


class FxpError(ValueError):
    """Bad input to fxp: the message names the argument, what was wrong and what is allowed."""
