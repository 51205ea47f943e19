"""Evaluate one case (arrays or files) or a folder of nnU-Net predictions against a folder of references."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.atm26 import atm26_scores_on_centreline, centreline_ids
from nnunet_airway.evaluation.binarize import airway_mask
from nnunet_airway.evaluation.metrics import CaseScore, Protocol, check_protocol, score_case
from nnunet_airway.evaluation.parsing import PARSE_CONNECTIVITY as ATM26_CONNECTIVITY
from nnunet_airway.evaluation.parsing import PARSING_SUFFIX, SKELETON_SUFFIX, parse_centreline, parsing_file_names
from nnunet_airway.evaluation.reference import parse_reference
from nnunet_airway.evaluation.report import summarise
from nnunet_airway.image_io import check_same_grid, read_image

NIFTI_SUFFIX = ".nii.gz"
GRID_ADVICE = "resample the prediction onto the reference grid (nnU-Net exports predictions on the image grid)"

ArrayOrPath = np.ndarray | str | os.PathLike


def _load(item: ArrayOrPath) -> tuple[np.ndarray, object | None, str]:
    if isinstance(item, np.ndarray):
        if item.ndim != 3:
            raise ValueError(f"expected a (Z, Y, X) array, got shape {item.shape}")
        return item, None, "<array>"
    array, geometry = read_image(item)
    return array, geometry, str(item)


class LoadedPair(NamedTuple):
    """A prediction and its reference as airway masks on one grid, with what was read about them."""

    prediction: np.ndarray  # bool (Z, Y, X)
    reference: np.ndarray  # bool (Z, Y, X)
    reference_geometry: object | None  # image_io.Geometry of the reference file (None for an array)
    reference_name: str
    spacing_zyx: tuple[float, float, float]


def load_pair(prediction: ArrayOrPath, reference: ArrayOrPath, spacing: tuple[float, float, float] | None = None,
              threshold: float | None = None, binarize: bool = False) -> LoadedPair:
    """Read and binarise a prediction and its reference; DataError unless they share one grid. ``spacing``
    (mm, Z, Y, X) only for two arrays (default 1 mm); files carry theirs."""
    pred, pred_geom, pred_name = _load(prediction)
    pred = airway_mask(pred, pred_name, "prediction", threshold, binarize)
    ref, ref_geom, ref_name = _load(reference)
    ref = airway_mask(ref, ref_name, "reference", None, binarize)
    if ref_geom is not None and pred_geom is not None:
        check_same_grid(ref_name, ref.shape, ref_geom, pred_name, pred.shape, pred_geom, GRID_ADVICE)
    elif pred.shape != ref.shape:
        raise DataError(f"{pred_name} has shape {pred.shape} but the reference {ref_name} has {ref.shape}; "
                        f"{GRID_ADVICE}")
    geometry = ref_geom or pred_geom
    if geometry is not None:
        if spacing is not None:
            raise ValueError("spacing is taken from the image files; pass spacing only with two arrays")
        spacing_zyx = geometry.spacing_zyx  # type: ignore[attr-defined]
    else:
        spacing_zyx = (1.0, 1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
        if len(spacing_zyx) != 3 or any(s <= 0 for s in spacing_zyx):
            raise ValueError(f"spacing must be three positive numbers (Z, Y, X) in mm, got {spacing}")
    return LoadedPair(pred, ref, ref_geom, ref_name, spacing_zyx)  # type: ignore[arg-type]


def score_files_or_arrays(
    prediction: ArrayOrPath, reference: ArrayOrPath, spacing: tuple[float, float, float] | None = None,
    protocol: Protocol = "paper", connectivity: int = 6, keep_false_positives: bool = False, cl_dice: bool = True,
    threshold: float | None = None, binarize: bool = False,
) -> CaseScore:
    """Like :func:`evaluate_case` for the tree protocols (paper, atm22), returning the full :class:`CaseScore`
    (for pictures)."""
    protocol = check_protocol(protocol)
    pair = load_pair(prediction, reference, spacing, threshold, binarize)
    try:
        parsed = parse_reference(pair.reference, pair.spacing_zyx, connectivity)
    except ValueError as exc:
        if pair.reference_geometry is None:
            raise
        raise DataError(f"{pair.reference_name}: {exc}; remove the case or fix the label") from exc
    return score_case(parsed, pair.prediction, pair.spacing_zyx, protocol, connectivity, keep_false_positives,
                      cl_dice)


def _given_volume(item: ArrayOrPath, pair: LoadedPair, role: str) -> tuple[np.ndarray, str]:
    """A given skeleton or parsing volume, checked to lie on the reference's grid."""
    volume, geometry, name = _load(item)
    advice = (f"give the {role} made for {pair.reference_name} (nnunet-airway parse writes both on the label's "
              f"grid)")
    if geometry is not None and pair.reference_geometry is not None:
        check_same_grid(pair.reference_name, pair.reference.shape, pair.reference_geometry, name, volume.shape,
                        geometry, advice)
    elif volume.shape != pair.reference.shape:
        raise DataError(f"{name} has shape {volume.shape} but the reference {pair.reference_name} has "
                        f"{pair.reference.shape}; {advice}")
    return volume, name


