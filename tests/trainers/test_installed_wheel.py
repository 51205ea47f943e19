"""`pip install .` (a wheel, not the editable checkout): the shim folder ships inside the package and
`nnunet-airway trainer-path` points into the installed copy."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow



def test_wheel_ships_the_shim_folder_and_trainer_path_points_into_the_installed_package(tmp_path: Path,
                                                                                        wheel: Path) -> None:
    assert "nnunet_airway/trainers/shims/nnunet_airway_trainers.py" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # the installed copy first on the path, ahead of the editable checkout (run from tmp_path, not the repo)
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    path = subprocess.run([sys.executable, "-m", "nnunet_airway", "trainer-path"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert Path(path) == target / "nnunet_airway" / "trainers" / "shims"
    # nnU-Net imports the shim from there; the shim imports the installed package (same mechanism as the
    # editable install, which the end-to-end tests run through nnUNetv2_train and nnUNetv2_predict)
    shim = (Path(path) / "nnunet_airway_trainers.py").read_text()
    assert "from nnunet_airway.trainers.variants import" in shim
