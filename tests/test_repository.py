"""The repository's promises: packaging layout, one console command, README and CI in step."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    test_command = ci_lines[-1]
    assert "pytest" in test_command
    readme = (ROOT / "README.md").read_text()
    assert test_command in [line.strip() for line in readme.splitlines()], f"README.md must show the test command {test_command!r}"


def test_wheel_installs_every_module_under_nnunet_airway(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("nnunet_airway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"nnunet_airway"}
    for subpackage in ("trainers", "evaluation", "dataset_conversion", "model", "phantoms"):
        assert f"nnunet_airway/{subpackage}/__init__.py" in names


def test_installed_subpackages_map_to_repository_folders() -> None:
    import nnunet_airway.dataset_conversion
    import nnunet_airway.evaluation
    import nnunet_airway.trainers

    assert Path(nnunet_airway.trainers.__file__).parent.name == "trainers"
    assert Path(nnunet_airway.evaluation.__file__).parent.name == "evaluation"
    assert Path(nnunet_airway.dataset_conversion.__file__).parent.name == "dataset_conversion"


def test_importing_the_package_does_not_load_torch() -> None:
    code = "import sys, nnunet_airway, nnunet_airway.evaluation, nnunet_airway.io; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("argv", [["--help"], ["phantoms", "--help"]])
def test_console_command_help(argv: list[str]) -> None:
    result = subprocess.run(["nnunet-airway", *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: nnunet-airway" in result.stdout


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = subprocess.run(["nnunet-airway", "no-such-command"], capture_output=True, text=True)
    assert result.returncode == 2
