"""`nnunet-airway trainer-path`: the folder nnU-Net searches, what it holds, and the nnunetv2 version check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_airway.errors import DataError
from nnunet_airway.trainers.compat import parse_major_minor, require_nnunetv2
from nnunet_airway.trainers.shims import shim_folder


def trainer_path(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["nnunet-airway", "trainer-path", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_prints_the_shim_folder_which_holds_only_shim_modules() -> None:
    result = trainer_path()
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert folder == shim_folder() and folder.is_absolute()
    modules = sorted(p.name for p in folder.glob("*.py"))
    assert modules == ["__init__.py", "nnunet_airway_budget_trainers.py", "nnunet_airway_trainers.py"]
    for shim in modules[1:]:
        shim_source = (folder / shim).read_text()
        assert "class " not in shim_source and "from nnunet_airway.trainers." in shim_source


def test_append_keeps_other_trainer_folders_once(tmp_path: Path) -> None:
    other = str(tmp_path)
    result = trainer_path("--append", env={"nnUNet_extTrainer": os.pathsep.join([other, str(shim_folder())])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == os.pathsep.join([other, str(shim_folder())])


@pytest.mark.parametrize(("version", "expected"), [("2.8.1", (2, 8)), ("2.10.0.dev3", (2, 10)), ("3.0", (3, 0))])
def test_parse_major_minor(version: str, expected: tuple[int, int]) -> None:
    assert parse_major_minor(version) == expected


@pytest.mark.parametrize("version", ["2.8.0", "2.8.1", "2.9.0"])
def test_supported_nnunetv2_versions_pass(version: str) -> None:
    assert require_nnunetv2(version) == version


@pytest.mark.parametrize("version", ["2.7.4", "2.5.1", "1.7.1"])
def test_old_nnunetv2_gets_an_error_saying_what_to_install(version: str) -> None:
    with pytest.raises(DataError, match=r"nnunetv2 .* is installed .*>= 2\.8.*pip install 'nnunetv2>=2\.8"):
        require_nnunetv2(version)


def test_trainer_path_with_old_nnunetv2_exits_1_with_one_line(tmp_path: Path) -> None:
    # a distribution record that shadows the installed nnunetv2's version for importlib.metadata
    dist_info = tmp_path / "nnunetv2-2.7.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: nnunetv2\nVersion: 2.7.0\n")
    pythonpath = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-m", "nnunet_airway", "trainer-path"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": pythonpath})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "nnunetv2 2.7.0 is installed" in result.stderr


def test_without_append_another_plugin_folder_gets_a_hint(tmp_path: Path) -> None:
    result = trainer_path(env={"nnUNet_extTrainer": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(shim_folder())  # what `export ...="$(...)"` captures is unchanged
    assert str(tmp_path) in result.stderr and "--append" in result.stderr
