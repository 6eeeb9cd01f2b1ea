"""File-level evaluation: read reference/prediction/mask/labels, compute metrics, write JSON."""

from __future__ import annotations

import os
from pathlib import Path

from MRSynthLib.errors import InputImageError
from MRSynthLib.files.imageio import load_input, read_image


def absolute_error_image(reference, prediction, brain_mask=None):
    """|reference - prediction| after the default evaluation protocol's normalisation, on the reference grid.

    Both volumes are scaled by their own brain percentiles (see :class:`MRSynthLib.quality.metrics.EvaluationProtocol`);
    the brain is ``brain_mask`` (nonzero) or the reference foreground. Voxels outside it are 0.
    """
    from MRSynthLib.files.imageio import array_to_image, image_to_array
    from MRSynthLib.quality.metrics import brain_selection, normalised_error

    ref = image_to_array(reference)
    brain = brain_selection(ref, image_to_array(brain_mask) if brain_mask is not None else None)
    error = normalised_error(ref, image_to_array(prediction), brain)
    return array_to_image(error.astype("float32"), reference)


def _scalar_float(image, path):
    """``image`` as float32, or one sentence when it is not one real value per voxel (colour, vector, complex)."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1 or "complex" in image.GetPixelIDTypeAsString():
        raise InputImageError(f"--prediction {path} has {image.GetPixelIDTypeAsString()} voxels: give a scalar (grayscale) "
                              f"volume, such as the synthetic image written by mrsynth synthesize.")
    return sitk.Cast(image, sitk.sitkFloat32)


def evaluate_files(
    reference: str | os.PathLike,
    prediction: str | os.PathLike,
    mask: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    regions: dict[str, list[int]] | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    hounsfield: bool = False,
) -> dict:
    """Metrics of ``prediction`` against ``reference`` (both on one grid); optionally written as JSON.
    ``hounsfield``: both are CT in Hounsfield units; every region also reports ``mae_hu``."""
    from MRSynthLib.files.atomic import check_writable, write_json
    from MRSynthLib.quality.metrics import evaluate_images

    if output:
        from MRSynthLib.files.path_guard import check_outputs

        check_outputs([("--output", output)], [("--reference", reference), ("--prediction", prediction),
                                               ("--mask", mask), ("--labels", labels)])
        check_writable(output, overwrite)
    ref = load_input(reference, "--reference")
    pred = _scalar_float(read_image(prediction, "--prediction"), prediction)
    brain = read_image(mask, "--mask") if mask else None
    label_map = read_image(labels, "--labels") if labels else None
    report = evaluate_images(ref, pred, brain_mask=brain, label_map=label_map, label_regions=regions, hounsfield=hounsfield)
    report["files"] = {"reference": str(reference), "prediction": str(prediction),
                       "mask": str(mask) if mask else None, "labels": str(labels) if labels else None}
    if output:
        write_json(Path(output), report, overwrite=overwrite)
    return report
