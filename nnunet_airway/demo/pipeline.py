"""A phantom experiment: phantoms -> nnU-Net raw -> plan and preprocess -> per trainer: train -> predict ->
evaluate (metrics, meshes, pictures) -> attention maps (unless ``attention_maps=False``). ``nnunet-airway
demo`` runs it with one trainer on a time budget; ``benchmarks/thin_branches.py`` with the Table 2 trainers on
the same epoch budget; ``benchmarks/sim_to_real.py`` adds the stages of one real CT.

Every stage is safe to run again over its own partial output, so the ledger in ``stages`` can resume.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from nnunet_airway.demo.nnunet_runner import nnunet_folders, run_logged
from nnunet_airway.demo.stages import Ledger, Stage, run_stages
from nnunet_airway.errors import DataError
from nnunet_airway.trainers.budget_variables import (
    BUDGET_PREFIX,
    EPOCHS_VARIABLE,
    ITERATIONS_VARIABLE,
    SEED_VARIABLE,
    SKIP_VALIDATION_VARIABLE,
    TIME_BUDGET_VARIABLE,
)
from nnunet_airway.trainers.progress import PROGRESS_FILE, EpochProgress, read_progress
from nnunet_airway.writing import write_json

DATASET_ID = 990
DATASET_NAME = "AirwayPhantomDemo"
TRAINER = "nnUNetTrainerAirwayFRAD_Budget"
PLANS = "nnUNetAirwayDemoPlans"
NNUNET_PLANS = "nnUNetDemoPlans"  # the same plan with nnU-Net's own network, for nnU-Net's trainers
AIRWAY_TRAINER_PREFIX = "nnUNetTrainerAirway"


def plans_for(trainer: str) -> str:
    """The demo plans a trainer trains with: the airway network's, or nnU-Net's network on the same plan."""
    return PLANS if trainer.startswith(AIRWAY_TRAINER_PREFIX) else NNUNET_PLANS
CONFIGURATION = "3d_fullres"
FOLD = "0"
MIN_FREE_DISK_BYTES = 2 * 1024**3
# The demo network: the airway planner's plan for the phantoms with fewer features and a smaller patch, so that
# a 2-core CPU runs a few hundred iterations in minutes (docs/benchmarks.md has the timings).
DEMO_FEATURES = (8, 16, 32, 64, 64)
DEMO_PATCH_ZYX = (48, 64, 64)


BUDGET_SETTINGS = ("budget_minutes", "iterations_per_epoch")  # may change between runs of one work dir
DATA_STAGES = ("phantoms", "convert", "plan_and_preprocess")  # the stages before any trainer's, in order


@dataclass(frozen=True)
class DemoSettings:
    """What a work dir is made with; a rerun must use the same data settings (all but the budget)."""

    cases: int = 8
    test_cases: int = 2
    budget_minutes: float = 4.0
    iterations_per_epoch: int = 20  # the time budget is checked after each epoch
    seed: int = 0
    shape_zyx: tuple[int, int, int] = (80, 112, 112)
    dataset_id: int = DATASET_ID
    dataset_name: str = DATASET_NAME
    features: tuple[int, ...] = DEMO_FEATURES
    patch_zyx: tuple[int, int, int] = DEMO_PATCH_ZYX
    backbone: str = "plain"  # the airway planner's preset: "plain" (the paper's U-Net) or "resenc-m|l|xl"
    batch_size: int = 2  # fixed for the CPU runs (the planner's estimate would take the 5 %-of-data cap)

    @property
    def dataset_folder(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"


def worker_processes(cases: int) -> int:
    """Worker processes for an nnU-Net step over ``cases`` cases: one per case, at most one per CPU and 8. Each
    worker is a fresh Python importing torch (seconds each on a small machine), so nnU-Net's default of 8
    fingerprint workers for two phantoms costs more than the work."""
    return max(1, min(cases, os.cpu_count() or 1, 8))


def predict_worker_arguments(device: str) -> list[str]:
    """``-npp``/``-nps`` for nnUNetv2_predict: none on a CPU, where the network already uses every core and
    background workers only add process starts; one each beside a GPU."""
    workers = "0" if device == "cpu" else "1"
    return ["-npp", workers, "-nps", workers]


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible to torch, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class PhantomExperiment:
    """The stages of one work dir. ``budget``: the budget trainers' variables (see trainers/budget.py),
    e.g. {"NNUNET_AIRWAY_TIME_BUDGET_S": "300"} or {"NNUNET_AIRWAY_EPOCHS": "20"}. ``phantom_options``: extra
    keyword arguments for ``write_phantoms`` (e.g. ``spacing_xyz``); part of the work dir's settings."""

    def __init__(self, workdir: Path, settings: DemoSettings, device: str, trainers: tuple[str, ...] = (TRAINER,),
                 budget: dict[str, str] | None = None, echo=print,
                 phantom_options: dict[str, Any] | None = None, attention_maps: bool = True) -> None:
        self.workdir = workdir
        self.attention_maps = attention_maps  # False: no attention stage (benchmarks that do not look at them)
        self.settings = settings
        self.phantom_options = dict(phantom_options or {})
        self.trainers = trainers
        self.budget = dict(budget or {TIME_BUDGET_VARIABLE: str(settings.budget_minutes * 60)})
        self.budget.setdefault(ITERATIONS_VARIABLE, str(settings.iterations_per_epoch))
        self.device = device
        self.echo = echo
        self.folders = nnunet_folders(workdir)
        # unbuffered, so nnU-Net's progress reaches the log and the progress bar as it happens
        # nnUNet_def_n_proc=1: nnU-Net's export and validation worker pools would otherwise start 8 processes
        self.env = {**os.environ, **self.folders, "nnUNet_compile": os.environ.get("nnUNet_compile", "f"),
                    "nnUNet_def_n_proc": os.environ.get("nnUNet_def_n_proc", "1"), "PYTHONUNBUFFERED": "1"}
        from nnunet_airway.trainers.shims import shim_folder  # the folder nnU-Net searches for our trainers

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
        return Path(self.folders["nnUNet_raw"]) / self.settings.dataset_folder

    def prediction_dir(self, trainer: str) -> Path:
        return self.workdir / "predictions" / trainer

    def evaluation_dir(self, trainer: str) -> Path:
        return self.workdir / "evaluation" / trainer

    def model_dir(self, trainer: str) -> Path:
        return (Path(self.folders["nnUNet_results"]) / self.settings.dataset_folder /
                f"{trainer}__{plans_for(trainer)}__{CONFIGURATION}")

    # stages --------------------------------------------------------------------------------------------
    def make_phantoms(self) -> dict[str, Any]:
        from nnunet_airway.phantoms.generate import write_phantoms

        total = self.settings.cases + self.settings.test_cases
        cases = write_phantoms(self.phantom_dir, total, seed=self.settings.seed, shape_zyx=self.settings.shape_zyx,
                               preview=True, overwrite=True, **self.phantom_options)
        return {"cases": list(cases), "folder": str(self.phantom_dir)}

    def convert(self) -> dict[str, Any]:
        from nnunet_airway.dataset_conversion.raw_writer import ConversionOptions, write_raw_dataset
        from nnunet_airway.dataset_conversion.sources import folder_cases

        self._refuse_foreign_dataset_with_our_id()
        found = folder_cases(self.phantom_dir / "images", self.phantom_dir / "labels")
        ordered = sorted(found.cases, key=lambda case: case.case_id)
        held_out = {case.case_id for case in ordered[self.settings.cases:]}
        specs = [replace(case, test=case.case_id in held_out) for case in ordered]
        result = write_raw_dataset(specs, ConversionOptions(
            self.settings.dataset_id, self.settings.dataset_name, source="folder",
            out_root=self.folders["nnUNet_raw"], strict=True,
            description="Synthetic chest CT airway phantoms written by nnunet-airway",
            reference="nnunet-airway phantom generator", licence="CC0 (synthetic)",
            inputs={"images": str(self.phantom_dir / "images"), "labels": str(self.phantom_dir / "labels")},
        ))
        training = sorted(case.case_id for case in specs if not case.test)
        return {"dataset": str(result.dataset_dir), "held_out": sorted(held_out), "training": training}

    def plan_and_preprocess(self) -> dict[str, Any]:
        env = {key: value for key, value in self.env.items() if key != "nnUNet_n_proc_DA"}
        workers = worker_processes(self.settings.cases)
        run_logged(["nnUNetv2_plan_and_preprocess", "-d", str(self.settings.dataset_id), "-c", CONFIGURATION,
                    "--verify_dataset_integrity", "-np", str(workers), "-npfp", str(workers)], env, self.log)
        preprocessed = Path(self.folders["nnUNet_preprocessed"]) / self.settings.dataset_folder
        # the demo network: the airway planner's plain preset (the paper's five-scale FR/AD U-Net) with the demo's
        # patch and narrower stages, on nnU-Net's preprocessed data; the work dir's plans are the demo's own
        run_logged([sys.executable, "-m", "nnunet_airway", "plan", "-d", str(self.settings.dataset_id), "--preset",
                    self.settings.backbone, "--plans-name", PLANS, "--patch-size", *map(str, self.settings.patch_zyx),
                    *planner_feature_options(self.settings.features), "--batch-size", str(self.settings.batch_size),
                    "--nnunet-plans-name", NNUNET_PLANS,
                    "--overwrite"], env, self.log)
        plans = preprocessed / f"{PLANS}.json"
        splits = write_single_split(preprocessed, sorted(self.ledger.result("convert")["training"]))
        return {"plans": str(plans), "splits": str(splits)}

    def train(self, trainer: str) -> dict[str, Any]:
        env = {key: value for key, value in self.env.items() if not key.startswith(BUDGET_PREFIX)}
        # nnU-Net's validation of the fold is left out: the predict and evaluate stages score the held-out cases
        env.update({**self.budget, SEED_VARIABLE: str(self.settings.seed), "nnUNet_n_proc_DA": "0",
                    SKIP_VALIDATION_VARIABLE: "1"})
        command = ["nnUNetv2_train", str(self.settings.dataset_id), CONFIGURATION, FOLD, "-tr", trainer,
                   "-p", plans_for(trainer), "-device", self.device]
        fold_dir = self.model_dir(trainer) / f"fold_{FOLD}"
        if (fold_dir / "checkpoint_latest.pth").exists():
            command.append("--c")
        else:  # a fresh start: the epochs of an earlier run are not this one's
            (fold_dir / PROGRESS_FILE).unlink(missing_ok=True)
        progress = TrainingProgress(fold_dir, self.budget)
        try:
            run_logged(command, env, self.log, progress.refresh)
        finally:
            progress.close()
        checkpoint = fold_dir / "checkpoint_final.pth"
        if not checkpoint.exists():
            raise DataError(f"{checkpoint}: training ended without a final checkpoint; see {self.log}")
        last = progress.last
        return {"checkpoint": str(checkpoint), "epochs": len(progress.epochs),
                "last_pseudo_dice": last.mean_pseudo_dice if last else None, "seconds": round(progress.elapsed(), 1)}

    def predict(self, trainer: str, checkpoint: str | None = None, out: Path | None = None) -> dict[str, Any]:
        """nnUNetv2_predict on the held-out images into ``out`` (default: prediction_dir), with ``checkpoint``
        (a file name in the fold folder; default nnU-Net's, checkpoint_final.pth)."""
        out = out or self.prediction_dir(trainer)
        chosen = ["-chk", checkpoint] if checkpoint else []
        run_logged(["nnUNetv2_predict", "-i", str(self.raw_dir / "imagesTs"), "-o", str(out),
                    "-d", str(self.settings.dataset_id), "-c", CONFIGURATION, "-f", FOLD, "-tr", trainer,
                    "-p", plans_for(trainer), *chosen, "-device", self.device, "--disable_tta",
                    "--continue_prediction", *predict_worker_arguments(self.device)],
                   {**self.env, "nnUNet_n_proc_DA": "0"}, self.log)
        return {"predictions": str(out)}

    def evaluate(self, trainer: str, predictions: Path | None = None, folder: Path | None = None,
                 pictures: bool = True) -> dict[str, Any]:
        """The airway tree metrics of ``predictions`` (default: prediction_dir) into ``folder``/summary.json
        (default: evaluation_dir), with 3-D renders and meshes unless ``pictures=False``."""
        from nnunet_airway.evaluation.runner import evaluate_folder

        folder = folder or self.evaluation_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        drawn = {}
        if pictures:
            drawn = {"render_dir": folder / "renders", "mesh_dir": folder / "meshes"}
            for path in drawn.values():
                path.mkdir(parents=True, exist_ok=True)
        summary = evaluate_folder(predictions or self.prediction_dir(trainer), self.raw_dir / "labelsTs",
                                  truth_dir=self.phantom_dir / "truth", **drawn)
        write_json(folder / "summary.json", summary)
        return {"summary": str(folder / "summary.json"), "mean": summary["mean"], "std": summary["std"],
                **({"meshes": str(folder / "meshes")} if pictures else {})}

    def attention(self, trainer: str) -> dict[str, Any]:
        """``nnunet-airway attention`` on every held-out image: one Fig. 4-style PNG per case."""
        folder = self.evaluation_dir(trainer) / "attention"
        images = sorted((self.raw_dir / "imagesTs").glob("*_0000.nii.gz"))
        written = []
        for image in images:
            out = folder / f"{image.name[: -len('_0000.nii.gz')]}.png"
            run_logged([sys.executable, "-m", "nnunet_airway", "attention", "-m", str(self.model_dir(trainer)),
                        "-i", str(image), "-f", FOLD, "-o", str(out), "--device", self.device, "--overwrite"],
                       self.env, self.log)
            written.append(str(out))
        return {"attention": str(folder), "figures": written}

    def _refuse_foreign_dataset_with_our_id(self) -> None:
        raw = Path(self.folders["nnUNet_raw"])
        ours = self.settings.dataset_folder
        for other in raw.glob(f"Dataset{self.settings.dataset_id:03d}_*") if raw.is_dir() else ():
            if other.name != ours:
                raise DataError(f"{other}: nnU-Net data set id {self.settings.dataset_id} is taken by another data "
                                f"set; {ours} needs it: move that folder or unset the nnU-Net folder variables")

    def stage_name(self, kind: str, trainer: str) -> str:
        """The ledger's name of a per-trainer stage (``kind``: train, predict, evaluate, attention): the bare
        kind when the experiment has one trainer (as the demo's work dirs always had), else ``<kind> <trainer>``."""
        return kind if len(self.trainers) == 1 else f"{kind} {trainer}"

    def stages(self) -> list[Stage]:
        budget = ", ".join(f"{key}={value}" for key, value in self.budget.items())
        stages = [
            Stage(DATA_STAGES[0], f"writing {self.settings.cases + self.settings.test_cases} synthetic CT phantoms",
                  self.make_phantoms),
            Stage(DATA_STAGES[1], f"converting them into nnU-Net raw ({self.raw_dir})", self.convert),
            Stage(DATA_STAGES[2], "nnUNetv2_plan_and_preprocess (fingerprint, preprocessing), nnunet-airway plan (the airway plans)",
                  self.plan_and_preprocess),
        ]
        for trainer in self.trainers:
            stages += [
                Stage(self.stage_name("train", trainer), f"nnUNetv2_train -tr {trainer} on {self.device} ({budget})",
                      partial(self.train, trainer)),
                Stage(self.stage_name("predict", trainer), f"nnUNetv2_predict -tr {trainer} on the held-out phantoms",
                      partial(self.predict, trainer)),
                Stage(self.stage_name("evaluate", trainer),
                      "airway tree metrics, meshes and 3-D pictures of the held-out phantoms",
                      partial(self.evaluate, trainer)),
            ]
            if self.attention_maps:
                stages.append(Stage(self.stage_name("attention", trainer),
                                    "decoder attention maps on the held-out phantoms (nnunet-airway attention)",
                                    partial(self.attention, trainer)))
        return stages

    def identity(self) -> dict[str, Any]:
        """What the work dir's stages depend on: the data settings (not the budget) and the phantom options. A
        rerun with another identity is refused, so no stage is reused for other data."""
        identity = {key: value for key, value in asdict(self.settings).items() if key not in BUDGET_SETTINGS}
        for key, default in (("backbone", "plain"), ("batch_size", 2)):  # absent at their defaults, so work dirs
            if identity[key] == default:  # made before these settings still resume
                del identity[key]
        if self.phantom_options:  # absent otherwise, so work dirs made before the option still resume
            identity["phantom_options"] = self.phantom_options
        return identity

    def run(self) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        check_free_disk(self.workdir)
        self.ledger = Ledger(self.workdir / "state.json", {**self.identity(), **self.folders})
        run_stages(self.stages(), self.ledger, self.echo)
        return self.ledger.state


