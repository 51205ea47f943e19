"""The budget trainers' settings from the environment and their time-based schedule (their full training runs
in tests/nnunet_airway/demo)."""

from __future__ import annotations

from time import perf_counter

import pytest
import torch

from nnunet_airway.trainers.budget import (
    EPOCHS_VARIABLE,
    ITERATIONS_VARIABLE,
    KEEP_CHECKPOINTS_VARIABLE,
    LR_VARIABLE,
    SEED_VARIABLE,
    TIME_BUDGET_VARIABLE,
    TimeBudgetPolyLR,
    budget_from_environment,
    checkpoint_name,
    kept_checkpoints_from_environment,
)

from .test_trainer_variants import make_trainer

pytestmark = pytest.mark.slow


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


def test_time_budget_schedule_decays_with_the_share_of_time_spent() -> None:
    spent = [0.0]
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = TimeBudgetPolyLR(optimizer, 1e-3, lambda: spent[0])
    rates = []
    for epoch, fraction in enumerate([0.0, 0.5, 0.99, 1.2]):
        spent[0] = fraction
        scheduler.step(epoch)  # nnU-Net passes the epoch; the rate follows the clock
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3, 1e-3 * 0.5**0.9, 1e-3 * 0.01**0.9, 0.0])
    assert scheduler.get_last_lr() == [0.0]


def test_time_budget_trainer_logs_the_rate_it_uses(monkeypatch: pytest.MonkeyPatch, phantom_dataset,
                                                   fresh_results) -> None:
    monkeypatch.delenv(EPOCHS_VARIABLE, raising=False)
    monkeypatch.setenv(TIME_BUDGET_VARIABLE, "100")
    trainer = make_trainer("nnUNetTrainerAirwayFRAD_Budget", phantom_dataset)
    trainer.initialize()
    assert isinstance(trainer.lr_scheduler, TimeBudgetPolyLR)
    trainer._started = perf_counter() - 50.0  # half the budget spent
    trainer.on_train_epoch_start()
    logged = trainer.logger.get_value("lrs", step=trainer.current_epoch)
    assert logged == trainer.optimizer.param_groups[0]["lr"]
    assert logged == pytest.approx(trainer.initial_lr * 0.5**0.9, rel=0.01)


@pytest.mark.parametrize(("name", "value"), [
    (TIME_BUDGET_VARIABLE, "nan"), (TIME_BUDGET_VARIABLE, "inf"), (TIME_BUDGET_VARIABLE, "-5"),
    (TIME_BUDGET_VARIABLE, "0"), (EPOCHS_VARIABLE, "0"), (EPOCHS_VARIABLE, "2.5"),
])
def test_a_budget_that_is_not_a_finite_positive_number_is_refused(monkeypatch: pytest.MonkeyPatch, name: str,
                                                                   value: str) -> None:
    """NNUNET_AIRWAY_TIME_BUDGET_S=nan trained forever with a NaN learning rate."""
    monkeypatch.delenv(TIME_BUDGET_VARIABLE, raising=False)
    monkeypatch.delenv(EPOCHS_VARIABLE, raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=rf"{name}='{value}'"):
        budget_from_environment()


@pytest.mark.parametrize(("name", "value"), [(LR_VARIABLE, "nan"), (LR_VARIABLE, "0"), (ITERATIONS_VARIABLE, "0"),
                                             (SEED_VARIABLE, "-1")])
def test_other_budget_variables_are_checked_when_the_trainer_is_built(phantom_dataset, fresh_results,
                                                                      monkeypatch: pytest.MonkeyPatch, name: str,
                                                                      value: str) -> None:
    monkeypatch.delenv(TIME_BUDGET_VARIABLE, raising=False)
    monkeypatch.setenv(EPOCHS_VARIABLE, "1")
    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match=rf"{name}='{value}'"):
        make_trainer("nnUNetTrainerAirwayFRAD_Budget", phantom_dataset)


@pytest.mark.parametrize(("value", "expected"), [("", {}), ("100,300,1000", {2: 100, 6: 300, 20: 1000}),
                                                 (" 50 , 100,", {1: 50, 2: 100})])
def test_kept_checkpoints_are_keyed_by_the_epoch_that_completes_them(monkeypatch: pytest.MonkeyPatch, value: str,
                                                                    expected: dict) -> None:
    monkeypatch.setenv(KEEP_CHECKPOINTS_VARIABLE, value)
    assert kept_checkpoints_from_environment(50) == expected
    assert checkpoint_name(300) == "checkpoint_iter_300.pth"


@pytest.mark.parametrize(("value", "message"), [("120", "not a multiple of the 50"), ("0", "'0'"),
                                                ("1e3", "'1e3'")])
def test_kept_checkpoints_off_the_epoch_grid_are_refused(monkeypatch: pytest.MonkeyPatch, value: str,
                                                         message: str) -> None:
    monkeypatch.setenv(KEEP_CHECKPOINTS_VARIABLE, value)
    with pytest.raises(RuntimeError, match=f"{KEEP_CHECKPOINTS_VARIABLE}=.*{message}"):
        kept_checkpoints_from_environment(50)
