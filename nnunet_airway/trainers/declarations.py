"""Every airway trainer, declared once: the ``-tr`` classes, their ``_Budget`` twins, the shims nnU-Net imports,
the rows of the thin-branch benchmark, the lists the tests step through and the table in docs/trainers.md are all
made from :data:`DECLARATIONS` (variants.py, budget.py and the shims build the classes; nothing here imports
torch or nnU-Net, so the benchmarks and the docs read it cheaply).

Adding a variant is one more ``TrainerDeclaration(...)`` line; ``python -m nnunet_airway.trainers.declarations``
prints the docs table to paste into docs/trainers.md (a test checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# what a declaration is for; it decides which lists it appears in
TABLE2 = "table2"  # a row of the paper's Table 2: stepped through by the tests, a default benchmark row, budget twin
EXTRA = "extra"  # another setting of the full model: stepped through by the tests, no budget twin
AD_VARIANT = "ad-variant"  # an ablation of the distillation term: budget twin, a benchmark row on request
TOPOLOGY = "topology"  # a skeleton loss added to a Table 2 row: budget twin, a benchmark row on request
GROUPS = (TABLE2, EXTRA, AD_VARIANT, TOPOLOGY)
TOPOLOGY_LOSSES = (None, "skeleton_recall", "cldice")  # model/topology_losses.py
PAPER_ADAM = "paper-adam"  # the paper's Adam at a constant 2e-4 (trainers/base.py)
OPTIMISERS = ("nnunet", PAPER_ADAM)  # nnU-Net's SGD + poly schedule, or the paper's Adam
BUDGET_SUFFIX = "_Budget"


@dataclass(frozen=True)
class TrainerDeclaration:
    """One trainer a user names with ``-tr``: its name, what the docs and reports call it, and the class
    attributes it sets over AirwayTrainerBase (trainers/base.py says what each means)."""

    name: str  # the -tr name; never renamed (checkpoints and users' commands carry it)
    key: str  # short name: thin_branches.py --rows / --ad-variants
    label: str  # the row's label in Table 2 reports
    summary: str  # network and loss in one sentence: the class docstring and the docs table
    group: str
    recalibration: str | None
    distillation_weight: float
    distillation_reduction: str = "sum"
    deep_supervision: bool = False
    optimiser: str = "nnunet"
    topology_loss: str | None = None
    topology_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.topology_loss not in TOPOLOGY_LOSSES:
            raise ValueError(f"{self.name}: topology_loss must be one of {TOPOLOGY_LOSSES}, got {self.topology_loss!r}")
        if (self.topology_loss is None) != (self.topology_weight == 0):
            raise ValueError(f"{self.name}: a topology loss needs a positive weight, and a weight needs a loss")
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: group must be one of {GROUPS}, got {self.group!r}")
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"{self.name}: optimiser must be one of {OPTIMISERS}, got {self.optimiser!r}")
        if not self.name.startswith("nnUNetTrainerAirway") or self.name.endswith(BUDGET_SUFFIX):
            raise ValueError(f"{self.name}: airway trainers are named nnUNetTrainerAirway<Variant> (no {BUDGET_SUFFIX})")

    @property
    def has_budget_twin(self) -> bool:
        return self.group in (TABLE2, AD_VARIANT, TOPOLOGY)

    @property
    def budget_name(self) -> str:
        return self.name + BUDGET_SUFFIX

    def class_attributes(self) -> dict[str, Any]:
        return {"recalibration": self.recalibration, "distillation_weight": self.distillation_weight,
                "distillation_reduction": self.distillation_reduction, "deep_supervision": self.deep_supervision,
                "optimiser": self.optimiser, "topology_loss": self.topology_loss,
                "topology_weight": self.topology_weight}


D = TrainerDeclaration
DECLARATIONS: tuple[TrainerDeclaration, ...] = (
    D("nnUNetTrainerAirwayBaseline", "baseline", "Baseline", "the five-scale U-Net without recalibration; Dice + focal", TABLE2, None, 0.0),
    D("nnUNetTrainerAirwayCSE", "cse", "Baseline + cSE", "channel squeeze & excitation (AnatomyNet) at every scale; Dice + focal", TABLE2, "cse", 0.0),
    D("nnUNetTrainerAirwayPE", "pe", "Baseline + PE", "project & excite (Rickmann et al. 2019) at every scale; Dice + focal", TABLE2, "pe", 0.0),
    D("nnUNetTrainerAirwayFR", "fr", "Baseline + FR", "feature recalibration at every scale; Dice + focal", TABLE2, "fr", 0.0),
    D("nnUNetTrainerAirwayAD", "ad", "Baseline + AD", "no recalibration; Dice + focal + 0.1 x attention distillation", TABLE2, None, 0.1),
    D("nnUNetTrainerAirwayFRAD", "frad", "Baseline + FR + AD", "the paper's method: feature recalibration at every scale; Dice + focal + 0.1 x attention distillation", TABLE2, "fr", 0.1),
    D("nnUNetTrainerAirwayFRAD_DS", "frad-ds", "FR + AD + deep supervision", "FR + AD with nnU-Net's deep supervision on the four finer scales (not in the paper)", EXTRA, "fr", 0.1, deep_supervision=True),
    D("nnUNetTrainerAirwayFRAD_Adam", "frad-adam", "FR + AD, the paper's optimiser", "FR + AD trained with Adam (betas 0.5, 0.999), constant lr 2e-4, no weight decay", EXTRA, "fr", 0.1, optimiser="paper-adam"),
    D("nnUNetTrainerAirwayAD_mean", "ad-mean", "Baseline + AD (mean)", "Baseline + AD with the released code's mean reduction (averaged over voxels)", AD_VARIANT, None, 0.1, "mean"),
    D("nnUNetTrainerAirwayAD_w001", "ad-w0.01", "Baseline + AD (weight 0.01)", "Baseline + AD at a tenth of the paper's weight (0.01), sum reduction", AD_VARIANT, None, 0.01),
    D("nnUNetTrainerAirwayAD_mean_w001", "ad-mean-w0.01", "Baseline + AD (mean, weight 0.01)", "Baseline + AD with the mean reduction at weight 0.01", AD_VARIANT, None, 0.01, "mean"),
    D("nnUNetTrainerAirwayBaseline_SkelRecall", "baseline-skel", "Baseline + Skeleton Recall", "Baseline; Dice + focal + 1 x Skeleton Recall (Kirchhoff et al. 2024) on the tubed reference skeleton", TOPOLOGY, None, 0.0, topology_loss="skeleton_recall", topology_weight=1.0),
    D("nnUNetTrainerAirwayFRAD_SkelRecall", "frad-skel", "Baseline + FR + AD + Skeleton Recall", "the paper's method; Dice + focal + 0.1 x attention distillation + 1 x Skeleton Recall", TOPOLOGY, "fr", 0.1, topology_loss="skeleton_recall", topology_weight=1.0),
    D("nnUNetTrainerAirwayBaseline_clDice", "baseline-cldice", "Baseline + clDice", "Baseline; Dice + focal + 0.5 x soft clDice (Shit et al. 2021, 3 soft-skeleton iterations)", TOPOLOGY, None, 0.0, topology_loss="cldice", topology_weight=0.5),
    D("nnUNetTrainerAirwayFRAD_clDice", "frad-cldice", "Baseline + FR + AD + clDice", "the paper's method; Dice + focal + 0.1 x attention distillation + 0.5 x soft clDice", TOPOLOGY, "fr", 0.1, topology_loss="cldice", topology_weight=0.5),
)
del D

BY_NAME: dict[str, TrainerDeclaration] = {d.name: d for d in DECLARATIONS}
BY_KEY: dict[str, TrainerDeclaration] = {d.key: d for d in DECLARATIONS}
if len(BY_NAME) != len(DECLARATIONS) or len(BY_KEY) != len(DECLARATIONS):
    raise ValueError("two trainer declarations share a name or a key")

NNUNET_DEFAULT_BUDGET = "nnUNetTrainer_Budget"  # nnU-Net's own trainer on the same budget (trainers/budget.py)


def declared(group: str) -> tuple[TrainerDeclaration, ...]:
    """The declarations of one group, in declaration order."""
    return tuple(d for d in DECLARATIONS if d.group == group)


def budget_names() -> tuple[str, ...]:
    """Every ``-tr`` name on a time or epoch budget: nnU-Net's default first, then the airway twins."""
    return (NNUNET_DEFAULT_BUDGET, *(d.budget_name for d in DECLARATIONS if d.has_budget_twin))


def trainer_table() -> str:
    """The Markdown table of docs/trainers.md."""
    lines = ["| `-tr` | label in reports (key) | network and loss | on a budget |", "|---|---|---|---|"]
    for d in DECLARATIONS:
        twin = f"`{d.budget_name}`" if d.has_budget_twin else "-"
        lines.append(f"| `{d.name}` | {d.label} (`{d.key}`) | {d.summary} | {twin} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(trainer_table(), end="")
