"""Trainers declared once: the lists made from the declarations, the docs table, refused declarations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nnunet_airway.trainers.declarations import (
    AD_VARIANT,
    DECLARATIONS,
    EXTRA,
    NNUNET_DEFAULT_BUDGET,
    TABLE2,
    TOPOLOGY,
    TrainerDeclaration,
    budget_names,
    declared,
    trainer_table,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "trainers.md"


def test_docs_table_is_the_one_the_declarations_make() -> None:
    text = DOCS.read_text()
    match = re.search(r"<!-- trainer table:[^\n]*-->\n(.*?)<!-- end of trainer table -->", text, re.S)
    assert match, "docs/trainers.md lost its trainer table markers"
    assert match.group(1) == trainer_table(), "paste `python -m nnunet_airway.trainers.declarations` into docs/trainers.md"
    for declaration in DECLARATIONS:
        assert f"`{declaration.name}`" in match.group(1)


def test_groups_decide_the_lists() -> None:
    assert [d.key for d in declared(TABLE2)] == ["baseline", "cse", "pe", "fr", "ad", "frad"]
    assert [d.key for d in declared(EXTRA)] == ["frad-ds", "frad-adam"]
    assert budget_names()[0] == NNUNET_DEFAULT_BUDGET
    assert set(budget_names()[1:]) == {d.name + "_Budget" for d in (*declared(TABLE2), *declared(AD_VARIANT),
                                                                      *declared(TOPOLOGY))}
    assert [d.key for d in declared(TOPOLOGY)] == ["baseline-skel", "frad-skel", "baseline-cldice", "frad-cldice"]


@pytest.mark.parametrize("changes, message", [
    ({"group": "table3"}, "group must be one of"),
    ({"optimiser": "rmsprop"}, "optimiser must be one of"),
    ({"name": "nnUNetTrainerFRAD"}, "named nnUNetTrainerAirway"),
    ({"name": "nnUNetTrainerAirwayX_Budget"}, "no _Budget"),
])
def test_a_bad_declaration_is_refused_with_what_to_change(changes: dict, message: str) -> None:
    fields = {"name": "nnUNetTrainerAirwayX", "key": "x", "label": "X", "summary": "x", "group": EXTRA,
              "recalibration": None, "distillation_weight": 0.0, **changes}
    with pytest.raises(ValueError, match=message):
        TrainerDeclaration(**fields)

