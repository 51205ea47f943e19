"""The environment variables the ``*_Budget`` trainers read (trainers/budget.py says what each does), in a
module that imports neither nnU-Net nor torch, so the pipelines that set them share the names."""

from __future__ import annotations

TIME_BUDGET_VARIABLE = "NNUNET_AIRWAY_TIME_BUDGET_S"
EPOCHS_VARIABLE = "NNUNET_AIRWAY_EPOCHS"
ITERATIONS_VARIABLE = "NNUNET_AIRWAY_ITERATIONS_PER_EPOCH"
SEED_VARIABLE = "NNUNET_AIRWAY_SEED"
LR_VARIABLE = "NNUNET_AIRWAY_LR"
SKIP_VALIDATION_VARIABLE = "NNUNET_AIRWAY_SKIP_VALIDATION"
KEEP_CHECKPOINTS_VARIABLE = "NNUNET_AIRWAY_KEEP_CHECKPOINTS"
BUDGET_PREFIX = "NNUNET_AIRWAY_"  # every one of them starts with it
