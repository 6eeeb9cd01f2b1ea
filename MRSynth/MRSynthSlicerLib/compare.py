"""The Compare panel: several models on the same inputs, judged against the real contrast when there is one.

:class:`CompareRun` runs one child-process synthesis per model, one after the other.
:func:`build_comparison` then makes, on the synthetic volumes' grid: one absolute-error map per model
(the evaluation protocol's normalisation, ``MRSynthLib.quality.evaluation.absolute_error_image``), a metrics
table (PSNR / SSIM / MAE in the brain and inside a chosen segmentation or label map, from
``MRSynthLib.quality.metrics.evaluate_images``), one bar chart per metric, and the linked side-by-side layout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from MRSynthSlicerLib.commands import SynthesisOptions
from MRSynthSlicerLib.display import configure_display, window_for
from MRSynthSlicerLib.hierarchy import parent_item_of, place_under
from MRSynthSlicerLib.layout import (
    COMPARE_LAYOUT_ID,
    ViewSpec,
    compare_views,
    layout_xml,
    register_layout,
    show_table_and_chart,
    show_views,
)
from MRSynthSlicerLib.process import CANCELLED, FAILED, SUCCEEDED, LogEvent, Outcome, ProgressEvent
from MRSynthSlicerLib.provenance import result_name
from MRSynthSlicerLib.synthesis_run import SynthesisRun
from MRSynthSlicerLib.tables import METRICS, ModelScores, fill_metrics_table, metric_chart, region_names
from MRSynthSlicerLib.volumes import add_volume_node, image_from_volume_node


@dataclass
class Comparison:
    """Everything the Compare panel adds to the scene."""

    synthetic: dict[str, object]
    errors: dict[str, object]
    scores: list[ModelScores]
    table: object | None
    charts: dict[str, object]
    views: list[list[ViewSpec]]
    layout_description: str
    composite_nodes: list = field(default_factory=list)


def _on_grid(image, grid_image, interpolator: str):
    from MRSynthLib.preprocessing.registration import resample_onto, same_grid

    return image if same_grid(image, grid_image) else resample_onto(image, grid_image, None, interpolator)


def region_label_image(scene, region_node, grid_node):
    """A label image on ``grid_node``'s grid from a segmentation (visible segments) or a label map node.

    Returns:
        ``(image, labels)``: the label image and its nonzero label values, or ``(None, [])``.
    """
    import SimpleITK as sitk

    if region_node is None:
        return None, []
    grid = image_from_volume_node(grid_node)
    if region_node.IsA("vtkMRMLSegmentationNode"):
        import slicer

        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "MRSynth temporary region")
        try:
            logic = slicer.vtkSlicerSegmentationsModuleLogic
            if not logic.ExportVisibleSegmentsToLabelmapNode(region_node, labelmap, grid_node):
                raise ValueError(f"Segmentation {region_node.GetName()!r} could not be turned into a label map: "
                                 "check that it has visible segments.")
            image = image_from_volume_node(labelmap)
        finally:
            scene.RemoveNode(labelmap)
    elif region_node.IsA("vtkMRMLVolumeNode"):
        image = image_from_volume_node(region_node)
    else:
        raise ValueError(f"The region {region_node.GetName()!r} must be a segmentation or a label map volume.")
    image = _on_grid(sitk.Cast(image, sitk.sitkInt32), grid, "nearest")
    labels = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(image)) if v != 0]
    return image, labels


def score_model(model: str, version: str, reference_image, synthetic_image, region_image=None,
                region_labels=(), region_name: str = "region", seconds: float | None = None) -> ModelScores:
    """PSNR / SSIM / MAE of one synthetic image against the reference (same grid) in the brain and the region."""
    import SimpleITK as sitk

    from MRSynthLib.quality.metrics import evaluate_images

    report = evaluate_images(reference_image, sitk.Cast(synthetic_image, sitk.sitkFloat32),
                             label_map=region_image if region_labels else None,
                             label_regions={region_name: list(region_labels)} if region_labels else None)
    regions = {"brain": {k: report["brain"][k] for k, _, _ in METRICS}}
    for name, values in report.get("regions", {}).items():
        regions[name] = {k: values[k] for k, _, _ in METRICS}
    return ModelScores(model, version, regions, seconds, {"protocol": report["protocol"]["description"]})


def build_comparison(scene, reference, synthetic: dict[str, object], region_node=None, first_input=None,
                     seconds: dict[str, float] | None = None, layout_node=None) -> Comparison:
    """Error maps, metrics table, charts and layout for ``synthetic`` (model name → volume node).

    Without a ``reference`` only the side-by-side layout is made. A reference on another grid is
    resampled (linear, no registration) onto the synthetic volumes' grid.
    """
    import SimpleITK as sitk

    from MRSynthLib.quality.evaluation import absolute_error_image

    if not synthetic:
        raise ValueError("synthetic must hold at least one model's volume, not be empty")
    grid_node = next(iter(synthetic.values()))
    errors: dict[str, object] = {}
    scores: list[ModelScores] = []
    table, charts = None, {}
    if reference is not None:
        grid = image_from_volume_node(grid_node)
        reference_image = _on_grid(sitk.Cast(image_from_volume_node(reference), sitk.sitkFloat32), grid, "linear")
        region_image, labels = region_label_image(scene, region_node, grid_node)
        region_name = region_node.GetName() if region_node is not None else "region"
        error_arrays = []
        for model, node in synthetic.items():
            synthetic_image = image_from_volume_node(node)
            version = node.GetAttribute("MRSynth.modelVersion") or ""
            scores.append(score_model(model, version, reference_image, synthetic_image, region_image, labels,
                                      region_name, (seconds or {}).get(model)))
            error_image = absolute_error_image(reference_image, sitk.Cast(synthetic_image, sitk.sitkFloat32))
            target = node.GetAttribute("MRSynth.target") or "synthetic"
            error_node = add_volume_node(scene, error_image, scene.GenerateUniqueName(result_name(target, model, "error")))
            for name in node.GetAttributeNames() or ():
                error_node.SetAttribute(name, node.GetAttribute(name))
            error_node.SetAttribute("MRSynth.kind", "error")
            error_node.SetAttribute("MRSynth.reference", reference.GetName())
            error_node.SetDescription(f"|reference - synthetic| after the evaluation normalisation; reference: "
                                      f"{reference.GetName()}. {scores[-1].extra['protocol']}")
            place_under(scene, error_node, parent_item_of(scene, node))
            errors[model] = error_node
            error_arrays.append(sitk.GetArrayFromImage(error_image))
        # One window for all error maps, so their colours compare.
        high = max(window_for("error", array)[1] for array in error_arrays)
        for node, array in zip(errors.values(), error_arrays, strict=True):
            configure_display(node, "error", array)
            node.GetDisplayNode().SetWindowLevelMinMax(0.0, high)
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("MRSynth comparison metrics"))
        fill_metrics_table(table, scores, scores[0].extra["protocol"])
        table.SetAttribute("MRSynth.reference", reference.GetName())
        if region_node is not None:
            table.SetAttribute("MRSynth.region", region_name)
        regions = region_names(scores)
        charts = {metric: metric_chart(scene, table, metric, regions) for metric, _, _ in METRICS}
    views = compare_views(reference, synthetic, errors, first_input)
    description = layout_xml(views, results_row=table is not None)
    composites = []
    if layout_node is not None:
        register_layout(layout_node, description, COMPARE_LAYOUT_ID)
        composites = show_views(scene, views)
        show_table_and_chart(scene, table, charts.get("psnr"))
    return Comparison(dict(synthetic), errors, scores, table, charts, views, description, composites)


class CompareRun:
    """One :class:`SynthesisRun` per model, in sequence; progress covers all of them."""

    def __init__(self, scene, inputs: dict[str, object], models: list[str], options: SynthesisOptions,
                 work_dir: str | Path | None = None, python: str | None = None) -> None:
        if not models:
            raise ValueError("models must name at least one bundle to compare, not be empty")
        if len(set(models)) != len(models):
            raise ValueError(f"models must not repeat a bundle, not {models}")
        self.scene = scene
        self.inputs = inputs
        self.models = list(models)
        self.options = replace(options, samples=1, contributions=False)
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.python = python
        self.synthetic: dict[str, object] = {}
        self.seconds: dict[str, float] = {}
        self._index = -1
        self._run: SynthesisRun | None = None
        self._outcome: Outcome | None = None
        self._started = 0.0

    def _start_next(self) -> None:
        self._index += 1
        model = self.models[self._index]
        folder = self.work_dir / f"model{self._index}" if self.work_dir is not None else None
        self._run = SynthesisRun(self.scene, self.inputs, replace(self.options, model=model), folder, self.python)
        self._run.start()

    def start(self) -> CompareRun:
        self._started = time.monotonic()
        self._start_next()
        return self

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    def poll(self) -> list:
        """Events of the current run (overall progress scaled to the whole comparison); advances runs."""
        if self._outcome is not None or self._run is None:
            return []
        count = len(self.models)
        prefix = f"model {self._index + 1}/{count} ({self.models[self._index]})"
        events = []
        for event in self._run.poll():
            if isinstance(event, ProgressEvent):
                events.append(ProgressEvent(f"{prefix}: {event.stage}", event.fraction,
                                            round((self._index + event.overall) / count, 4)))
            else:
                events.append(LogEvent(f"{prefix}: {event.text}", event.stream))
        outcome = self._run.outcome
        if outcome is None:
            return events
        if outcome.succeeded:
            nodes = self._run.import_results()
            self.synthetic[nodes.model or self.models[self._index]] = nodes.synthetic
            self.seconds[nodes.model or self.models[self._index]] = outcome.seconds
            self._run.cleanup()
            if self._index + 1 < count:
                self._start_next()
            else:
                self._outcome = Outcome(SUCCEEDED, 0, None, {"models": list(self.synthetic)},
                                        round(time.monotonic() - self._started, 3))
        else:
            error = f"{prefix}: {outcome.error}" if outcome.status == FAILED else None
            self._outcome = Outcome(outcome.status, outcome.return_code, error, {}, round(time.monotonic() - self._started, 3))
            self._run.cleanup()
        return events

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> Outcome:
        """Poll until every model has run (or one failed); ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is not None and self._outcome is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"The comparison did not finish within {timeout} s.")
            time.sleep(interval)
        return self._outcome

    def cancel(self) -> Outcome:
        if self._outcome is None and self._run is not None:
            self._run.cancel()
            self._run.cleanup()
            self._outcome = Outcome(CANCELLED, None, None, {}, round(time.monotonic() - self._started, 3))
        return self._outcome

    def build(self, reference=None, region_node=None, layout_node=None) -> Comparison:
        """The comparison of the synthesized models (after success)."""
        if self._outcome is None or not self._outcome.succeeded:
            raise RuntimeError("The comparison can only be built after every model ran successfully.")
        first_input = next(iter(self.inputs.values()))
        return build_comparison(self.scene, reference, self.synthetic, region_node, first_input, self.seconds, layout_node)

