"""Attention maps of a trained airway model on one image, with nnU-Net's preprocessing and sliding window.

The model is loaded by nnU-Net's own ``nnUNetPredictor`` (plans, checkpoint, trainer class), the image is
preprocessed by the configuration's preprocessor (transpose, crop, resample, normalise), and the network is
run window by window over nnU-Net's sliding-window grid (``compute_steps_for_sliding_window``, step 0.5,
the same Gaussian weighting, no mirroring). The network hands over each window's decoder outputs A (coarse
to fine, ``return_decoder_features``, as the training step asks for them), turned into G = sum_c |A_c|^2 (``attention_map``, the map that attention
distillation compares); each window's map is upsampled trilinearly to the patch size and accumulated with
the Gaussian weights, like the logits. Logits and maps are then brought back to the image grid by nnU-Net's
export steps (resampling, uncropping, transposing back).

Memory: the logits and one float32 volume per decoder stage at the preprocessed resolution, and again on
the image grid.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
from torch import Tensor, nn

from nnunet_airway.errors import DataError
from nnunet_airway.model.distillation import attention_map
from nnunet_airway.model.resenc import ResEncFRADUNet
from nnunet_airway.model.unet import FRADUNet
from nnunet_airway.trainers.base import unwrapped
from nnunet_airway.trainers.compat import require_nnunetv2
from nnunet_airway.trainers.shims import shim_folder

TILE_STEP_SIZE = 0.5  # nnUNetv2_predict's default


@dataclass(frozen=True)
class AttentionResult:
    """One image through one model, everything on the image's grid (Z, Y, X) unless said otherwise.

    prediction: uint8 labels (nnU-Net's argmax, no test-time mirroring).
    maps: float32 attention maps G of the decoder stages, coarse to fine (not scaled).
    stage_shapes: (D, H, W) of each decoder stage's output for one window (coarse to fine).
    logits: (classes, D, H, W) float32 logits on the preprocessed grid (for checks against nnU-Net).
    """

    prediction: np.ndarray
    maps: list[np.ndarray]
    stage_shapes: list[tuple[int, int, int]]
    logits: Tensor


def load_predictor(model_folder: str | os.PathLike, fold: str = "0", checkpoint: str = "checkpoint_final.pth",
                   device: str = "cpu") -> nnUNetPredictor:
    """nnU-Net's predictor for ``model_folder`` (``.../<trainer>__<plans>__<configuration>``), one fold.

    The airway trainers' folder is added to ``nnUNet_extTrainer`` so that nnU-Net finds their classes.
    Raises DataError when the folder, fold or checkpoint is missing or the network is not an airway U-Net.
    """
    require_nnunetv2()
    folder = Path(model_folder)
    if not (folder / "plans.json").is_file() or not (folder / "dataset.json").is_file():
        raise DataError(f"{folder}: not an nnU-Net model folder (no plans.json / dataset.json); give "
                        "nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration> with -m")
    fold_name = fold if fold == "all" else str(int(fold))
    if not (folder / f"fold_{fold_name}" / checkpoint).is_file():
        raise DataError(f"{folder / f'fold_{fold_name}' / checkpoint}: no such checkpoint; choose the fold with "
                        "-f and the checkpoint with -c (checkpoint_final.pth or checkpoint_best.pth)")
    paths = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if str(shim_folder()) not in paths:
        os.environ["nnUNet_extTrainer"] = os.pathsep.join([*paths, str(shim_folder())])
    predictor = nnUNetPredictor(tile_step_size=TILE_STEP_SIZE, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=False, device=torch.device(device), verbose=False,
                                allow_tqdm=False)
    checkpoint_path = folder / f"fold_{fold_name}" / checkpoint
    try:
        predictor.initialize_from_trained_model_folder(str(folder), use_folds=(fold_name,), checkpoint_name=checkpoint)
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, AttributeError, TypeError,
            pickle.UnpicklingError) as exc:
        # torch.load on a truncated file, a file of another program, or a checkpoint without nnU-Net's keys
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{checkpoint_path}: not a loadable nnU-Net checkpoint ({type(exc).__name__}: {reason}); "
                        "train again or copy the file anew, or choose another with -c") from exc
    if not isinstance(unwrapped(predictor.network), FRADUNet | ResEncFRADUNet):
        raise DataError(f"{folder}: trained with {predictor.trainer_name}, whose network is not the airway U-Net; "
                        "attention maps need a model of an airway trainer (nnUNetTrainerAirway...)")
    return predictor


def window_attention(network: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """One window through the airway U-Net: its logits (N, classes, D, H, W) and G = sum_c |A_c|^2 of each
    decoder stage's output A (coarse to fine, (N, 1, D_m, H_m, W_m) float32), from the same decoder features
    the trainers hand to attention distillation (``return_decoder_features``)."""
    out, features = unwrapped(network)(x, return_decoder_features=True)
    out = out[0] if isinstance(out, list | tuple) else out
    return out, [attention_map(feature) for feature in features]


def preprocess(predictor: nnUNetPredictor, image_files: list[str]) -> tuple[np.ndarray, dict]:
    """The configuration's preprocessing of one case: (C, D, H, W) float32 data and its properties."""
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    data, _, properties = preprocessor.run_case(image_files, None, predictor.plans_manager,
                                                predictor.configuration_manager, predictor.dataset_json)
    return data.astype(np.float32, copy=False), properties


@torch.inference_mode()
def sliding_window_attention(predictor: nnUNetPredictor, data: np.ndarray) -> tuple[Tensor, Tensor, list]:
    """Logits (classes, D, H, W) and maps (stages, D, H, W) on the preprocessed grid, and the stage shapes."""
    network = predictor.network.to(predictor.device).eval()
    patch = tuple(int(p) for p in predictor.configuration_manager.patch_size)
    padded, revert = pad_nd_image(torch.from_numpy(data), patch, "constant", {"value": 0}, True, None)
    size = padded.shape[1:]
    steps = compute_steps_for_sliding_window(size, patch, TILE_STEP_SIZE)
    gaussian = compute_gaussian(patch, sigma_scale=1.0 / 8, value_scaling_factor=10, dtype=torch.float32,
                                device=torch.device("cpu"))
    n_classes = predictor.label_manager.num_segmentation_heads
    n_stages = len(unwrapped(network).decoder.stages)
    logits = torch.zeros((n_classes, *size), dtype=torch.float32)
    maps = torch.zeros((n_stages, *size), dtype=torch.float32)
    weights = torch.zeros(size, dtype=torch.float32)
    stage_shapes: list = []
    autocast = torch.autocast("cuda") if predictor.device.type == "cuda" else torch.autocast("cpu", enabled=False)
    with autocast:
        for sz in steps[0]:
            for sy in steps[1]:
                for sx in steps[2]:
                    window = (slice(sz, sz + patch[0]), slice(sy, sy + patch[1]), slice(sx, sx + patch[2]))
                    x = padded[(slice(None), *window)][None].to(predictor.device)
                    out, stage_maps = window_attention(network, x)
                    stage_shapes = [tuple(int(n) for n in m.shape[2:]) for m in stage_maps]
                    up = torch.cat([F.interpolate(m.float(), size=patch, mode="trilinear", align_corners=False)
                                    for m in stage_maps], dim=1)[0].cpu()
                    logits[(slice(None), *window)] += out[0].float().cpu() * gaussian
                    maps[(slice(None), *window)] += up * gaussian
                    weights[window] += gaussian
    logits /= weights
    maps /= weights
    keep = (slice(None), *revert[1:])
    return logits[keep], maps[keep], stage_shapes


def to_image_grid(predictor: nnUNetPredictor, volumes: Tensor, properties: dict) -> np.ndarray:
    """nnU-Net's export steps for continuous volumes (C, D, H, W) on the preprocessed grid: resample to the
    cropped image's shape, put back into the uncropped image (0 outside), transpose back. -> (C, Z, Y, X)."""
    plans, configuration = predictor.plans_manager, predictor.configuration_manager
    original_spacing = [properties["spacing"][i] for i in plans.transpose_forward]
    current_spacing = configuration.spacing if len(configuration.spacing) == len(
        properties["shape_after_cropping_and_before_resampling"]) else [original_spacing[0], *configuration.spacing]
    resampled = configuration.resampling_fn_probabilities(
        volumes, properties["shape_after_cropping_and_before_resampling"], current_spacing, original_spacing)
    resampled = resampled.cpu().numpy() if isinstance(resampled, Tensor) else np.asarray(resampled)
    full = np.zeros((len(resampled), *properties["shape_before_cropping"]), dtype=np.float32)
    for channel in range(len(resampled)):
        full[channel] = insert_crop_into_image(full[channel], resampled[channel].astype(np.float32),
                                               properties["bbox_used_for_cropping"])
    return full.transpose([0, *[i + 1 for i in plans.transpose_backward]])


def attention_on_image(predictor: nnUNetPredictor, image_files: list[str]) -> AttentionResult:
    """Run the model on one case (its channel files, e.g. ``[CASE_0000.nii.gz]``) and collect its maps."""
    expected = len(predictor.dataset_json["channel_names"])
    if len(image_files) != expected:
        raise DataError(f"{image_files[0]}: the model takes {expected} image channel(s), got {len(image_files)} "
                        "file(s); give one -i per channel in the order of dataset.json's channel_names")
    data, properties = preprocess(predictor, image_files)
    logits, maps, stage_shapes = sliding_window_attention(predictor, data)
    on_image = to_image_grid(predictor, torch.cat([logits, maps]), properties)
    n_classes = len(logits)
    segmentation = predictor.label_manager.convert_logits_to_segmentation(torch.from_numpy(on_image[:n_classes]))
    segmentation = segmentation.cpu().numpy() if isinstance(segmentation, Tensor) else np.asarray(segmentation)
    prediction = segmentation.astype(np.uint8)
    return AttentionResult(prediction, list(on_image[n_classes:]), stage_shapes, logits)
