"""Errors that the command line reports as one line (exit code 1) instead of a traceback."""

from __future__ import annotations

import errno


class DataError(Exception):
    """Bad or missing input data, or an output that would be overwritten.

    The message names the file and says what to do; the CLI prints it on one line and exits with 1.
    """


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation: the file(s), what went wrong and what to do."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc) or type(exc).__name__
    advice = {
        "EACCES": "check the permissions or choose another place",
        "EPERM": "check the permissions or choose another place",
        "EROFS": "the file system is read-only: choose another place",
        "ENOSPC": "free some space or choose another place",
        "EDQUOT": "free some space or choose another place",
        "EFBIG": "the file size limit (ulimit -f) is too low: raise it or choose another place",
        "ENOENT": "check the path",
        "ENOTDIR": "a part of the path is a file, not a folder: check the path",
        "EISDIR": "give a file name, not a folder",
        "EEXIST": "choose another name or move the existing one away",
    }.get(errno.errorcode.get(exc.errno or 0, ""), "check the path, the permissions and the free space")
    return f"{where + ': ' if where else ''}{what}; {advice}"
