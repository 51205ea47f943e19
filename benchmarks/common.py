"""What every benchmark script needs: the machine's name, the process's peak memory and PNG bytes of a figure.

The benchmarks run as scripts (``python benchmarks/<name>.py``), so they import this file by its name from
their own folder: ``from common import cpu_name``.
"""

from __future__ import annotations

import platform
import resource
import sys
from pathlib import Path


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def peak_rss_bytes() -> int:
    """The peak resident set size of this process so far, in bytes (ru_maxrss is in kB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def png_bytes(fig, dpi: int) -> bytes:
    """A matplotlib Figure laid out tightly and encoded as PNG at ``dpi``."""
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
