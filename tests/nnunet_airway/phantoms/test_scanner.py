"""The clinical scanner model: per-case values inside their cited ranges, and the rendered CT honours them."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_airway.phantoms import Phantom, generate_phantom
from nnunet_airway.phantoms.scanner import CLINICAL_RANGES, clinical_intensities


def test_every_draw_lies_in_its_cited_range() -> None:
    rng = np.random.default_rng(3)
    seen_contrast = seen_plain = False
    for _ in range(300):
        hu = clinical_intensities(rng)
        for name in ("air", "lumen", "lung", "emphysema_share", "emphysema", "wall_large", "noise", "psf_fwhm_mm",
                     "table"):
            r = CLINICAL_RANGES[name]
            assert r.low <= getattr(hu, name) <= r.high, name
        plain, contrast = CLINICAL_RANGES["vessel_plain"], CLINICAL_RANGES["vessel_contrast"]
        seen_plain |= plain.low <= hu.vessel <= plain.high
        seen_contrast |= contrast.low <= hu.vessel <= contrast.high
        assert (plain.low <= hu.vessel <= plain.high) or (contrast.low <= hu.vessel <= contrast.high)
        assert hu.lumen > hu.air - 20.0  # lumen air never reads darker than outside air by more than noise
    assert seen_plain and seen_contrast
    assert all(len(r.source) > 30 for r in CLINICAL_RANGES.values())
    assert CLINICAL_RANGES["emphysema"].high < -950.0  # below the emphysema threshold


@pytest.fixture(scope="module")
def clinical_chest() -> Phantom:
    return generate_phantom(11, (112, 128, 128), scanner="clinical")


def voxel(phantom: Phantom, point_xyz) -> tuple[int, int, int]:
    ijk = np.rint((np.asarray(point_xyz) - phantom.geometry.origin) / phantom.geometry.spacing).astype(int)
    return int(ijk[2]), int(ijk[1]), int(ijk[0])


@pytest.mark.slow
def test_rendered_chest_honours_the_drawn_values(clinical_chest: Phantom) -> None:
    ct, truth = clinical_chest.ct.astype(float), clinical_chest.truth
    hu = truth["intensities_hu"]
    assert truth["scanner_model"] == "clinical"
    # outside air (anterior corners, away from the table behind the back)
    assert abs(np.median(ct[:, :3, :3]) - hu["air"]) <= 10.0
    # the trachea's core (within 3 mm of its axis, above the carina) reads the drawn lumen value
    trachea = truth["branches"][0]
    top, carina = np.asarray(trachea["start_mm"]), np.asarray(trachea["end_mm"])
    core = [ct[voxel(clinical_chest, top + t * (carina - top))] for t in np.linspace(0.3, 0.9, 25)]
    assert abs(np.median(core) - hu["lumen"]) <= 15.0
    # the table: a slab behind the back
    anatomy = truth["anatomy"]
    back = anatomy["body_centre_xy_mm"][1] + anatomy["body_semi_axes_mm"][1]
    k, j, _ = voxel(clinical_chest, (0.0, back + 11.0, anatomy["carina_mm"][2]))
    assert abs(np.median(ct[:, j, :]) - hu["table"]) <= 40.0
    # lung parenchyma lies between emphysema and dense lung
    lung = anatomy["lungs"][0]
    cx, cy, cz = lung["centre_mm"]
    k, j, i = voxel(clinical_chest, (cx - 0.5 * lung["semi_axes_mm"][0], cy, cz + 30.0))
    assert -1000.0 <= np.median(ct[k - 2:k + 3, j - 2:j + 3, i - 2:i + 3]) <= -700.0


@pytest.mark.slow
def test_ideal_model_is_the_default_for_the_whole_chest() -> None:
    phantom = generate_phantom(7, (64, 96, 96))
    assert phantom.truth["scanner_model"] == "ideal"
    assert phantom.truth["intensities_hu"]["lumen"] == -1000.0 and phantom.truth["intensities_hu"]["table"] is None