def check_free_disk(folder: Path, needed: int = MIN_FREE_DISK_BYTES) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DataError(f"{folder}: only {free / 1024**3:.1f} GiB free, the demo needs about "
                        f"{needed / 1024**3:.0f} GiB; free some space or choose another --workdir")


def write_single_split(preprocessed_dataset_dir: Path, training_cases: list[str]) -> Path:
    """``splits_final.json`` with one fold: the last fifth of the training cases (at least one) validates.

    nnU-Net's own 5-fold split needs at least 5 cases; the demo runs with as few as 2.
    """
    n_val = max(1, len(training_cases) // 5)
    split = [{"train": training_cases[:-n_val], "val": training_cases[-n_val:]}]
    return write_json(preprocessed_dataset_dir / "splits_final.json", split)


def planner_feature_options(features: tuple[int, ...]) -> list[str]:
    """``--base-features B --max-features M`` of the airway planner for per-stage ``features`` (B doubled per stage
    up to M, as nnU-Net's planner widens its stages); DataError for features the planner cannot give."""
    base, cap = int(features[0]), int(max(features))
    planned = tuple(min(cap, base * 2**i) for i in range(len(features)))
    if tuple(int(f) for f in features) != planned:
        raise DataError(f"features {list(features)}: the airway planner widens stages by doubling the first up to a "
                        f"cap; give e.g. {list(planned)} (base {base}, cap {cap})")
    return ["--base-features", str(base), "--max-features", str(cap)]


class TrainingProgress:
    """A progress bar over the training budget (seconds or epochs), fed by the ``progress.json`` the airway
    trainers write into ``fold_dir`` after every epoch (see trainers/progress.py)."""

    def __init__(self, fold_dir: Path, budget: dict[str, str], stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self.fold_dir = fold_dir
        self.by_time = TIME_BUDGET_VARIABLE in budget
        total = float(budget[TIME_BUDGET_VARIABLE]) if self.by_time else int(budget[EPOCHS_VARIABLE])
        unit = "s" if self.by_time else "epochs"
        self.bar = tqdm(total=int(total), desc="training", unit=unit,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total} " + unit + " {postfix}", file=stream)
        self.epochs: list[EpochProgress] = []
        self._read_at: int | None = None
        self._shown: tuple[int, int] | None = None  # (whole units done, epochs) last drawn
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    @property
    def last(self) -> EpochProgress | None:
        return self.epochs[-1] if self.epochs else None

    def refresh(self, _line: str = "") -> None:
        """Re-read the progress file when it changed and move the bar (called for every console line); the bar
        is drawn again only when what it shows changed, so a log file gets one line per second or epoch, not one
        per console line."""
        path = self.fold_dir / PROGRESS_FILE
        modified = path.stat().st_mtime_ns if path.exists() else None
        if modified != self._read_at:
            self.epochs = read_progress(self.fold_dir)
            self._read_at = modified
        done = self.elapsed() if self.by_time else len(self.epochs)
        shown = (int(min(done, self.bar.total)), len(self.epochs))
        if shown == self._shown:
            return
        self._shown = shown
        self.bar.n = min(done, self.bar.total)
        last = self.last
        self.bar.set_postfix(epoch=len(self.epochs), train_loss=last.train_loss if last else None,
                             pseudo_dice=last.mean_pseudo_dice if last else None, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.refresh()
        self.bar.close()
