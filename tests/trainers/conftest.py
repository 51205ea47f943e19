"""A tiny airway phantom data set, planned and preprocessed by the real nnUNetv2_plan_and_preprocess, and the
environment the nnUNetv2_* commands run with in these tests (CPU, one process, no torch.compile)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from nnunet_airway.writing import write_image, write_json

DATASET_ID = 901
DATASET = "Dataset901_AirwayPhantoms"
CONFIGURATION = "3d_fullres"
SHAPE_ZYX = (48, 64, 64)
TRAIN_CASES = ["phantom_000", "phantom_001", "phantom_002"]
TEST_CASES = ["phantom_100"]
TINY_PLANS = "nnUNetPlansTiny"  # the airway planner's network with narrow stages and a small patch: fast on CPU
TINY_NNUNET_PLANS = "nnUNetPlansTinyNNUNet"  # the same plan with nnU-Net's network, for nnU-Net's own trainers
TINY_FEATURES = [4, 8, 16, 16, 16]
TINY_PATCH = [32, 64, 64]  # divisible by the planned total stride (8, 16, 16); two patches along z
SUPPORT = Path(__file__).parent / "support"
TEST_TRAINER = "nnUNetTrainerAirwayFRAD_TestTiny"


@dataclass(frozen=True)
class PhantomDataset:
    """The data set under ``root`` (raw, preprocessed, results) and how the tests run nnU-Net on it."""

    root: Path
    dataset_id: int = DATASET_ID
    configuration: str = CONFIGURATION
    plans: str = TINY_PLANS
    nnunet_plans: str = TINY_NNUNET_PLANS
    shape_zyx: tuple[int, int, int] = SHAPE_ZYX
    test_cases: tuple[str, ...] = tuple(TEST_CASES)
    test_trainer: str = TEST_TRAINER

    def plans_for(self, trainer: str) -> str:
        """The airway planner's plans for the airway trainers, its nnU-Net twin for nnU-Net's own."""
        return self.plans if "Airway" in trainer else self.nnunet_plans

    def train_argv(self, trainer: str) -> list[str]:
        return ["nnUNetv2_train", str(self.dataset_id), self.configuration, "0", "-tr", trainer, "-p",
                self.plans_for(trainer), "-device", "cpu"]

    def predict_argv(self, trainer: str, images: Path, out: Path) -> list[str]:
        return ["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(self.dataset_id),
                "-c", self.configuration, "-f", "0", "-tr", trainer, "-p", self.plans_for(trainer), "-device", "cpu",
                "-npp", "0", "-nps", "0"]

    def tiny_plans(self, trainer: str = "nnUNetTrainerAirwayFRAD") -> dict:
        return json.loads((self.preprocessed / f"{self.plans_for(trainer)}.json").read_text())

    @property
    def raw(self) -> Path:
        return self.root / "raw" / DATASET

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed" / DATASET

    @property
    def results(self) -> Path:
        return self.root / "results" / DATASET

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for nnUNetv2_train / nnUNetv2_predict (augmentation in the main process)."""
        return {**nnunet_env(self.root), "nnUNet_n_proc_DA": "0", **extra}

    def run(self, *argv: str, env: dict[str, str] | None = None, returncode: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run(list(argv), env=env or self.env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == returncode, (
            f"{' '.join(argv)} exited with {result.returncode}, not {returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result


@functools.cache
def trainer_path() -> str:
    """What ``export nnUNet_extTrainer="$(nnunet-airway trainer-path)"`` exports."""
    return subprocess.run(["nnunet-airway", "trainer-path"], capture_output=True, text=True, check=True).stdout.strip()


def nnunet_env(root: Path) -> dict[str, str]:
    """nnU-Net's folders under ``root``; trainers found as a user finds them (``nnunet-airway trainer-path``)
    plus the test-only trainer's shim folder. Not nnUNet_n_proc_DA: plan_and_preprocess fails with 0."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("nnUNet_")}
    return {
        **env,
        "nnUNet_raw": str(root / "raw"),
        "nnUNet_preprocessed": str(root / "preprocessed"),
        "nnUNet_results": str(root / "results"),
        "nnUNet_extTrainer": os.pathsep.join([str(SUPPORT / "ext"), trainer_path()]),
        "nnUNet_def_n_proc": "1",
        "nnUNet_compile": "f",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in [str(SUPPORT), env.get("PYTHONPATH", "")] if p),
    }


def write_raw_dataset(raw: Path) -> None:
    """nnU-Net raw layout: imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz, imagesTs, dataset.json."""
    from nnunet_airway.phantoms import generate_phantom

    for index, case in enumerate(TRAIN_CASES + TEST_CASES):
        phantom = generate_phantom(seed=index, shape_zyx=SHAPE_ZYX)
        images = "imagesTr" if case in TRAIN_CASES else "imagesTs"
        write_image(raw / images / f"{case}_0000.nii.gz", phantom.ct, phantom.geometry)
        if case in TRAIN_CASES:
            write_image(raw / "labelsTr" / f"{case}.nii.gz", phantom.label, phantom.geometry)
    write_json(raw / "dataset.json", {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "airway": 1},
        "numTraining": len(TRAIN_CASES),
        "file_ending": ".nii.gz",
    })


def write_tiny_plans(dataset: PhantomDataset) -> None:
    """The airway planner's plain preset with narrow stages and a smaller patch (nnU-Net's preprocessed data)."""
    dataset.run("nnunet-airway", "plan", "-d", str(DATASET_ID), "--preset", "plain", "--plans-name", TINY_PLANS,
                "--nnunet-plans-name", TINY_NNUNET_PLANS,
                "--patch-size", *map(str, TINY_PATCH), "--base-features", str(TINY_FEATURES[0]),
                "--max-features", str(max(TINY_FEATURES)), env=nnunet_env(dataset.root))


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory: pytest.TempPathFactory) -> PhantomDataset:
    """Raw phantoms -> nnUNetv2_plan_and_preprocess (3d_fullres) -> tiny plans and a one-fold split."""
    dataset = PhantomDataset(tmp_path_factory.mktemp("nnunet"))
    write_raw_dataset(dataset.raw)
    dataset.run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", CONFIGURATION,
                "--verify_dataset_integrity", "-np", "1", "-npfp", "1", env=nnunet_env(dataset.root))
    write_tiny_plans(dataset)
    # nnU-Net uses an existing split file: two cases train fold 0, one validates it
    write_json(dataset.preprocessed / "splits_final.json", [{"train": TRAIN_CASES[:2], "val": TRAIN_CASES[2:]}])
    return dataset


@dataclass(frozen=True)
class TrainedModel:
    dataset: PhantomDataset
    output_folder: Path  # .../<trainer>__<plans>__<configuration>/fold_0
    first_run: subprocess.CompletedProcess  # interrupted after epoch 2
    resumed_run: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def trained_model(phantom_dataset: PhantomDataset) -> TrainedModel:
    """nnUNetv2_train of 4 epochs killed after epoch 2 (exit code 75), then resumed with ``--c``."""
    train = phantom_dataset.train_argv(TEST_TRAINER)
    epochs = {"AIRWAY_TEST_EPOCHS": "4"}
    first = phantom_dataset.run(*train, env=phantom_dataset.env(**epochs, AIRWAY_TEST_INTERRUPT_AFTER="2"),
                                returncode=75)
    resumed = phantom_dataset.run(*train, "--c", env=phantom_dataset.env(**epochs))
    folder = phantom_dataset.results / f"{TEST_TRAINER}__{TINY_PLANS}__{CONFIGURATION}" / "fold_0"
    return TrainedModel(phantom_dataset, folder, first, resumed)


@pytest.fixture()
def fresh_results(phantom_dataset: PhantomDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process trainers: nnU-Net's folders in this process's environment, results in a fresh folder, and
    nnUNet_extTrainer exactly as the user exports it."""
    for key, value in phantom_dataset.env(nnUNet_results=str(tmp_path / "results")).items():
        if key.startswith("nnUNet_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_extTrainer", trainer_path())
    return tmp_path / "results"

