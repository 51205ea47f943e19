"""Parsed branches against a phantom's construction truth (its sidecar JSON), for BD per absolute generation.

A parsed tree counts generations from its own root: the trachea on a whole chest, the branch entering
the box on a crop (``truth["crop"]["root"]``). The sidecar's generations are absolute (trachea = 0).
``match_truth_branches`` maps each parsed branch to the sidecar branch most of its centreline lies
nearest to; ``bd_by_absolute_generation`` reports detection per sidecar generation through that map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnunet_airway.evaluation.metrics import CaseScore, percent
from nnunet_airway.evaluation.reference import ParsedReference


def _segment_distances(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Distances (mm) from points (K, 3) to segments starts-ends (M, 3) -> (K, M)."""
    ab = ends - starts
    length2 = np.maximum((ab * ab).sum(axis=1), 1e-12)
    rel = points[:, None, :] - starts[None, :, :]
    t = np.clip((rel * ab[None]).sum(axis=2) / length2, 0.0, 1.0)
    return np.linalg.norm(rel - t[..., None] * ab[None], axis=2)


def skeleton_points_mm(reference: ParsedReference, voxels: np.ndarray, truth: dict[str, Any]) -> np.ndarray:
    """Physical (x, y, z) mm of skeleton voxels (rows of ``reference.skeleton.coords``), identity direction."""
    zyx = reference.volume_coords(voxels).astype(np.float64)
    return np.asarray(truth["origin_xyz"], float) + zyx[:, ::-1] * np.asarray(truth["spacing_xyz"], float)


def match_truth_branches(reference: ParsedReference, truth: dict[str, Any]) -> list[int | None]:
    """The sidecar branch id of every parsed branch (``reference.tree.branches`` order).

    Each centreline voxel votes for the labelled sidecar branch whose axis is nearest; the branch takes the
    most voted one. None where the sidecar has no labelled branch.
    """
    records = [b for b in truth["branches"] if b["labelled"]]
    if not records:
        return [None] * len(reference.tree.branches)
    ids = np.array([b["id"] for b in records])
    starts = np.array([b["start_mm"] for b in records], float)
    ends = np.array([b["end_mm"] for b in records], float)
    matched: list[int | None] = []
    for branch in reference.tree.branches:
        nearest = _segment_distances(skeleton_points_mm(reference, branch.voxels, truth), starts, ends).argmin(axis=1)
        matched.append(int(ids[np.bincount(nearest, minlength=len(ids)).argmax()]))
    return matched


def bd_by_absolute_generation(score: CaseScore, truth: dict[str, Any]) -> dict[str, float | None]:
    """BD (%) per absolute generation (trachea = 0) of the counted parsed branches, through
    ``match_truth_branches``; parsed branches matching no sidecar branch are left out."""
    generation_of = {b["id"]: b["generation"] for b in truth["branches"]}
    matched = match_truth_branches(score.reference, truth)
    detected: dict[int, list[bool]] = {}
    for i, truth_id in enumerate(matched):
        if truth_id is None or not score.branch_counted[i]:
            continue
        detected.setdefault(generation_of[truth_id], []).append(bool(score.branch_detected[i]))
    return {str(g): percent(sum(hits), len(hits)) for g, hits in sorted(detected.items())}
