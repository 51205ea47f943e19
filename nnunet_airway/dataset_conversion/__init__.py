"""nnunet_airway.dataset_conversion: airway data sets (LIDC-IDRI, EXACT'09, BAS, ATM'22, AIIB23, plain folders)
into nnU-Net v2 raw format, through one writer and one robust DICOM reader. Never imports torch or nnU-Net."""

from nnunet_airway.dataset_conversion.dicom import read_dicom_folder
from nnunet_airway.dataset_conversion.raw_writer import (
    CaseSpec,
    ConversionOptions,
    ConversionResult,
    write_raw_dataset,
)
from nnunet_airway.dataset_conversion.sources import folder_cases


def convert_folder(images_dir, labels_dir, dataset_id: int, name: str = "Airway", **options) -> ConversionResult:
    """Convert ``images_dir/<case>.<ext>`` (or DICOM folders ``<case>/``) with ``labels_dir/<case>.<ext>`` (or no
    labels: ``labels_dir=None``) into ``<out_root or $nnUNet_raw>/DatasetXXX_NAME``; ``options`` are fields of
    :class:`ConversionOptions`."""
    found = folder_cases(images_dir, labels_dir)
    inputs = {"images": str(images_dir), "labels": None if labels_dir is None else str(labels_dir)}
    if found.unmatched:
        inputs["not_used"] = found.unmatched
    return write_raw_dataset(found.cases, ConversionOptions(dataset_id, name, source="folder", inputs=inputs,
                                                            **options))


__all__ = ["CaseSpec", "ConversionOptions", "ConversionResult", "convert_folder", "read_dicom_folder", "write_raw_dataset"]
