"""Small memory pages for the evaluator's commands.

numpy asks Linux for transparent huge pages on every large new array. Where the kernel's THP ``defrag`` setting
is ``madvise`` (the default of several distributions), each such request may stall while the kernel compacts
memory to find 2 MB pages; the evaluator makes many large arrays that live for a fraction of a second, and on
the project's 2-core VM these stalls were 3-4 s of system time per 512 x 512 x 400 case (docs/metrics.md). The
evaluator's commands therefore turn the request off for their own process, as ``NUMPY_MADVISE_HUGEPAGE=0``
does, unless the user has set that variable.
"""

from __future__ import annotations

import os

import numpy as np


def prefer_small_pages() -> bool:
    """Stop numpy from asking for huge pages in this process (and the processes it forks) unless
    NUMPY_MADVISE_HUGEPAGE is set; True when the setting was changed."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    setter = getattr(core.multiarray, "_set_madvise_hugepage", None)
    if setter is None:
        return False
    setter(False)
    return True