def score_atm26(
    prediction: ArrayOrPath, reference: ArrayOrPath, skeleton: ArrayOrPath | None = None,
    parsing: ArrayOrPath | None = None, spacing: tuple[float, float, float] | None = None, cl_dice: bool = True,
    threshold: float | None = None, binarize: bool = False,
) -> dict:
    """The ATM'26 case entry (``Atm26Scores.as_percent_dict()``) of a prediction against its reference, with the
    reference's skeleton and parsing given (volumes or files on the reference's grid, both or neither) or, when
    not given, computed by our tree parse (evaluation/parsing.py). DataError for a parsing that breaks the
    organisers' rules or a volume on another grid, naming the file."""
    if (skeleton is None) != (parsing is None):
        raise ValueError("give both the reference skeleton and its parsing, or neither")
    pair = load_pair(prediction, reference, spacing, threshold, binarize)
    if skeleton is None or parsing is None:
        centreline, branch_ids = parse_centreline(pair.reference, pair.spacing_zyx, pair.reference_name)
    else:
        skeleton_values, _ = _given_volume(skeleton, pair, "skeleton")
        parsing_values, parsing_name = _given_volume(parsing, pair, "parsing")
        centreline, branch_ids = centreline_ids(skeleton_values, parsing_values, parsing_name)
        del skeleton_values, parsing_values
    return atm26_scores_on_centreline(pair.prediction, pair.reference, centreline, branch_ids,
                                      cl_dice).as_percent_dict()


def evaluate_case(
    prediction: ArrayOrPath, reference: ArrayOrPath, spacing: tuple[float, float, float] | None = None,
    protocol: Protocol = "paper", connectivity: int | None = None, cl_dice: bool = True,
    threshold: float | None = None, binarize: bool = False, skeleton: ArrayOrPath | None = None,
    parsing: ArrayOrPath | None = None,
) -> dict:
    """Airway tree metrics of one case.

    prediction, reference: (Z, Y, X) arrays or image paths (their grids must agree) holding 0 and 1 (or bool);
    other values are a DataError unless ``threshold`` (prediction airway = value > threshold) or ``binarize``
    (airway = value > 0, both sides).
    spacing: mm per voxel in array axis order (Z, Y, X), for arrays only (default 1 mm); files carry theirs.
    protocol: "paper" (trachea excluded from BD, TD, TPR, FPR, precision), "atm22" (nothing excluded) or
        "atm26" (the ATM'26 Track-1 metrics, evaluation/atm26.py).
    connectivity: 6 or 26 for the largest-component step (default 6; atm26 takes 26 only).
    cl_dice: False skips the prediction's skeleton (faster); clDice is then None.
    skeleton, parsing: atm26 only: the reference's skeleton and branch parsing (arrays or files on its grid);
        computed from the reference when not given.
    Returns the case's metrics dict (``CaseMetrics.as_dict()``, or ``Atm26Scores.as_percent_dict()`` for atm26;
    keys as in the summary JSON's cases; percentages, None if undefined).
    """
    protocol = check_protocol(protocol)
    connectivity = protocol_connectivity(protocol, connectivity)
    if protocol == "atm26":
        return score_atm26(prediction, reference, skeleton, parsing, spacing, cl_dice, threshold, binarize)
    if skeleton is not None or parsing is not None:
        raise ValueError("a given skeleton and parsing are used by protocol atm26 only")
    return score_files_or_arrays(prediction, reference, spacing, protocol, connectivity, cl_dice=cl_dice,
                                 threshold=threshold, binarize=binarize).metrics.as_dict()


