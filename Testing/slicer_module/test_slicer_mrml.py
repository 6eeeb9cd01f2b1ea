"""MRML adapter on a real vtkMRMLScene (slicer-core): geometry, display, hierarchy, comparison, layout."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk
from support.slicer_scene import application_scene, oblique_image, slicer

# isort: split

from MRSynthSlicerLib import colors, display, layout, provenance, tables
from MRSynthSlicerLib.compare import build_comparison, region_label_image
from MRSynthSlicerLib.hierarchy import parent_item_of, place_under, subject_hierarchy
from MRSynthSlicerLib.volumes import (
    add_volume_node,
    array_from_volume_node,
    ijk_to_ras_of_image,
    ijk_to_ras_of_node,
    image_from_volume_node,
    same_geometry,
)

from MRSynthLib.quality.evaluation import absolute_error_image
from MRSynthLib.quality.metrics import evaluate_images
from MRSynthLib.phantom import PhantomConfig, generate_phantom

# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8, np.float64])
def test_volume_node_round_trip_keeps_voxels_dtype_and_oblique_geometry(dtype):
    app = application_scene()
    array = (np.random.default_rng(0).random((5, 6, 7)) * 100).astype(dtype)
    image = oblique_image(array)
    node = add_volume_node(app.scene, image, "oblique")
    back = image_from_volume_node(node)
    assert np.array_equal(sitk.GetArrayFromImage(back), array)
    assert sitk.GetArrayFromImage(back).dtype == dtype
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)


def test_ijk_to_ras_maps_voxels_to_itk_physical_points_with_lps_flip():
    app = application_scene()
    image = oblique_image(np.zeros((4, 5, 6), np.float32))
    node = add_volume_node(app.scene, image, "v")
    matrix = ijk_to_ras_of_node(node)
    assert same_geometry(matrix, ijk_to_ras_of_image(image), tolerance=1e-12)
    for index in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = (matrix @ np.array([*index, 1.0]))[:3]
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)


def test_labelmap_node_and_empty_node():
    app = application_scene()
    labels = sitk.GetImageFromArray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    node = add_volume_node(app.scene, labels, "labels", labelmap=True)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(array_from_volume_node(node), np.arange(24).reshape(2, 3, 4))
    empty = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="no voxels"):
        image_from_volume_node(empty)


# --------------------------------------------------------------------------- names, attributes, display


def test_result_names_mark_every_volume_as_synthetic():
    assert provenance.result_name("t1ce", "m") == "t1ce (synthetic, m)"
    assert provenance.result_name("t1ce", "m", "uncertainty") == "t1ce uncertainty (synthetic, m)"
    assert provenance.result_name("flair", "m", "contribution", "t2") == "flair contribution of t2 (synthetic, m)"
    assert provenance.result_name("t1ce", "m", "error") == "t1ce |error| (synthetic, m)"
    with pytest.raises(ValueError, match="input_contrast"):
        provenance.result_name("t1ce", "m", "contribution")


def test_provenance_attributes_from_sidecar():
    sidecar = {"kind": "synthetic", "target": "t1ce", "seed": 3, "samples": 8, "device": "cpu",
               "notice": "SYNTHETIC - not for diagnosis", "inputs": {"t1": "a", "t2": "b"},
               "bundle": {"name": "b1", "version": "1.2.3", "sha256": "ab" * 32}}
    attributes = provenance.provenance_attributes(sidecar)
    assert attributes["MRSynth.model"] == "b1"
    assert attributes["MRSynth.modelVersion"] == "1.2.3"
    assert attributes["MRSynth.seed"] == "3"
    assert attributes["MRSynth.inputs"] == "t1,t2"
    assert attributes["MRSynth.notice"] == "SYNTHETIC - not for diagnosis"
    assert json.loads(attributes["MRSynth.provenance"]) == sidecar


def test_colour_tables_are_created_once_and_get_brighter():
    app = application_scene()
    first = colors.color_table_node(app.scene, colors.UNCERTAINTY)
    assert colors.color_table_node(app.scene, colors.UNCERTAINTY) is first
    assert first.GetNumberOfColors() == colors.NUMBER_OF_COLORS
    rgba = [np.array([0.0] * 4) for _ in range(2)]
    first.GetColor(0, rgba[0])
    first.GetColor(colors.NUMBER_OF_COLORS - 1, rgba[1])
    assert rgba[0][:3].sum() == 0.0 and rgba[1][:3].sum() > 2.5  # black → pale yellow
    luminance = colors.UNCERTAINTY.colors() @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) >= -1e-9), "uncertainty colours must brighten monotonically"


@pytest.mark.parametrize("kind", ["synthetic", "uncertainty", "contribution", "error"])
def test_display_settings_per_kind(kind):
    app = application_scene()
    array = np.zeros((8, 8, 8), np.float32)
    array[2:6, 2:6, 2:6] = np.linspace(0.1, 0.9, 64).reshape(4, 4, 4)
    node = add_volume_node(app.scene, sitk.GetImageFromArray(array), kind)
    display.configure_display(node, kind, array)
    shown = node.GetDisplayNode()
    assert not shown.GetAutoWindowLevel()
    lo, hi = display.window_for(kind, array)
    assert shown.GetWindowLevelMin() == pytest.approx(lo) and shown.GetWindowLevelMax() == pytest.approx(hi)
    if kind == "synthetic":
        assert shown.GetColorNodeID() == display.GREY_COLOR_NODE_ID
        assert not shown.GetApplyThreshold()
        assert (lo, hi) == pytest.approx(tuple(np.percentile(array[array > 0], (0.5, 99.5))))
    else:
        assert shown.GetColorNode().GetName() == colors.RAMPS[kind].name
        assert shown.GetApplyThreshold() and shown.GetLowerThreshold() > 0  # zero background is transparent
        assert lo == 0.0
    if kind == "contribution":
        assert hi == 1.0


def test_show_in_slice_views_sets_background_and_foreground_of_every_view():
    app = application_scene()
    image = sitk.GetImageFromArray(np.ones((4, 4, 4), np.float32))
    background = add_volume_node(app.scene, image, "bg")
    foreground = add_volume_node(app.scene, image, "fg")
    display.show_in_slice_views(app.scene, background, foreground, 0.4)
    composites = display.slice_composite_nodes(app.scene)
    assert len(composites) == 3
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == background.GetID()
        assert composite.GetForegroundVolumeID() == foreground.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.4)


def test_results_are_placed_in_the_inputs_study():
    app = application_scene()
    study = app.study()
    image = sitk.GetImageFromArray(np.ones((4, 4, 4), np.float32))
    source = add_volume_node(app.scene, image, "t1")
    place_under(app.scene, source, study)
    assert parent_item_of(app.scene, source) == study
    result = add_volume_node(app.scene, image, "result")
    item = place_under(app.scene, result, parent_item_of(app.scene, source))
    assert subject_hierarchy(app.scene).GetItemParent(item) == study
    loose = add_volume_node(app.scene, image, "loose")  # never placed: parent is the scene
    assert parent_item_of(app.scene, loose) == subject_hierarchy(app.scene).GetSceneItemID()


# --------------------------------------------------------------------------- comparison


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(PhantomConfig(size=(24, 28, 20), spacing=(3.0, 3.0, 3.0), seed=5))


def _perturbed(image, seed, sigma):
    array = sitk.GetArrayFromImage(image)
    noisy = array + np.random.default_rng(seed).normal(0, sigma, array.shape).astype(np.float32) * (array > 0)
    out = sitk.GetImageFromArray(np.clip(noisy, 0, None).astype(np.float32))
    out.CopyInformation(image)
    return out


def test_comparison_nodes_metrics_table_charts_and_layout(phantom):
    app = application_scene()
    study = app.study()
    reference = add_volume_node(app.scene, phantom.images["t1ce"], "t1ce real")
    first_input = add_volume_node(app.scene, phantom.images["t1"], "t1")
    labels = add_volume_node(app.scene, phantom.labels, "tumour labels", labelmap=True)
    synthetic_images = {"model-a": _perturbed(phantom.images["t1ce"], 1, 20.0),
                        "model-b": _perturbed(phantom.images["t1ce"], 2, 120.0)}
    synthetic = {}
    for model, image in synthetic_images.items():
        node = add_volume_node(app.scene, image, provenance.result_name("t1ce", model))
        node.SetAttribute("MRSynth.target", "t1ce")
        node.SetAttribute("MRSynth.modelVersion", "0.0.1")
        place_under(app.scene, node, study)
        synthetic[model] = node

    comparison = build_comparison(app.scene, reference, synthetic, labels, first_input, {"model-a": 1.5},
                                  app.layout_node)

    # Error maps: the library's protocol, on the synthetic grid, in the same study, one shared window.
    assert list(comparison.errors) == ["model-a", "model-b"]
    for model, node in comparison.errors.items():
        assert node.GetName() == f"t1ce |error| (synthetic, {model})"
        assert node.GetAttribute("MRSynth.kind") == "error"
        assert same_geometry(ijk_to_ras_of_node(node), ijk_to_ras_of_node(synthetic[model]))
        expected = absolute_error_image(phantom.images["t1ce"], synthetic_images[model])
        np.testing.assert_allclose(array_from_volume_node(node), sitk.GetArrayFromImage(expected), atol=1e-6)
        assert subject_hierarchy(app.scene).GetItemParent(
            subject_hierarchy(app.scene).GetItemByDataNode(node)) == study
    windows = {(n.GetDisplayNode().GetWindowLevelMin(), n.GetDisplayNode().GetWindowLevelMax())
               for n in comparison.errors.values()}
    assert len(windows) == 1

    # Metrics table: one row per model, values equal to MRSynthLib.quality.metrics on the same images.
    table = comparison.table
    assert table.GetNumberOfRows() == 2
    region = "tumour labels"
    columns = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    for metric in ("PSNR", "SSIM", "MAE"):
        assert f"{metric} brain" in columns and f"{metric} {region}" in columns
    assert table.GetColumnUnitLabel("PSNR brain") == "dB"
    label_values = [int(v) for v in np.unique(sitk.GetArrayFromImage(phantom.labels)) if v]
    for row, model in enumerate(synthetic):
        expected = evaluate_images(phantom.images["t1ce"], synthetic_images[model], label_map=phantom.labels,
                                   label_regions={region: label_values})
        assert table.GetCellText(row, columns.index("Model")) == model
        assert table.GetCellText(row, columns.index("Version")) == "0.0.1"
        for key, metric in (("psnr", "PSNR"), ("ssim", "SSIM"), ("mae", "MAE")):
            assert cell(table, row, f"{metric} brain") == pytest.approx(expected["brain"][key], rel=1e-9)
            assert cell(table, row, f"{metric} {region}") == pytest.approx(expected["regions"][region][key], rel=1e-9)
    psnr = [cell(table, r, "PSNR brain") for r in range(2)]
    assert psnr[0] > psnr[1]  # less noise, higher PSNR
    assert cell(table, 0, "Run time") == 1.5
    assert np.isnan(cell(table, 1, "Run time"))

    # Charts: one per metric, a bar series per region reading the table.
    assert set(comparison.charts) == {"psnr", "ssim", "mae"}
    chart = comparison.charts["psnr"]
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(0)
    assert series.GetTableNodeID() == table.GetID()
    assert series.GetYColumnName() == "PSNR brain" and series.GetLabelColumnName() == "Model"
    assert series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeBar

    # Layout: reference + 2 models on top, first input + 2 error maps below, all linked; table + chart last.
    root = ET.fromstring(comparison.layout_description)
    views = list(root.iter("view"))
    tags = [view.get("singletontag") for view in views if view.get("class") == "vtkMRMLSliceNode"]
    assert tags == [f"MRSynthCompare{i}" for i in range(1, 7)]
    assert [(v.get("class"), v.get("singletontag")) for v in views[6:]] == [
        ("vtkMRMLTableViewNode", layout.TABLE_VIEW_TAG), ("vtkMRMLPlotViewNode", layout.PLOT_VIEW_TAG)]
    assert [len(row.findall("./layout/item")) for row in root.findall("./item")] == [3, 3, 2]
    assert app.scene.GetSingletonNode(layout.TABLE_VIEW_TAG, "vtkMRMLTableViewNode").GetTableNodeID() == table.GetID()
    assert app.scene.GetSingletonNode(layout.PLOT_VIEW_TAG, "vtkMRMLPlotViewNode").GetPlotChartNodeID() == chart.GetID()
    assert app.layout_node.GetViewArrangement() == layout.COMPARE_LAYOUT_ID
    assert app.layout_node.GetLayoutDescription(layout.COMPARE_LAYOUT_ID) == comparison.layout_description
    expected_backgrounds = [reference, synthetic["model-a"], synthetic["model-b"], first_input,
                            comparison.errors["model-a"], comparison.errors["model-b"]]
    assert [c.GetBackgroundVolumeID() for c in comparison.composite_nodes] == [n.GetID() for n in expected_backgrounds]
    assert all(c.GetLinkedControl() and c.GetHotLinkedControl() for c in comparison.composite_nodes)
    for tag in tags:
        assert app.scene.GetSingletonNode(tag, "vtkMRMLSliceNode").GetOrientation() == "Axial"


def cell(table, row, column):
    """The stored value (not the display text, which has 6 significant digits)."""
    return table.GetTable().GetColumnByName(column).GetValue(row)


def test_comparison_without_reference_is_layout_only(phantom):
    app = application_scene()
    first_input = add_volume_node(app.scene, phantom.images["t1"], "t1")
    synthetic = {"m": add_volume_node(app.scene, phantom.images["t2"], "t2 (synthetic, m)")}
    comparison = build_comparison(app.scene, None, synthetic, first_input=first_input, layout_node=app.layout_node)
    assert comparison.table is None and comparison.errors == {} and comparison.charts == {}
    assert "vtkMRMLTableViewNode" not in comparison.layout_description
    assert [[v.background for v in row] for row in comparison.views] == [[first_input, synthetic["m"]]]


def test_reference_on_another_grid_is_resampled_onto_the_synthetic_grid(phantom):
    app = application_scene()
    synthetic = {"m": add_volume_node(app.scene, phantom.images["t1ce"], "s")}
    shifted = sitk.Image(phantom.images["t1ce"])
    shifted.SetOrigin([o + 1.5 for o in shifted.GetOrigin()])
    reference = add_volume_node(app.scene, shifted, "real")
    comparison = build_comparison(app.scene, reference, synthetic)
    error = comparison.errors["m"]
    assert same_geometry(ijk_to_ras_of_node(error), ijk_to_ras_of_node(synthetic["m"]))
    assert np.max(array_from_volume_node(error)) > 0  # the shift shows up as error


def test_region_from_segmentation_equals_region_from_label_map(phantom):
    app = application_scene()
    grid = add_volume_node(app.scene, phantom.images["t1"], "t1")
    labelmap = add_volume_node(app.scene, phantom.labels, "labels", labelmap=True)
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segments")
    segmentation.CreateDefaultDisplayNodes()
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    from_labels, values = region_label_image(app.scene, labelmap, grid)
    from_segments, segment_values = region_label_image(app.scene, segmentation, grid)
    assert values == [int(v) for v in np.unique(sitk.GetArrayFromImage(phantom.labels)) if v]
    assert len(segment_values) == len(values)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(from_segments) > 0, sitk.GetArrayFromImage(from_labels) > 0)
    assert app.scene.GetFirstNodeByName("MRSynth temporary region") is None


def test_metrics_table_marks_undefined_values_as_nan():
    app = application_scene()
    table = app.scene.AddNewNodeByClass("vtkMRMLTableNode")
    scores = [tables.ModelScores("a", "1", {"brain": {"psnr": None, "ssim": 1.0, "mae": 0.0}}),
              tables.ModelScores("b", "1", {"brain": {"psnr": 30.0, "ssim": 0.9, "mae": 0.1},
                                            "lesion": {"psnr": 20.0, "ssim": 0.5, "mae": 0.2}})]
    tables.fill_metrics_table(table, scores)
    columns = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert columns[4:] == ["PSNR brain", "SSIM brain", "MAE brain", "PSNR lesion", "SSIM lesion", "MAE lesion"]
    assert np.isnan(cell(table, 0, "PSNR brain"))  # identical volumes
    assert np.isnan(cell(table, 0, "SSIM lesion"))  # region absent for model a
    assert cell(table, 1, "PSNR lesion") == 20.0


def test_layout_xml_rejects_unknown_orientation_and_empty_rows():
    with pytest.raises(ValueError, match="orientation"):
        layout.layout_xml([[layout.ViewSpec("a", "1", None)]], orientation="Oblique")
    with pytest.raises(ValueError, match="at least one view"):
        layout.layout_xml([[]])
