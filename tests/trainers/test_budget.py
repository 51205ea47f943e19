"""The budget trainers' settings from the environment (their training runs in tests/nnunet_airway/demo)."""

from __future__ import annotations

import pytest

from nnunet_airway.trainers.budget import EPOCHS_VARIABLE, TIME_BUDGET_VARIABLE, budget_from_environment


@pytest.mark.parametrize(
    ("env", "expected"),
    [({TIME_BUDGET_VARIABLE: "90"}, (90.0, None)), ({EPOCHS_VARIABLE: "12"}, (None, 12))],
)
def test_one_budget_variable_sets_the_budget(monkeypatch: pytest.MonkeyPatch, env: dict, expected: tuple) -> None:
    monkeypatch.delenv(TIME_BUDGET_VARIABLE, raising=False)
    monkeypatch.delenv(EPOCHS_VARIABLE, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert budget_from_environment() == expected


@pytest.mark.parametrize("env", [{}, {TIME_BUDGET_VARIABLE: "90", EPOCHS_VARIABLE: "12"}])
def test_none_or_both_budget_variables_say_what_to_export(monkeypatch: pytest.MonkeyPatch, env: dict) -> None:
    monkeypatch.delenv(TIME_BUDGET_VARIABLE, raising=False)
    monkeypatch.delenv(EPOCHS_VARIABLE, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match="exactly one of"):
        budget_from_environment()
