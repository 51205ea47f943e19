"""Sim-to-real: train nnU-Net on phantoms only, predict a real chest CT, score it against its airway label.

    python benchmarks/sim_to_real.py --image CT --label LABEL --workdir W [--device auto] [--budget-minutes 10]
    python benchmarks/sim_to_real.py --image CT --label LABEL --workdir W --model MODEL_FOLDER

Runs the demo's experiment (``nnunet_airway.demo.pipeline.PhantomExperiment``) on whole-chest phantoms
with the clinical scanner model, then ``nnUNetv2_predict`` on the real CT and ``nnunet-airway evaluate
--protocol atm22`` against its label, and prints one line:

    sim-to-real: TD <x> BD <x> precision <x> volume ratio <x>

(volume ratio: all predicted voxels / reference voxels). LABEL may be binary or a CIP label map (airway =
ChestType 2, ``(value >> 8) == 2``). Every stage resumes in W like the demo's. ``--model`` scores a model
that is already trained instead (an nnU-Net model folder ``<trainer>__<plans>__<configuration>``, e.g. the
demo's, every fold in it with a final checkpoint): no phantoms, no training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.demo.nnunet_runner import run_logged
from nnunet_airway.demo.pipeline import (
    CONFIGURATION,
    FOLD,
    PLANS,
    TRAINER,
    DemoSettings,
    PhantomExperiment,
    predict_worker_arguments,
    resolve_device,
)
from nnunet_airway.demo.stages import Stage
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import read_image
from nnunet_airway.trainers.budget_variables import EPOCHS_VARIABLE
from nnunet_airway.writing import write_image, write_json

CASE = "real"
SIM_TO_REAL_DATASET_ID = 994


def binary_airway(label: np.ndarray) -> np.ndarray:
    """uint8 0/1 airway label from a binary label or a CIP label map (ChestType << 8 | ChestRegion)."""
    if int(label.max()) > 255:
        return ((label.astype(np.int64) >> 8) == 2).astype(np.uint8)
    return (label > 0).astype(np.uint8)


@dataclass(frozen=True)
class SimToRealSettings:
    image: Path
    label: Path
    scanner: str = "clinical"
    model: Path | None = None  # a trained nnU-Net model folder: score it, train nothing
    # real airway labels to render training phantoms around (--from-label), cycled with a new draw per case;
    # empty: generated whole-chest phantoms
    train_labels: tuple[Path, ...] = ()
    phantom_spacing: tuple[float, float, float] | None = None  # from-label phantoms resampled to this (x, y, z mm)


def trained_folds(model: Path) -> list[str]:
    """The folds of an nnU-Net model folder that hold a final checkpoint; a DataError says what is missing."""
    if not (model / "plans.json").is_file() or not (model / "dataset.json").is_file():
        raise DataError(f"{model}: not an nnU-Net model folder (no plans.json and dataset.json); give the "
                        "folder <trainer>__<plans>__<configuration> under nnUNet_results/DatasetXXX_Name")
    folds = sorted(p.parent.name.removeprefix("fold_") for p in model.glob("fold_*/checkpoint_final.pth"))
    if not folds:
        raise DataError(f"{model}: no fold_*/checkpoint_final.pth; finish a training first")
    return folds


class SimToRealExperiment(PhantomExperiment):
    """The demo's stages on clinical-scanner phantoms, then predict and score one real CT."""

    def __init__(self, workdir: Path, settings: DemoSettings, real: SimToRealSettings, device: str,
                 budget: dict[str, str] | None = None, echo=print) -> None:
        super().__init__(workdir, settings, device, (TRAINER,), budget, echo, attention_maps=False)
        self.real = real

    def identity(self) -> dict[str, Any]:
        # the real CT, its label and the scanner model (or the given model) change stages too: another one
        # needs another work dir
        real = {"image": str(self.real.image), "label": str(self.real.label)}
        if self.real.model is not None:  # a model trained again in place is another model
            stats = {fold: (self.real.model / f"fold_{fold}" / "checkpoint_final.pth").stat()
                     for fold in trained_folds(self.real.model)}
            checkpoints = {fold: [stat.st_size, stat.st_mtime_ns] for fold, stat in stats.items()}
            return {"real": real, "model": str(self.real.model), "checkpoints": checkpoints}
        mix = {"train_labels": [str(p) for p in self.real.train_labels],
               "phantom_spacing": self.real.phantom_spacing} if self.real.train_labels else {}
        return {**super().identity(), "real": {**real, "scanner": self.real.scanner, **mix}}

    @property
    def real_dir(self) -> Path:
        return self.workdir / "real"

    def make_phantoms(self) -> dict[str, Any]:
        from nnunet_airway.phantoms.generate import write_phantoms

        total = self.settings.cases + self.settings.test_cases
        if self.real.train_labels:
            return self.make_label_phantoms(total)
        cases = write_phantoms(self.phantom_dir, total, seed=self.settings.seed, shape_zyx=self.settings.shape_zyx,
                               preview=True, overwrite=True, scanner=self.real.scanner)
        return {"cases": list(cases), "folder": str(self.phantom_dir), "scanner": self.real.scanner}

    def make_label_phantoms(self, total: int) -> dict[str, Any]:
        """``total`` phantoms around the training labels (label i % n, draw case_seed(seed, i)), named like
        generated ones; the last is held out, so it shares a tree with a training case."""
        from nnunet_airway.label_phantoms import phantom_from_label
        from nnunet_airway.phantoms.generate import case_seed
        from nnunet_airway.phantoms.preview import write_preview

        cases = []
        for i in range(total):
            case = f"phantom_{i:03d}"
            source = self.real.train_labels[i % len(self.real.train_labels)]
            phantom = phantom_from_label(source, case_seed(self.settings.seed, i), spacing_xyz=self.real.phantom_spacing,
                                         extend=True, case=case)
            write_image(self.phantom_dir / "images" / f"{case}.nii.gz", phantom.ct, phantom.geometry)
            write_image(self.phantom_dir / "labels" / f"{case}.nii.gz", phantom.label, phantom.geometry)
            write_json(self.phantom_dir / "truth" / f"{case}.json", phantom.truth)
            write_preview(self.phantom_dir / "previews" / f"{case}.png", phantom)
            cases.append(case)
        return {"cases": cases, "folder": str(self.phantom_dir), "scanner": "clinical",
                "from_label": [str(p) for p in self.real.train_labels]}

    def import_real(self) -> dict[str, Any]:
        ct, geometry = read_image(self.real.image)
        label, label_geometry = read_image(self.real.label)
        if label.shape != ct.shape:
            raise ValueError(f"{self.real.label}: shape {label.shape} differs from the image's {ct.shape}")
        write_image(self.real_dir / "images" / f"{CASE}_0000.nii.gz", ct.astype(np.int16), geometry)
        write_image(self.real_dir / "labels" / f"{CASE}.nii.gz", binary_airway(label), label_geometry)
        return {"shape_zyx": list(ct.shape), "spacing_xyz": list(geometry.spacing)}

    def predict_real(self) -> dict[str, Any]:
        out = self.real_dir / "prediction"
        common = ["-i", str(self.real_dir / "images"), "-o", str(out), "-device", self.device, "--disable_tta"]
        if self.real.model is not None:  # its entry point has no sequential path: one worker each
            command = ["nnUNetv2_predict_from_modelfolder", *common, "-m", str(self.real.model),
                       "-f", *trained_folds(self.real.model), "-npp", "1", "-nps", "1"]
        else:
            command = ["nnUNetv2_predict", *common, "-d", str(self.settings.dataset_id), "-c", CONFIGURATION,
                       "-f", FOLD, "-tr", TRAINER, "-p", PLANS, *predict_worker_arguments(self.device)]
        run_logged(command, {**self.env, "nnUNet_n_proc_DA": "0"}, self.log)
        return {"prediction": str(out / f"{CASE}.nii.gz")}

    def evaluate_real(self) -> dict[str, Any]:
        summary_path = self.real_dir / "evaluation.json"
        subprocess.run(["nnunet-airway", "evaluate", "-p", str(self.real_dir / "prediction"),
                        "-r", str(self.real_dir / "labels"), "-o", str(summary_path), "--protocol", "atm22",
                        "--overwrite", "--no-progress"], check=True, env=self.env)
        metrics = json.loads(summary_path.read_text())["cases"][CASE]
        prediction, _ = read_image(self.real_dir / "prediction" / f"{CASE}.nii.gz")
        reference, _ = read_image(self.real_dir / "labels" / f"{CASE}.nii.gz")
        ratio = float(np.count_nonzero(prediction)) / max(int(np.count_nonzero(reference)), 1)
        result = {"TD": metrics["TD"], "BD": metrics["BD"], "precision": metrics["precision"],
                  "volume_ratio": ratio, "DSC": metrics["DSC"]}
        write_json(self.real_dir / "sim_to_real.json", result)
        return result

    def stages(self) -> list[Stage]:
        trained = [] if self.real.model is not None else super().stages()
        return trained + [
            Stage("import_real", f"the real CT {self.real.image} and its airway label", self.import_real),
            Stage("predict_real", ("nnUNetv2_predict_from_modelfolder" if self.real.model is not None else
                                   "nnUNetv2_predict") + " on the real CT", self.predict_real),
            Stage("evaluate_real", "nnunet-airway evaluate --protocol atm22 on the real CT", self.evaluate_real),
        ]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def phantom_spacing(values: list[str] | None, image: Path) -> tuple[float, float, float] | None:
    """--phantom-spacing: X Y Z in mm, or "real" for the real CT's own spacing (x, y, z mm); None when not given.
    ValueError with what to give for anything else."""
    if values is None:
        return None
    if values == ["real"]:
        return tuple(float(v) for v in read_image(image)[1].spacing)  # type: ignore[return-value]
    if len(values) != 3:
        raise ValueError(f"got {' '.join(values)}; give X Y Z in mm or 'real' for the real CT's spacing")
    millimetres = positive_float("mm")
    try:
        return tuple(millimetres(v) for v in values)  # type: ignore[return-value]
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"{error}; give X Y Z in mm (each a positive number) or 'real'") from None


