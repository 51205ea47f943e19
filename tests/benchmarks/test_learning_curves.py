"""benchmarks/learning_curves.py: its options, its stages and its report from hand-built results (the kept
checkpoints themselves are trained and predicted in tests/nnunet_airway/demo)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "learning_curves.py"


@pytest.fixture(scope="module")
def curves():
    spec = importlib.util.spec_from_file_location("learning_curves_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def case(bd: float, generations: dict[str, float]) -> dict:
    return {"BD": bd, "TD": bd, "TPR": bd, "FPR": 0.01, "DSC": bd, "BD_by_absolute_generation": generations,
            "BD_by_generation": {}}


def collected() -> dict[int, dict[str, dict]]:
    """Two seeds, two cases each; Baseline 10 BD above nnU-Net default everywhere; seed 1 not scored at 300."""
    found = {}
    for seed in (0, 1):
        rows = {}
        for label, offset in (("nnU-Net default", 0.0), ("Baseline", 10.0)):
            rows[label] = {n: {f"seed{seed}/a": case(20.0 + offset + n / 10, {"6": 100.0, "7": 50.0, "9": 20.0,
                                                                             "10": 0.0}),
                               f"seed{seed}/b": case(40.0 + offset + n / 10, {"8": 25.0})}
                           for n in (100, 300) if not (seed == 1 and n == 300)}
            rows[label]["train_seconds"] = 60.0
        found[seed] = rows
    return found


def test_points_off_the_epoch_grid_are_refused(curves) -> None:
    with pytest.raises(SystemExit, match=r"--points \[120\] are not multiples of --iterations-per-epoch 50"):
        curves.parse_arguments(["--points", "100", "120"])
    args = curves.parse_arguments(["--points", "1000", "100", "300", "100"])
    assert args.points == [100, 300, 1000]
    assert args.rows == ["nnunet", "baseline", "fr", "frad"]
    assert args.phantom_options == {"crop": "lobe", "spacing_xyz": [0.7, 0.7, 0.7]}


def test_each_row_trains_once_and_is_scored_from_every_kept_checkpoint(curves, tmp_path: Path) -> None:
    args = curves.parse_arguments(["--workdir", str(tmp_path), "--rows", "baseline", "--points", "100", "300"])
    chosen = curves.experiment(args, seed=1, device="cpu")
    trainer = "nnUNetTrainerAirwayBaseline_Budget"
    assert [stage.name for stage in chosen.stages()] == [
        "phantoms", "convert", "plan_and_preprocess", f"train {trainer}",
        f"predict {trainer} @100", f"evaluate {trainer} @100", f"predict {trainer} @300", f"evaluate {trainer} @300"]
    assert chosen.budget["NNUNET_AIRWAY_EPOCHS"] == "6"
    assert chosen.budget["NNUNET_AIRWAY_KEEP_CHECKPOINTS"] == "100,300"
    assert chosen.budget["NNUNET_AIRWAY_ITERATIONS_PER_EPOCH"] == "50"
    assert chosen.point_prediction_dir(trainer, 300) == tmp_path / "seed_1" / "predictions" / trainer / "iter_300"


def test_deep_generations_are_single_up_to_the_last_which_pools_the_deeper(curves) -> None:
    metrics = curves.point_metrics(case(30.0, {"6": 100.0, "7": 50.0, "9": 20.0, "10": 0.0}))
    assert metrics["BD gen 7"] == 50.0
    assert metrics["BD gen 8"] is None
    assert metrics["BD gen 9+"] == 10.0  # mean of generation 9 (20) and 10 (0)


def test_a_point_lists_only_the_seeds_scored_for_every_row(curves) -> None:
    labels = ["nnU-Net default", "Baseline"]
    summary = curves.summarise(collected(), labels, [100, 300, 1000], resamples=500, seed=0)
    assert list(summary) == ["100", "300"]
    assert summary["100"]["seeds"] == [0, 1] and summary["300"]["seeds"] == [0]
    assert summary["300"]["table"]["Baseline"]["BD"] == (70.0, 10.0)  # 20+10+30 and 40+10+30
    assert summary["100"]["BD_by_generation"]["Baseline"] == {6: 100.0, 7: 50.0, 8: 25.0, 9: 20.0, 10: 0.0}
    differences = {(d["row"], d["reference"], d["metric"]): d for d in summary["100"]["paired_differences"]}
    assert differences[("Baseline", "nnU-Net default", "BD")]["low"] == 10.0
    assert differences[("Baseline", "nnU-Net default", "BD")]["cases"] == 4
    assert differences[("Baseline", "nnU-Net default", "BD gen 7")]["mean"] == 0.0

    gaps = curves.missing(collected(), labels, [100, 300, 1000])
    assert "seed 1: Baseline @300" in gaps and "seed 0: Baseline @1000" in gaps and len(gaps) == 6
    text = curves.markdown(summary, labels, "header", gaps)
    assert "**Not scored yet** (6)" in text
    assert "## After 300 iterations (2 held-out crops, seeds 0)" in text
    assert "| Baseline | 70.0 ± 10.0 |" in text
    assert "| Baseline | +10.0 [+10.0, +10.0]* |" in text
    assert curves.figure(summary, labels, "title")[:8] == b"\x89PNG\r\n\x1a\n"
