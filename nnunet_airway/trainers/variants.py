"""The trainers a user names with ``-tr``: the paper's method and the rows of its Table 2.

Each is made here from its line in ``declarations.DECLARATIONS``: a class over AirwayTrainerBase with the
declaration's class attributes (see base.py for what they mean), defined in this module under its own name
(``nnunet_airway.trainers.variants.nnUNetTrainerAirwayFRAD``), so DDP and data-loader workers can pickle it.
"""

from __future__ import annotations

from nnunet_airway.trainers.base import AirwayTrainerBase
from nnunet_airway.trainers.declarations import DECLARATIONS, EXTRA, TABLE2, TrainerDeclaration


def _trainer_class(declaration: TrainerDeclaration) -> type[AirwayTrainerBase]:
    return type(declaration.name, (AirwayTrainerBase,), {
        "__module__": __name__, "__qualname__": declaration.name,
        "__doc__": f"{declaration.label}: {declaration.summary}.", **declaration.class_attributes(),
    })


TRAINERS: dict[str, type[AirwayTrainerBase]] = {d.name: _trainer_class(d) for d in DECLARATIONS}
globals().update(TRAINERS)  # importable by name: from nnunet_airway.trainers.variants import nnUNetTrainerAirwayFRAD

# the paper's Table 2 rows and this project's other settings of the full model: what the tests step through
CORE_VARIANTS: tuple[type[AirwayTrainerBase], ...] = tuple(
    TRAINERS[d.name] for d in DECLARATIONS if d.group in (TABLE2, EXTRA))
__all__ = ["CORE_VARIANTS", "TRAINERS", *TRAINERS]
