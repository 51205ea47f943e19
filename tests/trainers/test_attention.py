"""Attention maps of the tiny trained model: nnU-Net's preprocessing and sliding window, the decoder stages'
shapes, and agreement with a direct computation from the network's decoder features."""

from __future__ import annotations

import itertools
import math
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

from nnunet_airway.attention_figure import figure_size
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import read_image
from nnunet_airway.model.distillation import attention_map
from nnunet_airway.trainers.attention import (
    TILE_STEP_SIZE,
    attention_on_image,
    load_predictor,
    preprocess,
    sliding_window_attention,
)
from nnunet_airway.trainers.base import unwrapped

pytestmark = pytest.mark.slow
SUPPORT = Path(__file__).parent / "support"  # the test trainer's module


@pytest.fixture()
def predictor(trained_model, monkeypatch: pytest.MonkeyPatch):
    """The tiny model loaded in this process as nnU-Net's predictor (the test trainer found on its paths)."""
    for key, value in trained_model.dataset.env().items():
        if key.startswith("nnUNet_"):
            monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(SUPPORT))
    return load_predictor(trained_model.output_folder.parent, "0", device="cpu")


def test_maps_have_the_decoder_stages_shapes_and_lie_on_the_image_grid(trained_model, predictor) -> None:
    dataset = trained_model.dataset
    image_path = dataset.raw / "imagesTs" / f"{dataset.test_cases[0]}_0000.nii.gz"
    result = attention_on_image(predictor, [str(image_path)])
    image, _ = read_image(image_path)
    patch = [int(p) for p in predictor.configuration_manager.patch_size]
    strides = predictor.configuration_manager.network_arch_init_kwargs["strides"][:5]
    totals = [[math.prod(int(s[axis]) for s in strides[: k + 1]) for axis in range(3)] for k in range(5)]
    # decoder stage k (coarse to fine) works at the resolution of encoder stage 3 - k
    expected = [tuple(p // t for p, t in zip(patch, totals[3 - k], strict=True)) for k in range(4)]
    assert result.stage_shapes == expected
    assert len(result.maps) == 4
    assert all(m.shape == image.shape and m.dtype == np.float32 for m in result.maps)
    assert all(np.isfinite(m).all() and m.max() > 0 for m in result.maps)
    assert result.prediction.shape == image.shape and set(np.unique(result.prediction)) <= {0, 1}


def test_maps_match_the_networks_own_decoder_features_and_logits_match_nnunet(trained_model, predictor) -> None:
    dataset = trained_model.dataset
    image_path = dataset.raw / "imagesTs" / f"{dataset.test_cases[0]}_0000.nii.gz"
    data, _ = preprocess(predictor, [str(image_path)])
    logits, maps, _ = sliding_window_attention(predictor, data)

    patch = tuple(int(p) for p in predictor.configuration_manager.patch_size)
    assert all(d >= p for d, p in zip(data.shape[1:], patch, strict=True)), "the test expects no padding"
    steps = compute_steps_for_sliding_window(data.shape[1:], patch, TILE_STEP_SIZE)

    # nnU-Net's own sliding window (no mirroring) gives the same logits and labels, except in the patches'
    # corners, where its float16 Gaussian weights underflow (it accumulates in float16, we in float32)
    reference = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data)).float()
    gaussian = compute_gaussian(patch, sigma_scale=1.0 / 8, value_scaling_factor=10, dtype=torch.float32,
                                device=torch.device("cpu"))
    weights = torch.zeros(data.shape[1:])
    for window in itertools.product(*[[slice(s, s + p) for s in axis] for axis, p in zip(steps, patch, strict=True)]):
        weights[window] += gaussian
    reliable = weights > 1e-3  # float16 keeps 3 significant digits above its smallest normal number, 6e-5
    assert reliable.float().mean() > 0.6  # about 70% of this volume: all but the patches' corners
    torch.testing.assert_close(logits[:, reliable], reference[:, reliable], atol=2e-2, rtol=1e-2)
    assert (logits.argmax(0) == reference.argmax(0)).float().mean() > 0.999

    # the decoder stages' outputs, taken independently of the network's own tap by forward hooks
    network = unwrapped(predictor.network)
    features: list[torch.Tensor] = []
    handles = [stage.register_forward_hook(lambda m, i, out: features.append(out)) for stage in network.decoder.stages]
    try:
        with torch.no_grad():
            network(torch.from_numpy(data[None, :, : patch[0], : patch[1], : patch[2]]))
    finally:
        for handle in handles:
            handle.remove()
    assert len(features) == maps.shape[0]
    # where only the first window reaches, the accumulated map is that window's map
    only_first = tuple(slice(0, s[1] if len(s) > 1 else p) for s, p in zip(steps, patch, strict=True))
    for stage, feature in enumerate(features):
        direct = F.interpolate(attention_map(feature.detach()), size=patch, mode="trilinear", align_corners=False)
        torch.testing.assert_close(maps[(stage, *only_first)], direct[(0, 0, *only_first)], rtol=1e-4, atol=1e-5)


def test_a_folder_without_a_model_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not an nnU-Net model folder"):
        load_predictor(tmp_path)


def test_command_writes_the_figure_and_the_maps(trained_model, tmp_path: Path) -> None:
    dataset = trained_model.dataset
    image_path = dataset.raw / "imagesTs" / f"{dataset.test_cases[0]}_0000.nii.gz"
    model = trained_model.output_folder.parent
    out, maps = tmp_path / "attention.png", tmp_path / "maps"
    command = ["nnunet-airway", "attention", "-m", str(model), "-i", str(image_path), "-o", str(out),
               "--compare", str(model), "--save-maps", str(maps), "--device", "cpu", "--slice", "axial"]
    result = subprocess.run(command, env=dataset.env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert struct.unpack(">II", out.read_bytes()[16:24]) == figure_size(2, 4)
    _, image_geometry = read_image(image_path)
    label = f"{dataset.test_trainer} (1)"
    names = sorted(p.name for p in (maps / label).iterdir())
    assert names == ["decoder_1.nii.gz", "decoder_2.nii.gz", "decoder_3.nii.gz", "decoder_4.nii.gz",
                     "prediction.nii.gz"]
    volume, geometry = read_image(maps / label / "decoder_4.nii.gz")
    assert volume.shape == dataset.shape_zyx and geometry == image_geometry

    again = subprocess.run(command, env=dataset.env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "--overwrite" in again.stderr


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_damaged_or_foreign_checkpoint_is_a_one_line_error(trained_model, tmp_path: Path, capsys,
                                                              damage: str) -> None:
    """A truncated or foreign checkpoint_final.pth gave a traceback."""
    import shutil

    model = tmp_path / trained_model.output_folder.parent.name
    shutil.copytree(trained_model.output_folder.parent, model)
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    else:
        torch.save({"state_dict": {}, "something": "else"}, checkpoint)
    with pytest.raises(DataError, match=r"checkpoint_final.pth: not a loadable nnU-Net checkpoint"):
        load_predictor(model)
    from nnunet_airway.cli import main

    image = trained_model.dataset.raw / "imagesTs" / f"{trained_model.dataset.test_cases[0]}_0000.nii.gz"
    assert main(["attention", "-m", str(model), "-i", str(image), "-o", str(tmp_path / "a.png"),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not a loadable nnU-Net checkpoint" in err
