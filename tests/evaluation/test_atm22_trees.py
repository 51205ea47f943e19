"""Parity with the ATM'22 evaluation code on real trees (../shared/data/atm22_trees, beside the clone).

Its README gives the ATM'22 code's output with ``timi`` as the reference and ``YangLab`` as the
prediction of case ATM_224 (512 x 512 x 682): TD 91.87, DSC 93.20, precision 91.279, sensitivity
95.200, FPR 0.019 (rounded as that code rounds), and 427 skeleton pieces after junction removal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.evaluation.runner import score_files_or_arrays
from nnunet_airway.evaluation.tree import MIN_PIECE_VOXELS

TREES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "atm22_trees"
ATM22_OUTPUT = {"TD": 91.87, "DSC": 93.20, "precision": 91.279, "TPR": 95.200, "FPR": 0.019}


@pytest.mark.slow
@pytest.mark.skipif(not TREES.is_dir(), reason=f"{TREES} not found (shared data beside the clone)")
def test_atm22_protocol_gives_the_atm22_codes_numbers() -> None:
    score = score_files_or_arrays(TREES / "ATM_224_YangLab.nii.gz", TREES / "ATM_224_timi.nii.gz",
                                  protocol="atm22", cl_dice=False)
    metrics = score.metrics.as_dict()
    for name, value in ATM22_OUTPUT.items():
        assert metrics[name] == pytest.approx(value, abs=0.01), name
    # the same skeleton and junction rule: the ATM'22 code's 427 pieces of >= 5 voxels
    skeleton = score.reference.skeleton
    sizes = np.bincount(skeleton.part[~skeleton.is_junction], minlength=skeleton.n_parts)
    assert int((sizes >= MIN_PIECE_VOXELS).sum()) == 427
    # our tree parse (docs/metrics.md explains why it is not the ATM'22 code's 355 branches)
    assert (metrics["branches_reference"], metrics["loops_broken"]) == (362, 17)
    assert (metrics["components_prediction"], metrics["betti0_error"]) == (1, 0)
