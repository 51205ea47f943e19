"""Skeleton Recall and clDice on tiny hand-built volumes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from nnunet_airway.model.topology_losses import (
    SkeletonRecallLoss,
    SoftClDiceLoss,
    soft_skeleton,
    tubed_skeleton,
)


def cylinder_z(shape: tuple[int, int, int], centre_yx: tuple[int, int], radius: float) -> np.ndarray:
    _, y, x = np.indices(shape)
    return ((y - centre_yx[0]) ** 2 + (x - centre_yx[1]) ** 2 <= radius**2).astype(np.uint8)


def segment(shape: tuple[int, int, int], start, end, radius: float) -> np.ndarray:
    """Voxels within ``radius`` of the segment start-end (z, y, x)."""
    points = np.stack(np.indices(shape), -1).astype(float)
    a, b = np.asarray(start, float), np.asarray(end, float)
    t = np.clip(((points - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    return (np.linalg.norm(points - (a + t[..., None] * (b - a)), axis=-1) <= radius).astype(np.uint8)


def logits_from(probability_one: np.ndarray) -> torch.Tensor:
    """Logits (1, 2, D, H, W) whose airway probability is 1 (to 1e-8) where the mask is set, 0 elsewhere."""
    airway = torch.from_numpy(probability_one.astype(np.float32)) * 40 - 20
    return torch.stack((torch.zeros_like(airway), airway))[None]


# --- the tubed skeleton ---------------------------------------------------------------------------------------------

def test_the_skeleton_of_a_straight_tube_is_its_axis_and_the_tube_its_cross_inside_the_label() -> None:
    label = cylinder_z((20, 9, 9), (4, 4), 2.0)
    bare = tubed_skeleton(label, radius=0)
    z, y, x = np.nonzero(bare)
    assert set(zip(y.tolist(), x.tolist(), strict=True)) == {(4, 4)}  # on the axis only
    assert z.min() <= 2 and z.max() >= 17 and len(set(z.tolist())) == len(z)  # one voxel per slice, end to end
    tube = tubed_skeleton(label, radius=1)
    expected = np.zeros_like(label)
    for zz in z:
        for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            expected[zz, 4 + dy, 4 + dx] = 1
    expected[max(z.min() - 1, 0), 4, 4] = expected[min(z.max() + 1, 19), 4, 4] = 1
    assert np.array_equal(tube, expected & label)


def test_the_skeleton_of_a_y_bifurcation_is_one_tree_with_three_ends_inside_the_label() -> None:
    shape = (30, 24, 24)
    label = (segment(shape, (2, 12, 12), (14, 12, 12), 2.5) | segment(shape, (14, 12, 12), (27, 12, 4), 2.0)
             | segment(shape, (14, 12, 12), (27, 12, 20), 2.0))
    bare = tubed_skeleton(label, radius=0).astype(bool)
    assert bare.any() and not (bare & ~label.astype(bool)).any()
    _, components = ndimage.label(bare, np.ones((3, 3, 3)))
    assert components == 1
    neighbours = ndimage.convolve(bare.astype(int), np.ones((3, 3, 3), int), mode="constant") - 1
    assert int((bare & (neighbours == 1)).sum()) == 3  # the trunk's end and the two branches' ends
    tube = tubed_skeleton(label, radius=1).astype(bool)
    assert (tube >= bare).all() and not (tube & ~label.astype(bool)).any() and tube.sum() > bare.sum()


def test_an_empty_label_has_an_empty_skeleton_and_bad_arguments_are_refused() -> None:
    assert not tubed_skeleton(np.zeros((4, 4, 4), np.uint8)).any()
    with pytest.raises(ValueError, match="radius"):
        tubed_skeleton(np.zeros((4, 4, 4), np.uint8), radius=-1)
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        tubed_skeleton(np.zeros((4, 4), np.uint8))


# --- Skeleton Recall ------------------------------------------------------------------------------------------------

def test_soft_recall_is_one_for_a_prediction_covering_the_skeleton() -> None:
    skeleton = np.zeros((1, 1, 10, 6, 6), np.uint8)
    skeleton[0, 0, 1:9, 3, 3] = 1
    covering = np.zeros((10, 6, 6), bool)
    covering[:, 2:5, 2:5] = True  # more than the skeleton: recall does not mind
    loss = SkeletonRecallLoss(smooth=0)(logits_from(covering), torch.from_numpy(skeleton))
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


def test_soft_recall_is_the_covered_fraction_for_a_partial_prediction() -> None:
    skeleton = np.zeros((1, 1, 10, 6, 6), np.uint8)
    skeleton[0, 0, 1:9, 3, 3] = 1  # 8 voxels
    partial = np.zeros((10, 6, 6), bool)
    partial[:4, 3, 3] = True  # covers z = 1, 2, 3: 3 of 8
    loss = SkeletonRecallLoss(smooth=0)(logits_from(partial), torch.from_numpy(skeleton))
    assert float(loss) == pytest.approx(1 - 3 / 8, abs=1e-6)


def test_a_batch_without_skeleton_costs_nothing_and_shapes_are_checked() -> None:
    logits = torch.randn(2, 2, 4, 4, 4)
    assert float(SkeletonRecallLoss()(logits, torch.zeros(2, 1, 4, 4, 4))) == 0.0
    with pytest.raises(ValueError, match="skeleton must be"):
        SkeletonRecallLoss()(logits, torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match="C >= 2"):
        SkeletonRecallLoss()(torch.randn(2, 1, 4, 4, 4), torch.zeros(2, 1, 4, 4, 4))


# --- clDice ----------------------------------------------------------------------------------------------------------

def test_the_soft_skeleton_of_a_thick_bar_is_its_axis_within_a_voxel() -> None:
    bar = torch.zeros(1, 1, 9, 9, 30)
    bar[0, 0, 2:7, 2:7, 3:27] = 1  # 5 x 5 cross-section, axis at (4, 4)
    skeleton = soft_skeleton(bar, iterations=3)[0, 0]
    z, y, x = torch.nonzero(skeleton > 0.5, as_tuple=True)
    assert len(z) > 0
    assert int((z - 4).abs().max()) <= 1 and int((y - 4).abs().max()) <= 1  # the axis, within a voxel
    interior = skeleton[3:6, 3:6, 6:24].amax(dim=(0, 1))
    assert bool((interior > 0.5).all())  # along the whole interior length


def test_cldice_is_zero_for_a_perfect_prediction_and_grows_when_a_branch_is_missed() -> None:
    shape = (24, 20, 20)
    trunk = segment(shape, (2, 10, 10), (12, 10, 10), 2.0)
    branch = segment(shape, (12, 10, 10), (22, 10, 3), 1.5)
    target = torch.from_numpy((trunk | branch).astype(np.int16))[None, None]
    loss = SoftClDiceLoss()
    assert float(loss(logits_from((trunk | branch).astype(bool)), target)) == pytest.approx(0.0, abs=1e-4)
    assert float(loss(logits_from(trunk.astype(bool)), target)) > 0.1


@pytest.mark.parametrize("loss", [SkeletonRecallLoss(), SoftClDiceLoss()], ids=["skeleton_recall", "cldice"])
def test_gradients_are_finite_under_bf16_autocast(loss) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 2, 8, 16, 16, generator=generator) * 5).requires_grad_()
    target = (torch.rand(2, 1, 8, 16, 16, generator=generator) > 0.7).to(torch.int16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(logits.bfloat16(), target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all()) and logits.grad.abs().sum() > 0


def test_losses_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SoftClDiceLoss(iterations=-1)
    with pytest.raises(ValueError):
        SkeletonRecallLoss(smooth=float("nan"))
    with pytest.raises(ValueError, match="iterations"):
        soft_skeleton(torch.zeros(1, 1, 3, 3, 3), iterations=-1)


def test_the_soft_skeleton_equals_shit_et_als_loop_that_erodes_twice() -> None:
    """Reusing each opening's erosion as the next step's gives exactly the values of the written-out loop."""
    import torch.nn.functional as F

    from nnunet_airway.model.topology_losses import soft_dilate, soft_erode

    def written_out(x: torch.Tensor, iterations: int) -> torch.Tensor:
        skeleton = F.relu(x - soft_dilate(soft_erode(x)))
        for _ in range(iterations):
            x = soft_erode(x)
            delta = F.relu(x - soft_dilate(soft_erode(x)))
            skeleton = skeleton + F.relu(delta - skeleton * delta)
        return skeleton

    x = torch.rand(2, 1, 12, 14, 16, generator=torch.Generator().manual_seed(3))
    for iterations in (0, 1, 3, 5):
        assert torch.equal(soft_skeleton(x, iterations), written_out(x, iterations))
