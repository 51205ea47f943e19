"""``nnunet-airway evaluate``: airway tree metrics of an nnU-Net prediction folder against reference labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.masks import CONNECTIVITIES
from nnunet_airway.evaluation.metrics import PROTOCOLS
from nnunet_airway.evaluation.report import cases_csv, format_table
from nnunet_airway.evaluation.runner import evaluate_folder
from nnunet_airway.image_io import prepare_output_dir, write_bytes, write_json

DEFAULT_SUMMARY_NAME = "summary_airway.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--pred", required=True, type=Path, metavar="PRED_DIR",
                        help="folder of predictions CASE.nii.gz (nnU-Net output)")
    parser.add_argument("-r", "--ref", required=True, type=Path, metavar="REF_DIR",
                        help="folder of reference labels CASE.nii.gz (e.g. labelsTs)")
    parser.add_argument("-o", "--out", type=Path, default=None, metavar="JSON",
                        help=f"summary JSON (default PRED_DIR/{DEFAULT_SUMMARY_NAME})")
    parser.add_argument("--csv", type=Path, default=None, metavar="CSV", help="also write one row per case")
    parser.add_argument("-np", "--num-processes", type=int, default=1, dest="num_processes",
                        help="cases evaluated in parallel processes (default 1)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="paper",
                        help="paper: trachea excluded from BD, TD, TPR, FPR (Qin et al. 2020, default); "
                             "atm22: nothing excluded (ATM'22 challenge)")
    parser.add_argument("--connectivity", type=int, choices=(6, 26), default=6,
                        help="connectivity of the largest-component step (default 6, as ATM'22)")
    parser.add_argument("--render", type=Path, default=None, metavar="DIR",
                        help="write one PNG per case: tree projection and BD per generation")
    parser.add_argument("--mesh", type=Path, default=None, metavar="DIR",
                        help="write per case CASE.ply (surface mesh for 3D Slicer / ParaView, physical mm; green "
                             "detected, red missed, blue false positive, grey trachea) and CASE_3d.png (3-D picture)")
    parser.add_argument("--no-cldice", action="store_true",
                        help="skip clDice (saves the prediction's skeleton, about 20%% of the time per case)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score only the reference cases that have a prediction")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _refuse_existing(path: Path | None, overwrite: bool, flag: str) -> None:
    if path is not None and path.exists() and not overwrite:
        raise DataError(f"{path}: exists; choose another {flag} or pass --overwrite")


def run(args: argparse.Namespace) -> int:
    assert args.connectivity in CONNECTIVITIES
    if args.num_processes < 1:
        raise DataError(f"-np {args.num_processes}: give at least 1 process")
    out = args.out if args.out is not None else args.pred / DEFAULT_SUMMARY_NAME
    _refuse_existing(out, args.overwrite, "-o")
    _refuse_existing(args.csv, args.overwrite, "--csv")
    if args.render is not None:
        prepare_output_dir(args.render, args.overwrite)
    if args.mesh is not None:
        prepare_output_dir(args.mesh, args.overwrite)
    summary = evaluate_folder(
        args.pred, args.ref, protocol=args.protocol, connectivity=args.connectivity,
        num_processes=args.num_processes, allow_missing=args.allow_missing, render_dir=args.render,
        progress=not args.no_progress, cl_dice=not args.no_cldice, mesh_dir=args.mesh,
    )
    write_json(out, summary)
    if args.csv is not None:
        write_bytes(args.csv, cases_csv(summary).encode())
    print(format_table(summary, method=args.pred.resolve().name))
    print(f"wrote {out}" + (f" and {args.csv}" if args.csv else "") + (f"; pictures in {args.render}"
                                                                        if args.render else "")
          + (f"; meshes in {args.mesh}" if args.mesh else ""))
    return 0
