"""`pip install .` (a wheel, not the editable checkout): the shim folder ships and nnU-Net finds the trainers
through it, with the classes imported from the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOOKUP = """
import os, pickle
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
cls = recursive_find_trainer_class_by_name("nnUNetTrainerAirwayFRAD")
assert pickle.loads(pickle.dumps(cls)) is cls
print(cls.__module__, os.path.dirname(__import__(cls.__module__, fromlist=["_"]).__file__))
"""


def test_wheel_ships_the_shim_folder_and_nnunet_finds_the_trainers_there(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("nnunet_airway-*.whl")
    assert "nnunet_airway/trainers/shims/nnunet_airway_trainers.py" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    # the installed copy first on the path, ahead of the editable checkout (run from tmp_path, not the repo)
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    path = subprocess.run([sys.executable, "-m", "nnunet_airway", "trainer-path"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert Path(path) == target / "nnunet_airway" / "trainers" / "shims"
    found = subprocess.run([sys.executable, "-c", LOOKUP], env={**env, "nnUNet_extTrainer": path}, cwd=tmp_path,
                           capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    module, folder = found.stdout.strip().splitlines()[-1].split()
    assert module == "nnunet_airway.trainers.variants"
    assert Path(folder) == target / "nnunet_airway" / "trainers"
