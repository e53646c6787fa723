"""One exception type for user-facing problems.

Anything the user can fix (a missing data folder, a checksum mismatch, an
unknown backbone or profile) raises :class:`AllrepError` with a one-line
message; the command line prints that line and exits non-zero, no traceback.
"""


class AllrepError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message."""

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: in a notebook, the message alone, as on the command line (no traceback)."""
        return [f"AllrepError: {self}"]
