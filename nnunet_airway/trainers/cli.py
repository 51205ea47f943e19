"""``nnunet-airway trainer-path``: print the folder to export as ``nnUNet_extTrainer``.

    export nnUNet_extTrainer="$(nnunet-airway trainer-path)"

nnunetv2 >= 2.8 then finds nnUNetTrainerAirwayFRAD and the ablation trainers for nnUNetv2_train and
nnUNetv2_predict. Does not import torch or nnU-Net, so it is instant in a shell start-up file.
"""

from __future__ import annotations

import argparse
import os
import sys

from nnunet_airway.trainers.compat import require_nnunetv2
from nnunet_airway.trainers.shims import shim_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--append", action="store_true",
        help="print the current $nnUNet_extTrainer with this folder appended (os.pathsep-separated), "
             "to keep other plugins' trainer folders",
    )


def run(args: argparse.Namespace) -> int:
    require_nnunetv2()
    folder = str(shim_folder())
    existing = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p and p != folder]
    print(os.pathsep.join([*existing, folder]) if args.append else folder)
    if existing and not args.append:  # on stderr: `export nnUNet_extTrainer="$(...)"` still gets the folder only
        print(f"nnunet-airway trainer-path: note: $nnUNet_extTrainer also holds {os.pathsep.join(existing)}; "
              "exporting this output drops it: use --append to keep it", file=sys.stderr)
    return 0
