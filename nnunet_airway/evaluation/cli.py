"""``nnunet-airway evaluate``: airway tree metrics of an nnU-Net prediction folder against reference labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_airway.argument_types import finite_float, int_at_least
from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.masks import CONNECTIVITIES
from nnunet_airway.evaluation.memory_pages import prefer_small_pages
from nnunet_airway.evaluation.metrics import PROTOCOLS
from nnunet_airway.evaluation.report import PROTOCOL_TABLES, TABLES, cases_csv, format_table, summarise
from nnunet_airway.evaluation.runner import evaluate_folder
from nnunet_airway.image_io import prepare_output_dir
from nnunet_airway.output_paths import partial_path, refuse_existing_file, refuse_outputs_over_inputs
from nnunet_airway.writing import write_bytes, write_json

DEFAULT_SUMMARY_NAME = "summary_airway.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--pred", required=True, type=Path, metavar="PRED_DIR",
                        help="folder of predictions CASE.nii.gz (nnU-Net output)")
    parser.add_argument("-r", "--ref", required=True, type=Path, metavar="REF_DIR",
                        help="folder of reference labels CASE.nii.gz (e.g. labelsTs)")
    parser.add_argument("-o", "--out", type=Path, default=None, metavar="JSON",
                        help=f"summary JSON (default PRED_DIR/{DEFAULT_SUMMARY_NAME})")
    parser.add_argument("--csv", type=Path, default=None, metavar="CSV",
                        help="also write one row per case with every metric")
    parser.add_argument("-np", "--num-processes", type=int_at_least(1), default=1, dest="num_processes",
                        help="cases evaluated in parallel processes (default 1)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="paper",
                        help="paper: trachea excluded from BD, TD, TPR, FPR (Qin et al. 2020, default); "
                             "atm22: nothing excluded (ATM'22 challenge); atm26: the ATM'26 Track-1 metrics (DSC, "
                             "clDice, TLD, BD, Betti-0 error)")
    parser.add_argument("--table", choices=TABLES, default=None,
                        help="console layout: paper (BD, TD, TPR, FPR, DSC; default), atm22, aiib23 or exact09; "
                             "atm26 (the default and only layout of --protocol atm26). The JSON and --csv always "
                             "hold every metric of the protocol; definitions in docs/metrics.md")
    parser.add_argument("--connectivity", type=int, choices=(6, 26), default=None,
                        help="connectivity of the largest-component step (default 6, as ATM'22; atm26: 26 only)")
    parser.add_argument("--parsing", type=Path, default=None, metavar="DIR",
                        help="--protocol atm26: folder of the references' CASE_skeleton.nii.gz and "
                             "CASE_parsing.nii.gz (the challenge's, or nnunet-airway parse's); default: parse "
                             "each reference here")
    parser.add_argument("--render", type=Path, default=None, metavar="DIR",
                        help="write one PNG per case: tree projection and BD per generation")
    parser.add_argument("--mesh", type=Path, default=None, metavar="DIR",
                        help="write per case CASE.ply (surface mesh for 3D Slicer / ParaView, physical mm; green "
                             "detected, red missed, blue false positive, grey trachea) and CASE_3d.png (3-D picture)")
    parser.add_argument("--no-cldice", action="store_true",
                        help="skip clDice (saves the prediction's skeleton, about 20%% of the time per case)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="score only the reference cases that have a prediction")
    parser.add_argument("--threshold", type=finite_float(), default=None, metavar="T",
                        help="read predictions as probability maps: airway where value > T (default: a prediction "
                             "with values other than 0 and 1 is refused)")
    parser.add_argument("--binarize", action="store_true",
                        help="make every value > 0 airway, in predictions (unless --threshold) and references "
                             "(default: values other than 0 and 1 are refused)")
    parser.add_argument("--truth", type=Path, default=None, metavar="DIR",
                        help="phantoms only: their truth/ folder (CASE.json per case); adds BD per absolute "
                             "generation (trachea = 0), which differs from BD per generation on crops")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def check_outputs(pred: Path, ref: Path, truth: Path | None, outputs: dict[str, Path | None],
                  parsing: Path | None = None) -> None:
    """Refuse outputs that would overwrite an input or each other (``outputs``: flag -> path or None). The
    prediction folder may take the summary and pictures (nnU-Net's own summary lives there), not images."""
    if pred.resolve() == ref.resolve():
        raise DataError(f"{pred}: -p and -r are the same folder; give the predictions and the reference labels")
    refuse_outputs_over_inputs(outputs, {"the reference folder -r": ref, "the truth folder --truth": truth,
                                         "the parsing folder --parsing": parsing})
    for flag, path in outputs.items():
        if path is None:
            continue
        if path.resolve() == pred.resolve() and flag in ("-o", "--csv"):
            raise DataError(f"{path}: {flag} is the prediction folder -p; give a file name")
        inside_pred = pred.resolve() in path.resolve().parents
        if inside_pred and flag in ("-o", "--csv") and path.name.endswith((".nii.gz", ".nii")):
            raise DataError(f"{path}: {flag} would replace a prediction; choose another name")


def run(args: argparse.Namespace) -> int:
    prefer_small_pages()  # the evaluator's short-lived large arrays (evaluation/memory_pages.py)
    if args.connectivity is not None and args.connectivity not in CONNECTIVITIES:
        raise DataError(f"--connectivity {args.connectivity}: choose one of {CONNECTIVITIES}")
    table = args.table or ("atm26" if args.protocol == "atm26" else "paper")
    if table not in PROTOCOL_TABLES[args.protocol]:
        raise DataError(f"--table {table} shows metrics --protocol {args.protocol} does not compute; choose "
                        f"{' or '.join(PROTOCOL_TABLES[args.protocol])}")
    if args.protocol == "atm26" and args.connectivity not in (None, 26):
        raise DataError("--connectivity 6: protocol atm26 takes the prediction's largest 26-connected component, "
                        "as the challenge does; leave --connectivity out")
    out = args.out if args.out is not None else args.pred / DEFAULT_SUMMARY_NAME
    # while scoring, the summary so far goes to a file of its own: -o and --csv are written once, complete, at
    # the end (an earlier result they replace stays whole if this run fails)
    partial = partial_path(out)
    check_outputs(args.pred, args.ref, args.truth, {"-o": out, "--csv": args.csv, "--render": args.render,
                                                    "--mesh": args.mesh, "the partial summary of -o": partial},
                  args.parsing)
    refuse_existing_file(out, args.overwrite, "-o")
    refuse_existing_file(args.csv, args.overwrite, "--csv")
    refuse_existing_file(partial, args.overwrite, "-o (its partial summary)")
    if args.render is not None:
        prepare_output_dir(args.render, args.overwrite, "--render")
    if args.mesh is not None:
        prepare_output_dir(args.mesh, args.overwrite, "--mesh")
    scored = []  # the case count of each partial summary written after a case

    def write_partial(summary: dict) -> None:
        write_json(partial, {**summary, "incomplete": f"{len(summary['cases'])} case(s) scored so far; the run has "
                                                      f"not finished (or stopped early); {out} is written at the end"})

    def save_partial(summary: dict) -> None:
        scored.append(len(summary["cases"]))
        write_partial(summary)

    write_partial(summarise({}, args.protocol))  # fails now, not after scoring, when the folder cannot be written
    try:
        summary = evaluate_folder(
            args.pred, args.ref, protocol=args.protocol, connectivity=args.connectivity,
            num_processes=args.num_processes, allow_missing=args.allow_missing, render_dir=args.render,
            progress=not args.no_progress, cl_dice=not args.no_cldice, threshold=args.threshold,
            binarize=args.binarize, on_case=save_partial, mesh_dir=args.mesh, truth_dir=args.truth,
            parsing_dir=args.parsing,
        )
    except BaseException:
        if not scored:  # nothing worth keeping
            partial.unlink(missing_ok=True)
        else:
            print(f"evaluate: the {scored[-1]} case(s) scored before the failure are in {partial}", file=sys.stderr)
        raise
    write_json(out, summary)
    if args.csv is not None:
        write_bytes(args.csv, cases_csv(summary).encode())
    partial.unlink(missing_ok=True)
    print(format_table(summary, method=args.pred.resolve().name, table=table))
    print(f"wrote {out}" + (f" and {args.csv}" if args.csv else "") + (f"; pictures in {args.render}"
                                                                        if args.render else "")
          + (f"; meshes in {args.mesh}" if args.mesh else ""))
    return 0
