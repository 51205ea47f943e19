"""``nnunet-airway convert SOURCE ...``: public airway data sets (or any image/label folders) into nnU-Net raw."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.dataset_conversion.raw_writer import (
    ConversionOptions,
    ConversionResult,
    dataset_folder_name,
    resolve_out_root,
    write_raw_dataset,
)
from nnunet_airway.dataset_conversion.sources import (
    Found,
    aiib23_cases,
    atm22_cases,
    bas_cases,
    exact09_cases,
    folder_cases,
    lidc_cases,
)
from nnunet_airway.errors import DataError
from nnunet_airway.output_paths import refuse_outputs_over_inputs

# source -> (default data set name, description, reference, licence) written into dataset.json
METADATA = {
    "folder": ("Airway", "airway segmentation from chest CT (converted from image/label folders)", "", ""),
    "lidc": ("LIDC", "LIDC-IDRI chest CT, airway labels where given", "https://doi.org/10.7937/K9/TCIA.2015.LO9QL9SX",
             "CC BY 3.0 (TCIA)"),
    "exact09": ("EXACT09", "EXACT'09 chest CT airway extraction challenge scans", "http://image.diku.dk/exact/",
                "EXACT'09 data use terms"),
    "bas": ("BAS", "The 90 labelled scans of Qin et al., MICCAI 2020 (70 LIDC-IDRI + 20 EXACT'09)",
            "https://doi.org/10.1007/978-3-030-59710-8_22", "LIDC-IDRI: CC BY 3.0; EXACT'09 and BAS labels: their terms"),
    "atm22": ("ATM22", "ATM'22 multi-site airway tree modeling challenge", "https://atm22.grand-challenge.org/",
              "ATM'22 challenge data terms"),
    "aiib23": ("AIIB23", "AIIB23 airway-informed quantitative CT imaging biomarker challenge (fibrotic lung disease)",
               "https://arxiv.org/abs/2312.13752", "AIIB23 challenge data terms"),
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument("-d", dest="dataset_id", type=int, required=True, metavar="ID",
                       help="nnU-Net data set id (1-999): output folder DatasetXXX_NAME")
    group.add_argument("-n", dest="name", default=None, metavar="NAME",
                       help="data set name (default: the source's, e.g. BAS)")
    group.add_argument("--out-root", default=None, metavar="DIR", help="where DatasetXXX_NAME goes (default: $nnUNet_raw)")
    group.add_argument("--overwrite", action="store_true",
                       help="convert cases again that the report lists as converted (default: skip them)")
    group.add_argument("-np", dest="num_workers", type=int_at_least(1), default=1, metavar="N",
                       help="worker processes (default 1)")
    group.add_argument("--binarize-labels", action="store_true",
                       help="make every label value > 0 airway (default: labels other than 0/1 are an error)")
    group.add_argument("--min-slices", type=int_at_least(1), default=10, metavar="N",
                       help="a DICOM series needs at least N slices to count as a CT volume (default 10)")
    group.add_argument("--paper-split", action="store_true",
                       help="seeded random 70/10/20 %% split in the paper's proportions (63/9/18 of 90; not its case list): test cases to imagesTs, fold 0 "
                            "to splits_final.json")
    group.add_argument("--seed", type=int, default=0, help="seed of --paper-split (default 0)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    return common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = _common_options()
    sources = parser.add_subparsers(dest="source", metavar="SOURCE")
    sources.required = True

    def source(name: str, short: str) -> argparse.ArgumentParser:
        return sources.add_parser(name, parents=[common], help=short, description=short)

    p = source("folder", "image/label pairs by name from NIfTI, NRRD, MHA/MHD files or DICOM folders")
    p.add_argument("--images", required=True, metavar="DIR",
                   help="<case>.nii.gz / .nrrd / .mha / .mhd files (optional _0000 suffix) or DICOM folders <case>/")
    p.add_argument("--labels", metavar="DIR",
                   help="<case>.nii.gz / .nrrd / .mha / .mhd airway labels; without it (or for images without a "
                        "label) the scans go to imagesTs, e.g. for prediction")

    for name, short, images_help, labels_help in (
        ("lidc", "LIDC-IDRI DICOM: one CT series per patient found by headers; BAS-style labels",
         "the LIDC-IDRI download (any folder layout)", "labels named <SeriesInstanceUID>.nii.gz"),
        ("exact09", "EXACT'09 DICOM folders CASE01..CASE40", "folder holding CASE01 ... CASE40",
         "labels CASExx.mhd / CASExx.nii.gz"),
    ):
        p = source(name, short)
        p.add_argument("--images", required=True, metavar="ROOT", help=images_help)
        p.add_argument("--labels", metavar="DIR", help=f"{labels_help}; unlabelled scans go to imagesTs")
        if name == "lidc":
            p.add_argument("--max-slice-thickness", type=positive_float("mm"), metavar="MM",
                           help="only series with slices at most this thick (the paper: 0.625)")

    p = source("bas", "the paper's 90 labelled scans (70 LIDC-IDRI + 20 EXACT'09) with the BAS labels")
    p.add_argument("--lidc", required=True, metavar="ROOT", help="the LIDC-IDRI download")
    p.add_argument("--exact09", required=True, metavar="ROOT", help="folder holding CASE01 ... CASE20")
    p.add_argument("--labels", required=True, metavar="DIR",
                   help="BAS labels: <SeriesInstanceUID>.nii.gz (LIDC) and CASExx.nii.gz (EXACT'09)")
    p.add_argument("--max-slice-thickness", type=positive_float("mm"), metavar="MM", help="only series with slices at most this thick")

    p = source("atm22", "ATM'22: imagesTr/ATM_XXX_0000.nii.gz with labelsTr/ATM_XXX_0000.nii.gz")
    p.add_argument("--root", required=True, metavar="DIR", help="the unpacked ATM'22 download (TrainBatch1, ...)")
    p.add_argument("--include-withdrawn", action="store_true", help="also convert ATM_164, withdrawn by the organisers")

    p = source("aiib23", "AIIB23: AIIB_XXX.nii.gz images with labels of the same name")
    p.add_argument("--root", required=True, metavar="DIR", help="the unpacked AIIB23 download")


def find_cases(args: argparse.Namespace) -> tuple[Found, dict]:
    """The cases of the chosen source and the inputs to record in the report."""
    s = args.source
    if s == "folder":
        return folder_cases(args.images, args.labels), {"images": args.images, "labels": args.labels}
    if s == "lidc":
        return (lidc_cases(args.images, args.labels, args.max_slice_thickness, args.min_slices, args.num_workers),
                {"images": args.images, "labels": args.labels, "max_slice_thickness": args.max_slice_thickness})
    if s == "exact09":
        return exact09_cases(args.images, args.labels), {"images": args.images, "labels": args.labels}
    if s == "bas":
        return (bas_cases(args.lidc, args.exact09, args.labels, args.max_slice_thickness, args.min_slices,
                          args.num_workers),
                {"lidc": args.lidc, "exact09": args.exact09, "labels": args.labels,
                 "max_slice_thickness": args.max_slice_thickness})
    if s == "atm22":
        return atm22_cases(args.root, args.include_withdrawn), {"root": args.root}
    return aiib23_cases(args.root), {"root": args.root}


INPUT_OPTIONS = ("images", "labels", "lidc", "exact09", "root")  # the source options that name folders read


def check_output_against_inputs(args: argparse.Namespace, dataset_dir: Path) -> None:
    """The data set folder written may be neither inside a source folder nor hold one (--overwrite rewrites it)."""
    sources = {f"the source folder --{option}": getattr(args, option) for option in INPUT_OPTIONS
               if getattr(args, option, None) is not None}
    refuse_outputs_over_inputs({"the data set folder (-d, -n, --out-root)": dataset_dir}, sources)
    for what, folder in sources.items():
        if dataset_dir.resolve() in Path(folder).resolve().parents:
            raise DataError(f"{folder}: {what} lies inside the data set folder {dataset_dir} this command writes; "
                            "move the source out or give another -d / -n / --out-root")


def convert(args: argparse.Namespace) -> ConversionResult:
    name, description, reference, licence = METADATA[args.source]
    check_output_against_inputs(args, resolve_out_root(args.out_root) / dataset_folder_name(args.dataset_id,
                                                                                            args.name or name))
    found, inputs = find_cases(args)
    inputs = {k: (os.path.abspath(v) if isinstance(v, str) else v) for k, v in inputs.items()}
    if found.unmatched:
        inputs["not_used"] = found.unmatched
    return write_raw_dataset(found.cases, ConversionOptions(
        args.dataset_id, args.name or name, source=args.source, out_root=args.out_root,
        overwrite=args.overwrite, num_workers=args.num_workers, binarize_labels=args.binarize_labels,
        min_slices=args.min_slices, description=description, reference=reference, licence=licence,
        paper_split_seed=args.seed if args.paper_split else None, inputs=inputs, progress=not args.no_progress))


def run(args: argparse.Namespace) -> int:
    result = convert(args)
    removed = f", {len(result.removed)} removed (sources gone)" if result.removed else ""
    print(f"{result.dataset_dir}: {len(result.converted)} converted, {len(result.already_converted)} already "
          f"converted (skipped; --overwrite redoes them), {len(result.skipped)} skipped, {len(result.rejected)} "
          f"rejected{removed}; details in {result.report_path}")
    for line in result.report.get("inputs", {}).get("not_used", []):
        print(f"  not used: {line}", file=sys.stderr)
    for case, reason in result.removed.items():
        print(f"  removed {case}: {reason}")
    for case, reason in result.skipped.items():
        print(f"  skipped {case}: {reason}")
    for case, reason in result.rejected.items():
        print(f"  rejected {case}: {reason}", file=sys.stderr)
    if result.splits_path:
        print(f"paper split (fold 0): {result.splits_path}")
    for line in result.instructions:
        print(line)
    return 0
