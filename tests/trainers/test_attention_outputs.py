"""``nnunet-airway attention`` never writes over its inputs: the model, the image, the image's folder. These
checks run before any model is loaded, so a folder laid out like a model is enough here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.cli import main as cli_main
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image


@pytest.fixture()
def model_and_image(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "Dataset1_X" / "nnUNetTrainerAirwayFRAD__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"the user's weights")
    images = tmp_path / "imagesTs"
    image = write_image(images / "case_0000.nii.gz", np.zeros((4, 5, 6), np.int16), Geometry((1.0, 1.0, 1.0)))
    return model, image


@pytest.mark.parametrize("case", ["checkpoint", "image", "maps_in_model", "maps_in_images"])
def test_outputs_over_the_model_or_the_image_are_refused(model_and_image, tmp_path: Path, capsys, case: str) -> None:
    model, image = model_and_image
    out, maps = tmp_path / "figure.png", None
    if case == "checkpoint":
        out = model / "fold_0" / "checkpoint_final.pth"
    elif case == "image":
        out = image
    elif case == "maps_in_model":
        maps = model / "maps"
    else:
        maps = image.parent / "maps"
    before = {p: p.read_bytes() for p in (model / "fold_0" / "checkpoint_final.pth", image)}
    argv = ["attention", "-m", str(model), "-i", str(image), "-o", str(out), "--overwrite", "--device", "cpu"]
    assert cli_main(argv + (["--save-maps", str(maps)] if maps else [])) == 1
    err = capsys.readouterr().err
    assert "would write" in err and ("model folder" in err or "image" in err)
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "figure.png").exists() and (maps is None or not maps.exists())
