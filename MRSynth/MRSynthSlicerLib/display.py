"""How result volumes look: colour tables, window/level, and which layer of the slice views shows what."""

from __future__ import annotations

import numpy as np

from MRSynthSlicerLib.colors import RAMPS, color_table_node

GREY_COLOR_NODE_ID = "vtkMRMLColorTableNodeGrey"
KINDS = ("synthetic", "uncertainty", "contribution", "error")

# Voxels at or below this value are transparent when the map is shown as foreground (its background is 0).
TRANSPARENT_BELOW = 1e-6


def robust_range(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """``(low, high)`` percentiles of the nonzero voxels (of all voxels if none is nonzero); high > low."""
    values = array[array != 0] if np.any(array != 0) else array.ravel()
    lo, hi = (float(v) for v in np.percentile(values, (low, high)))
    if not hi > lo:
        hi = lo + (abs(lo) * 1e-3 or 1.0)
    return lo, hi


def window_for(kind: str, array: np.ndarray) -> tuple[float, float]:
    """Display range ``(min, max)`` of a result volume of ``kind`` (see :data:`KINDS`).

    Synthetic: 0.5th..99.5th percentile of the head; uncertainty and error maps: 0..99th percentile of
    their nonzero voxels (a few outliers must not wash out the map); contributions: the full share 0..1.
    """
    if kind == "synthetic":
        return robust_range(array)
    if kind in ("uncertainty", "error"):
        return 0.0, robust_range(array, 0.0, 99.0)[1]
    if kind == "contribution":
        return 0.0, 1.0
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


def configure_display(node, kind: str, array: np.ndarray) -> None:
    """Colour table, fixed window/level and (for maps) transparent background of a result volume."""
    scene = node.GetScene()
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    lo, hi = window_for(kind, array)
    if kind == "synthetic":
        if scene.GetNodeByID(GREY_COLOR_NODE_ID) is not None:  # Slicer's default grey table
            display.SetAndObserveColorNodeID(GREY_COLOR_NODE_ID)
        display.ApplyThresholdOff()
    else:
        display.SetAndObserveColorNodeID(color_table_node(scene, RAMPS[kind]).GetID())
        display.SetLowerThreshold(TRANSPARENT_BELOW)
        display.SetUpperThreshold(max(float(np.max(array)), hi) + 1.0)
        display.ApplyThresholdOn()
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(lo, hi)


def slice_composite_nodes(scene) -> list:
    """Every slice composite node of the scene (one per slice view)."""
    return [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def show_in_slice_views(scene, background, foreground=None, opacity: float = 0.5, composite_nodes=None) -> None:
    """Show ``background`` (and ``foreground`` at ``opacity``) in the given slice views (default: all)."""
    for composite in composite_nodes if composite_nodes is not None else slice_composite_nodes(scene):
        composite.SetBackgroundVolumeID(background.GetID() if background is not None else None)
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetForegroundOpacity(opacity if foreground is not None else 0.0)
