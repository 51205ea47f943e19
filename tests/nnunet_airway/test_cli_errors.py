"""One line, not a traceback, for what a user's machine or data does: out of memory, nnU-Net's commands off PATH."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from nnunet_airway.demo.nnunet_runner import find_command


def test_out_of_memory_is_one_line_and_verbose_shows_the_traceback(tmp_path: Path) -> None:
    def limit() -> None:  # 1.5 GB of address space: enough to start, far too little for a 700^3 phantom
        resource.setrlimit(resource.RLIMIT_AS, (1500 * 2**20, 1500 * 2**20))

    argv = [sys.executable, "-m", "nnunet_airway", "phantoms", "--out", str(tmp_path / "p"), "--shape", "700", "700",
            "700"]
    done = subprocess.run(argv, capture_output=True, text=True, preexec_fn=limit)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("nnunet-airway phantoms: error: out of memory")
    verbose = subprocess.run([*argv, "-v"], capture_output=True, text=True, preexec_fn=limit)
    assert verbose.returncode == 1 and "MemoryError" in verbose.stderr


def test_nnunet_commands_are_found_beside_the_interpreter_before_path() -> None:
    """A venv's bin off PATH: the demo said nnU-Net was not installed."""
    beside = Path(sys.executable).parent / "nnUNetv2_train"
    assert beside.is_file(), "nnunetv2 is installed into this interpreter's environment"
    assert find_command("nnUNetv2_train", path="") == str(beside)
    assert find_command("no-such-nnunet-command", path="") is None
