"""The application-like MRML scene the Slicer-module tests run in."""

from support.slicer_scene import application_scene


def test_application_scene_has_linked_slice_views():
    app = application_scene()
    names = sorted(app.scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode").GetLayoutName()
                   for i in range(app.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")))
    assert names == ["Green", "Red", "Yellow"]
    assert app.scene.GetNodeByID("vtkMRMLColorTableNodeGrey") is not None
