"""The repository's promises: packaging layout, one console command, README and CI in step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


README_TEST_COMMAND = "python -m pytest -q"


def test_ci_lints_then_runs_the_readme_test_command_quick_tier_first() -> None:
    """The README's command runs everything; CI runs the same command as two complementary tiers (``-m "not
    slow"`` then ``-m "slow"``), after ruff, so that nothing is left out and a lint or quick failure is early."""
    readme = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert README_TEST_COMMAND in readme, f"README.md must show the test command {README_TEST_COMMAND!r}"
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
          if line.strip() and not line.strip().startswith("#")]
    runs = [line for line in ci if "pytest" in line]
    assert runs == [f'{README_TEST_COMMAND} -m "not slow"', f'{README_TEST_COMMAND} -m "slow"']
    assert ci[-2:] == runs
    assert ci.index("ruff check .") < ci.index(runs[0])


def test_ruff_is_installed_by_the_test_extra() -> None:
    setup = (ROOT / "setup.cfg").read_text()
    extra = setup[setup.index("test ="):].split("\n[")[0]
    assert "ruff" in extra and "pytest" in extra


@pytest.mark.slow
def test_wheel_installs_every_module_under_nnunet_airway(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"nnunet_airway"}
    for subpackage in ("trainers", "trainers/shims", "evaluation", "dataset_conversion", "model", "phantoms", "demo"):
        assert f"nnunet_airway/{subpackage}/__init__.py" in names
    # the subpackages are packaged as files, with no top-level copies beside them
    assert "nnunet_airway/evaluation/runner.py" in names and "evaluation/runner.py" not in names


def _copy_without_symlinks(destination: Path) -> Path:
    """The checkout as Git writes it where symbolic links are off (core.symlinks=false: Windows without
    developer mode, a ZIP download): every link becomes a small text file holding its target."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {name for name in names if name in {".git", "build", "dist", "__pycache__", ".pytest_cache"}
                or name.endswith(".egg-info")}

    copy = Path(shutil.copytree(ROOT, destination, symlinks=True, ignore=ignore))
    for path in list(copy.rglob("*")):
        if path.is_symlink():
            target = os.readlink(path)
            path.unlink()
            path.write_text(target)
    assert not any(path.is_symlink() for path in copy.rglob("*"))
    return copy


@pytest.mark.slow
def test_a_copy_without_symbolic_links_builds_a_complete_wheel(tmp_path: Path, wheel: Path) -> None:
    copy = _copy_without_symlinks(tmp_path / "checkout")
    assert (copy / "trainers").is_file()  # the top-level link, now a text file
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(copy), "--no-deps", "-q", "-w", str(out)],
                   check=True, capture_output=True)
    (built,) = out.glob("nnunet_airway-*.whl")
    assert sorted(zipfile.ZipFile(built).namelist()) == sorted(zipfile.ZipFile(wheel).namelist())
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(built)],
                   check=True, capture_output=True)
    code = "import nnunet_airway.trainers.shims, nnunet_airway.evaluation.runner; print(nnunet_airway.evaluation.runner.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"})
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(target)


@pytest.mark.slow
def test_non_editable_install_imports_the_same_modules_from_the_checkout_and_elsewhere(wheel: Path, tmp_path: Path) -> None:
    """The layout's promise: after ``pip install .`` (not editable), importing from the repository root (where
    the checkout's nnunet_airway/ comes first on sys.path) and from any other folder both work."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # outside the checkout and without PYTHONPATH, so pip cannot take the checkout for an installed copy
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--ignore-installed",
                    "-q", str(wheel)], check=True, capture_output=True, cwd=tmp_path, env=clean)
    # the dependencies come from this interpreter's site-packages, added without its .pth files, so this
    # project's own editable install cannot answer for the wheel
    dependencies = next(p for p in sys.path if p.endswith("site-packages"))
    code = ("import nnunet_airway.trainers, nnunet_airway.evaluation, nnunet_airway.dataset_conversion, "
            "nnunet_airway.evaluation.runner, nnunet_airway.dataset_conversion.raw_writer; "
            "print(nnunet_airway.evaluation.runner.__file__)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd, expected_root in ((ROOT, ROOT / "nnunet_airway"), (elsewhere, venv)):
        result = subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True,
                                env={"PYTHONPATH": dependencies, "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        assert Path(result.stdout.strip()).is_relative_to(expected_root), result.stdout


def test_subpackages_import_from_real_folders_inside_the_package() -> None:
    import nnunet_airway.dataset_conversion
    import nnunet_airway.evaluation
    import nnunet_airway.trainers

    for module, folder in ((nnunet_airway.trainers, "trainers"), (nnunet_airway.evaluation, "evaluation"),
                           (nnunet_airway.dataset_conversion, "dataset_conversion")):
        path = Path(module.__file__)
        assert path.parent == ROOT / "nnunet_airway" / folder and path.resolve() == path  # no link on the way


def test_importing_the_package_does_not_load_torch() -> None:
    code = "import sys, nnunet_airway, nnunet_airway.evaluation, nnunet_airway.image_io; print('torch' in sys.modules)"
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
