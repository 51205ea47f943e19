"""Errors that the command line reports as one line (exit code 1) instead of a traceback."""

from __future__ import annotations


class DataError(Exception):
    """Bad or missing input data, or an output that would be overwritten.

    The message names the file and says what to do; the CLI prints it on one line and exits with 1.
    """