def protocol_connectivity(protocol: Protocol, connectivity: int | None) -> int:
    """The largest-component connectivity of a protocol: ``connectivity`` or 6 for paper and atm22; 26 for atm26
    (ValueError for any other value there)."""
    if protocol == "atm26":
        if connectivity not in (None, ATM26_CONNECTIVITY):
            raise ValueError(f"protocol atm26 takes the largest 26-connected component, as the challenge does; "
                             f"connectivity {connectivity} is for paper and atm22")
        return ATM26_CONNECTIVITY
    return 6 if connectivity is None else connectivity


def pair_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike) -> tuple[list[str], list[str], list[str]]:
    """Pair ``CASE.nii.gz`` files by name. Returns (paired cases, references without prediction,
    predictions without reference), each sorted."""
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    for folder, flag in ((pred_dir, "-p"), (ref_dir, "-r")):
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder; give the folder of {NIFTI_SUFFIX} files with {flag}")

    def cases(folder: Path) -> set[str]:
        return {p.name[: -len(NIFTI_SUFFIX)] for p in folder.iterdir() if p.name.endswith(NIFTI_SUFFIX)}

    preds, refs = cases(pred_dir), cases(ref_dir)
    if not refs:
        raise DataError(f"{ref_dir}: no {NIFTI_SUFFIX} reference labels found; give the labelsTr/labelsTs folder")
    return sorted(preds & refs), sorted(refs - preds), sorted(preds - refs)


class CaseTask(NamedTuple):
    """One case of :func:`evaluate_folder`, as sent to a worker process."""

    case: str
    pred_path: Path
    ref_path: Path
    protocol: Protocol
    connectivity: int
    render_dir: str | None
    cl_dice: bool
    threshold: float | None
    binarize: bool
    mesh_dir: str | None
    truth_path: Path | None = None  # a phantom's sidecar JSON: adds BD_by_absolute_generation
    truth: dict | None = None  # its content, read once in evaluate_folder
    skeleton_path: Path | None = None  # atm26: the given reference skeleton and parsing
    parsing_path: Path | None = None


def _score_one(task: CaseTask) -> tuple[str, dict]:
    if task.protocol == "atm26":
        return task.case, score_atm26(task.pred_path, task.ref_path, task.skeleton_path, task.parsing_path,
                                      cl_dice=task.cl_dice, threshold=task.threshold, binarize=task.binarize)
    score = score_files_or_arrays(task.pred_path, task.ref_path, None, task.protocol, task.connectivity,
                                  keep_false_positives=task.render_dir is not None or task.mesh_dir is not None,
                                  cl_dice=task.cl_dice, threshold=task.threshold, binarize=task.binarize)
    if task.render_dir is not None:
        from nnunet_airway.evaluation.render import render_case

        render_case(score, Path(task.render_dir) / f"{task.case}.png", title=task.case)
    if task.mesh_dir is not None:
        from nnunet_airway.evaluation.render3d import read_geometry, write_case_mesh

        write_case_mesh(score, read_geometry(task.ref_path), task.mesh_dir, task.case)
    metrics = score.metrics.as_dict()
    if task.truth_path is not None and task.truth is not None:
        from nnunet_airway.evaluation.phantom_truth import bd_by_absolute_generation

        check_truth_matches(task.truth, task.truth_path, task.ref_path, score.volume_shape,
                            score.reference.voxels_given)
        metrics["BD_by_absolute_generation"] = bd_by_absolute_generation(score, task.truth)
    return task.case, metrics


TRUTH_KEYS = ("branches", "origin_xyz", "spacing_xyz", "shape_zyx")
TRUTH_BRANCH_KEYS = ("id", "generation", "labelled", "start_mm", "end_mm")


