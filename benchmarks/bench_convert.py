"""Converter speed against a bare SimpleITK series read + NIfTI write of the same DICOM series, same run.

A 512 x 512 x 400 CT series (int16, rescale intercept -1024, one file per slice, no extension, names out of
slice order) is generated, then timed with
- baseline: ``sitk.ImageSeriesReader`` on GDCM's file list + ``sitk.WriteImage(..., .nii.gz)``;
- converter: ``nnunet_airway.dataset_conversion.convert_folder`` (header scan, series choice, slice ordering
  and gap/tilt checks, rescale and clipping, atomic NIfTI write, report).
Each is run ``--repeats`` times alternately; the best times are compared. Target: ratio <= 1.3.

    python benchmarks/bench_convert.py [--slices 400] [--size 512] [--repeats 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from nnunet_airway.dataset_conversion import convert_folder

TARGET_RATIO = 1.3


def write_series(folder: Path, n_slices: int, size: int, seed: int = 0) -> None:
    """A chest-like CT: air around an elliptic body, two dark lungs, noise; files named out of slice order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size - 0.5
    body = (x / 0.42) ** 2 + (y / 0.32) ** 2 < 1
    lungs = ((np.abs(x) - 0.18) / 0.14) ** 2 + (y / 0.22) ** 2 < 1
    base = np.where(body, np.where(lungs, -850, 40), -1000).astype(np.int16)
    series, study = generate_uid(), generate_uid()
    names = rng.permutation(n_slices)
    for k in range(n_slices):
        hu = base + rng.normal(0, 20, base.shape).astype(np.int16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CT", "BENCH", study, series
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-180.0, -200.0, -300.0 + 0.625 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 0.625
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"{names[k]:x}", enforce_file_format=True)


def baseline(series_dir: Path, out_file: Path, as_int16: bool = False) -> float:
    """SimpleITK as a bare script uses it; GDCM returns int32 for int16 slices with an intercept, so
    ``as_int16`` casts first (the converter writes int16): a stricter baseline with fewer bytes to compress."""
    start = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series_dir)))
    image = reader.Execute()
    if as_int16:
        image = sitk.Cast(image, sitk.sitkInt16)
    sitk.WriteImage(image, str(out_file), useCompression=True)
    return time.perf_counter() - start


def converter(images: Path, labels: Path, out_root: Path) -> float:
    start = time.perf_counter()
    convert_folder(images, labels, 999, "Bench", out_root=out_root, overwrite=True, progress=False, strict=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="work here and keep the files (default: a temp folder)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        images, labels = work / "images", work / "labels"
        series_dir = images / "bench"
        if not series_dir.exists():
            t = time.perf_counter()
            write_series(series_dir, args.slices, args.size)
            print(f"wrote {args.size}x{args.size}x{args.slices} DICOM series in {time.perf_counter() - t:.1f} s")
        labels.mkdir(exist_ok=True)
        base_times, strict_times, conv_times = [], [], []
        for _ in range(args.repeats):
            base_times.append(baseline(series_dir, work / "baseline.nii.gz"))
            strict_times.append(baseline(series_dir, work / "baseline16.nii.gz", as_int16=True))
            conv_times.append(converter(images, labels, work / "raw"))
        b, b16, c = min(base_times), min(strict_times), min(conv_times)

        def runs(times: list[float]) -> str:
            return ", ".join(f"{t:.2f}" for t in times)

        print(f"baseline, SimpleITK series read + NIfTI write (int32 as GDCM returns it): {b:.2f} s ({runs(base_times)})")
        print(f"stricter baseline, same with a cast to int16 first:                     {b16:.2f} s ({runs(strict_times)})")
        print(f"converter, nnunet-airway convert folder (int16):                         {c:.2f} s ({runs(conv_times)})")
        print(f"ratio converter / baseline: {c / b:.2f} (target <= {TARGET_RATIO}) -> "
              f"{'PASS' if c / b <= TARGET_RATIO else 'FAIL'}; against the int16 baseline: {c / b16:.2f}")
        converted = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "raw" / "Dataset999_Bench" / "imagesTs" /
                                                              "bench_0000.nii.gz")))
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "baseline.nii.gz")))
        same = np.array_equal(converted, np.maximum(reference, -1024))  # the converter clips air noise at -1024
        print(f"voxels equal to SimpleITK's (after clipping at -1024 HU): {same}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
