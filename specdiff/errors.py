"""User-facing errors: each names the problem and the fix, and the CLI prints it as one line."""


class SpecdiffError(ValueError):
    """Bad input or configuration that the caller can fix; raised before any work is done."""
