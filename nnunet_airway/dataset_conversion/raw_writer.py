"""The one nnU-Net raw writer every source uses: cases in, ``DatasetXXX_NAME`` folder out.

Layout written (nnU-Net v2): ``imagesTr/{case}_0000.nii.gz``, ``labelsTr/{case}.nii.gz``, ``imagesTs/``,
``labelsTs/`` (test cases that have labels), ``dataset.json`` and ``conversion_report.json`` (every case:
converted, skipped or rejected, with the reason, its source files and SeriesInstanceUID).

Resumable: the report is rewritten after every case; a later run skips cases the report lists as converted
from the same sources, by path and content (size and modification time of every source file; ``overwrite``
redoes them). Cases whose sources are gone lose their files and leave the report, ``numTraining`` and the
split. Each case's files are written under temporary names, verified and renamed together at the end, so an
interrupted or failed run leaves no half-written file. Three steps: :func:`plan_conversion` (reads only),
:func:`run_conversion` (writes cases), :func:`finalise_conversion` (dataset.json, split, report).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from nnunet_airway.dataset_conversion.splits import Split, paper_split, write_splits_final
from nnunet_airway.dataset_conversion.volumes import read_ct, read_label
from nnunet_airway.errors import DataError
from nnunet_airway.writing import atomic_path, write_json, write_verified_image

REPORT_NAME = "conversion_report.json"
FILE_ENDING = ".nii.gz"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


@dataclass(frozen=True)
class CaseSpec:
    """One case to convert.

    ``image``: one image file, one DICOM folder, or the files of one DICOM series. ``label``: an image file or
    None. ``test`` (or no label): goes to imagesTs (and labelsTs when labelled). ``skip_reason``: listed in the report as skipped, not read.
    """

    case_id: str
    image: tuple[str, ...]
    label: str | None = None
    test: bool = False
    series_uid: str | None = None
    skip_reason: str | None = None

    @property
    def split(self) -> str:
        return "test" if self.test or not self.label else "train"

    def signature(self) -> dict:
        """What the case was made from; a different signature means the case must be converted again.

        Covers the content: size and modification time (ns) of every source file (each file of a DICOM
        folder, and the data file beside an ``.mhd``/``.nhdr`` header), so an edited or replaced source is
        converted again even under the same name.
        """
        image = self.image[0] if len(self.image) == 1 else os.path.commonpath(self.image)
        return {"image": os.path.abspath(image), "n_image_files": len(self.image),
                "label": os.path.abspath(self.label) if self.label else None, "split": self.split,
                "series_uid": self.series_uid,
                "content": content_stamp([*self.image, *([self.label] if self.label else [])])}


def _source_files(path: str) -> list[str]:
    """The files ``path`` stands for: itself, every file below a folder, or a header and its data files."""
    if os.path.isdir(path):
        return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)
    files = [path]
    if path.lower().endswith((".mhd", ".nhdr")):
        stem = os.path.basename(path).rsplit(".", 1)[0]
        folder = os.path.dirname(path) or "."
        files += sorted(os.path.join(folder, f) for f in os.listdir(folder)
                        if f.startswith(stem + ".") and os.path.join(folder, f) != path)
    return files


def content_stamp(paths: Sequence[str]) -> str:
    """A short digest of (path, size, modification time in ns) of every source file behind ``paths``;
    a file that is gone counts as such."""
    digest = hashlib.sha256()
    for path in paths:
        for file in _source_files(path):
            try:
                info = os.stat(file)
                digest.update(f"{file}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{file}\0missing\n".encode())
    return digest.hexdigest()[:20]


@dataclass
class ConversionResult:
    """Where the data set went and what happened to each case (see ``report`` for the details)."""

    dataset_dir: Path
    report: dict
    converted: list[str] = field(default_factory=list)
    already_converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # cases of an earlier run whose sources are gone
    splits_path: Path | None = None
    instructions: list[str] = field(default_factory=list)

    @property
    def report_path(self) -> Path:
        return self.dataset_dir / REPORT_NAME


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise DataError(f"-d {dataset_id}: nnU-Net data set ids run from 1 to 999; choose one in that range")
    if not _NAME_PATTERN.match(name):
        raise DataError(f"-n {name!r}: use letters, digits, '_' and '-' only (it becomes the folder name)")
    return f"Dataset{int(dataset_id):03d}_{name}"


def resolve_out_root(out_root: str | os.PathLike | None) -> Path:
    """``out_root`` or ``$nnUNet_raw``; DataError when neither is given."""
    if out_root is None:
        out_root = os.environ.get("nnUNet_raw")
        if not out_root:
            raise DataError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw or pass --out-root DIR")
    return Path(out_root)


def _split_dirs(dataset_dir: Path, split: str) -> tuple[Path, Path]:
    suffix = "Ts" if split == "test" else "Tr"
    return dataset_dir / f"images{suffix}", dataset_dir / f"labels{suffix}"


def case_outputs(dataset_dir: Path, case_id: str, split: str, has_label: bool) -> list[Path]:
    images, labels = _split_dirs(dataset_dir, split)
    outputs = [images / f"{case_id}_0000{FILE_ENDING}"]
    if has_label:
        outputs.append(labels / f"{case_id}{FILE_ENDING}")
    return outputs


def _claim_folder(out_root: Path, folder_name: str, source: str) -> dict:
    """The previous report of this data set ({} for a new one); DataError when the folder is another data set's."""
    prefix = folder_name.split("_")[0] + "_"
    if out_root.is_dir():
        clash = sorted(p.name for p in out_root.iterdir()
                       if p.name.startswith(prefix) and p.name != folder_name and p.is_dir())
        if clash:
            raise DataError(f"{out_root / clash[0]}: data set id {prefix[7:-1]} is already taken by {clash[0]}; "
                            "nnU-Net finds data sets by id: choose another -d")
    dataset_dir = out_root / folder_name
    if not dataset_dir.exists() or not any(dataset_dir.iterdir()):
        return {}
    report_path = dataset_dir / REPORT_NAME
    if not report_path.is_file():
        raise DataError(f"{dataset_dir}: exists with files but no {REPORT_NAME}, so it belongs to another data set; "
                        "choose another -d/-n or move that folder away")
    try:
        report = json.loads(report_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{report_path}: unreadable ({exc}); move the folder away and convert again") from exc
    if not isinstance(report, dict) or not isinstance(report.get("cases", {}), dict):
        raise DataError(f"{report_path}: not a conversion report (expected a JSON object with 'cases'); move the "
                        "folder away and convert again")
    if report.get("dataset") != folder_name or report.get("source") != source:
        raise DataError(f"{dataset_dir}: holds the data set converted from source {report.get('source')!r}, "
                        f"not {source!r}; choose another -d/-n or move that folder away")
    return report


def _remove_stale_temporaries(dataset_dir: Path) -> None:
    """Temporary files an interrupted run left behind (writing.atomic_path names them ``.*.tmp*``)."""
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        for tmp in (dataset_dir / sub).glob(".*.tmp*"):
            tmp.unlink()


def _write_case_files(outputs: Sequence[Path], volumes: Sequence) -> None:
    """Write (array, geometry) pairs to ``outputs`` under temporary names, then rename them all."""
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(path)) for path in outputs]
        for tmp, path, (array, geometry) in zip(temporaries, outputs, volumes, strict=True):
            write_verified_image(tmp, array, geometry, compress=True, target=path)


