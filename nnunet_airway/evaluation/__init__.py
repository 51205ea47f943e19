"""nnunet_airway.evaluation: airway tree metrics without torch: ATM'22 / Qin et al. (BD, TD, TPR, FPR, DSC,
precision), clDice, AIIB23 (IoU, DLR, DBR, leakage), EXACT'09 (branch count, tree length, leakage) and topology
(components, Betti-number errors).

``evaluate_case(prediction, reference, spacing=None, protocol="paper")`` scores one case (arrays or
files); ``evaluate_folder(pred_dir, ref_dir, ...)`` scores nnU-Net prediction folders. Definitions:
``nnunet_airway.evaluation.report.DEFINITIONS`` and docs/evaluation.md.
"""

from nnunet_airway.evaluation.runner import evaluate_case, evaluate_folder

__all__ = ["evaluate_case", "evaluate_folder"]
