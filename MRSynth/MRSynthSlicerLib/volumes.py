"""Volume nodes ⇄ SimpleITK images with exact geometry.

The only place in the Slicer glue that converts between MRML's RAS world and ITK's LPS physical space:

* MRML: ``RAS = IJKToRAS @ (i, j, k, 1)``; the voxel array of ``vtkImageData`` is x-fastest.
* SimpleITK: ``LPS = origin + direction @ (spacing * (i, j, k))``; ``GetArrayFromImage`` gives ``(z, y, x)``.
* ``RAS = diag(-1, -1, 1) @ LPS``.

Both voxel orders are the same memory layout, so arrays are copied without transposing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ijk_to_ras_of_image(image: sitk.Image) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a SimpleITK image's grid."""
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = direction * spacing  # scales column j by spacing[j]
    ijk_to_lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ ijk_to_lps


def ijk_to_ras_of_node(node) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of a volume node (its own grid, parent transforms not applied)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _vtk_matrix(array: np.ndarray):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def array_from_volume_node(node) -> np.ndarray:
    """Copy of a scalar volume node's voxels, shape ``(z, y, x)``, the node's own dtype.

    Raises:
        ValueError: when the node has no image data or more than one component per voxel.
    """
    from vtk.util import numpy_support

    image_data = node.GetImageData() if node is not None else None
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        name = node.GetName() if node is not None else "None"
        raise ValueError(f"Volume {name!r} has no voxels: load an image into it first.")
    scalars = image_data.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise ValueError(
            f"Volume {node.GetName()!r} must have one value per voxel, not {scalars.GetNumberOfComponents()}: "
            "select a scalar volume."
        )
    nx, ny, nz = image_data.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx).copy()


def image_from_volume_node(node) -> sitk.Image:
    """SimpleITK image with the node's voxels (own dtype) and exact geometry (LPS)."""
    import SimpleITK as sitk

    array = array_from_volume_node(node)
    ijk_to_lps = LPS_TO_RAS @ ijk_to_ras_of_node(node)
    columns = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"Volume {node.GetName()!r} has a zero voxel size: fix its geometry (Volumes module).")
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in ijk_to_lps[:3, 3]])
    image.SetDirection([float(v) for v in (columns / spacing).ravel()])
    return image


def update_volume_node_from_image(node, image: sitk.Image) -> None:
    """Replace a volume node's voxels and geometry by those of ``image`` (any scalar pixel type)."""
    import SimpleITK as sitk
    import vtk
    from vtk.util import numpy_support

    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"Only 3D scalar images can become volume node {node.GetName()!r}.")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image))
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*image.GetSize())
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True,
                                         array_type=numpy_support.get_vtk_array_type(array.dtype))
    image_data.GetPointData().SetScalars(scalars)
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras_of_image(image)))
    node.SetAndObserveImageData(image_data)


def add_volume_node(scene, image: sitk.Image, name: str, labelmap: bool = False):
    """New scalar (or label map) volume node in ``scene`` holding ``image``, with default display nodes."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    update_volume_node_from_image(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def same_geometry(a: np.ndarray, b: np.ndarray, tolerance: float = 1e-6) -> bool:
    """True when two 4x4 IJK-to-RAS matrices agree within ``tolerance`` (mm and direction cosines)."""
    return bool(np.allclose(a, b, rtol=0.0, atol=tolerance))
