"""write_phantoms files and the ``nnunet-airway phantoms`` command, end to end on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.cli import main
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import read_image
from nnunet_airway.phantoms import case_seed, generate_phantom, write_phantoms

TINY = (56, 80, 80)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console command, in a subprocess."""
    return subprocess.run(["nnunet-airway", "phantoms", *args], capture_output=True, text=True, timeout=300)


def exit_code_of(argv: list[str]) -> int:
    """The command's dispatcher in this process (argparse errors raise SystemExit)."""
    try:
        return main(["phantoms", *argv])
    except SystemExit as stop:
        return int(stop.code)


@pytest.mark.slow
def test_written_files_carry_the_sidecar_geometry_and_the_arrays(tmp_path: Path) -> None:
    cases = write_phantoms(tmp_path / "out", 2, seed=4, shape_zyx=TINY)
    assert cases == ["phantom_000", "phantom_001"]
    for index, case in enumerate(cases):
        truth = json.loads((tmp_path / "out" / "truth" / f"{case}.json").read_text())
        assert truth["case"] == case and truth["seed"] == case_seed(4, index)
        assert truth["base_seed"] == 4 and truth["index"] == index
        ct, ct_geometry = read_image(tmp_path / "out" / "images" / f"{case}.nii.gz")
        label, label_geometry = read_image(tmp_path / "out" / "labels" / f"{case}.nii.gz")
        assert ct.dtype == np.int16 and label.dtype == np.uint8
        assert list(ct.shape) == truth["shape_zyx"] == list(label.shape)
        for geometry in (ct_geometry, label_geometry):
            assert np.allclose(geometry.spacing, truth["spacing_xyz"], rtol=0, atol=1e-6)
            assert np.allclose(geometry.origin, truth["origin_xyz"], rtol=0, atol=1e-4)
            assert np.allclose(geometry.direction, truth["direction"], atol=1e-6)
        assert any(abs(o) > 1.0 for o in truth["origin_xyz"])  # a real, non-zero origin
        # the files hold exactly what generate_phantom makes for that case's seed
        phantom = generate_phantom(truth["seed"], TINY)
        assert np.array_equal(ct, phantom.ct) and np.array_equal(label, phantom.label)


def test_existing_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("mine")
    before = keep.stat().st_mtime_ns
    with pytest.raises(DataError, match="--overwrite"):
        write_phantoms(out, 1, shape_zyx=TINY)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert keep.read_text() == "mine" and keep.stat().st_mtime_ns == before

    result = run_cli("--out", str(out), "-n", "1", "--shape", *map(str, TINY))
    assert result.returncode == 1
    assert str(out) in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_writes_into_a_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    write_phantoms(out, 1, shape_zyx=TINY, overwrite=True)
    assert (out / "images" / "phantom_000.nii.gz").exists() and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("shape_args, message", [
    (["64", "96"], "expected 3 arguments"),
    (["64", "0", "96"], ">= 1"),
    (["64", "-5", "96"], ">= 1"),
    (["64", "x", "96"], "whole number"),
    (["8", "96", "96"], "too small"),
    (["20", "20", "20"], "too coarse"),
])
def test_bad_shape_is_a_usage_error(tmp_path: Path, shape_args: list[str], message: str, capsys) -> None:
    assert exit_code_of(["--out", str(tmp_path / "out"), "--shape", *shape_args]) == 2
    stderr = capsys.readouterr().err
    assert "usage: nnunet-airway phantoms" in stderr and message in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spacing_args", [["1", "1"], ["1", "0", "1"], ["1", "nan", "1"]])
def test_bad_spacing_is_a_usage_error(tmp_path: Path, spacing_args: list[str], capsys) -> None:
    assert exit_code_of(["--out", str(tmp_path / "out"), "--spacing", *spacing_args]) == 2
    assert "--spacing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_command_writes_cases_sidecars_and_previews(tmp_path: Path) -> None:
    out = tmp_path / "tmp"
    result = run_cli("--out", str(out), "-n", "2", "--preview", "--shape", "64", "96", "96", "--seed", "3")
    assert result.returncode == 0, result.stderr
    for case in ("phantom_000", "phantom_001"):
        for path in (f"images/{case}.nii.gz", f"labels/{case}.nii.gz", f"truth/{case}.json", f"previews/{case}.png"):
            assert (out / path).stat().st_size > 0, path
        assert (out / "previews" / f"{case}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        truth = json.loads((out / "truth" / f"{case}.json").read_text())
        assert truth["shape_zyx"] == [64, 96, 96] and truth["n_labelled_branches"] >= 7
    assert sorted(p.name for p in out.iterdir()) == ["images", "labels", "previews", "truth"]
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_importing_the_phantoms_loads_neither_torch_nor_matplotlib() -> None:
    code = "import sys, nnunet_airway.phantoms; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["False", "False"]


# --- refused before allocating, verified when written (issue 14) ---

def test_a_grid_larger_than_the_machine_memory_is_refused_before_allocating(tmp_path: Path, capsys) -> None:
    assert exit_code_of(["--out", str(tmp_path / "out"), "--shape", "5000", "5000", "5000"]) == 2
    err = capsys.readouterr().err
    assert "needs about 4656.6 GiB of memory, more than this machine's" in err and "smaller shape" in err
    assert not (tmp_path / "out").exists()


def test_an_absurd_spacing_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert exit_code_of(["--out", str(tmp_path / "out"), "--spacing", "1e-300", "1", "1"]) == 2
    assert "between 0.01 and 100 mm" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_short_write_under_ulimit_f_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    import os
    import resource
    import signal

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "nnunet_airway", "phantoms", "--out", str(out), "--shape",
                           *map(str, TINY)], capture_output=True, text=True, preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and last.startswith("nnunet-airway phantoms: error: ")
    assert "ulimit -f" in last
    assert not out.exists()  # nothing was kept, so no empty --out either
