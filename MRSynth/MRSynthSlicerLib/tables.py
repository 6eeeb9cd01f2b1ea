"""The Compare panel's metrics as a ``vtkMRMLTableNode`` (one row per model) and bar charts of it.

Columns: ``Model``, ``Version``, ``Index`` (0, 1, ... for plotting), ``Run time`` (s), then
``PSNR <region>`` (dB), ``SSIM <region>``, ``MAE <region>`` for ``brain`` and each chosen region.
A metric that is undefined there (PSNR of identical volumes, a region absent from the label map) is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

METRICS: tuple[tuple[str, str, str], ...] = (
    ("psnr", "PSNR", "dB"),
    ("ssim", "SSIM", ""),
    ("mae", "MAE", "normalised units"),
)


@dataclass(frozen=True)
class ModelScores:
    """One model's metrics: region name → {"psnr", "ssim", "mae"} (values may be None)."""

    model: str
    version: str
    regions: dict[str, dict[str, float | None]]
    seconds: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


def metric_column(metric: str, region: str) -> str:
    """``("psnr", "brain")`` → ``"PSNR brain"``."""
    labels = {key: label for key, label, _ in METRICS}
    return f"{labels[metric]} {region}"


def _number(value) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) else float("nan")


def region_names(scores: list[ModelScores]) -> list[str]:
    """``brain`` first, then the other regions in order of appearance."""
    names = ["brain"]
    for row in scores:
        names += [r for r in row.regions if r not in names]
    return names


def fill_metrics_table(table, scores: list[ModelScores], description: str = "") -> None:
    """Replace ``table``'s content by one row per model (see the module docstring)."""
    import vtk

    table.RemoveAllColumns()
    regions = region_names(scores)
    columns: list[tuple[str, object, str, str]] = [
        ("Model", vtk.vtkStringArray(), "", "bundle name"),
        ("Version", vtk.vtkStringArray(), "", "bundle version"),
        ("Index", vtk.vtkIntArray(), "", "row number (x axis of the charts)"),
        ("Run time", vtk.vtkDoubleArray(), "s", "wall time of the synthesis"),
    ]
    for region in regions:
        for metric, label, unit in METRICS:
            columns.append((metric_column(metric, region), vtk.vtkDoubleArray(), unit, f"{label} inside {region}"))
    for name, array, _, _ in columns:
        array.SetName(name)
    for index, row in enumerate(scores):
        columns[0][1].InsertNextValue(row.model)
        columns[1][1].InsertNextValue(row.version)
        columns[2][1].InsertNextValue(index)
        columns[3][1].InsertNextValue(_number(row.seconds))
        position = 4
        for region in regions:
            values = row.regions.get(region, {})
            for metric, _, _ in METRICS:
                columns[position][1].InsertNextValue(_number(values.get(metric)))
                position += 1
    for name, array, unit, text in columns:
        table.AddColumn(array)
        if unit:
            table.SetColumnUnitLabel(name, unit)
        table.SetColumnDescription(name, text)
    if description:
        table.SetAttribute("MRSynth.protocol", description)
    table.Modified()


def metric_chart(scene, table, metric: str, regions: list[str], name_prefix: str = "MRSynth comparison"):
    """A bar chart of ``metric`` per model, one series per region, reading ``table``."""
    import slicer

    label, unit = next((lab, u) for key, lab, u in METRICS if key == metric)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{name_prefix}: {label}"))
    chart.SetTitle(f"{label} per model")
    chart.SetXAxisTitle("model")
    chart.SetYAxisTitle(f"{label} ({unit})" if unit else label)
    for region in regions:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{label} {region}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName("Index")
        series.SetYColumnName(metric_column(metric, region))
        series.SetLabelColumnName("Model")
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
        series.SetUniqueColor()
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart
