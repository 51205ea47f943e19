"""What a clinical chest CT scanner makes of the phantom: per-case HU values, blur and noise.

``CLINICAL_RANGES`` holds the interval each value is drawn from (uniformly, per case) and where the
interval comes from. Literature values are quoted from memory of the cited work (ranges, not exact
figures); where no published figure fits, the entry says it is this project's assumption or measurement.
The ``ideal`` model (the generator's original one) keeps lumen air at -1000 HU, no blur and no table.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nnunet_airway.phantoms.render import Intensities

SCANNER_MODELS: tuple[str, ...] = ("ideal", "clinical")


class Range(NamedTuple):
    low: float
    high: float
    source: str


CLINICAL_RANGES: dict[str, Range] = {
    "air": Range(-1010.0, -985.0,
                 "outside-body air: ACR CT accreditation phantom criterion for air, -1005 to -970 HU"),
    "lumen": Range(-1000.0, -935.0,
                   "airway lumen air: nominal -1000 HU; clinical scans read tracheal air higher through "
                   "blur, scatter and calibration (this project measured -950 to -900 HU in the trachea of a "
                   "512x512x141 thorax CT, issue 12); nnU-Net's fingerprint of 299 ATM'26 training CTs puts "
                   "the airway label's median at -968 HU and its 0.5th percentile at -1052 (was -1000 to -900 "
                   "in generator version 2, whose whole-chest label read -906 in the median)"),
    "lung": Range(-930.0, -780.0,
                  "mean parenchymal attenuation: about -850 to -870 HU in healthy adults at full inspiration "
                  "(the commonly reported range of mean lung density), lower in emphysema, higher (denser) "
                  "at expiration, in dependent lung and in interstitial disease; the low end reaches the -919 HU "
                  "this project measured as the parenchyma's median in the COPDGene scan of tests/data/cip_ct64 "
                  "(was -900 in generator version 2)"),
    "emphysema_share": Range(0.0, 0.15,
                             "share of lung voxels below -950 HU: under about 5% in healthy adults, up to tens "
                             "of percent in COPD (Gevenois et al. 1996; Fleischner Society, Lynch et al. 2015)"),
    "emphysema": Range(-990.0, -955.0,
                       "emphysematous lung: below the -950 HU threshold (Gevenois et al., AJRCCM 1996, "
                       "validated against histology on thin-section CT)"),
    "wall_large": Range(0.0, 100.0,
                        "airway wall of the trachea and large bronchi: soft tissue and cartilage, within the "
                        "-100 to +100 HU reported for airway walls in quantitative airway CT (smaller walls "
                        "read lower through partial volume, which the renderer adds)"),
    "vessel_plain": Range(30.0, 55.0, "unenhanced blood: about +40 HU (hematocrit dependent)"),
    "vessel_contrast": Range(150.0, 400.0,
                             "contrast-enhanced pulmonary arteries: 150-400 HU (CT pulmonary angiography "
                             "aims at > 250 HU)"),
    "noise": Range(10.0, 40.0,
                   "image noise SD: about 10 HU for standard dose and soft kernels to 40 HU for low-dose "
                   "or sharp kernels (typical figures for chest CT protocols)"),
    "psf_fwhm_mm": Range(0.6, 1.2,
                         "point-spread function FWHM of standard body and lung kernels, about 0.6-1.2 mm "
                         "(typical MTF-derived figures for clinical scanners); used on all three axes"),
    "table": Range(-250.0, 100.0,
                   "patient table (carbon-fibre shell over foam core), averaged over its thickness: this "
                   "project's assumption from its look in clinical scans; no published figure"),
}
CONTRAST_SHARE = 0.25  # share of cases with contrast-enhanced vessels (assumption)


def clinical_intensities(rng: np.random.Generator) -> Intensities:
    """One case's intensities drawn from ``CLINICAL_RANGES`` (HU; blur in mm)."""

    def draw(name: str) -> float:
        r = CLINICAL_RANGES[name]
        return float(rng.uniform(r.low, r.high))

    contrast = rng.uniform() < CONTRAST_SHARE
    return Intensities(
        air=draw("air"), lumen=draw("lumen"), fat=float(rng.uniform(-110.0, -85.0)),
        muscle=float(rng.uniform(35.0, 55.0)), bone=float(rng.uniform(380.0, 520.0)), lung=draw("lung"),
        lung_texture=float(rng.uniform(15.0, 28.0)), emphysema_share=draw("emphysema_share"),
        emphysema=draw("emphysema"), wall_large=draw("wall_large"),
        vessel=draw("vessel_contrast" if contrast else "vessel_plain"), noise=draw("noise"),
        psf_fwhm_mm=draw("psf_fwhm_mm"), table=draw("table"),
    )
