"""Shared helpers for the Slicer-module tests: an application-like MRML scene from ``slicer-core``.

``slicer-core`` gives the real MRML classes without Qt. :func:`application_scene` sets a scene up the
way the Slicer application does (default colour tables, subject hierarchy, default layout with its
Red/Green/Yellow slice views and their composite nodes), so the module's MRML code runs unchanged.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from support.paths import REPO

MODULE_DIR = REPO / "MRSynth"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # MRSynthSlicerLib, as in the installed extension

slicer = pytest.importorskip("slicer", reason="slicer-core (the MRML package) is not installed")


class ApplicationScene:
    """A scene plus the logics the application keeps alive for it."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        self.color_logic = slicer.vtkMRMLColorLogic()
        self.color_logic.SetMRMLScene(self.scene)
        self.subject_hierarchy_logic = slicer.vtkSlicerSubjectHierarchyModuleLogic()
        self.subject_hierarchy_logic.SetMRMLScene(self.scene)
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene)
        self.layout_logic = slicer.vtkMRMLLayoutLogic()
        self.layout_logic.SetMRMLScene(self.scene)
        self.slice_logics = []
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            logic = slicer.vtkMRMLSliceLogic()  # what each slice view widget creates
            logic.SetMRMLScene(self.scene)
            logic.SetSliceNode(self.scene.GetNthNodeByClass(index, "vtkMRMLSliceNode"))
            self.slice_logics.append(logic)

    @property
    def layout_node(self):
        return self.layout_logic.GetLayoutNode()

    def study(self, patient: str = "Patient 1", study: str = "Study 1") -> int:
        """A new patient/study in the subject hierarchy; returns the study item."""
        shn = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        return shn.CreateStudyItem(shn.CreateSubjectItem(shn.GetSceneItemID(), patient), study)


def application_scene() -> ApplicationScene:
    return ApplicationScene()


def oblique_image(array: np.ndarray, spacing=(1.1, 1.3, 2.0), origin=(3.0, -40.0, 5.5), angle=0.3):
    """A SimpleITK image of ``array`` (z, y, x) with a rotated (oblique) direction."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    c, s = np.cos(angle), np.sin(angle)
    image.SetDirection([c, -s, 0.0, s * 0.8, c * 0.8, 0.6, -s * 0.6, -c * 0.6, 0.8])
    return image