TRAINING_OPTIONS = ("budget_minutes", "epochs", "iterations_per_epoch", "cases", "shape", "scanner", "seed",
                    "train_labels", "phantom_spacing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, type=Path)
    parser.add_argument("--label", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--budget-minutes", type=positive_float("minutes"), default=10.0, help="training time (default 10)")
    parser.add_argument("--epochs", type=int_at_least(1), default=None,
                        help="train this many epochs instead of a time budget")
    parser.add_argument("--iterations-per-epoch", type=int_at_least(1), default=20,
                        help="training iterations per epoch (default 20); a time budget is checked after each")
    parser.add_argument("--cases", type=int_at_least(2), default=8, help="training phantoms (default 8)")
    parser.add_argument("--shape", type=int, nargs=3, default=[80, 112, 112], metavar=("Z", "Y", "X"))
    parser.add_argument("--scanner", choices=("ideal", "clinical"), default="clinical")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained nnU-Net model folder to score instead of training on phantoms")
    parser.add_argument("--train-labels", type=Path, nargs="+", default=[],
                        help="train on phantoms rendered around these real airway labels (files or folders; "
                             "phantoms --from-label --extend, clinical scanner; cycled, a new draw per case) instead "
                             "of generated ones; never the real CT's own label")
    parser.add_argument("--phantom-spacing", nargs="+", default=None, metavar="MM",
                        help="with --train-labels: resample them to X Y Z mm, or 'real': to the real CT's spacing")
    args = parser.parse_args(argv)
    if args.phantom_spacing is not None and not args.train_labels:
        parser.error("--phantom-spacing goes with --train-labels")
    if args.train_labels:
        from nnunet_airway.label_phantoms import label_sources

        if args.label.resolve() not in {p.resolve() for p in args.train_labels}:  # a missing path: its own error
            args.train_labels = list(label_sources(args.train_labels).values())  # folders: every label in them
        if args.label.resolve() in {p.resolve() for p in args.train_labels}:
            parser.error(f"--train-labels: {args.label} is the real CT's own label; training on it scores nothing")
    try:
        spacing = phantom_spacing(args.phantom_spacing, args.image)
    except ValueError as error:
        parser.error(f"--phantom-spacing: {error}")
    if args.model is not None:
        training = [f"--{name.replace('_', '-')}" for name in TRAINING_OPTIONS
                    if getattr(args, name) != parser.get_default(name)]
        if training:
            parser.error(f"{', '.join(training)}: training options, but --model scores a trained model")
        trained_folds(args.model.resolve())  # a wrong folder is an error before anything is written
    settings = DemoSettings(cases=args.cases, test_cases=1, budget_minutes=args.budget_minutes,
                            iterations_per_epoch=args.iterations_per_epoch, seed=args.seed,
                            shape_zyx=tuple(args.shape), dataset_id=SIM_TO_REAL_DATASET_ID,
                            dataset_name="AirwaySimToReal")
    budget = None if args.epochs is None else {EPOCHS_VARIABLE: str(args.epochs)}  # iterations: the settings
    experiment = SimToRealExperiment(args.workdir.resolve(), settings,
                                     SimToRealSettings(args.image.resolve(), args.label.resolve(), args.scanner,
                                                       args.model.resolve() if args.model else None,
                                                       tuple(p.resolve() for p in args.train_labels),
                                                       spacing),
                                     resolve_device(args.device), budget)
    experiment.run()
    result = experiment.ledger.result("evaluate_real")
    print(f"sim-to-real: TD {_number(result['TD'])} BD {_number(result['BD'])} "
          f"precision {_number(result['precision'])} volume ratio {result['volume_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as error:  # one line that names the file and what to do, no traceback
        sys.exit(f"sim_to_real: error: {error}")
