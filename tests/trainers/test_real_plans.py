"""Every airway trainer builds its network from real plans: the ATM'26 organisers' PlainConvUNet plans and the
residual-encoder plans nnU-Net's ResEncM planner makes from the same fingerprint (tests/data/atm26_plans), for
3d_fullres and 3d_lowres; the parameter counts in docs/trainers.md are these networks'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_airway.model.resenc import ResEncFRADUNet
from nnunet_airway.model.unet import FRADUNet
from nnunet_airway.trainers.declarations import DECLARATIONS
from nnunet_airway.trainers.variants import TRAINERS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLANS = {"plain": ROOT / "tests" / "data" / "atm26_plans" / "plans.json",
         "resenc-m": ROOT / "tests" / "data" / "atm26_plans" / "nnUNetResEncUNetMPlans.json"}
CONFIGURATIONS = ("3d_fullres", "3d_lowres")
DOCS = ROOT / "docs" / "trainers.md"
BEGIN, END = "<!-- atm26 parameter counts: begin -->", "<!-- atm26 parameter counts: end -->"
RECALIBRATIONS = {"fr": "FR", "pe": "PE", "cse": "cSE", None: "none"}


def representative(recalibration: str | None) -> str:
    """A declared trainer with this recalibration (the network depends on nothing else of a declaration)."""
    return next(d.name for d in DECLARATIONS if d.recalibration == recalibration)


@pytest.fixture(scope="module")
def networks() -> dict[tuple[str, str, str | None], object]:
    built = {}
    for backbone, path in PLANS.items():
        plans = PlansManager(json.loads(path.read_text()))
        for configuration in CONFIGURATIONS:
            manager = plans.get_configuration(configuration)
            for recalibration in RECALIBRATIONS:
                trainer = TRAINERS[representative(recalibration)]
                built[backbone, configuration, recalibration] = (
                    manager, trainer.build_network_architecture(plans, manager, 1, 2, True))
    return built


def test_every_declaration_is_covered_by_a_recalibration_built_here() -> None:
    assert {d.recalibration for d in DECLARATIONS} <= set(RECALIBRATIONS)


def test_the_backbone_is_the_plans_one(networks) -> None:
    for (backbone, _, _), (manager, network) in networks.items():
        arch = manager.network_arch_init_kwargs
        if backbone == "plain":
            assert isinstance(network, FRADUNet) and len(network.encoder) == 5  # the paper's five scales
        else:
            assert isinstance(network, ResEncFRADUNet)
            blocks = [sum(isinstance(m, BasicBlockD) for m in stage.modules()) for stage in network.encoder.stages]
            assert blocks == list(arch["n_blocks_per_stage"]) == [1, 3, 4, 6, 6, 6]
        assert network.patch_size == tuple(manager.patch_size)


def parameter_table(networks) -> str:
    lines = ["| plans | configuration | patch | " + " | ".join(RECALIBRATIONS.values()) + " |",
             "|---|---|---|" + "---|" * len(RECALIBRATIONS)]
    for backbone in PLANS:
        for configuration in CONFIGURATIONS:
            manager = networks[backbone, configuration, None][0]
            counts = [sum(p.numel() for p in networks[backbone, configuration, r][1].parameters()) / 1e6
                      for r in RECALIBRATIONS]
            patch = " x ".join(str(int(s)) for s in manager.patch_size)
            lines.append(f"| {backbone} | {configuration} | {patch} | " + " | ".join(f"{c:.2f} M" for c in counts)
                         + " |")
    return "\n".join(lines)


def test_the_docs_give_these_parameter_counts(networks) -> None:
    text = DOCS.read_text()
    assert BEGIN in text and END in text, f"{DOCS} lacks the markers {BEGIN} ... {END}"
    documented = text.split(BEGIN)[1].split(END)[0].strip()
    assert documented == parameter_table(networks), "docs/trainers.md's table is stale; paste:\n" + \
        parameter_table(networks)
