"""Branch counts on phantoms from ``nnunet_airway.phantoms`` (whole chests and crops) against their construction
truth (sidecar), and the map from parsed branches to the sidecar's (absolute generations)."""

from __future__ import annotations

import pytest

from nnunet_airway.evaluation import evaluate_case
from nnunet_airway.evaluation.phantom_truth import bd_by_absolute_generation, match_truth_branches
from nnunet_airway.evaluation.runner import score_files_or_arrays
from nnunet_airway.phantoms import case_seed, generate_phantom

pytestmark = pytest.mark.slow

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def phantoms() -> dict:
    return {seed: generate_phantom(seed) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_perfect_phantom_is_one_clean_tree(phantoms: dict, seed: int) -> None:
    phantom = phantoms[seed]
    metrics = evaluate_case(phantom.label, phantom.label, spacing=phantom.geometry.spacing_zyx, protocol="atm22")
    assert metrics["loops_broken"] == 0  # the generator keeps a clearance between branches
    assert metrics["BD"] == metrics["TD"] == 100.0 and metrics["DSC"] == pytest.approx(100.0)
    assert 0 < metrics["branches_reference"] <= phantom.truth["n_labelled_branches"]


@pytest.mark.parametrize("seed", SEEDS)
def test_branch_count_matches_the_labelled_construction(phantoms: dict, seed: int) -> None:
    phantom = phantoms[seed]
    metrics = evaluate_case(phantom.label, phantom.label, spacing=phantom.geometry.spacing_zyx, protocol="atm22")
    # at most one sibling pair lost: in generator version 3 a terminal branch two voxels across (radius 1.9 mm at
    # 1.8 mm voxels, above the label rule's 0.6 voxel) can thin away entirely in the Lee skeleton, and its sibling
    # then merges with the parent (seed 1: 29 of 31; seeds 0, 2-5 parse exactly)
    n = phantom.truth["n_labelled_branches"]
    assert n - 2 <= metrics["branches_reference"] <= n


# ---------------------------------------------------------------- crops: the root enters through the boundary

CROP_SEEDS = (0, 1)


@pytest.fixture(scope="module")
def crops() -> dict:
    return {seed: generate_phantom(case_seed(0, seed), (128, 160, 160), (0.7, 0.7, 0.7), crop="lobe")
            for seed in CROP_SEEDS}


@pytest.mark.parametrize("seed", CROP_SEEDS)
def test_crop_parses_to_the_labelled_count_from_the_entering_root(crops: dict, seed: int) -> None:
    phantom = crops[seed]
    truth = phantom.truth
    score = score_files_or_arrays(phantom.label, phantom.label, spacing=phantom.geometry.spacing_zyx,
                                  protocol="paper")
    tree = score.reference.tree
    assert len(tree.branches) == pytest.approx(truth["n_labelled_branches"], rel=0.05)
    # the root is the branch entering the box; the paper protocol leaves it out as it leaves out a trachea
    matched = match_truth_branches(score.reference, truth)
    assert matched[0] == truth["crop"]["root"]
    assert not score.branch_counted[0] and score.branch_counted[1:].all()
    assert score.metrics.branches_reference == len(tree.branches) - 1
    # BD_by_generation counts from the root; the helper reports absolute generations
    assert min(int(g) for g in score.metrics.BD_by_generation) == 1
    by_absolute = bd_by_absolute_generation(score, truth)
    assert min(int(g) for g in by_absolute) == truth["crop"]["root_generation"] + 1
    assert max(int(g) for g in by_absolute) >= 6
    assert all(value == 100.0 for value in by_absolute.values())


def test_match_and_absolute_bd_on_a_hand_made_tree(truth_tree) -> None:
    truth, label, prediction = truth_tree
    score = score_files_or_arrays(prediction, label, spacing=(1.0, 1.0, 1.0), protocol="paper")
    assert sorted(match_truth_branches(score.reference, truth)) == [7, 8, 9]
    assert match_truth_branches(score.reference, truth)[0] == 7
    assert bd_by_absolute_generation(score, truth) == {"4": 50.0}