def convert_case(spec: CaseSpec, dataset_dir: Path, binarize_labels: bool = False, min_slices: int = 10) -> dict:
    """Read, check and write one case; return its report entry (status converted or rejected)."""
    entry = {"case": spec.case_id, "split": spec.split, "signature": spec.signature(),
             "series_instance_uid": spec.series_uid}
    started = time.perf_counter()
    try:
        ct = read_ct(spec.image, min_slices=min_slices, series_uid=spec.series_uid)
        label = read_label(spec.label, ct, binarize_labels) if spec.label else None
    except DataError as exc:
        return {**entry, "status": "rejected", "reason": str(exc)}
    outputs = case_outputs(dataset_dir, spec.case_id, spec.split, label is not None)
    volumes = [(ct.array, ct.geometry)] + ([(label, ct.geometry)] if label is not None else [])
    _write_case_files(outputs, volumes)
    return {**entry, "status": "converted", "reason": None,
            "series_instance_uid": ct.series_uid or spec.series_uid,
            "outputs": [str(p.relative_to(dataset_dir)) for p in outputs],
            "shape_zyx": list(ct.array.shape), "dtype": str(ct.array.dtype),
            "spacing_xyz": list(ct.geometry.spacing), "origin_xyz": list(ct.geometry.origin),
            "direction": list(ct.geometry.direction),
            "label_voxels": int(label.sum()) if label is not None else None,
            "notes": ct.notes, **ct.details, "seconds": round(time.perf_counter() - started, 2)}


