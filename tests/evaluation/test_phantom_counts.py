"""Branch counts on phantoms from ``nnunet_airway.phantoms`` against their construction truth (sidecar)."""

from __future__ import annotations

import pytest

from nnunet_airway.evaluation import evaluate_case
from nnunet_airway.phantoms import generate_phantom

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
    assert metrics["branches_reference"] == pytest.approx(phantom.truth["n_labelled_branches"], rel=0.02)