def read_truth(path: Path) -> dict:
    """A phantom's truth sidecar (``truth/CASE.json`` of ``nnunet-airway phantoms``); DataError if unreadable or
    without the keys BD per absolute generation needs."""
    try:
        truth = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the phantom truth sidecar ({error}); give --truth the phantoms' "
                        f"truth/ folder") from None
    missing = [key for key in TRUTH_KEYS if not isinstance(truth, dict) or key not in truth]
    if not missing and isinstance(truth["branches"], list):
        missing = sorted({key for b in truth["branches"] for key in TRUTH_BRANCH_KEYS
                          if not isinstance(b, dict) or key not in b})
    elif not missing:
        missing = ["branches (a list)"]
    if missing:
        raise DataError(f"{path}: not a phantom truth sidecar (no {', '.join(missing)}); give --truth the "
                        f"phantoms' truth/ folder")
    return truth


def check_truth_matches(truth: dict, truth_path: Path, ref_path: Path, ref_shape_zyx: tuple[int, ...],
                        ref_voxels: int | None = None) -> None:
    """DataError unless the sidecar describes the reference: the same shape, and the same airway voxel count
    where the sidecar records one (``label_voxels``) and ``ref_voxels`` is given."""
    advice = "give --truth the truth/ folder of the phantoms these labels came from"
    if [int(n) for n in truth["shape_zyx"]] != [int(n) for n in ref_shape_zyx]:
        raise DataError(f"{truth_path}: describes a {tuple(truth['shape_zyx'])} phantom but {ref_path} is "
                        f"{tuple(ref_shape_zyx)}; {advice}")
    recorded = truth.get("label_voxels")
    if recorded is not None and ref_voxels is not None and int(recorded) != int(ref_voxels):
        raise DataError(f"{truth_path}: describes a label of {int(recorded)} airway voxels but {ref_path} has "
                        f"{int(ref_voxels)}; {advice}")


