"""benchmarks/thin_branches.py: its options and its report from hand-built results (no training here; the
end-to-end smoke run at tiny settings is a command in docs/table2-protocol.md, about 5 minutes on 2 cores)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "thin_branches.py"


@pytest.fixture(scope="module")
def thin():
    spec = importlib.util.spec_from_file_location("thin_branches_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def case(bd: float, dsc: float, generations: dict[str, float]) -> dict:
    return {"BD": bd, "TD": bd, "TPR": dsc, "FPR": 0.01, "DSC": dsc, "BD_by_generation": generations}


def results(thin) -> tuple[dict, list]:
    rows = [thin.ROWS["nnunet"], thin.ROWS["baseline"], thin.ROWS["ad"]]
    components = [{"epoch": 0, "segmentation": 0.5, "distillation": 2e-3, "attention_entropy": [0.9, 0.8]},
                  {"epoch": 1, "segmentation": 0.3, "distillation": 1e-3, "attention_entropy": [0.95, 0.85]}]
    per_seed = {
        seed: {
            "nnU-Net default": {"cases": {f"seed{seed}/a": case(60.0, 80.0, {"1": 100.0, "2": 50.0}),
                                          f"seed{seed}/b": case(40.0, 70.0, {"1": 100.0})},
                                "loss_components": []},
            "Baseline": {"cases": {f"seed{seed}/a": case(70.0, 80.0, {"1": 100.0, "2": 60.0}),
                                   f"seed{seed}/b": case(50.0, 70.0, {"1": 100.0, "6": 0.0})},
                         "loss_components": [{"epoch": 0, "segmentation": 0.4}]},
            "Baseline + AD": {"cases": {f"seed{seed}/a": case(70.0 + seed, 79.0, {"1": 100.0, "2": 40.0}),
                                        f"seed{seed}/b": case(50.0, 69.0, {"1": 100.0})},
                              "loss_components": components},
        }
        for seed in (0, 1)
    }
    return per_seed, rows


def test_report_has_table2_generations_intervals_and_distillation(thin) -> None:
    per_seed, rows = results(thin)
    summary = thin.summarise(per_seed, rows, resamples=2000, seed=0)
    assert summary["table"]["Baseline"]["BD"] == (60.0, 10.0)
    assert summary["BD_by_generation"]["Baseline"] == {1: 100.0, 2: 60.0, 6: 0.0}
    differences = {(d["row"], d["reference"], d["metric"]): d for d in summary["paired_differences"]}
    # Baseline - nnU-Net default: +10 BD on every case
    assert differences[("Baseline", "nnU-Net default", "BD")]["low"] == 10.0
    assert differences[("Baseline", "nnU-Net default", "BD")]["excludes_zero"] is True
    # AD - Baseline in DSC: -1 on every case
    assert differences[("Baseline + AD", "Baseline", "DSC")]["mean"] == -1.0
    # AD - Baseline in BD: 0, 0, +1, 0 over the four cases: the interval includes 0
    assert differences[("Baseline + AD", "Baseline", "BD")]["excludes_zero"] is False
    assert ("nnU-Net default", "Baseline", "BD") in differences
    ad = summary["distillation"]["Baseline + AD"]
    assert ad["per_epoch"][1]["weighted_distillation"] == pytest.approx(0.1 * 1e-3)
    assert "distillation" not in summary["distillation"]["Baseline"]["per_epoch"][0]

    text = thin.markdown(summary, rows, "header", n_seeds=2)
    assert "| Baseline | 60.0 ± 10.0 |" in text
    assert "| Method | gen 1 | gen 2 | gen 6 |" in text
    assert "Paired per-case difference against Baseline " in text
    assert "Paired per-case difference against nnU-Net default " in text
    assert "Baseline vs nnU-Net default: BD +10.0" in text
    assert "nnU-Net default vs Baseline: BD" not in text  # the mirror of a listed difference is not repeated
    assert "interval over 4 cases" in text
    assert "| Baseline + AD | 0.1 | 0.500 -> 0.300 | 0.002 -> 0.001 |" in text
    assert "0.900->0.950 / 0.800->0.850" in text
    assert thin.figure(summary, rows, "title")[:8] == b"\x89PNG\r\n\x1a\n"


def test_absolute_generations_are_preferred_where_the_evaluator_gives_them(thin) -> None:
    cases = {"a": {"BD_by_generation": {"1": 50.0}, "BD_by_absolute_generation": {"4": 50.0}}}
    assert thin.generation_cases(cases) == {"a": {"BD_by_generation": {"4": 50.0}}}


def test_summaries_with_and_without_absolute_generations_are_not_mixed(thin) -> None:
    cases = {"a": {"BD_by_generation": {"1": 50.0}, "BD_by_absolute_generation": {"4": 50.0}},
             "b": {"BD_by_generation": {"1": 100.0}}}
    with pytest.raises(SystemExit, match=r"1 case\(s\) lack BD_by_absolute_generation \(b\)"):
        thin.generation_cases(cases)


def test_options_fill_from_the_preset_and_pass_phantom_options_through(thin) -> None:
    args = thin.parse_arguments(["--spacing", "0.7", "0.7", "0.8", "--epochs", "3"])
    assert args.seeds == [0, 1, 2] and args.rows == list(thin.ROWS) and args.ad_variants == []
    assert (args.epochs, args.patch) == (3, thin.PRESETS["cpu"]["patch"])
    assert args.phantom_options == {"spacing_xyz": [0.7, 0.7, 0.8]}
    assert thin.parse_arguments(["--preset", "cuda"]).features == thin.PRESETS["cuda"]["features"]
    labels = [row.label for row in thin.selected_rows(thin.parse_arguments(["--ad-variants", "ad-mean"]))]
    assert labels[:7] == ["nnU-Net default", "Baseline", "Baseline + cSE", "Baseline + PE", "Baseline + FR",
                          "Baseline + AD", "Baseline + FR + AD"]
    assert labels[7:] == ["Baseline + AD (mean)"]
    with pytest.raises(SystemExit, match="no option no_such_option"):
        thin.parse_arguments(["--phantom-option", "no_such_option=1"])


def test_stage_time_counts_the_data_set_and_the_chosen_rows_only(thin) -> None:
    stages = {"phantoms": {"seconds": 40.0}, "convert": {"seconds": 2.0}, "plan_and_preprocess": {"seconds": 70.0},
              "train A": {"seconds": 200.0}, "predict A": {"seconds": 60.0}, "evaluate A": {"seconds": 4.0},
              "train B": {"seconds": 1000.0}, "attention A": {"seconds": 25.0}}
    assert thin.stage_seconds(stages, ["train A", "predict A", "evaluate A"]) == 376.0
    assert thin.stage_seconds(stages, ["train A", "predict A", "evaluate A", "train B"]) == 1376.0
    assert thin.stage_seconds(stages, []) == 112.0


@pytest.mark.parametrize("argv", [["--iterations-per-epoch", "0"], ["--epochs", "0"], ["--train-cases", "1"]])
def test_counts_too_small_to_train_are_usage_errors(thin, argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        thin.parse_arguments(argv)
    assert raised.value.code == 2 and "expected a number >= " in capsys.readouterr().err


def test_ad_variants_are_also_taken_against_the_papers_ad(thin) -> None:
    per_seed, rows = results(thin)
    variant = thin.AD_VARIANTS["ad-w0.01"]
    for seed_rows in per_seed.values():  # +5 BD over the paper's AD on every case
        seed_rows[variant.label] = {"cases": {name: {**c, "BD": c["BD"] + 5.0} for name, c in
                                              seed_rows["Baseline + AD"]["cases"].items()}, "loss_components": []}
    summary = thin.summarise(per_seed, rows + [variant], resamples=2000, seed=0)
    differences = {(d["row"], d["reference"], d["metric"]): d for d in summary["paired_differences"]}
    assert differences[(variant.label, "Baseline + AD", "BD")]["low"] == 5.0
    assert not any(d["reference"] == "Baseline + AD" and d["row"] in ("Baseline", "nnU-Net default")
                   for d in summary["paired_differences"])
    text = thin.markdown(summary, rows + [variant], "header", n_seeds=2)
    assert "Paired per-case difference against Baseline + AD " in text
    assert "Baseline + AD (weight 0.01) vs Baseline + AD: BD +5.0" in text
    assert "Baseline + AD vs Baseline: DSC -1.0" in text  # not taken for the mirror of a listed pair


def test_without_variants_there_is_no_table_against_the_papers_ad(thin) -> None:
    per_seed, rows = results(thin)
    summary = thin.summarise(per_seed, rows, resamples=200, seed=0)
    assert not any(d["reference"] == "Baseline + AD" for d in summary["paired_differences"])
    assert "against Baseline + AD " not in thin.markdown(summary, rows, "header", n_seeds=2)


def test_rows_come_from_the_trainer_declarations(thin) -> None:
    from nnunet_airway.trainers.declarations import AD_VARIANT, TABLE2, declared

    assert list(thin.ROWS) == ["nnunet", *(d.key for d in declared(TABLE2))]
    assert thin.ROWS["frad"] == ("Baseline + FR + AD", "nnUNetTrainerAirwayFRAD_Budget", 0.1, "plain")
    assert {key: row.trainer for key, row in thin.AD_VARIANTS.items()} == {
        d.key: d.name + "_Budget" for d in declared(AD_VARIANT)}


def test_skeleton_loss_and_residual_encoder_rows_are_there_on_request(thin) -> None:
    args = thin.parse_arguments(["--rows", "baseline", "frad", "baseline-skel", "frad-skel", "baseline-cldice",
                                 "frad-cldice", "nnunet-resenc", "frad-resenc"])
    rows = thin.selected_rows(args)
    assert [r.trainer for r in rows[2:6]] == ["nnUNetTrainerAirwayBaseline_SkelRecall_Budget",
                                              "nnUNetTrainerAirwayFRAD_SkelRecall_Budget",
                                              "nnUNetTrainerAirwayBaseline_clDice_Budget",
                                              "nnUNetTrainerAirwayFRAD_clDice_Budget"]
    assert [r.backbone for r in rows] == ["plain"] * 6 + ["resenc-m"] * 2
    assert len({r.label for r in rows}) == len(rows)
    assert "nnunet-resenc" not in thin.parse_arguments([]).rows  # not in the default run


def test_rows_on_another_backbone_get_their_own_experiment_and_data_set(thin, monkeypatch) -> None:
    calls = []

    def fake_backbone(args, rows, seed, device, backbone="plain", offset=0):
        calls.append((backbone, offset, [r.label for r in rows]))
        return {r.label: {"backbone": backbone} for r in rows}, 1.0

    monkeypatch.setattr(thin, "run_backbone", fake_backbone)
    args = thin.parse_arguments(["--rows", "frad-resenc", "baseline", "nnunet-resenc"])
    results, seconds = thin.run_seed(args, thin.selected_rows(args), 0, "cpu")
    assert calls == [("resenc-m", 0, ["Baseline + FR + AD (ResEnc M)", "nnU-Net default (ResEnc M)"]),
                     ("plain", 20, ["Baseline"])]
    assert list(results) == ["Baseline + FR + AD (ResEnc M)", "Baseline", "nnU-Net default (ResEnc M)"]
    assert seconds == 2.0 and thin.backbone_tag("resenc-m") == "ResEncM" and thin.backbone_tag("plain") == ""
