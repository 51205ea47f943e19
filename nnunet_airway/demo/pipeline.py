"""The demo's stages: phantoms -> nnU-Net raw -> plan and preprocess -> train -> predict -> evaluate.

Every stage is safe to run again over its own partial output, so the ledger in ``stages`` can resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import write_json
from .nnunet_runner import nnunet_folders, run_logged
from .stages import Ledger, Stage, run_stages

DATASET_ID = 990
DATASET_NAME = "AirwayPhantomDemo"
DATASET_FOLDER = f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
TRAINER = "nnUNetTrainerAirwayFRAD_Budget"
PLANS = "nnUNetAirwayDemoPlans"
CONFIGURATION = "3d_fullres"
FOLD = "0"
MIN_FREE_DISK_BYTES = 2 * 1024**3
# The demo network: nnU-Net's plan for the phantoms with fewer features and a smaller patch, so that a
# 2-core CPU runs a few hundred iterations in minutes (the full plan takes over 10 s per iteration there).
DEMO_FEATURES = (8, 16, 32, 64, 64)
DEMO_PATCH_ZYX = (48, 64, 64)


@dataclass(frozen=True)
class DemoSettings:
    """What a demo work dir is made with; a rerun must use the same data settings (all but the budget)."""

    cases: int = 8
    test_cases: int = 2
    budget_minutes: float = 5.0
    seed: int = 0
    shape_zyx: tuple[int, int, int] = (80, 112, 112)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible to torch, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class DemoPipeline:
    def __init__(self, workdir: Path, settings: DemoSettings, device: str, echo=print) -> None:
        self.workdir = workdir
        self.settings = settings
        self.device = device
        self.echo = echo
        self.folders = nnunet_folders(workdir)
        # unbuffered, so nnU-Net's progress reaches the log and the progress bar as it happens
        self.env = {**os.environ, **self.folders, "nnUNet_compile": os.environ.get("nnUNet_compile", "f"),
                    "PYTHONUNBUFFERED": "1"}
        from ..trainers.shims import shim_folder  # the folder nnU-Net searches for our trainers

        self.env["nnUNet_extTrainer"] = os.pathsep.join(
            p for p in (str(shim_folder()), os.environ.get("nnUNet_extTrainer", "")) if p
        )
        self.log = workdir / "logs" / "nnunet.log"

    # paths ---------------------------------------------------------------------------------------------
    @property
    def phantom_dir(self) -> Path:
        return self.workdir / "phantoms"

    @property
    def raw_dir(self) -> Path:
        return Path(self.folders["nnUNet_raw"]) / DATASET_FOLDER

    @property
    def prediction_dir(self) -> Path:
        return self.workdir / "predictions"

    @property
    def evaluation_dir(self) -> Path:
        return self.workdir / "evaluation"

    @property
    def model_dir(self) -> Path:
        return Path(self.folders["nnUNet_results"]) / DATASET_FOLDER / f"{TRAINER}__{PLANS}__{CONFIGURATION}"

    # stages --------------------------------------------------------------------------------------------
    def make_phantoms(self) -> dict[str, Any]:
        from ..phantoms import write_phantoms

        total = self.settings.cases + self.settings.test_cases
        cases = write_phantoms(self.phantom_dir, total, seed=self.settings.seed, shape_zyx=self.settings.shape_zyx,
                               preview=True, overwrite=True)
        return {"cases": list(cases), "folder": str(self.phantom_dir)}

    def convert(self) -> dict[str, Any]:
        from ..dataset_conversion import write_raw_dataset
        from ..dataset_conversion.sources import folder_cases

        self._refuse_foreign_dataset_with_our_id()
        found = folder_cases(self.phantom_dir / "images", self.phantom_dir / "labels")
        ordered = sorted(found.cases, key=lambda case: case.case_id)
        held_out = {case.case_id for case in ordered[self.settings.cases:]}
        specs = [case.__class__(**{**case.__dict__, "test": case.case_id in held_out}) for case in ordered]
        result = write_raw_dataset(
            specs, DATASET_ID, DATASET_NAME, source="folder", out_root=self.folders["nnUNet_raw"], strict=True,
            description="Synthetic chest CT airway phantoms written by nnunet-airway demo",
            reference="nnunet-airway phantom generator", licence="CC0 (synthetic)",
            inputs={"images": str(self.phantom_dir / "images"), "labels": str(self.phantom_dir / "labels")},
        )
        return {"dataset": str(result.dataset_dir), "held_out": sorted(held_out)}

    def plan_and_preprocess(self) -> dict[str, Any]:
        env = {key: value for key, value in self.env.items() if key != "nnUNet_n_proc_DA"}
        run_logged(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", CONFIGURATION,
                    "--verify_dataset_integrity", "-np", "2"], env, self.log)
        plans = write_demo_plans(Path(self.folders["nnUNet_preprocessed"]) / DATASET_FOLDER)
        return {"plans": str(plans)}

    def train(self) -> dict[str, Any]:
        budget_s = self.settings.budget_minutes * 60
        env = {key: value for key, value in self.env.items() if key != "NNUNET_AIRWAY_EPOCHS"}
        env.update({"NNUNET_AIRWAY_TIME_BUDGET_S": str(budget_s), "NNUNET_AIRWAY_SEED": str(self.settings.seed),
                    "nnUNet_n_proc_DA": "0"})
        command = ["nnUNetv2_train", str(DATASET_ID), CONFIGURATION, FOLD, "-tr", TRAINER, "-p", PLANS,
                   "-device", self.device]
        if (self.model_dir / f"fold_{FOLD}" / "checkpoint_latest.pth").exists():
            command.append("--c")
        progress = TrainingProgress(budget_s)
        try:
            run_logged(command, env, self.log, progress.on_line)
        finally:
            progress.close()
        checkpoint = self.model_dir / f"fold_{FOLD}" / "checkpoint_final.pth"
        if not checkpoint.exists():
            raise DataError(f"{checkpoint}: training ended without a final checkpoint; see {self.log}")
        return {"checkpoint": str(checkpoint), "epochs": progress.epochs, "last_pseudo_dice": progress.pseudo_dice}

    def predict(self) -> dict[str, Any]:
        run_logged(["nnUNetv2_predict", "-i", str(self.raw_dir / "imagesTs"), "-o", str(self.prediction_dir),
                    "-d", str(DATASET_ID), "-c", CONFIGURATION, "-f", FOLD, "-tr", TRAINER, "-p", PLANS,
                    "-device", self.device, "--disable_tta", "--continue_prediction", "-npp", "1", "-nps", "1"],
                   {**self.env, "nnUNet_n_proc_DA": "0"}, self.log)
        return {"predictions": str(self.prediction_dir)}

    def evaluate(self) -> dict[str, Any]:
        from ..evaluation import evaluate_folder

        summary = evaluate_folder(self.prediction_dir, self.raw_dir / "labelsTs",
                                  render_dir=self.evaluation_dir / "renders")
        write_json(self.evaluation_dir / "summary.json", summary)
        return {"summary": str(self.evaluation_dir / "summary.json"), "mean": summary["mean"]}

    def _refuse_foreign_dataset_with_our_id(self) -> None:
        raw = Path(self.folders["nnUNet_raw"])
        if raw.is_dir():
            for other in raw.glob(f"Dataset{DATASET_ID:03d}_*"):
                if other.name != DATASET_FOLDER:
                    raise DataError(f"{other}: nnU-Net data set id {DATASET_ID} is taken by another data set; the "
                                    "demo needs it: move that folder or unset the nnU-Net folder variables")

    def stages(self) -> list[Stage]:
        return [
            Stage("phantoms", f"writing {self.settings.cases + self.settings.test_cases} synthetic CT phantoms",
                  self.make_phantoms),
            Stage("convert", f"converting them into nnU-Net raw ({self.raw_dir})", self.convert),
            Stage("plan_and_preprocess", "nnUNetv2_plan_and_preprocess (fingerprint, plans, preprocessing)",
                  self.plan_and_preprocess),
            Stage("train", f"nnUNetv2_train {TRAINER} on {self.device} for about "
                           f"{self.settings.budget_minutes:g} min", self.train),
            Stage("predict", "nnUNetv2_predict on the held-out phantoms", self.predict),
            Stage("evaluate", "airway tree metrics on the held-out phantoms", self.evaluate),
        ]

    def run(self) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        check_free_disk(self.workdir)
        identity = {key: value for key, value in asdict(self.settings).items() if key != "budget_minutes"}
        ledger = Ledger(self.workdir / "demo_state.json", {**identity, **self.folders})
        run_stages(self.stages(), ledger, self.echo)
        return ledger.state


def check_free_disk(folder: Path, needed: int = MIN_FREE_DISK_BYTES) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DataError(f"{folder}: only {free / 1024**3:.1f} GiB free, the demo needs about "
                        f"{needed / 1024**3:.0f} GiB; free some space or choose another --workdir")


def write_demo_plans(preprocessed_dataset_dir: Path) -> Path:
    """Copy nnU-Net's plans as ``nnUNetAirwayDemoPlans.json`` with a narrower network and a smaller patch.

    The data identifier is kept, so training reads the data nnUNetv2_plan_and_preprocess already wrote.
    """
    source = preprocessed_dataset_dir / "nnUNetPlans.json"
    plans = json.loads(source.read_text())
    plans["plans_name"] = PLANS
    configuration = plans["configurations"][CONFIGURATION]
    arch = configuration["architecture"]["arch_kwargs"]
    if arch["n_stages"] != len(DEMO_FEATURES):
        raise DataError(f"{source}: nnU-Net planned {arch['n_stages']} stages for the demo phantoms, the demo "
                        f"network needs {len(DEMO_FEATURES)}; remove {preprocessed_dataset_dir} and rerun")
    arch["features_per_stage"] = list(DEMO_FEATURES)
    configuration["patch_size"] = list(DEMO_PATCH_ZYX)
    return write_json(preprocessed_dataset_dir / f"{PLANS}.json", plans)


def first_number(text: str) -> float | None:
    """The first decimal number in ``text`` ("[(0.71), 0.2]" -> 0.71), or None."""
    match = re.search(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)
    return float(match.group(0)) if match else None


class TrainingProgress:
    """A progress bar over the training time budget, fed by nnU-Net's console lines."""

    _EPOCH = re.compile(r"^Epoch (\d+)\s*$")
    _DICE = re.compile(r"Pseudo dice \[(.*)\]")
    _LOSS = re.compile(r"train_loss (-?[\d.]+)")

    def __init__(self, budget_s: float) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=int(budget_s), desc="training", unit="s",
                        bar_format="{l_bar}{bar}| {n:.0f}/{total} s {postfix}")
        self.epochs = 0
        self.pseudo_dice: float | None = None
        self.train_loss: float | None = None
        self._start = time.perf_counter()

    def on_line(self, line: str) -> None:
        text = line.split(": ", 1)[-1].strip()
        if match := self._EPOCH.match(text):
            self.epochs = int(match.group(1)) + 1
        elif match := self._LOSS.search(text):
            self.train_loss = float(match.group(1))
        elif match := self._DICE.search(text):
            self.pseudo_dice = first_number(match.group(1).replace("np.float32", "").replace("np.float64", ""))
        else:
            return
        self.bar.n = min(time.perf_counter() - self._start, self.bar.total)
        self.bar.set_postfix(epoch=self.epochs, train_loss=self.train_loss, pseudo_dice=self.pseudo_dice)

    def close(self) -> None:
        self.bar.close()