def given_parsing_paths(parsing_dir: str | os.PathLike, cases: list[str]) -> dict[str, tuple[Path, Path]]:
    """case -> (skeleton file, parsing file) in ``parsing_dir``; DataError listing the cases that lack either."""
    folder = Path(parsing_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; give --parsing the folder of CASE{SKELETON_SUFFIX}{NIFTI_SUFFIX} "
                        f"and CASE{PARSING_SUFFIX}{NIFTI_SUFFIX} files (nnunet-airway parse writes them)")
    paths = {case: tuple(folder / name for name in parsing_file_names(case, NIFTI_SUFFIX)) for case in cases}
    absent = [path.name for pair in paths.values() for path in pair if not path.is_file()]
    if absent:
        shown = ", ".join(absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
        raise DataError(f"{folder}: {len(absent)} skeleton or parsing file(s) missing: {shown}; write them with "
                        f"nnunet-airway parse or leave out --parsing to parse the references here")
    return paths  # type: ignore[return-value]


def evaluate_folder(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, protocol: Protocol = "paper",
    connectivity: int | None = None,
    num_processes: int = 1, allow_missing: bool = False, render_dir: str | os.PathLike | None = None,
    progress: bool = True, cl_dice: bool = True, threshold: float | None = None, binarize: bool = False,
    on_case: Callable[[dict], None] | None = None, mesh_dir: str | os.PathLike | None = None,
    truth_dir: str | os.PathLike | None = None, parsing_dir: str | os.PathLike | None = None,
) -> dict:
    """Score every ``CASE.nii.gz`` of ``pred_dir`` against ``ref_dir/CASE.nii.gz``.

    ``threshold``/``binarize``: how to read values other than 0 and 1 (see :func:`evaluate_case`).
    ``on_case`` is called with the summary of the cases scored so far after every case (to save it as it goes).
    A warning goes to stderr for every reference with voxels outside its largest component (left out).
    References without a prediction are an error (DataError listing them) unless ``allow_missing``.
    ``num_processes`` cases run in parallel processes. ``render_dir`` (an existing folder) gets one PNG
    per case; ``mesh_dir`` (an existing folder) gets CASE.ply (coloured surface mesh) and CASE_3d.png
    (evaluation/render3d.py). ``cl_dice=False`` skips clDice (faster). ``truth_dir``: the phantoms' ``truth/``
    folder (CASE.json per case, a DataError lists the missing ones); every case then also gets
    ``BD_by_absolute_generation`` (trachea = 0, also on crops). ``protocol="atm26"``: the ATM'26 metrics
    (evaluation/atm26.py; no pictures, meshes or truth), with each reference's skeleton and parsing read from
    ``parsing_dir`` (``CASE_skeleton.nii.gz`` and ``CASE_parsing.nii.gz``; a DataError lists the missing ones)
    or, without it, computed by our tree parse. Returns the summary dict {"protocol", "definitions", "cases",
    "mean", "std", "n"}.
    """
    protocol = check_protocol(protocol)
    connectivity = protocol_connectivity(protocol, connectivity)
    if protocol == "atm26":
        for given, flag in ((render_dir, "--render"), (mesh_dir, "--mesh"), (truth_dir, "--truth")):
            if given is not None:
                raise DataError(f"{flag} works with --protocol paper or atm22; protocol atm26 scores the "
                                f"challenge's five metrics only")
    elif parsing_dir is not None:
        raise DataError("--parsing (given skeleton and parsing volumes) is used by --protocol atm26 only")
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    paired, missing, extra = pair_cases(pred_dir, ref_dir)
    if missing and not allow_missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataError(f"{pred_dir}: no prediction for {len(missing)} reference case(s): {shown}; "
                        f"predict them or pass --allow-missing to score only the cases present")
    if missing:
        print(f"evaluate: skipping {len(missing)} reference case(s) without prediction: {', '.join(missing)}",
              file=sys.stderr)
    if extra:
        print(f"evaluate: ignoring {len(extra)} prediction(s) without reference: {', '.join(extra)}", file=sys.stderr)
    if not paired:
        raise DataError(f"{pred_dir}: no prediction matches a reference in {ref_dir} by name (CASE{NIFTI_SUFFIX})")
    truth_paths: dict[str, Path | None] = {case: None for case in paired}
    truths: dict[str, dict] = {}
    if truth_dir is not None:
        if not Path(truth_dir).is_dir():
            raise DataError(f"{truth_dir}: no such folder; give --truth the truth/ folder of the phantoms these "
                            f"labels came from")
        truth_paths = {case: Path(truth_dir) / f"{case}.json" for case in paired}
        absent = [case for case, path in truth_paths.items() if not path.is_file()]
        if absent:
            raise DataError(f"{truth_dir}: no truth sidecar for {len(absent)} case(s): {', '.join(absent[:10])}; "
                            f"give --truth the truth/ folder of the phantoms these labels came from")
        truths = {case: read_truth(path) for case, path in truth_paths.items()}  # all before any case is scored
    given = given_parsing_paths(parsing_dir, paired) if parsing_dir is not None else {}
    tasks = [
        CaseTask(case, Path(pred_dir) / f"{case}{NIFTI_SUFFIX}", Path(ref_dir) / f"{case}{NIFTI_SUFFIX}", protocol,
                 connectivity, None if render_dir is None else str(render_dir), cl_dice, threshold, binarize,
                 None if mesh_dir is None else str(mesh_dir), truth_paths[case], truths.get(case),
                 *given.get(case, (None, None)))
        for case in paired
    ]
    results: dict[str, dict] = {}

    def done(case: str, metrics: dict) -> None:
        results[case] = metrics
        outside = metrics.get("reference_voxels_outside_largest_component") or 0
        if outside:
            bar.write(f"evaluate: warning: {Path(ref_dir) / (case + NIFTI_SUFFIX)}: {outside} reference voxels lie "
                      f"outside its largest connected component and are left out of every metric", file=sys.stderr)
        if on_case is not None:
            on_case(summarise({c: results[c] for c in paired if c in results}, protocol))
        bar.update()

    bar = tqdm(total=len(tasks), desc="evaluate", unit="case", disable=not progress)
    try:
        if num_processes == 1 or len(tasks) == 1:
            for task in tasks:
                done(*_score_one(task))
        else:
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                                  else "spawn")
            with context.Pool(min(num_processes, len(tasks))) as pool:
                for case, metrics in pool.imap_unordered(_score_one, tasks):
                    done(case, metrics)
    finally:
        bar.close()
    return summarise({case: results[case] for case in paired}, protocol)
