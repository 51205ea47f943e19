"""The paper's protocol: a seeded random train/validation/test split in its proportions (63/9/18 of 90; the paper
publishes no case list, so the cases are ours), and nnU-Net's splits_final.json for it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_airway.writing import write_json

# Qin et al. 2020: 90 labelled scans, 63 train / 9 validation / 18 test
PAPER_FRACTIONS = {"train": 63 / 90, "val": 9 / 90, "test": 18 / 90}


@dataclass(frozen=True)
class Split:
    train: list[str]
    val: list[str]
    test: list[str]


def paper_split(case_ids: Sequence[str], seed: int = 0) -> Split:
    """Split labelled cases 70/10/20 % (exactly 63/9/18 for the paper's 90), reproducibly for a seed.

    The result depends only on the sorted case ids and the seed, never on the order they were found in.
    """
    ids = sorted(set(case_ids))
    if len(ids) < 3:
        raise ValueError(f"--paper-split needs at least 3 labelled cases, got {len(ids)}")
    n_test = max(1, round(len(ids) * PAPER_FRACTIONS["test"]))
    n_val = max(1, round(len(ids) * PAPER_FRACTIONS["val"]))
    order = np.random.default_rng(seed).permutation(len(ids))
    test = sorted(ids[i] for i in order[:n_test])
    val = sorted(ids[i] for i in order[n_test:n_test + n_val])
    train = sorted(ids[i] for i in order[n_test + n_val:])
    return Split(train, val, test)


def write_splits_final(split: Split, dataset_dir: Path, converted_train: set[str]) -> tuple[Path, str | None]:
    """Write fold 0 of ``split`` as splits_final.json; return its path and, if not yet in place, how to put it there.

    nnU-Net reads ``$nnUNet_preprocessed/DatasetXXX_NAME/splits_final.json``; when that folder does not exist yet
    (nnUNetv2_plan_and_preprocess creates it) the file goes next to dataset.json.
    Cases that failed to convert are left out so nnU-Net never looks for a missing case.
    """
    folds = [{"train": [c for c in split.train if c in converted_train],
              "val": [c for c in split.val if c in converted_train]}]
    preprocessed = os.environ.get("nnUNet_preprocessed")
    target = Path(preprocessed) / dataset_dir.name if preprocessed else None
    if target is not None and target.is_dir():
        return write_json(target / "splits_final.json", folds), None
    path = write_json(dataset_dir / "splits_final.json", folds)
    destination = f'"$nnUNet_preprocessed/{dataset_dir.name}/"'
    return path, (f"after nnUNetv2_plan_and_preprocess, put the paper's fold 0 in place with:\n"
                  f"    mkdir -p {destination} && cp \"{path}\" {destination}")
