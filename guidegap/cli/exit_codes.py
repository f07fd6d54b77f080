"""The CLI's exit codes (docs/design.md §3): 0 the verdict passes ``--fail-on``, 1 it fails, 2 bad input or usage."""

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
