"""DICOM series written slice by slice, as scanners do."""

from __future__ import annotations

import locale

import SimpleITK as sitk

from support.images import blob_array, make_image


def write_dicom_series(folder, image, uid="1.2.826.0.1.3680043.2.1125.1.1", prefix="s"):
    """One DICOM file per slice of int16 ``image`` with SeriesInstanceUID ``uid``."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    saved_locale = locale.setlocale(locale.LC_ALL)  # GDCM's writer leaves the process in the C (ASCII) locale,
    try:                                             # which breaks later tests that read UTF-8 text by default
        for z in range(image.GetSize()[2]):
            slice_ = image[:, :, z]
            slice_.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, z))))
            slice_.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
            slice_.SetMetaData("0020|0013", str(z))
            slice_.SetMetaData("0020|000e", uid)
            slice_.SetMetaData("0008|0018", f"{uid}.{z + 1}")
            slice_.SetMetaData("0008|0060", "MR")
            writer.SetFileName(str(folder / f"{prefix}{z:03d}.dcm"))
            writer.Execute(slice_)
    finally:
        locale.setlocale(locale.LC_ALL, saved_locale)


def _int16_volume(seed=0, slices=6):
    return sitk.Cast(make_image(blob_array((slices, 16, 16), seed=seed), spacing=(1.0, 1.0, 2.0), origin=(0, 0, 0)),
                     sitk.sitkInt16)
