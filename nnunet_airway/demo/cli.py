"""``nnunet-airway demo``: the whole pipeline on synthetic phantoms in one command.

phantoms -> convert (nnU-Net raw) -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train (FRAD, time budget)
-> nnUNetv2_predict (held-out phantoms) -> evaluate (+ rendered pictures) -> the Table-1-style summary.
A second run with the same options skips the finished stages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_airway.argument_types import int_at_least, positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunet_airway.demo.pipeline import DemoSettings

    defaults = DemoSettings()
    parser.add_argument("--workdir", type=Path, default=Path("airway_demo"),
                        help="folder for everything the demo writes (default: ./airway_demo); the nnU-Net folders "
                             "go inside it unless nnUNet_raw, nnUNet_preprocessed and nnUNet_results are all set")
    parser.add_argument("--cases", type=int_at_least(2), default=defaults.cases,
                        help=f"training phantoms (default {defaults.cases}); {defaults.test_cases} more are held out")
    parser.add_argument("--test-cases", type=int_at_least(1), default=defaults.test_cases,
                        help=f"held-out phantoms that are predicted and evaluated (default {defaults.test_cases})")
    parser.add_argument("--shape", type=int_at_least(64), nargs=3, default=list(defaults.shape_zyx),
                        metavar=("Z", "Y", "X"), help="phantom size in voxels (default %(default)s; the chest "
                        "always spans 350 x 350 x 300 mm, so smaller is coarser)")
    parser.add_argument("--budget-minutes", type=positive_float("minutes"), default=defaults.budget_minutes,
                        help=f"training time in minutes (default {defaults.budget_minutes:g}); the other stages "
                             "add about two minutes on a 2-core CPU")
    parser.add_argument("--iterations-per-epoch", type=int_at_least(1), default=defaults.iterations_per_epoch,
                        help=f"training iterations per epoch (default {defaults.iterations_per_epoch}); the budget "
                             "is checked after each epoch, so an epoch is the smallest step a budget takes")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when a GPU is visible, else CPU (default)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="phantom seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from nnunet_airway.demo.pipeline import TRAINER, DemoSettings, PhantomExperiment, resolve_device
    from nnunet_airway.demo.report import print_report

    settings = DemoSettings(cases=args.cases, test_cases=args.test_cases, budget_minutes=args.budget_minutes,
                            iterations_per_epoch=args.iterations_per_epoch, seed=args.seed,
                            shape_zyx=tuple(args.shape))
    pipeline = PhantomExperiment(args.workdir.resolve(), settings, resolve_device(args.device), (TRAINER,))
    state = pipeline.run()
    print_report(pipeline, state)
    return 0
