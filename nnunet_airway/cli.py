"""The ``nnunet-airway`` command: a thin dispatcher over subcommand modules.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Only the chosen subcommand's module is imported, so ``nnunet-airway evaluate`` never loads torch.

Exit codes: 0 success, 1 data error or failed file operation (OSError: one line naming the file and the
fix; ``-v`` adds the traceback), 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from collections.abc import Sequence

from nnunet_airway.errors import DataError, describe_os_error

# name -> (module, one-line help). Add a line here when a subcommand lands.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "phantoms": ("nnunet_airway.phantoms.cli", "write synthetic chest CT phantoms with airway trees (NIfTI + truth JSON)"),
    "convert": ("nnunet_airway.dataset_conversion.cli", "convert airway data sets (LIDC, EXACT'09, BAS, ATM'22, AIIB23, folders) to nnU-Net raw"),
    "trainer-path": ("nnunet_airway.trainers.cli", "print the folder to export as nnUNet_extTrainer (nnU-Net finds the airway trainers there)"),
    "evaluate": ("nnunet_airway.evaluation.cli", "airway tree metrics (BD, TD, TPR, FPR, DSC, ...) of predictions vs labels"),
    "parse": ("nnunet_airway.evaluation.parse_cli", "write the reference skeleton and branch parsing volumes of labels (ATM'26's CASE_skeleton, CASE_parsing)"),
    "rank": ("nnunet_airway.evaluation.rank_cli", "rank several prediction folders as a challenge leaderboard does (ATM'26 mean rank, ATM'22 score)"),
    "plan": ("nnunet_airway.trainers.plan_cli",
             "nnU-Net plans for the airway network (plain FR/AD U-Net or ResEnc M/L/XL), sized for its memory"),
    "attention": ("nnunet_airway.trainers.attention_cli",
                  "draw a trained airway model's decoder attention maps on one image (the paper's Fig. 4)"),
    "demo": ("nnunet_airway.demo.cli", "run the whole pipeline on synthetic phantoms: convert, train, predict, evaluate"),
}


def _chosen_subcommand(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunet-airway",
        description="Bronchiole-sensitive airway segmentation for nnU-Net v2 (Qin et al., MICCAI 2020).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    chosen = _chosen_subcommand(argv)
    for name, (module_name, short_help) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=short_help, description=short_help)
        sub.add_argument("-v", "--verbose", action="store_true", help="show the full traceback on errors")
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    if hasattr(signal, "SIGXFSZ"):  # over `ulimit -f`: let the write fail with EFBIG (one line) instead of a core dump
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        return int(args._run(args) or 0)
    except (DataError, OSError) as exc:
        if args.verbose:
            traceback.print_exc()
        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"nnunet-airway {args.command}: error: {message}", file=sys.stderr)
        return 1
    except MemoryError:
        if args.verbose:
            traceback.print_exc()
        print(f"nnunet-airway {args.command}: error: out of memory: this run needs more memory than the process "
              "may use; free memory, raise the limit (ulimit -v) or make the job smaller (a smaller --shape, fewer "
              "cases or processes)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nnunet-airway {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
