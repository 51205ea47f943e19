"""benchmarks/sim_to_real.py: a work dir remembers the real CT, its label and the scanner model (no nnU-Net run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from nnunet_airway.demo.pipeline import DemoSettings
from nnunet_airway.demo.stages import Ledger
from nnunet_airway.errors import DataError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sim_to_real.py"


@pytest.fixture(scope="module")
def sim_to_real():
    spec = importlib.util.spec_from_file_location("sim_to_real_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(autouse=True)
def no_nnunet_folders(monkeypatch) -> None:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)


def experiment(sim_to_real, workdir: Path, label: str, scanner: str = "clinical"):
    real = sim_to_real.SimToRealSettings(Path("/data/ct.nrrd"), Path(f"/data/{label}"), scanner)
    return sim_to_real.SimToRealExperiment(workdir, DemoSettings(cases=2), real, "cpu")


def test_another_label_or_scanner_in_the_same_work_dir_is_refused(sim_to_real, tmp_path: Path) -> None:
    first = experiment(sim_to_real, tmp_path, "lm.nrrd")
    ledger = Ledger(tmp_path / "state.json", {**first.identity(), **first.folders})
    ledger.mark_done("import_real", {"shape_zyx": [64, 64, 64]}, 1.0)
    same = experiment(sim_to_real, tmp_path, "lm.nrrd")
    assert Ledger(tmp_path / "state.json", {**same.identity(), **same.folders}).is_done("import_real")
    for other in (experiment(sim_to_real, tmp_path, "other.nrrd"),
                  experiment(sim_to_real, tmp_path, "lm.nrrd", scanner="ideal")):
        with pytest.raises(DataError, match="other settings"):
            Ledger(tmp_path / "state.json", {**other.identity(), **other.folders})


def test_a_model_folder_needs_nnunet_files_and_a_finished_fold(sim_to_real, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not an nnU-Net model folder"):
        sim_to_real.trained_folds(tmp_path)
    (tmp_path / "plans.json").write_text("{}")
    (tmp_path / "dataset.json").write_text("{}")
    (tmp_path / "fold_3").mkdir()
    with pytest.raises(DataError, match="no fold_\\*/checkpoint_final.pth"):
        sim_to_real.trained_folds(tmp_path)
    for fold in ("0", "3"):
        (tmp_path / f"fold_{fold}").mkdir(exist_ok=True)
        (tmp_path / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
    assert sim_to_real.trained_folds(tmp_path) == ["0", "3"]


def test_with_a_model_only_the_real_stages_run_and_the_model_is_the_identity(sim_to_real, tmp_path: Path) -> None:
    real = sim_to_real.SimToRealSettings(Path("/data/ct.nrrd"), Path("/data/lm.nrrd"), model=Path("/models/m"))
    scored = sim_to_real.SimToRealExperiment(tmp_path, DemoSettings(cases=2), real, "cpu")
    assert [stage.name for stage in scored.stages()] == ["import_real", "predict_real", "evaluate_real"]
    assert scored.identity() == {"real": {"image": "/data/ct.nrrd", "label": "/data/lm.nrrd"}, "model": "/models/m"}
    trained = experiment(sim_to_real, tmp_path, "lm.nrrd")
    assert [stage.name for stage in trained.stages()][:3] == ["phantoms", "convert", "plan_and_preprocess"]
