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


pytestmark = pytest.mark.usefixtures("no_nnunet_folders")


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
    model = trained_model(tmp_path / "model")
    real = sim_to_real.SimToRealSettings(Path("/data/ct.nrrd"), Path("/data/lm.nrrd"), model=model)
    scored = sim_to_real.SimToRealExperiment(tmp_path, DemoSettings(cases=2), real, "cpu")
    assert [stage.name for stage in scored.stages()] == ["import_real", "predict_real", "evaluate_real"]
    identity = scored.identity()
    assert identity["real"] == {"image": "/data/ct.nrrd", "label": "/data/lm.nrrd"}  # no scanner: nothing drawn
    assert identity["model"] == str(model) and list(identity["checkpoints"]) == ["0"]
    trained = experiment(sim_to_real, tmp_path, "lm.nrrd")
    assert [stage.name for stage in trained.stages()][:3] == ["phantoms", "convert", "plan_and_preprocess"]


def trained_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (folder / name).write_text("{}")
    (folder / "fold_0").mkdir()
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    return folder


def test_predict_real_runs_the_trained_models_or_the_phantom_models_command(sim_to_real, tmp_path: Path,
                                                                            monkeypatch) -> None:
    commands = []
    monkeypatch.setattr(sim_to_real, "run_logged", lambda command, env, log: commands.append(command))
    model = trained_model(tmp_path / "model")
    real = sim_to_real.SimToRealSettings(Path("/data/ct.nrrd"), Path("/data/lm.nrrd"), model=model)
    sim_to_real.SimToRealExperiment(tmp_path / "a", DemoSettings(cases=2), real, "cpu").predict_real()
    experiment(sim_to_real, tmp_path / "b", "lm.nrrd").predict_real()
    from_folder, from_dataset = commands
    assert from_folder[0] == "nnUNetv2_predict_from_modelfolder"
    assert from_folder[from_folder.index("-m") + 1] == str(model)
    assert from_folder[from_folder.index("-f") + 1:from_folder.index("-f") + 2] == ["0"]
    assert from_dataset[0] == "nnUNetv2_predict"
    assert from_dataset[from_dataset.index("-d") + 1] == str(DemoSettings().dataset_id)  # the settings' id
    assert from_dataset[from_dataset.index("-npp") + 1] == "0"  # no background workers on a CPU


def test_a_model_trained_again_in_place_is_another_identity(sim_to_real, tmp_path: Path) -> None:
    model = trained_model(tmp_path / "model")
    real = sim_to_real.SimToRealSettings(Path("/data/ct.nrrd"), Path("/data/lm.nrrd"), model=model)
    before = sim_to_real.SimToRealExperiment(tmp_path, DemoSettings(cases=2), real, "cpu").identity()
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"other weights")
    after = sim_to_real.SimToRealExperiment(tmp_path, DemoSettings(cases=2), real, "cpu").identity()
    assert before != after and before["model"] == after["model"]


def test_training_options_with_a_model_are_a_usage_error(sim_to_real, tmp_path: Path, capsys) -> None:
    model = trained_model(tmp_path / "model")
    with pytest.raises(SystemExit) as raised:
        sim_to_real.main(["--image", "ct.nrrd", "--label", "lm.nrrd", "--workdir", str(tmp_path / "w"),
                          "--model", str(model), "--epochs", "3", "--scanner", "ideal"])
    assert raised.value.code == 2
    assert "--epochs, --scanner: training options, but --model" in capsys.readouterr().err


