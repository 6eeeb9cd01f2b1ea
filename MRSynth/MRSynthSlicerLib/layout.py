"""The Compare layout: one linked slice view per volume, in rows, registered with the scene's layout node.

Row 1 shows the reference (or the first input) followed by each model's synthetic volume; with a
reference, row 2 shows the first input followed by each model's error map, so every error map sits
under its volume, and a last row shows the metrics table next to a chart. All slice views are linked
(and hot-linked), so scrolling or panning one moves them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

COMPARE_LAYOUT_ID = 5701  # custom layouts use large numbers; Slicer's built-in ones are far below
VIEW_TAG_PREFIX = "MRSynthCompare"
TABLE_VIEW_TAG = "MRSynthCompareTable"
PLOT_VIEW_TAG = "MRSynthComparePlot"
ORIENTATIONS = ("Axial", "Sagittal", "Coronal")


@dataclass(frozen=True)
class ViewSpec:
    """One slice view of the layout: its singleton tag, its short label and what it shows."""

    tag: str
    label: str
    background: object
    foreground: object | None = None
    foreground_opacity: float = 0.0


def compare_views(reference, synthetic: dict[str, object], errors: dict[str, object], first_input=None) -> list[list[ViewSpec]]:
    """Rows of views: see the module docstring. ``reference`` may be None (then no error row)."""
    top = reference if reference is not None else first_input
    rows_of_volumes = [[top] + list(synthetic.values())] if top is not None else [list(synthetic.values())]
    if reference is not None and errors:
        bottom = [first_input] if first_input is not None else []
        rows_of_volumes.append(bottom + [errors[m] for m in synthetic if m in errors])
    rows, number = [], 0
    for volumes in rows_of_volumes:
        row = []
        for volume in volumes:
            number += 1
            row.append(ViewSpec(f"{VIEW_TAG_PREFIX}{number}", str(number), volume))
        rows.append(row)
    return rows


def layout_xml(rows: list[list[ViewSpec]], orientation: str = "Axial", results_row: bool = False) -> str:
    """Slicer layout description: a vertical stack of horizontal rows of slice views.

    ``results_row`` adds a last row with a table view (:data:`TABLE_VIEW_TAG`) and a plot view
    (:data:`PLOT_VIEW_TAG`).
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {', '.join(ORIENTATIONS)}, not {orientation!r}")
    if not rows or not all(rows):
        raise ValueError("rows must hold at least one view each, not be empty")
    lines = ['<layout type="vertical">']
    for row in rows:
        lines.append(' <item>')
        lines.append('  <layout type="horizontal">')
        for view in row:
            lines += [
                '   <item>',
                f'    <view class="vtkMRMLSliceNode" singletontag={quoteattr(view.tag)}>',
                f'     <property name="orientation" action="default">{orientation}</property>',
                f'     <property name="viewlabel" action="default">{view.label}</property>',
                '     <property name="viewcolor" action="default">#8C8C8C</property>',
                '    </view>',
                '   </item>',
            ]
        lines.append('  </layout>')
        lines.append(' </item>')
    if results_row:
        lines += [
            ' <item>',
            '  <layout type="horizontal">',
            f'   <item><view class="vtkMRMLTableViewNode" singletontag="{TABLE_VIEW_TAG}">'
            '<property name="viewlabel" action="default">T</property></view></item>',
            f'   <item><view class="vtkMRMLPlotViewNode" singletontag="{PLOT_VIEW_TAG}">'
            '<property name="viewlabel" action="default">P</property></view></item>',
            '  </layout>',
            ' </item>',
        ]
    lines.append('</layout>')
    return "\n".join(lines)


def register_layout(layout_node, xml: str, layout_id: int = COMPARE_LAYOUT_ID) -> None:
    """Add or replace the description ``layout_id`` and switch the layout to it (creates the slice nodes)."""
    if layout_node.IsLayoutDescription(layout_id):
        layout_node.SetLayoutDescription(layout_id, xml)
    else:
        layout_node.AddLayoutDescription(layout_id, xml)
    layout_node.SetViewArrangement(layout_id)


def composite_node_for_view(scene, tag: str):
    """The slice composite node of the view ``tag``; created when no view widget made one (no GUI)."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == tag:
            return node
    slice_node = scene.GetSingletonNode(tag, "vtkMRMLSliceNode")
    if slice_node is None:
        raise RuntimeError(f"The layout has no slice view {tag!r}: register the layout before assigning volumes.")
    import slicer

    logic = slicer.vtkMRMLSliceLogic()  # what a slice view does when it is created in the GUI
    logic.SetMRMLScene(scene)
    logic.SetSliceNode(slice_node)
    return logic.GetSliceCompositeNode()


def show_views(scene, rows: list[list[ViewSpec]]) -> list:
    """Put each view's volumes in its slice view and link all views; returns their composite nodes."""
    composites = []
    for row in rows:
        for view in row:
            composite = composite_node_for_view(scene, view.tag)
            composite.SetBackgroundVolumeID(view.background.GetID() if view.background is not None else None)
            composite.SetForegroundVolumeID(view.foreground.GetID() if view.foreground is not None else None)
            composite.SetForegroundOpacity(view.foreground_opacity)
            composite.SetLinkedControl(True)
            composite.SetHotLinkedControl(True)
            composites.append(composite)
    return composites


def show_table_and_chart(scene, table, chart) -> None:
    """Put the metrics table and a chart into the layout's table and plot views (when the layout has them)."""
    table_view = scene.GetSingletonNode(TABLE_VIEW_TAG, "vtkMRMLTableViewNode")
    if table_view is not None and table is not None:
        table_view.SetTableNodeID(table.GetID())
    plot_view = scene.GetSingletonNode(PLOT_VIEW_TAG, "vtkMRMLPlotViewNode")
    if plot_view is not None and chart is not None:
        plot_view.SetPlotChartNodeID(chart.GetID())
