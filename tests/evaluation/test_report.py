"""The summary's console layouts, CSV and definitions."""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.evaluation import cli
from nnunet_airway.evaluation.metrics import SCALAR_KEYS
from nnunet_airway.evaluation.report import TABLE_COLUMNS, TABLES, cases_csv, format_table, summarise
from nnunet_airway.evaluation.runner import evaluate_case
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]


@pytest.fixture(scope="module")
def summary(airway_case: AirwayCase) -> dict:
    reference, spacing = airway_case("Y")
    cut = reference.copy()
    cut[:, :, 28:] = 0
    cases = {"a": evaluate_case(reference, reference, spacing=spacing, protocol="atm22"),
             "b": evaluate_case(cut, reference, spacing=spacing, protocol="atm22")}
    return summarise(cases, "atm22")


def test_tables_name_their_columns(summary: dict) -> None:
    expected = {"paper": ["BD", "TD", "TPR", "FPR", "DSC"],
                "atm22": ["TD", "BD", "DSC", "Precision", "Sensitivity", "FPR"],
                "aiib23": ["IoU", "DLR", "DBR", "Precision", "Leakage"],
                "exact09": ["Branch count", "Tree length cm", "Leakage count", "Leakage mm3", "FPR"]}
    assert set(TABLES) == {*expected, "atm26"}
    for table in expected:
        lines = format_table(summary, "method", table).splitlines()
        assert [title for _, title in TABLE_COLUMNS[table]] == expected[table]
        assert lines[1].startswith("Method") and all(title in lines[1] for title in expected[table])
        assert lines[2].startswith("method") and "protocol atm22" in lines[0]
    aiib = format_table(summary, "m", "aiib23").splitlines()[2]
    assert aiib.split()[7] == f"{(100.0 + 200.0 / 3.0) / 2:.1f}"  # mean DBR (third column) of 100 and 66.7
    with pytest.raises(ValueError, match="table"):
        format_table(summary, "m", "brats")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="another protocol"):
        format_table(summary, "m", "atm26")  # an atm22 summary has no TLD or Betti0Error


def test_csv_holds_every_key(summary: dict) -> None:
    rows = list(csv.reader(io.StringIO(cases_csv(summary))))
    assert rows[0][:1 + len(SCALAR_KEYS)] == ["case", *SCALAR_KEYS]
    assert rows[0][1 + len(SCALAR_KEYS):] == ["BD_gen0", "BD_gen1"]
    assert [r[0] for r in rows[1:]] == ["a", "b"]
    assert rows[2][rows[0].index("branch_count")] == "1"


def test_summary_means_every_key(summary: dict) -> None:
    assert set(SCALAR_KEYS) <= set(summary["mean"])
    assert summary["mean"]["components_prediction"] == 1.0
    assert summary["mean"]["leakage_count"] == 0.0


def test_command_prints_the_chosen_table(tmp_path: Path, airway_case: AirwayCase,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    reference, spacing = airway_case("Y")
    geometry = Geometry(spacing=spacing[::-1])
    write_image(tmp_path / "labels" / "c.nii.gz", reference, geometry)
    write_image(tmp_path / "preds" / "c.nii.gz", reference, geometry)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["-p", str(tmp_path / "preds"), "-r", str(tmp_path / "labels"), "--table", "exact09",
                              "--csv", str(tmp_path / "c.csv"), "--no-progress", "--no-cldice"])
    assert cli.run(args) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Method"))
    assert "Branch count" in header and "Leakage mm3" in header
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == ",".join(["case", *SCALAR_KEYS, "BD_gen1"])