def test_training_labels_are_part_of_the_identity_and_render_cycled_phantoms(sim_to_real, tmp_path: Path) -> None:
    import numpy as np

    from nnunet_airway import image_io, writing

    z, y, x = np.meshgrid(np.arange(48.0), np.arange(40.0), np.arange(40.0), indexing="ij")
    tube = ((y - 20) ** 2 + (x - 20) ** 2 <= 9) & (z > 20)
    fork = tube | (((y - 20) ** 2 + (x - 20 - (20 - z) * 0.6) ** 2 <= 4) & (z <= 21) & (z > 4)) | \
        (((y - 20) ** 2 + (x - 20 + (20 - z) * 0.6) ** 2 <= 4) & (z <= 21) & (z > 4))
    label = tmp_path / "tree.nii.gz"
    writing.write_image(label, fork.astype(np.uint8), image_io.Geometry((1.0, 1.0, 1.0)))
    real = sim_to_real.SimToRealSettings(Path("/data/ct.nrrd"), Path("/data/lm.nrrd"), train_labels=(label,),
                                         phantom_spacing=(2.0, 2.0, 2.0))
    work = tmp_path / "work"
    chosen = sim_to_real.SimToRealExperiment(work, DemoSettings(cases=2, test_cases=1), real, "cpu")
    plain = experiment(sim_to_real, work, "lm.nrrd")
    assert chosen.identity()["real"]["train_labels"] == [str(label)] and "train_labels" not in plain.identity()["real"]
    made = chosen.make_phantoms()
    assert made["cases"] == ["phantom_000", "phantom_001", "phantom_002"]
    for case in made["cases"]:
        written, geometry = image_io.read_image(work / "phantoms" / "labels" / f"{case}.nii.gz")
        assert geometry.spacing == (2.0, 2.0, 2.0) and written.shape == (24, 20, 20)
    images = [image_io.read_image(work / "phantoms" / "images" / f"{c}.nii.gz")[0] for c in made["cases"]]
    assert not np.array_equal(images[0], images[1])  # one tree, a new draw per case


def test_the_real_ct_label_cannot_be_a_training_label(sim_to_real, tmp_path: Path) -> None:
    label = tmp_path / "lm.nrrd"
    with pytest.raises(SystemExit):
        sim_to_real.main(["--image", str(tmp_path / "ct.nrrd"), "--label", str(label), "--workdir",
                          str(tmp_path / "w"), "--train-labels", str(label)])
    with pytest.raises(SystemExit):
        sim_to_real.main(["--image", str(tmp_path / "ct.nrrd"), "--label", str(label), "--workdir",
                          str(tmp_path / "w"), "--phantom-spacing", "1", "1", "1"])
    assert not (tmp_path / "w").exists()


def test_phantom_spacing_takes_three_millimetres_or_the_real_ct_s_own(sim_to_real, tmp_path: Path) -> None:
    import numpy as np

    from nnunet_airway import image_io, writing

    ct = tmp_path / "ct.nii.gz"
    writing.write_image(ct, np.zeros((4, 5, 6), np.int16), image_io.Geometry((0.7, 0.8, 1.25)))
    assert sim_to_real.phantom_spacing(None, ct) is None
    assert sim_to_real.phantom_spacing(["real"], ct) == pytest.approx((0.7, 0.8, 1.25))
    assert sim_to_real.phantom_spacing(["1", "1.5", "2"], ct) == (1.0, 1.5, 2.0)
    for bad in (["1", "1"], ["real", "1", "1"], ["a", "1", "1"], ["1", "0", "1"], ["1", "nan", "1"]):
        with pytest.raises(ValueError, match="--phantom-spacing|give X Y Z|positive"):
            sim_to_real.phantom_spacing(bad, ct)


def test_a_folder_of_training_labels_holding_the_real_label_is_refused(sim_to_real, tmp_path: Path, capsys) -> None:
    import numpy as np

    from nnunet_airway import image_io, writing

    folder = tmp_path / "labels"
    folder.mkdir()
    for name in ("other.nii.gz", "lm.nii.gz"):
        writing.write_image(folder / name, np.zeros((4, 4, 4), np.uint8), image_io.Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(SystemExit):
        sim_to_real.main(["--image", str(tmp_path / "ct.nrrd"), "--label", str(folder / "lm.nii.gz"), "--workdir",
                          str(tmp_path / "w"), "--train-labels", str(folder)])
    assert "is the real CT's own label" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
