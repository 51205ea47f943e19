"""``nnunet-airway parse``: the reference skeleton and branch parsing volumes ATM'26 scores against, for labels.

For every label CASE.nii.gz of -i (a folder, or files) writes CASE_skeleton.nii.gz (uint8 0/1) and
CASE_parsing.nii.gz (branch IDs 1..N on the skeleton) on the label's grid into -o, from our tree parse
(evaluation/parsing.py); ``evaluate --protocol atm26 --parsing OUT`` reads them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.binarize import airway_mask
from nnunet_airway.evaluation.memory_pages import prefer_small_pages
from nnunet_airway.evaluation.parsing import parse_label, parsing_file_names
from nnunet_airway.evaluation.runner import NIFTI_SUFFIX
from nnunet_airway.image_io import prepare_output_dir, read_image
from nnunet_airway.output_paths import refuse_existing_file, refuse_outputs_over_inputs
from nnunet_airway.writing import write_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, type=Path, nargs="+", metavar="LABELS",
                        help=f"a folder of reference labels CASE{NIFTI_SUFFIX} (e.g. labelsTr) or label files")
    parser.add_argument("-o", "--out", required=True, type=Path, metavar="OUT_DIR",
                        help=f"folder for CASE_skeleton{NIFTI_SUFFIX} and CASE_parsing{NIFTI_SUFFIX}")
    parser.add_argument("--binarize", action="store_true",
                        help="make every value > 0 airway (default: values other than 0 and 1 are refused)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing skeleton and parsing files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def label_files(inputs: list[Path]) -> dict[str, Path]:
    """case -> label file of the given folders and files (CASE.nii.gz); DataError for a missing path, a folder
    without labels, another extension or one case name twice."""
    found: dict[str, Path] = {}
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.name.endswith(NIFTI_SUFFIX))
            if not files:
                raise DataError(f"{item}: no {NIFTI_SUFFIX} labels in this folder; give the labelsTr/labelsTs folder")
        elif item.is_file():
            if not item.name.endswith(NIFTI_SUFFIX):
                raise DataError(f"{item}: not a {NIFTI_SUFFIX} file; give NIfTI labels (nnU-Net's format)")
            files = [item]
        else:
            raise DataError(f"{item}: no such file or folder; check the path")
        for path in files:
            case = path.name[: -len(NIFTI_SUFFIX)]
            if case in found and found[case].resolve() != path.resolve():
                raise DataError(f"{path}: case {case} is also {found[case]}; give each case once")
            found[case] = path
    return found


def write_parsings(labels: dict[str, Path], out: Path, binarize: bool = False, progress: bool = True,
                   report: bool = True) -> None:
    """Write CASE_skeleton.nii.gz and CASE_parsing.nii.gz into the existing folder ``out`` for every case ->
    label file of ``labels`` (replacing files of those names); ``report`` prints a line per case."""
    for case, path in tqdm(labels.items(), desc="parse", unit="label", disable=not progress):
        values, geometry = read_image(path)
        label = airway_mask(values, str(path), "reference", None, binarize)
        skeleton, parsing = parse_label(label, geometry.spacing_zyx, str(path))
        del values, label
        skeleton_name, parsing_name = parsing_file_names(case, NIFTI_SUFFIX)
        write_image(out / skeleton_name, skeleton, geometry)
        write_image(out / parsing_name, parsing, geometry)
        if report:
            tqdm.write(f"{case}: {int(parsing.max())} branches, {int(np.count_nonzero(skeleton))} skeleton voxels")


def run(args: argparse.Namespace) -> int:
    prefer_small_pages()  # the evaluator's short-lived large arrays (evaluation/memory_pages.py)
    labels = label_files(args.input)
    inputs = {f"the label folder {path}": path for path in args.input if path.is_dir()}
    inputs.update({f"the label {path}": path for path in args.input if path.is_file()})
    refuse_outputs_over_inputs({"-o": args.out}, inputs)
    targets = {case: tuple(args.out / name for name in parsing_file_names(case, NIFTI_SUFFIX)) for case in labels}
    for pair in targets.values():
        for target in pair:
            refuse_existing_file(target, args.overwrite, "-o")
    prepare_output_dir(args.out, overwrite=True, flag="-o")  # existing files were refused above, one by one
    started = time.perf_counter()
    write_parsings(labels, args.out, args.binarize, progress=not args.no_progress)
    print(f"wrote the skeleton and parsing of {len(labels)} label(s) to {args.out} in "
          f"{time.perf_counter() - started:.1f} s")
    return 0
