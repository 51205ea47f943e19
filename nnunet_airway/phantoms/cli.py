"""``nnunet-airway phantoms``: write synthetic chest CT phantoms with airway trees."""

from __future__ import annotations

import argparse

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.phantoms.crop import CROPS
from nnunet_airway.phantoms.generate import DEFAULT_SHAPE_ZYX, grid_problem, write_phantoms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write N synthetic chest CTs (int16 HU) with airway labels (uint8, lumen = 1) as NIfTI with real "
        "geometry, a truth JSON per case describing every branch, and optionally a preview PNG. "
        "Files: OUT/images/<case>.nii.gz, OUT/labels/<case>.nii.gz, OUT/truth/<case>.json, "
        "OUT/previews/<case>.png; cases phantom_000, phantom_001, ..."
    )
    parser.add_argument("--out", "-o", required=True, help="output folder (refused if it exists and is not empty)")
    parser.add_argument("-n", type=int_at_least(1), default=1, help="number of cases (default 1)")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="base seed; case i uses a seed derived from (seed, i) (default 0)")
    parser.add_argument("--shape", type=int_at_least(1), nargs=3, metavar=("Z", "Y", "X"), default=list(DEFAULT_SHAPE_ZYX),
                        help="grid size in voxels (default %(default)s)")
    parser.add_argument("--spacing", type=positive_float("mm"), nargs=3, metavar=("X", "Y", "Z"), default=None,
                        help="voxel spacing in mm; default: derived from the shape so the grid covers an adult "
                             "chest (350 x 350 x 300 mm). A field of view smaller than that shrinks the chest "
                             "uniformly to fit")
    parser.add_argument("--crop", choices=CROPS, default="chest",
                        help="chest (default): the whole chest, scaled to fit the grid; lung or lobe: an adult chest "
                             "(anatomy scale 1), rendered only in a box of --shape voxels at --spacing (default "
                             "0.7 mm) around one lung's or lobe's airway subtree, whose root enters the box "
                             "through a face (the sidecar's 'crop' says which branch and where)")
    parser.add_argument("--scanner", choices=("ideal", "clinical"), default=None,
                        help="ideal: lumen air -1000 HU, no blur, no table; clinical: per-case lumen, parenchyma "
                             "(dense to emphysematous), wall, vessel, noise, blur and table values from ranges of "
                             "real chest CT (docs/clinical-phantoms.md). Default: ideal for the whole chest, "
                             "clinical for crops")
    parser.add_argument("--preview", action="store_true",
                        help="also write OUT/previews/<case>.png (coronal MinIP/MIP of CT and label)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT, replacing its files")
    parser.add_argument("--from-label", nargs="+", metavar="LABEL", default=None,
                        help="render a CT around each real airway label (files or folders; .nii.gz, .nii, .nrrd, "
                             ".mha, ...; nonzero = airway) instead of growing trees; one case per label, named after "
                             "its file. The label is written unchanged (resampled only with --spacing); -n is not "
                             "used; --crop lung|lobe cuts a --shape box at the label's spacing; clinical scanner "
                             "(docs/phantoms-from-labels.md)")
    parser.add_argument("--lung-mask", nargs="+", metavar="MASK", default=None,
                        help="with --from-label: one lung mask per label (nonzero = lung, on the label's grid), in "
                             "the labels' order; default: lungs grown from the tree")
    parser.add_argument("--binarize", action="store_true",
                        help="with --from-label: make every label value > 0 airway (e.g. a 0/255 label), written "
                             "as 1; without it a label holding values other than 0 and 1 is refused")
    parser.add_argument("--extend", action="store_true",
                        help="with --from-label: draw thin branches grown past the label's terminal branches in the "
                             "CT and leave them out of the label, as readers miss the thinnest airways")
    parser.set_defaults(_parser=parser)


def run(args: argparse.Namespace) -> int:
    if args.from_label is not None:
        return _run_from_label(args)
    if args.lung_mask or args.extend or args.binarize:
        args._parser.error("--lung-mask, --extend and --binarize go with --from-label")
    problem = grid_problem(tuple(args.shape), args.spacing, args.crop)
    if problem:
        args._parser.error(f"--shape/--spacing: {problem}")
    try:
        cases = write_phantoms(args.out, args.n, seed=args.seed, shape_zyx=tuple(args.shape),
                               spacing_xyz=args.spacing, preview=args.preview, overwrite=args.overwrite,
                               crop=args.crop, scanner=args.scanner)
    except ValueError as exc:  # a setting that no case can satisfy (e.g. a box too small for any subtree)
        args._parser.error(f"--shape/--spacing/--crop: {exc}")
    print(f"wrote {len(cases)} phantom(s) to {args.out}: {', '.join(cases)}")
    return 0


def _run_from_label(args: argparse.Namespace) -> int:
    from nnunet_airway.label_phantoms import write_label_phantoms  # parses with the evaluator: loaded only here

    if args.scanner == "ideal":
        args._parser.error("--from-label renders with the clinical scanner model; leave out --scanner ideal")
    cases = write_label_phantoms(args.from_label, args.out, seed=args.seed, lung_masks=args.lung_mask,
                                 spacing_xyz=args.spacing, crop=args.crop, shape_zyx=tuple(args.shape),
                                 extend=args.extend, preview=args.preview, overwrite=args.overwrite,
                                 binarize=args.binarize)
    print(f"wrote {len(cases)} phantom(s) around real labels to {args.out}: {', '.join(cases)}")
    return 0
