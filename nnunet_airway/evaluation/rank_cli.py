"""``nnunet-airway rank``: score several prediction folders against one reference folder and rank them as a
challenge leaderboard does (ATM'26: mean rank over five metrics; ATM'22: one score). The rule:
nnunet_airway.evaluation.ranking."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from nnunet_airway.argument_types import int_at_least
from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.memory_pages import prefer_small_pages
from nnunet_airway.evaluation.parse_cli import write_parsings
from nnunet_airway.evaluation.ranking import (
    RANK_METRICS,
    Submission,
    leaderboard,
    leaderboard_csv,
    leaderboard_markdown,
)
from nnunet_airway.evaluation.runner import NIFTI_SUFFIX, evaluate_folder, pair_cases
from nnunet_airway.output_paths import refuse_existing_file, refuse_outputs_over_inputs
from nnunet_airway.writing import write_bytes, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-r", "--ref", required=True, type=Path, metavar="REF_DIR",
                        help="folder of reference labels CASE.nii.gz (e.g. labelsTs)")
    parser.add_argument("-p", "--pred", required=True, type=Path, nargs="+", metavar="DIR",
                        help="prediction folders CASE.nii.gz to rank, each holding every reference case")
    parser.add_argument("--protocol", required=True, choices=tuple(RANK_METRICS),
                        help="atm26: the ATM'26 leaderboard, mean rank over DSC, clDice, TLD, BD (higher better) "
                             "and Betti0Error (lower better); atm22: the ATM'22 score, mean of TD, BD, DSC and "
                             "precision, higher better")
    parser.add_argument("--parsing", type=Path, default=None, metavar="DIR",
                        help="--protocol atm26: folder of the references' CASE_skeleton.nii.gz and "
                             "CASE_parsing.nii.gz (default: parse each reference here)")
    parser.add_argument("--names", nargs="+", default=None, metavar="NAME",
                        help="one name per -p folder, in the same order (default: the folders' names)")
    parser.add_argument("-o", "--out", required=True, type=Path, metavar="RANK.json",
                        help="the leaderboard as JSON")
    parser.add_argument("--csv", type=Path, default=None, metavar="RANK.csv",
                        help="also write the leaderboard as CSV, one row per folder")
    parser.add_argument("--markdown", type=Path, default=None, metavar="RANK.md",
                        help="also write the Markdown table printed on the console")
    parser.add_argument("-np", "--num-processes", type=int_at_least(1), default=1, dest="num_processes",
                        help="cases evaluated in parallel processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def submission_names(folders: list[Path], names: list[str] | None) -> list[str]:
    """The board's name of each folder: ``names`` (one per folder) or the folders' own names. DataError when
    the counts differ or a name repeats."""
    if names is not None and len(names) != len(folders):
        raise DataError(f"--names gives {len(names)} name(s) for {len(folders)} -p folder(s); give one per folder")
    chosen = names if names is not None else [folder.resolve().name for folder in folders]
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        how = "--names repeats" if names is not None else "two -p folders have the same name"
        raise DataError(f"{how}: {', '.join(repeated)}; give each folder its own name with --names")
    return chosen


def check_inputs(folders: list[Path], ref: Path) -> list[str]:
    """The reference cases, once every folder is checked to hold all of them (predictions without a
    reference are left out by the scoring). DataError naming the folder and its missing cases otherwise."""
    seen: dict[Path, Path] = {}
    reference_cases: list[str] = []
    for folder in folders:
        if folder.resolve() == ref.resolve():
            raise DataError(f"{folder}: -p is the reference folder -r; give prediction folders")
        if folder.resolve() in seen:
            raise DataError(f"{folder}: given to -p twice (also as {seen[folder.resolve()]}); give each folder once")
        seen[folder.resolve()] = folder
        paired, missing, _ = pair_cases(folder, ref)
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise DataError(f"{folder}: no prediction for {len(missing)} reference case(s): {shown}; every folder "
                            f"is ranked on every case of {ref}, so predict them first")
        reference_cases = paired
    return reference_cases


def score_folder(folder: Path, args: argparse.Namespace, cases: list[str]) -> dict[str, float | None]:
    """The case means of one folder under ``args.protocol``; DataError if it was not scored on ``cases``."""
    options = {"parsing_dir": args.parsing} if args.parsing is not None else {}
    summary = evaluate_folder(folder, args.ref, protocol=args.protocol, num_processes=args.num_processes,
                              progress=not args.no_progress, **options)
    if sorted(summary["cases"]) != cases:
        raise DataError(f"{folder}: scored on {len(summary['cases'])} case(s), not the {len(cases)} reference "
                        f"cases of {args.ref}; every folder must be scored on the same cases")
    return summary["mean"]


def run(args: argparse.Namespace) -> int:
    prefer_small_pages()  # the evaluator's short-lived large arrays (evaluation/memory_pages.py)
    if args.parsing is not None and args.protocol != "atm26":
        raise DataError("--parsing (given skeleton and parsing volumes) is used by --protocol atm26 only")
    names = submission_names(args.pred, args.names)
    outputs = {"-o": args.out, "--csv": args.csv, "--markdown": args.markdown}
    inputs = {"the reference folder -r": args.ref, "the parsing folder --parsing": args.parsing,
              **{f"the prediction folder -p {folder}": folder for folder in args.pred}}
    refuse_outputs_over_inputs(outputs, inputs)
    for flag, path in outputs.items():
        refuse_existing_file(path, args.overwrite, flag)
    cases = check_inputs(args.pred, args.ref)
    with tempfile.TemporaryDirectory(prefix="nnunet-airway-rank-") as scratch:
        if args.protocol == "atm26" and args.parsing is None:  # parse each reference once, not once per folder
            print(f"rank: parsing the {len(cases)} reference(s) once for every folder", file=sys.stderr)
            write_parsings({case: args.ref / f"{case}{NIFTI_SUFFIX}" for case in cases}, Path(scratch),
                           progress=not args.no_progress, report=False)
            args = argparse.Namespace(**{**vars(args), "parsing": Path(scratch)})
        submissions = []
        for number, (name, folder) in enumerate(zip(names, args.pred, strict=True), start=1):
            print(f"rank: scoring {name} ({number} of {len(names)}): {folder}", file=sys.stderr)
            submissions.append(Submission(name, str(folder), score_folder(folder, args, cases)))
    board = leaderboard(args.protocol, submissions, len(cases))
    table = leaderboard_markdown(board)
    write_json(args.out, board)  # only now, with every folder scored
    if args.csv is not None:
        write_bytes(args.csv, leaderboard_csv(board).encode())
    if args.markdown is not None:
        write_bytes(args.markdown, table.encode())
    print(table, end="")
    print(f"wrote {args.out}" + "".join(f" and {path}" for path in (args.csv, args.markdown) if path is not None))
    return 0
