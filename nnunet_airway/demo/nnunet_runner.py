"""Run the real ``nnUNetv2_*`` commands as subprocesses, with their output in a log file.

The demo never imports nnU-Net: it drives the same console commands a user types.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from nnunet_airway.errors import DataError

NNUNET_FOLDER_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def nnunet_folders(workdir: Path) -> dict[str, str]:
    """The three nnU-Net folders: the user's when all are set, else three folders inside ``workdir``."""
    present = [name for name in NNUNET_FOLDER_VARIABLES if os.environ.get(name)]
    if not present:
        return {name: str(workdir / name) for name in NNUNET_FOLDER_VARIABLES}
    missing = [name for name in NNUNET_FOLDER_VARIABLES if name not in present]
    if missing:
        raise DataError(
            f"{', '.join(missing)} not set while {', '.join(present)} is: export all three nnU-Net folder "
            "variables, or unset them all to let the demo keep its folders inside --workdir"
        )
    return {name: os.environ[name] for name in NNUNET_FOLDER_VARIABLES}


def find_command(name: str, path: str | None = None) -> str | None:
    """The executable ``name``: beside the running interpreter first (a virtual environment's ``bin``, used
    without activating it), then on ``path`` (PATH by default); None when neither has it."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name, path=path)


def run_logged(
    command: Sequence[str], env: dict[str, str], log_path: Path, on_line: Callable[[str], None] | None = None,
) -> None:
    """Run ``command``, appending its output to ``log_path`` and passing each line to ``on_line``.

    Raises DataError with the log's last lines when the command fails or is not installed.
    """
    executable = find_command(command[0], env.get("PATH"))
    if executable is None:
        raise DataError(f"{command[0]}: command not found beside {sys.executable} or on PATH; install nnunetv2 "
                        ">= 2.8 into this environment (pip install -e .) and rerun")
    command = [executable, *command[1:]]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=8)
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1)
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if on_line is not None:
                    on_line(line.rstrip())
            code = process.wait()
        except BaseException:
            process.terminate()
            process.wait()
            raise
    if code != 0:
        last = " | ".join(line for line in tail if line.strip())[-600:]
        raise DataError(f"{command[0]} failed with exit code {code}; see {log_path} (last lines: {last})")
