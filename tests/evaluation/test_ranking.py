"""The leaderboard rule (nnunet_airway.evaluation.ranking) on hand-built means, and ``nnunet-airway rank`` on
tiny NIfTI folders scored with protocol atm22."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.cli import main as cli_main
from nnunet_airway.evaluation.ranking import (
    RANK_METRICS,
    Submission,
    atm22_score,
    competition_ranks,
    leaderboard,
    leaderboard_csv,
    leaderboard_markdown,
    score,
)
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]


def _atm26(dsc, cl_dice, tld, bd, betti0) -> dict:
    return {"DSC": dsc, "clDice": cl_dice, "TLD": tld, "BD": bd, "Betti0Error": betti0}


def _atm22(td, bd, dsc, precision) -> dict:
    return {"TD": td, "BD": bd, "DSC": dsc, "precision": precision}


def _by_name(board: dict) -> dict[str, dict]:
    return {row["name"]: row for row in board["submissions"]}


# ---- the rule ---------------------------------------------------------------------------------------------

def test_competition_ranks_share_the_best_rank_on_ties() -> None:
    assert competition_ranks([0.9, 0.9, 0.8]) == [1, 1, 3]
    assert competition_ranks([0.8, 0.9, 0.9, 0.7]) == [3, 1, 1, 4]
    assert competition_ranks([0.5, 0.5, 0.5]) == [1, 1, 1]


def test_lower_is_better_reverses_the_ranks() -> None:
    assert competition_ranks([2, 0, 0, 5], higher_is_better=False) == [3, 1, 1, 4]


def test_none_ranks_last_in_either_direction() -> None:
    assert competition_ranks([None, 0.5, None, 0.7]) == [3, 2, 3, 1]
    assert competition_ranks([None, 0.5, None, 0.7], higher_is_better=False) == [3, 1, 3, 2]
    assert competition_ranks([None, None]) == [1, 1]


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        competition_ranks([0.5, float("nan")])


def test_atm26_mean_rank_over_five_metrics_with_betti0_lower_better() -> None:
    submissions = [Submission("A", "a", _atm26(0.9, 0.8, 0.7, 0.6, 2)),
                   Submission("B", "b", _atm26(0.9, 0.7, 0.8, 0.6, 0)),
                   Submission("C", "c", _atm26(0.8, 0.8, 0.6, None, 1))]
    board = leaderboard("atm26", submissions, cases=4)
    assert [row["name"] for row in board["submissions"]] == ["B", "A", "C"]
    rows = _by_name(board)
    assert rows["A"]["ranks"] == {"DSC": 1, "clDice": 1, "TLD": 2, "BD": 1, "Betti0Error": 3}
    assert rows["B"]["ranks"] == {"DSC": 1, "clDice": 3, "TLD": 1, "BD": 1, "Betti0Error": 1}
    assert rows["C"]["ranks"] == {"DSC": 3, "clDice": 1, "TLD": 3, "BD": 3, "Betti0Error": 2}  # BD None: last
    assert [rows[n]["mean_rank"] for n in "ABC"] == [8 / 5, 7 / 5, 12 / 5]
    assert [rows[n]["position"] for n in "ABC"] == [2, 1, 3]
    assert rows["C"]["means"]["BD"] is None and rows["B"]["folder"] == "b"
    assert board["cases"] == 4 and board["protocol"] == "atm26"
    assert [(m["name"], m["higher_is_better"]) for m in board["metrics"]] == list(RANK_METRICS["atm26"])
    assert "competition" in board["definitions"] and "last" in board["definitions"]
    json.dumps(board, allow_nan=False)


def test_equal_mean_ranks_share_the_position_and_keep_the_input_order() -> None:
    same = _atm26(0.9, 0.9, 0.9, 0.9, 0)
    submissions = [Submission("worse", "w", _atm26(0.5, 0.5, 0.5, 0.5, 3)), Submission("second", "s", same),
                   Submission("first", "f", same)]
    board = leaderboard("atm26", submissions, cases=1)
    assert [(row["name"], row["position"], row["mean_rank"]) for row in board["submissions"]] == \
        [("second", 1, 1.0), ("first", 1, 1.0), ("worse", 3, 3.0)]


def test_atm22_score_is_the_mean_of_the_four_metrics() -> None:
    assert atm22_score(_atm22(80.0, 60.0, 90.0, 70.0)) == 75.0
    assert atm22_score(_atm22(100.0, 50.0, 85.0, 95.0)) == 82.5
    assert atm22_score(_atm22(100.0, None, 85.0, 95.0)) is None
    assert score({"a": 1.0, "b": 2.0}, ["a", "b"]) == 1.5


def test_atm22_ranks_by_the_score_and_reports_the_four_ranks() -> None:
    submissions = [Submission("low", "l", _atm22(80.0, 60.0, 90.0, 70.0)),      # score 75
                   Submission("high", "h", _atm22(100.0, 50.0, 85.0, 95.0)),    # score 82.5
                   Submission("undefined", "u", _atm22(100.0, None, 99.0, 99.0))]  # score None: last
    board = leaderboard("atm22", submissions, cases=2)
    assert [row["name"] for row in board["submissions"]] == ["high", "low", "undefined"]
    rows = _by_name(board)
    assert rows["high"]["means"]["score"] == 82.5 and rows["low"]["means"]["score"] == 75.0
    assert rows["undefined"]["means"]["score"] is None
    assert rows["high"]["ranks"] == {"TD": 1, "BD": 2, "DSC": 3, "precision": 2, "score": 1}
    assert rows["low"]["ranks"] == {"TD": 3, "BD": 1, "DSC": 2, "precision": 3, "score": 2}
    assert rows["undefined"]["ranks"] == {"TD": 1, "BD": 3, "DSC": 1, "precision": 1, "score": 3}
    assert [(rows[n]["mean_rank"], rows[n]["position"]) for n in ("high", "low", "undefined")] == \
        [(1.0, 1), (2.0, 2), (3.0, 3)]
    assert [(m["name"], m["averaged"]) for m in board["metrics"]] == \
        [("TD", False), ("BD", False), ("DSC", False), ("precision", False), ("score", True)]


def test_bad_arguments_are_value_errors() -> None:
    one = [Submission("A", "a", _atm22(1.0, 1.0, 1.0, 1.0))]
    with pytest.raises(ValueError, match="protocol"):
        leaderboard("paper", one, cases=1)
    with pytest.raises(ValueError, match="repeated: A"):
        leaderboard("atm22", one * 2, cases=1)
    with pytest.raises(ValueError, match="at least one"):
        leaderboard("atm22", [], cases=1)
    with pytest.raises(ValueError, match="cases"):
        leaderboard("atm22", one, cases=0)


def test_markdown_and_csv_show_means_ranks_and_positions() -> None:
    submissions = [Submission("A|1", "a", _atm26(0.9, 0.8, 0.7, 0.6, 2)),
                   Submission("B", "b", _atm26(0.9, 0.7, 0.8, None, 0))]
    board = leaderboard("atm26", submissions, cases=3)
    lines = leaderboard_markdown(board).splitlines()
    assert lines[0] == "| Position | Submission | DSC | clDice | TLD | BD | Betti0Error (lower better) | Mean rank |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    # both mean ranks are 7 / 5: one shared position, in the input order
    assert lines[2] == "| 1 | A\\|1 | 0.9 (1) | 0.8 (1) | 0.7 (2) | 0.6 (1) | 2 (2) | 1.40 |"
    assert lines[3] == "| 1 | B | 0.9 (1) | 0.7 (2) | 0.8 (1) | n/a (2) | 0 (1) | 1.40 |"
    assert lines[5].startswith("Protocol atm26, 3 cases per submission")
    rows = list(csv.reader(io.StringIO(leaderboard_csv(board))))
    assert rows[0] == ["position", "name", "folder", "DSC", "DSC_rank", "clDice", "clDice_rank", "TLD", "TLD_rank",
                       "BD", "BD_rank", "Betti0Error", "Betti0Error_rank", "mean_rank"]
    assert rows[2] == ["1", "B", "b", "0.9", "1", "0.7", "2", "0.8", "1", "", "2", "0.0", "1", "1.4"]
    assert len(rows) == 3


# ---- the command ------------------------------------------------------------------------------------------

def _write(folder: Path, case: str, volume: np.ndarray, spacing_zyx: tuple[float, float, float]) -> None:
    write_image(folder / f"{case}.nii.gz", volume, Geometry(spacing=spacing_zyx[::-1], origin=(0.0, 0.0, 0.0)))


@pytest.fixture
def folders(tmp_path: Path, airway_case: AirwayCase) -> tuple[Path, list[Path]]:
    """labels/ with two trees; perfect/ (the labels), partial/ (one child of case 1 cut off) and worse/ (both
    cases cut below their first branching)."""
    y, y_spacing = airway_case("Y")
    tree, tree_spacing = airway_case("three generations")
    partial_y, short_y, short_tree = y.copy(), y.copy(), tree.copy()
    partial_y[:, :, 28:] = 0
    short_y[30:] = 0
    short_tree[tree.shape[0] // 2:] = 0
    labels, perfect, partial, worse = (tmp_path / name for name in ("labels", "perfect", "partial", "worse"))
    for folder, (a, b) in ((labels, (y, tree)), (perfect, (y, tree)), (partial, (partial_y, tree)),
                           (worse, (short_y, short_tree))):
        _write(folder, "case_1", a, y_spacing)
        _write(folder, "case_2", b, tree_spacing)
    return labels, [worse, perfect, partial]


def _rank(labels: Path, preds: list[Path], *extra: str) -> int:
    return cli_main(["rank", "-r", str(labels), "-p", *map(str, preds), "--protocol", "atm22", "--no-progress",
                     *extra])


def test_command_ranks_the_perfect_folder_first(folders: tuple[Path, list[Path]], tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    labels, preds = folders
    out, table, markdown = tmp_path / "rank.json", tmp_path / "rank.csv", tmp_path / "rank.md"
    assert _rank(labels, preds, "-o", str(out), "--csv", str(table), "--markdown", str(markdown)) == 0
    board = json.loads(out.read_text())
    assert board["protocol"] == "atm22" and board["cases"] == 2
    assert [(row["name"], row["position"]) for row in board["submissions"]] == \
        [("perfect", 1), ("partial", 2), ("worse", 3)]
    best = board["submissions"][0]
    assert best["means"] == {"TD": 100.0, "BD": 100.0, "DSC": 100.0, "precision": 100.0, "score": 100.0}
    assert best["ranks"]["score"] == 1 and best["mean_rank"] == 1.0 and best["folder"] == str(preds[1])
    # the cut-off predictions lie inside the labels: every folder's precision is 100, a three-way tie
    assert [row["ranks"]["precision"] for row in board["submissions"]] == [1, 1, 1]
    for row in board["submissions"]:
        means = row["means"]
        assert means["score"] == pytest.approx((means["TD"] + means["BD"] + means["DSC"] + means["precision"]) / 4)
    printed = capsys.readouterr().out
    assert printed.startswith(markdown.read_text()) and "| 1 | perfect | 100 (1) |" in printed
    assert [line.split(",")[1] for line in table.read_text().splitlines()] == ["name", "perfect", "partial", "worse"]


def test_names_replace_the_folder_names(folders: tuple[Path, list[Path]], tmp_path: Path) -> None:
    labels, preds = folders
    out = tmp_path / "rank.json"
    assert _rank(labels, preds[1:], "-o", str(out), "--names", "ours", "theirs") == 0
    assert [row["name"] for row in json.loads(out.read_text())["submissions"]] == ["ours", "theirs"]


def test_existing_output_is_refused_without_overwrite(folders: tuple[Path, list[Path]], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    labels, preds = folders
    out = tmp_path / "rank.json"
    out.write_text("earlier")
    assert _rank(labels, preds[1:], "-o", str(out)) == 1
    assert "exists" in capsys.readouterr().err and out.read_text() == "earlier"
    assert _rank(labels, preds[1:], "-o", str(out), "--overwrite") == 0
    assert json.loads(out.read_text())["submissions"][0]["name"] == "perfect"


def test_names_count_mismatch_is_an_error(folders: tuple[Path, list[Path]], tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    labels, preds = folders
    assert _rank(labels, preds, "-o", str(tmp_path / "rank.json"), "--names", "a", "b") == 1
    assert "--names gives 2 name(s) for 3 -p folder(s)" in capsys.readouterr().err
    assert _rank(labels, preds[:2], "-o", str(tmp_path / "rank.json"), "--names", "a", "a") == 1
    assert "--names repeats: a" in capsys.readouterr().err
    assert not (tmp_path / "rank.json").exists()


def test_a_folder_missing_a_case_is_refused_by_name(folders: tuple[Path, list[Path]], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    labels, preds = folders
    (preds[2] / "case_2.nii.gz").unlink()
    assert _rank(labels, preds, "-o", str(tmp_path / "rank.json")) == 1
    err = capsys.readouterr().err
    assert str(preds[2]) in err and "case_2" in err and "rank: scoring" not in err  # refused before scoring
    assert not (tmp_path / "rank.json").exists()


def test_outputs_over_inputs_and_parsing_without_atm26_are_refused(folders: tuple[Path, list[Path]],
                                                                   capsys: pytest.CaptureFixture) -> None:
    labels, preds = folders
    assert _rank(labels, preds, "-o", str(preds[0] / "rank.json")) == 1
    assert "would write into the prediction folder" in capsys.readouterr().err
    assert _rank(labels, preds, "-o", str(labels.parent / "rank.json"), "--parsing", str(labels)) == 1
    assert "--protocol atm26 only" in capsys.readouterr().err


def test_a_folder_given_twice_is_refused(folders: tuple[Path, list[Path]], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    labels, preds = folders
    out = str(tmp_path / "rank.json")
    assert _rank(labels, [preds[0], preds[0]], "-o", out) == 1
    assert "two -p folders have the same name: worse" in capsys.readouterr().err
    assert _rank(labels, [preds[0], preds[0]], "-o", out, "--names", "a", "b") == 1
    assert "given to -p twice" in capsys.readouterr().err


def test_atm26_command_parses_each_reference_once_and_ranks_by_mean_rank(
        folders: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels, preds = folders
    out = tmp_path / "rank26.json"
    assert cli_main(["rank", "-r", str(labels), "-p", *map(str, preds), "--protocol", "atm26", "--no-progress",
                     "-o", str(out)]) == 0
    board = json.loads(out.read_text())
    assert [row["name"] for row in board["submissions"]] == ["perfect", "partial", "worse"]
    best = board["submissions"][0]
    assert best["means"]["TLD"] == 100.0 and best["means"]["BD"] == 100.0 and best["means"]["Betti0Error"] == 0
    assert best["mean_rank"] == 1.0
    assert capsys.readouterr().err.count("parsing the 2 reference(s) once") == 1
    # the same board with the parsings given
    parsing = tmp_path / "parsing"
    assert cli_main(["parse", "-i", str(labels), "-o", str(parsing), "--no-progress"]) == 0
    given = tmp_path / "rank26_given.json"
    assert cli_main(["rank", "-r", str(labels), "-p", *map(str, preds), "--protocol", "atm26", "--no-progress",
                     "--parsing", str(parsing), "-o", str(given)]) == 0
    assert json.loads(given.read_text())["submissions"] == board["submissions"]
