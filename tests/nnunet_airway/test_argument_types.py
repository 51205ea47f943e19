"""Numbers are checked at the border: NaN, inf and out-of-range values are usage errors (exit 2) naming the
value, in every command that takes them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nnunet_airway.argument_types import finite_float, int_at_least, positive_float
from nnunet_airway.cli import main as cli_main


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_non_finite_numbers_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        finite_float()(text)


def test_ranges_and_their_messages() -> None:
    assert finite_float(0.0, 1.0)("0") == 0.0 and finite_float(0.0, 1.0)("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match="> 0 mm, got 0"):
        positive_float("mm")("0")
    with pytest.raises(argparse.ArgumentTypeError, match="<= 1, got 1.5"):
        finite_float(0.0, 1.0)("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="a number, got 'x'"):
        finite_float()("x")
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1, got 0"):
        int_at_least(1)("0")


@pytest.mark.parametrize("argv", [
    ["demo", "--budget-minutes", "nan"],
    ["demo", "--budget-minutes", "inf"],
    ["phantoms", "--out", "X", "--spacing", "0.7", "nan", "0.7"],
    ["evaluate", "-p", "P", "-r", "R", "--threshold", "nan"],
    ["evaluate", "-p", "P", "-r", "R", "-np", "0"],
    ["convert", "folder", "--images", "I", "-d", "1", "-n", "X", "-np", "0"],
])
def test_commands_refuse_them_as_usage_errors(argv: list[str], tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli_main(argv)
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert "nan" in message or "inf" in message or ">= 1, got 0" in message
