"""The airway planner (``nnunet-airway plan``): on the ATM'26 fingerprint for every preset, on tiny phantoms
through the real commands (the session's tiny plans are the planner's), and its memory measurement on hand-built
networks with known answers."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_airway.errors import DataError
from nnunet_airway.model.resenc import ResEncFRADUNet
from nnunet_airway.model.unet import FRADUNet
from nnunet_airway.trainers.network import FRADUNET, FRADUNET_KWARGS, RESIDUAL_ENCODER_UNET
from nnunet_airway.trainers.planner import (
    PRESETS,
    activation_ratio,
    nnunet_feature_map_units,
    plan_dataset,
    saved_activation_elements,
)
from nnunet_airway.trainers.variants import TRAINERS

ROOT = Path(__file__).resolve().parents[2]
ATM26 = ROOT / "tests" / "data" / "atm26_plans"
NNUNET_PLANS = {"plain": ATM26 / "plans.json", "resenc-m": ATM26 / "nnUNetResEncUNetMPlans.json"}
DATASET = "Dataset926_ATM26"
FR_AD_TRAINERS = ("nnUNetTrainerAirwayFRAD", "nnUNetTrainerAirwayBaseline")


# --- the measurement, on networks whose saved tensors are known -----------------------------------------------

def test_saved_activations_of_a_conv_and_relu_are_the_input_and_the_output() -> None:
    # Conv3d keeps its input (1 x 4^3) for the weight gradient; ReLU keeps its output (2 x 4^3); weights left out
    network = nn.Sequential(nn.Conv3d(1, 2, 1), nn.ReLU())
    assert saved_activation_elements(network, (1, 1, 4, 4, 4), distillation=False) == 64 + 128


def test_a_storage_kept_twice_is_counted_once() -> None:
    class Square(nn.Module):
        def forward(self, x):
            return x * x  # mul keeps x twice (both operands)
    assert saved_activation_elements(Square(), (1, 1, 4, 4, 4), distillation=False) == 0  # input needs no grad
    network = nn.Sequential(nn.Conv3d(1, 1, 1), Square())
    assert saved_activation_elements(network, (1, 1, 4, 4, 4), distillation=False) == 64 + 64


def test_nnunet_units_equal_nnunets_own_estimate_on_the_real_plans() -> None:
    for path in NNUNET_PLANS.values():
        plans = json.loads(path.read_text())
        for configuration in ("3d_fullres", "3d_lowres"):
            config = plans["configurations"][configuration]
            arch = config["architecture"]
            args = (config["patch_size"], 1, 2, arch["network_class_name"], arch["arch_kwargs"],
                    arch["_kw_requires_import"])
            assert nnunet_feature_map_units(*args) == ExperimentPlanner.static_estimate_VRAM_usage(*args)


# --- the ATM'26 fingerprint, every preset -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def atm26(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module) -> Path:
    """nnUNet_raw with ATM'26's dataset.json (and one dummy image, which the planner opens to choose its reader),
    nnUNet_preprocessed with its fingerprint."""
    root = tmp_path_factory.mktemp("atm26")
    raw = root / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    shutil.copy(ATM26 / "dataset.json", raw / "dataset.json")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(raw / "imagesTr" / "ATM_001_0000.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(raw / "labelsTr" / "ATM_001.nii.gz"))
    (root / "preprocessed" / DATASET).mkdir(parents=True)
    shutil.copy(ATM26 / "dataset_fingerprint.json", root / "preprocessed" / DATASET / "dataset_fingerprint.json")
    import nnunetv2.experiment_planning.experiment_planners.default_experiment_planner as planner_module

    monkeypatch_module.setattr(planner_module, "nnUNet_raw", str(root / "raw"))
    monkeypatch_module.setattr(planner_module, "nnUNet_preprocessed", str(root / "preprocessed"))
    return root / "preprocessed"


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def atm26_plans(atm26: Path) -> dict[str, dict]:
    return {preset: plan_dataset(DATASET, preset, atm26, overwrite=True).plans for preset in PRESETS}


@pytest.mark.slow
def test_every_preset_plans_the_atm26_fingerprint_for_the_network_the_trainers_build(atm26_plans) -> None:
    for preset, plans in atm26_plans.items():
        assert plans["plans_name"] == PRESETS[preset].plans_name and "2d" not in plans["configurations"]
        fullres = plans["configurations"]["3d_fullres"]
        assert fullres["data_identifier"] == "nnUNetPlans_3d_fullres"  # nnU-Net's preprocessed data, reused
        assert plans["configurations"]["3d_lowres"]["data_identifier"] == f"{PRESETS[preset].plans_name}_3d_lowres"
        assert fullres["spacing"] == pytest.approx([0.78125, 0.5, 0.78125])
        arch = fullres["architecture"]
        manager = PlansManager(plans).get_configuration("3d_fullres")
        for name in FR_AD_TRAINERS:  # every recalibration: tests/trainers/test_real_plans.py
            with torch.device("meta"):  # the structure only: no weights allocated
                network = TRAINERS[name].build_network_architecture(None, manager, 1, 2, False)
            if preset == "plain":
                assert arch["network_class_name"] == FRADUNET and set(arch["arch_kwargs"]) == set(FRADUNET_KWARGS)
                assert isinstance(network, FRADUNet) and len(network.encoder) == 5
                assert all(isinstance(d, nn.MaxPool3d) for d in network.downsamplers[1:])
                assert network.encoder[0].negative_slope == 0.0  # ReLU, as the plans say
            else:
                assert arch["network_class_name"] == RESIDUAL_ENCODER_UNET and isinstance(network, ResEncFRADUNet)
                assert len(network.encoder.stages) == len(arch["arch_kwargs"]["strides"])


@pytest.mark.slow
def test_the_estimates_stay_within_each_presets_memory_and_grow_with_it(atm26_plans) -> None:
    voxels = {}
    for preset, plans in atm26_plans.items():
        info = plans["airway_planner"]
        estimate = info["estimates"]["3d_fullres"]
        assert info["gpu_memory_target_gb"] == PRESETS[preset].gpu_memory_gb
        assert 0.5 * PRESETS[preset].gpu_memory_gb < estimate["memory_estimate_gib"] <= 1.05 * PRESETS[preset].gpu_memory_gb
        assert 1.0 < estimate["activation_ratio_to_nnunet"] < 1.5  # FR and AD keep somewhat more than nnU-Net's
        fullres = plans["configurations"]["3d_fullres"]
        voxels[preset] = math.prod(fullres["patch_size"]) * fullres["batch_size"]
    assert voxels["resenc-m"] < voxels["resenc-l"] < voxels["resenc-xl"]


@pytest.mark.slow
def test_a_network_that_keeps_more_never_gets_a_larger_patch_than_nnunets_own(atm26_plans) -> None:
    for preset, path in NNUNET_PLANS.items():
        theirs = json.loads(path.read_text())["configurations"]["3d_fullres"]
        ours = atm26_plans[preset]["configurations"]["3d_fullres"]
        assert math.prod(ours["patch_size"]) * ours["batch_size"] <= math.prod(theirs["patch_size"]) * theirs["batch_size"]


@pytest.mark.slow
def test_less_gpu_memory_gives_a_smaller_patch(atm26: Path, atm26_plans) -> None:
    small = plan_dataset(DATASET, "plain", atm26, gpu_memory_gb=2, plans_name="nnUNetAirwayPlans2GB").plans
    fullres, default = small["configurations"]["3d_fullres"], atm26_plans["plain"]["configurations"]["3d_fullres"]
    assert math.prod(fullres["patch_size"]) < math.prod(default["patch_size"])
    assert small["airway_planner"]["estimates"]["3d_fullres"]["memory_estimate_gib"] <= 2 * 1.05


def test_an_existing_plans_file_is_kept_without_overwrite(atm26: Path) -> None:
    target = atm26 / DATASET / "nnUNetAirwayKept.json"
    target.write_text('{"mine": true}')
    with pytest.raises(DataError, match="exists; pass --overwrite"):
        plan_dataset(DATASET, "plain", atm26, plans_name="nnUNetAirwayKept")
    assert json.loads(target.read_text()) == {"mine": True}


def test_a_patch_the_topology_cannot_take_is_refused_with_one_that_it_can(atm26: Path) -> None:
    with pytest.raises(DataError, match=r"--patch-size 100 96 96: .* give e\.g\. --patch-size 112 96 96"):
        plan_dataset(DATASET, "plain", atm26, patch_size=(100, 96, 96), plans_name="nnUNetAirwayBad")
    assert not (atm26 / DATASET / "nnUNetAirwayBad.json").exists()


@pytest.mark.slow
def test_a_fixed_patch_and_features_are_planned_as_given(atm26: Path) -> None:
    plans = plan_dataset(DATASET, "resenc-m", atm26, patch_size=(64, 96, 64), base_features=8, max_features=64,
                         plans_name="nnUNetAirwayFixed", overwrite=True).plans
    assert set(plans["configurations"]) == {"3d_fullres"}  # no 3d_lowres for a patch given for this grid
    fullres = plans["configurations"]["3d_fullres"]
    assert fullres["patch_size"] == [64, 96, 64]
    assert fullres["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 32, 64, 64]
    assert fullres["batch_size"] >= 2
    fixed = plan_dataset(DATASET, "resenc-m", atm26, patch_size=(64, 96, 64), base_features=8, max_features=64,
                         plans_name="nnUNetAirwayFixed", overwrite=True, batch_size=3).plans
    assert fixed["configurations"]["3d_fullres"]["batch_size"] == 3
    # the estimate follows the batch: 3 patches where the first plan had its own number
    first, second = (p["airway_planner"]["estimates"]["3d_fullres"]["memory_estimate_gib"] for p in (plans, fixed))
    assert second == pytest.approx(first * 3 / fullres["batch_size"], rel=0.02)


def test_a_dataset_without_fingerprint_says_what_to_run(atm26: Path, tmp_path: Path) -> None:
    fingerprint = atm26 / DATASET / "dataset_fingerprint.json"
    kept = tmp_path / "fingerprint.json"
    shutil.move(fingerprint, kept)
    try:
        with pytest.raises(DataError, match=f"nnUNetv2_extract_fingerprint -d {DATASET}"):
            plan_dataset(DATASET, "plain", atm26)
    finally:
        shutil.move(kept, fingerprint)


# --- tiny phantoms through the real commands ----------------------------------------------------------------------

@pytest.mark.slow
def test_the_tiny_plans_are_the_planners_and_describe_the_trained_network(phantom_dataset) -> None:
    plans = phantom_dataset.tiny_plans()
    fullres = plans["configurations"]["3d_fullres"]
    assert fullres["architecture"]["network_class_name"] == FRADUNET
    assert fullres["architecture"]["arch_kwargs"]["features_per_stage"] == [4, 8, 16, 16, 16]
    assert fullres["patch_size"] == [32, 64, 64] and fullres["data_identifier"] == "nnUNetPlans_3d_fullres"
    assert plans["airway_planner"]["patch_size_given"] is True


@pytest.mark.slow
def test_plan_cli_refuses_to_overwrite_and_names_the_file(phantom_dataset) -> None:
    result = phantom_dataset.run("nnunet-airway", "plan", "-d", str(phantom_dataset.dataset_id), "--plans-name",
                                 phantom_dataset.plans, "--patch-size", "32", "64", "64", returncode=1)
    assert f"{phantom_dataset.plans}.json: exists; pass --overwrite" in result.stderr
    assert result.stderr.count("error:") == 1


@pytest.mark.slow
def test_trainer_refuses_fradunet_plans_with_a_key_it_would_ignore(phantom_dataset) -> None:
    plans = phantom_dataset.tiny_plans()
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["dropout_p"] = 0.2
    manager = PlansManager(plans).get_configuration("3d_fullres")
    with pytest.raises(ValueError, match="dropout_p, which FRADUNet does not take"):
        TRAINERS["nnUNetTrainerAirwayFRAD"].build_network_architecture(None, manager, 1, 2, False)
    del plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["dropout_p"]
    del plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"]
    with pytest.raises(ValueError, match="no nonlin"):
        TRAINERS["nnUNetTrainerAirwayFRAD"].build_network_architecture(None, PlansManager(plans).get_configuration(
            "3d_fullres"), 1, 2, False)


@pytest.mark.slow
def test_nnunets_plain_plans_still_train_and_say_what_is_replaced(phantom_dataset) -> None:
    code = ("import json; from nnunetv2.utilities.plans_handling.plans_handler import PlansManager;"
            "from nnunet_airway.trainers.variants import TRAINERS;"
            f"p = PlansManager(json.load(open({str(phantom_dataset.preprocessed / 'nnUNetPlans.json')!r})));"
            "m = p.get_configuration('3d_fullres');"
            "[TRAINERS['nnUNetTrainerAirwayFRAD'].build_network_architecture(p, m, 1, 2, False) for _ in range(2)]")
    result = subprocess.run(["python", "-c", code], capture_output=True, text=True, timeout=120,
                            env=phantom_dataset.env())
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("LeakyReLU replaced by ReLU") == 1  # once per process
    assert "strided convolutions replaced by max-pooling" in result.stderr
    assert "nnunet-airway plan -d ID --preset plain" in result.stderr


def test_the_measurement_leaves_torch_threads_as_they_were() -> None:
    threads = torch.get_num_threads()
    config = json.loads(NNUNET_PLANS["plain"].read_text())["configurations"]["3d_lowres"]
    arch = config["architecture"]
    activation_ratio(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, 2)
    assert torch.get_num_threads() == threads


DOCS = ROOT / "docs" / "trainers.md"
DOCS_BEGIN, DOCS_END = "<!-- atm26 planner: begin -->", "<!-- atm26 planner: end -->"


def planner_table(atm26_plans: dict[str, dict]) -> str:
    rows = ["| preset | network | 3d_fullres patch | batch | stages | estimate (GiB) | activations x nnU-Net's network |",
            "|---|---|---|---:|---:|---:|---:|"]
    for preset, plans in atm26_plans.items():
        fullres = plans["configurations"]["3d_fullres"]
        estimate = plans["airway_planner"]["estimates"]["3d_fullres"]
        network = "FRADUNet" if preset == "plain" else "ResidualEncoderUNet + FR/AD"
        rows.append(f"| {preset} ({PRESETS[preset].gpu_memory_gb:g} GB) | {network} | "
                    f"{' x '.join(map(str, fullres['patch_size']))} | {fullres['batch_size']} | "
                    f"{len(fullres['architecture']['arch_kwargs']['strides'])} | "
                    f"{estimate['memory_estimate_gib']:.2f} | {estimate['activation_ratio_to_nnunet']:.3f} |")
    return "\n".join(rows)


@pytest.mark.slow
def test_docs_state_what_the_planner_plans_for_atm26(atm26_plans) -> None:
    text = DOCS.read_text()
    documented = text[text.index(DOCS_BEGIN) + len(DOCS_BEGIN):text.index(DOCS_END)].strip()
    assert documented == planner_table(atm26_plans), f"docs/trainers.md should hold:\n{planner_table(atm26_plans)}"