def _already_converted(entry: dict | None, spec: CaseSpec, dataset_dir: Path) -> bool:
    return bool(entry) and entry.get("status") == "converted" and entry.get("signature") == spec.signature() \
        and all((dataset_dir / p).is_file() for p in entry.get("outputs", []))


def _remove_other_split_files(dataset_dir: Path, case_id: str, keep: Sequence[str]) -> None:
    """A case that moved between train and test: delete its files from the split it left."""
    for split in ("train", "test"):
        for path in case_outputs(dataset_dir, case_id, split, True):
            if str(path.relative_to(dataset_dir)) not in keep and path.exists():
                path.unlink()


def _assign_paper_split(specs: list[CaseSpec], seed: int) -> tuple[list[CaseSpec], Split]:
    labelled = [s.case_id for s in specs if s.label and not s.skip_reason]
    try:
        split = paper_split(labelled, seed)
    except ValueError as exc:
        raise DataError(f"{exc}; convert without --paper-split") from exc
    test = set(split.test)
    return [CaseSpec(s.case_id, s.image, s.label, s.case_id in test, s.series_uid, s.skip_reason)
            if s.label else s for s in specs], split


def write_dataset_json(dataset_dir: Path, name: str, num_training: int, description: str, reference: str,
                       licence: str, source: str) -> Path:
    return _write_json_if_changed(dataset_dir / "dataset.json", {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "airway": 1},
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "name": name,
        "description": description,
        "reference": reference,
        "licence": licence,
        "converted_by": f"nnunet-airway convert {source}",
    })


def _check_case_ids(specs: Sequence[CaseSpec]) -> None:
    seen: dict[str, CaseSpec] = {}
    for s in specs:
        if not s.case_id or "/" in s.case_id or s.case_id.startswith("."):
            raise DataError(f"{s.image[0]}: case name {s.case_id!r} cannot be a file name; rename the input")
        if s.case_id in seen:
            raise DataError(f"{s.image[0]} and {seen[s.case_id].image[0]} both give case {s.case_id!r}; "
                            "rename one of them")
        seen[s.case_id] = s


@dataclass(frozen=True)
class ConversionOptions:
    """How to convert: the data set's id and name, where it goes, and what to do with earlier output.

    ``out_root`` defaults to ``$nnUNet_raw``. ``paper_split_seed``: when given, labelled cases are split
    70/10/20 % (63/9/18 of 90) with that seed, the test part goes to imagesTs/labelsTs and fold 0 is written
    as splits_final.json. ``strict``: raise DataError after writing the report when any case was rejected
    (for scripts that need every case). ``inputs`` are recorded in the report as given.
    """

    dataset_id: int
    name: str
    source: str = "folder"
    out_root: str | os.PathLike | None = None
    overwrite: bool = False
    num_workers: int = 1
    binarize_labels: bool = False
    min_slices: int = 10
    description: str = ""
    reference: str = ""
    licence: str = ""
    paper_split_seed: int | None = None
    inputs: dict | None = None
    progress: bool = True
    strict: bool = False


