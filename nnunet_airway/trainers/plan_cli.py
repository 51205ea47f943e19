"""``nnunet-airway plan``: nnU-Net plans for the airway network (see trainers/planner.py).

    nnUNetv2_plan_and_preprocess -d 926 -c 3d_fullres      # fingerprint and nnU-Net's preprocessed data
    nnunet-airway plan -d 926 --preset resenc-m             # nnUNetAirwayResEncMPlans.json beside them
    nnUNetv2_train 926 3d_fullres 0 -tr nnUNetTrainerAirwayFRAD -p nnUNetAirwayResEncMPlans
"""

from __future__ import annotations

import argparse
import os
import sys

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--dataset", required=True, metavar="ID",
                        help="dataset id or DatasetXXX_Name (its fingerprint must exist: nnUNetv2_extract_fingerprint)")
    parser.add_argument("--preset", default="plain", choices=("plain", "resenc-m", "resenc-l", "resenc-xl"),
                        help="plain: the paper's five-scale FR/AD U-Net (nnU-Net's default planner, 8 GB); resenc-m, "
                             "-l, -xl: nnU-Net's residual encoder presets (8, 24, 40 GB) with FR/AD (default: plain)")
    parser.add_argument("--gpu-memory-gb", type=positive_float("GB"), metavar="GB",
                        help="GPU memory to plan for (default: the preset's, as nnU-Net's planner of that preset)")
    parser.add_argument("--patch-size", type=int_at_least(1), nargs=3, metavar=("Z", "Y", "X"),
                        help="use this patch for 3d_fullres instead of searching one (then no 3d_lowres is planned); "
                             "the batch size still follows the memory estimate")
    parser.add_argument("--batch-size", type=int_at_least(1), metavar="N",
                        help="use this batch size instead of the memory estimate's (the estimate is still recorded)")
    parser.add_argument("--base-features", type=int_at_least(1), metavar="N",
                        help="features of the first stage, doubled per stage (default: nnU-Net's 32)")
    parser.add_argument("--max-features", type=int_at_least(1), metavar="N",
                        help="cap on the features per stage (default: nnU-Net's 320)")
    parser.add_argument("--plans-name", metavar="NAME",
                        help="plans identifier to write (default: nnUNetAirwayPlans, nnUNetAirwayResEnc<M|L|XL>Plans)")
    parser.add_argument("--nnunet-plans-name", metavar="NAME",
                        help="also write these plans with nnU-Net's own network (same patch, batch and features), for "
                             "nnU-Net's trainers in a comparison at the same budget")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing plans file of that name")


def run(args: argparse.Namespace) -> int:
    missing = [name for name in ("nnUNet_raw", "nnUNet_preprocessed") if not os.environ.get(name)]
    if missing:
        raise DataError(f"{' and '.join(missing)} not set; export them as for nnUNetv2_plan_and_preprocess")
    from nnunet_airway.trainers.planner import plan_dataset  # torch and nnU-Net only now

    result = plan_dataset(args.dataset, args.preset, os.environ["nnUNet_preprocessed"],
                          gpu_memory_gb=args.gpu_memory_gb,
                          patch_size=tuple(args.patch_size) if args.patch_size else None,
                          base_features=args.base_features, max_features=args.max_features,
                          plans_name=args.plans_name, overwrite=args.overwrite,
                          nnunet_plans_name=args.nnunet_plans_name, batch_size=args.batch_size)
    plans, info = result.plans, result.plans["airway_planner"]
    print(f"wrote {result.path} ({args.preset}, planned for {info['gpu_memory_target_gb']:g} GB, sized for "
          f"{info['sized_for']})")
    for name, configuration in plans["configurations"].items():
        if "patch_size" not in configuration:
            continue
        architecture = configuration["architecture"]
        estimate = info["estimates"].get(name, {})
        print(f"  {name}: {architecture['network_class_name'].split('.')[-1]}, "
              f"{len(architecture['arch_kwargs']['strides'])} stages, features "
              f"{'-'.join(map(str, architecture['arch_kwargs']['features_per_stage']))}, patch "
              f"{'x'.join(map(str, configuration['patch_size']))}, batch {configuration['batch_size']}, spacing "
              f"{' x '.join(f'{s:.3g}' for s in configuration['spacing'])} mm, estimate "
              f"{estimate.get('memory_estimate_gib', float('nan')):.2f} GiB")
    plans_name = plans["plans_name"]
    if result.nnunet_path is not None:
        print(f"wrote {result.nnunet_path} (the same plans with nnU-Net's own network, for nnU-Net's trainers)")
    for name, folder in result.missing_data.items():
        print(f"  {name}: no preprocessed data yet ({folder}); run nnUNetv2_preprocess -d {args.dataset} "
              f"-plans_name {plans_name} -c {name}", file=sys.stderr)
    print(f"train with: nnUNetv2_train {args.dataset} 3d_fullres FOLD -tr nnUNetTrainerAirwayFRAD -p {plans_name}")
    return 0
