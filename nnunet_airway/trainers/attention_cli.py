"""``nnunet-airway attention``: the decoder attention maps of a trained airway model on one image (Fig. 4 of
Qin et al. 2020), optionally beside another model's (``--compare``, e.g. FR against FRAD: before and after
distillation), and as NIfTI volumes on the image's grid (``--save-maps``).

    nnunet-airway attention -m $nnUNet_results/Dataset990_AirwayPhantomDemo/nnUNetTrainerAirwayFRAD_Budget__nnUNetAirwayDemoPlans__3d_fullres \\
        -i imagesTs/phantom_008_0000.nii.gz -o attention.png --slice coronal
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_airway.attention_figure import VIEWS, AttentionRow, View, attention_figure_png, parse_slice, resolve_view
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import prepare_output_dir, read_image
from nnunet_airway.output_paths import refuse_existing_file, refuse_outputs_over_inputs
from nnunet_airway.writing import write_bytes, write_image


def _view(text: str) -> View:
    try:
        return parse_slice(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True, type=Path, metavar="MODEL_FOLDER",
                        help="nnU-Net results folder of an airway trainer: <trainer>__<plans>__<configuration>")
    parser.add_argument("-i", "--image", required=True, type=Path, nargs="+", metavar="IMAGE",
                        help="the image (CASE_0000.nii.gz; one file per channel for multi-channel models)")
    parser.add_argument("-f", "--fold", default="0", help="fold to load (default 0; 'all' for a fold_all model)")
    parser.add_argument("-c", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name")
    parser.add_argument("-o", "--out", required=True, type=Path, metavar="OUT.png", help="the figure (PNG)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--slice", type=_view, default=View("coronal"), metavar="VIEW[:INDEX]",
                       help="axial, coronal or sagittal slice; INDEX along that array axis (default: the slice "
                            "with the most predicted airway; default view coronal)")
    where.add_argument("--mip", nargs="?", const="coronal", choices=tuple(VIEWS), default=None,
                       help="projections along the view's axis instead of a slice (maps and prediction: maximum, "
                            "image: mean); default coronal")
    parser.add_argument("--compare", type=Path, default=None, metavar="OTHER_MODEL_FOLDER",
                        help="a second row from another model (e.g. the FR model beside the FRAD model)")
    parser.add_argument("--save-maps", type=Path, default=None, metavar="DIR",
                        help="also write DIR/<trainer>/decoder_K.nii.gz (coarse K=1 to fine) and prediction.nii.gz "
                             "on the image's grid")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the network runs (auto: cuda when available)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def model_label(folder: Path) -> str:
    """``<trainer>__<plans>__<configuration>`` -> the trainer's name."""
    return folder.resolve().name.split("__")[0]


def run(args: argparse.Namespace) -> int:
    models = {f"the model folder {flag}": folder for flag, folder in (("-m", args.model), ("--compare", args.compare))}
    images = {f"the image -i {path}": path for path in args.image}
    image_folders = {f"the image folder of -i {path}": path.parent for path in args.image}
    refuse_outputs_over_inputs({"-o": args.out, "--save-maps": args.save_maps}, {**models, **images})
    refuse_outputs_over_inputs({"--save-maps": args.save_maps}, image_folders)  # e.g. maps into imagesTs
    refuse_existing_file(args.out, args.overwrite, "-o")
    for path in args.image:
        if not path.is_file():
            raise DataError(f"{path}: no such image; give the CT with -i")
    folders = [args.model] + ([args.compare] if args.compare is not None else [])
    labels = [model_label(folder) for folder in folders]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    if args.save_maps is not None:
        prepare_output_dir(args.save_maps, args.overwrite, "--save-maps")

    from nnunet_airway.trainers.attention import attention_on_image, load_predictor  # torch + nnU-Net

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    image, geometry = read_image(args.image[0])
    rows = []
    for folder, label in zip(folders, labels, strict=True):
        predictor = load_predictor(folder, args.fold, args.checkpoint, device)
        result = attention_on_image(predictor, [str(p) for p in args.image])
        if result.prediction.shape != image.shape:
            raise DataError(f"{args.image[0]}: the model's output has shape {result.prediction.shape}, the image "
                            f"{image.shape}; the image reader of the plans disagrees with SimpleITK")
        rows.append(AttentionRow(label, result.prediction, result.maps))
        if args.save_maps is not None:
            out = args.save_maps / label
            for k, volume in enumerate(result.maps, start=1):
                write_image(out / f"decoder_{k}.nii.gz", volume, geometry)
            write_image(out / "prediction.nii.gz", result.prediction, geometry)
        print(f"{label}: decoder stages {' -> '.join('x'.join(map(str, s)) for s in result.stage_shapes)} "
              f"(per window, coarse to fine)")
    view = View(args.mip, None, True) if args.mip else args.slice
    try:
        view = resolve_view(view, rows[0].prediction)
    except ValueError as exc:
        raise DataError(f"{args.image[0]}: {exc}; choose another --slice") from None
    write_bytes(args.out, attention_figure_png(image, rows, geometry.spacing_zyx, view))
    print(f"wrote {args.out}" + (f" and maps in {args.save_maps}" if args.save_maps else ""))
    return 0