@dataclass
class ConversionPlan:
    """What a run will do, decided before anything is written (see :func:`plan_conversion`)."""

    options: ConversionOptions
    dataset_dir: Path
    report: dict
    result: ConversionResult
    jobs: list[CaseSpec]
    split: Split | None
    new_folder: bool  # the data set folder did not exist (or was empty) before this run
    clear: list[str] = field(default_factory=list)  # cases whose files go: skipped now, or sources gone
    stale_splits: Path | None = None  # splits_final.json of an earlier --paper-split run that this run drops


def plan_conversion(cases: Sequence[CaseSpec], options: ConversionOptions) -> ConversionPlan:
    """Check the cases and the output folder and decide, case by case, what to do. Reads only."""
    folder_name = dataset_folder_name(options.dataset_id, options.name)
    root = resolve_out_root(options.out_root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: is a file, not a folder; give a folder as --out-root (or $nnUNet_raw)")
    specs = list(cases)
    _check_case_ids(specs)
    if not specs:
        where = ", ".join(str(v) for v in (options.inputs or {}).values() if isinstance(v, str)) or "the inputs"
        raise DataError(f"{where}: no {options.source} cases found; check the input folders and their layout "
                        "(see --help)")
    previous = _claim_folder(root, folder_name, options.source)
    dataset_dir = root / folder_name
    split = None
    if options.paper_split_seed is not None:
        specs, split = _assign_paper_split(specs, options.paper_split_seed)
    old_cases = previous.get("cases", {})
    report = {"dataset": folder_name, "source": options.source, "inputs": options.inputs or {},
              "options": {"binarize_labels": options.binarize_labels, "min_slices": options.min_slices,
                          "paper_split_seed": options.paper_split_seed},
              "cases": dict(old_cases)}
    plan = ConversionPlan(options, dataset_dir, report, ConversionResult(dataset_dir, report), [], split,
                          new_folder=not previous)
    current = {s.case_id for s in specs}
    for case in sorted(set(old_cases) - current):
        plan.result.removed[case] = "its source is gone; its files were deleted"
        plan.clear.append(case)
        del report["cases"][case]
    if plan.result.removed:
        report["removed"] = dict(plan.result.removed)
    old_split = previous.get("paper_split")
    if split is None and isinstance(old_split, dict) and old_split.get("splits_final"):
        plan.stale_splits = Path(old_split["splits_final"])
    for spec in specs:
        old = old_cases.get(spec.case_id)
        if spec.skip_reason and old and old.get("status") == "converted" and not options.overwrite:
            # converted by an earlier run (e.g. with --include-withdrawn): keep it, say so; --overwrite removes it
            plan.result.skipped[spec.case_id] = f"{spec.skip_reason} (files of an earlier conversion kept; " \
                                                "--overwrite removes them)"
        elif spec.skip_reason:
            plan.clear.append(spec.case_id)
            plan.result.skipped[spec.case_id] = spec.skip_reason
            report["cases"][spec.case_id] = {"case": spec.case_id, "status": "skipped", "reason": spec.skip_reason,
                                             "signature": spec.signature(), "series_instance_uid": spec.series_uid}
        elif not options.overwrite and _already_converted(old, spec, dataset_dir):
            plan.result.already_converted.append(spec.case_id)
        else:
            plan.jobs.append(spec)
    return plan


def run_conversion(plan: ConversionPlan) -> None:
    """Delete the files of skipped and removed cases, then convert the planned cases, recording each in the
    report as it finishes (so an interrupted run resumes where it stopped)."""
    options, dataset_dir, report, result = plan.options, plan.dataset_dir, plan.report, plan.result
    dataset_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(dataset_dir)
    for case in plan.clear:
        _remove_other_split_files(dataset_dir, case, keep=())
    _write_json_if_changed(dataset_dir / REPORT_NAME, report)

    def record(entry: dict) -> None:
        report["cases"][entry["case"]] = entry
        write_json(dataset_dir / REPORT_NAME, report)

    jobs = plan.jobs
    convert = functools.partial(convert_case, dataset_dir=dataset_dir, binarize_labels=options.binarize_labels,
                                min_slices=options.min_slices)
    bar = tqdm(total=len(jobs), desc=f"converting {dataset_dir.name}", unit="case",
               disable=not options.progress or not jobs)
    try:
        if options.num_workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(min(options.num_workers, len(jobs))) as pool:
                for future in as_completed([pool.submit(convert, s) for s in jobs]):
                    _collect(future.result(), dataset_dir, result, record)
                    bar.update()
        else:
            for spec in jobs:
                _collect(convert(spec), dataset_dir, result, record)
                bar.update()
    finally:
        bar.close()


def finalise_conversion(plan: ConversionPlan) -> ConversionResult:
    """dataset.json (``numTraining`` counted from imagesTr), the paper split (or removing a stale one) and the
    final report; DataError when nothing was converted (a folder this run created is then removed) or, with
    ``strict``, when any case was rejected."""
    options, dataset_dir, report, result = plan.options, plan.dataset_dir, plan.report, plan.result
    first = next(iter(result.rejected.items()), None)
    nothing = not result.converted and not result.already_converted
    why = f"; case {first[0]} rejected: {first[1]}" if first else ""
    if nothing and plan.new_folder:  # nothing worth keeping; an empty folder would block the id for the next try
        shutil.rmtree(dataset_dir, ignore_errors=True)
        raise DataError(f"{dataset_dir}: no case was converted ({len(result.rejected)} rejected, "
                        f"{len(result.skipped)} skipped; nothing was kept){why}")
    n_training = len(list((dataset_dir / "imagesTr").glob(f"*_0000{FILE_ENDING}")))
    write_dataset_json(dataset_dir, options.name, n_training, options.description, options.reference,
                       options.licence, options.source)
    if plan.split is not None:
        split = plan.split
        converted_train = {c for c, e in report["cases"].items() if e.get("status") == "converted"
                           and e.get("split") == "train"}
        result.splits_path, how = write_splits_final(split, dataset_dir, converted_train)
        report["paper_split"] = {"seed": options.paper_split_seed, "train": split.train, "val": split.val,
                                 "test": split.test, "splits_final": str(result.splits_path)}
        if how:
            result.instructions.append(how)
    elif plan.stale_splits is not None:
        report.pop("paper_split", None)
        if plan.stale_splits.is_file():
            plan.stale_splits.unlink()
            result.instructions.append(f"removed {plan.stale_splits}, the paper split of an earlier run "
                                       "(this run has no --paper-split: nnU-Net makes its own folds)")
    _write_json_if_changed(dataset_dir / REPORT_NAME, report)
    if nothing:
        raise DataError(f"{dataset_dir}: no case was converted ({len(result.rejected)} rejected, "
                        f"{len(result.skipped)} skipped; see {dataset_dir / REPORT_NAME}){why}")
    if options.strict and first:
        raise DataError(f"case {first[0]} rejected: {first[1]}")
    return result


def write_raw_dataset(cases: Sequence[CaseSpec], options: ConversionOptions) -> ConversionResult:
    """Convert ``cases`` into ``<out_root>/DatasetXXX_NAME``: plan, run, finalise (see ConversionOptions)."""
    plan = plan_conversion(cases, options)
    run_conversion(plan)
    return finalise_conversion(plan)


def _write_json_if_changed(path: Path, data: dict) -> Path:
    """Write ``data`` unless ``path`` holds it already (a rerun with nothing to do writes nothing)."""
    try:
        if json.loads(path.read_text()) == json.loads(json.dumps(data)):
            return path
    except (OSError, ValueError):
        pass
    return write_json(path, data)


def _collect(entry: dict, dataset_dir: Path, result: ConversionResult, record) -> None:
    if entry["status"] == "converted":
        _remove_other_split_files(dataset_dir, entry["case"], entry["outputs"])
        result.converted.append(entry["case"])
    else:  # files an earlier conversion of this case left would no longer match the report
        _remove_other_split_files(dataset_dir, entry["case"], keep=())
        result.rejected[entry["case"]] = entry["reason"]
    record(entry)
