"""The four user commands, run for real on CPU: plan_and_preprocess -> train (and --c) -> predict."""

from __future__ import annotations

import math
import re

import pytest
import torch

from nnunet_airway.image_io import read_image
from nnunet_airway.trainers.loss_components import read_loss_components
from nnunet_airway.trainers.progress import read_progress

pytestmark = pytest.mark.slow


def training_log_text(model) -> list[str]:
    return [p.read_text() for p in sorted(model.output_folder.glob("training_log_*.txt"))]


def test_training_writes_a_final_checkpoint_and_validates(trained_model) -> None:
    folder = trained_model.output_folder
    assert (folder / "checkpoint_final.pth").is_file()
    assert (folder / "validation" / "summary.json").is_file()
    assert (folder.parent / "plans.json").is_file()  # what the predictor rebuilds the network from


def test_loss_is_finite_in_every_epoch(trained_model) -> None:
    """16 iterations are too few to show the loss falling: at p(airway) = 0.01 the segmentation loss starts near
    0 and the total is mostly the distillation term, which wanders (it fell steadily under PyTorch's default
    initialisation of the transposed convolutions and goes up and down under nnU-Net's He initialisation).
    That training learns is shown by the demo's and the benchmarks' runs; here: four finite, distinct epochs."""
    checkpoint = torch.load(trained_model.output_folder / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    losses = checkpoint["logging"]["train_losses"]
    assert len(losses) == 4 and len(set(float(loss) for loss in losses)) == 4
    assert all(math.isfinite(loss) for loss in losses)


def test_loss_components_are_recorded_per_epoch_across_the_resume(trained_model) -> None:
    records = read_loss_components(trained_model.output_folder)
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    for record in records:
        assert math.isfinite(record["segmentation"]) and record["distillation"] >= 0
        assert len(record["attention_entropy"]) == 4  # one per decoder scale below the bottleneck
        assert all(0 <= h <= 1 for h in record["attention_entropy"])


def test_continue_resumes_an_interrupted_training_from_its_checkpoint(trained_model) -> None:
    first_log, resumed_log = training_log_text(trained_model)
    first_epochs = [int(e) for e in re.findall(r": Epoch (\d+) *$", first_log, re.MULTILINE)]
    resumed_epochs = [int(e) for e in re.findall(r": Epoch (\d+) *$", resumed_log, re.MULTILINE)]
    assert first_epochs == [0, 1]
    assert resumed_epochs == [2, 3]
    checkpoint = torch.load(trained_model.output_folder / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    assert checkpoint["current_epoch"] == 4
    assert not (trained_model.output_folder / "checkpoint_latest.pth").exists()  # removed when training ends
    assert checkpoint["trainer_name"] == trained_model.dataset.test_trainer


def test_progress_file_lists_every_epoch_once_across_the_resume(trained_model) -> None:
    epochs = read_progress(trained_model.output_folder)
    assert [e.epoch for e in epochs] == [0, 1, 2, 3]
    checkpoint = torch.load(trained_model.output_folder / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    losses = checkpoint["logging"]["train_losses"]
    assert [e.train_loss for e in epochs] == pytest.approx([float(loss) for loss in losses])
    for e in epochs:
        assert math.isfinite(e.val_loss) and e.lr > 0 and e.seconds > 0
        assert len(e.pseudo_dice) == 1


def test_predict_writes_masks_on_the_images_grid(trained_model) -> None:
    dataset = trained_model.dataset
    out = dataset.root / "predictions"
    dataset.run(*dataset.predict_argv(dataset.test_trainer, dataset.raw / "imagesTs", out))
    for case in dataset.test_cases:
        image, image_geometry = read_image(dataset.raw / "imagesTs" / f"{case}_0000.nii.gz")
        prediction, prediction_geometry = read_image(out / f"{case}.nii.gz")
        assert prediction.shape == image.shape == dataset.shape_zyx
        assert prediction_geometry.spacing == image_geometry.spacing
        assert prediction_geometry.origin == image_geometry.origin
        assert prediction_geometry.direction == image_geometry.direction
        assert set(prediction.ravel().tolist()) <= {0, 1}
