"""Where a command may write: never over or into what it reads.

Every command that writes files checks its output paths here before it reads or writes anything: an output
that is one of the command's inputs, or lies inside an input folder, is refused with one DataError naming both;
two outputs given the same path likewise. Replacing an earlier result goes through nnunet_airway.writing, which
renames a complete new file onto the old one, so a run that fails leaves the earlier file as it was.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nnunet_airway.errors import DataError

PathOrNone = str | os.PathLike | None


def _within(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def refuse_outputs_over_inputs(outputs: Mapping[str, PathOrNone], inputs: Mapping[str, PathOrNone]) -> None:
    """DataError when an output is, or lies inside, an input, or two outputs are one path.

    outputs: option -> path (a file or folder the command writes; None: not given); inputs: a description
    (e.g. "the reference folder -r") -> path (a file or folder the command reads; None: not given). Paths are
    compared after resolving links, so a link cannot smuggle an output into an input.
    """
    given_inputs = {what: Path(path).resolve() for what, path in inputs.items() if path is not None}
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            raise DataError(f"{path}: given to both {seen[resolved]} and {flag}; give each its own name")
        seen[resolved] = flag
        for what, input_path in given_inputs.items():
            if _within(resolved, input_path):
                how = "over" if resolved == input_path else "into"
                raise DataError(f"{path}: {flag} would write {how} {what} ({input_path}); choose a place outside it")


def refuse_existing_file(path: PathOrNone, overwrite: bool, flag: str) -> None:
    """DataError when the output file ``path`` is a folder, or exists and ``overwrite`` is not given."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give {flag} a file name")
    if path.exists() and not overwrite:
        raise DataError(f"{path}: exists; choose another {flag} or pass --overwrite")


def partial_path(path: str | os.PathLike) -> Path:
    """Where a summary that is still being made is kept: ``NAME.partial.json`` beside ``NAME.json``."""
    path = Path(path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.partial{path.suffix or '.json'}")
