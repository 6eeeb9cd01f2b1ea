"""The module's own colour tables, created once per scene (the same in Slicer and in ``slicer-core``).

* ``uncertainty`` (also used for error maps): black → purple → red → orange → pale yellow, a warm ramp
  whose brightness grows with the value, so "bright = don't trust here".
* ``contribution``: dark blue → teal → yellow for an input's share of the synthesis (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUMBER_OF_COLORS = 256


@dataclass(frozen=True)
class ColorRamp:
    """A piecewise-linear colour ramp: ``anchors`` are ``(position 0..1, (r, g, b))``, positions increasing."""

    name: str
    singleton_tag: str
    anchors: tuple[tuple[float, tuple[float, float, float]], ...]

    def colors(self, count: int = NUMBER_OF_COLORS) -> np.ndarray:
        """``(count, 3)`` RGB values in 0..1 sampled evenly along the ramp."""
        positions = np.array([a[0] for a in self.anchors])
        rgb = np.array([a[1] for a in self.anchors])
        samples = np.linspace(0.0, 1.0, count)
        return np.stack([np.interp(samples, positions, rgb[:, c]) for c in range(3)], axis=1)


UNCERTAINTY = ColorRamp(
    name="MRSynth uncertainty",
    singleton_tag="MRSynthUncertainty",
    anchors=((0.0, (0.0, 0.0, 0.0)), (0.25, (0.33, 0.06, 0.45)), (0.5, (0.83, 0.16, 0.24)),
             (0.75, (1.0, 0.58, 0.05)), (1.0, (1.0, 0.98, 0.74))),
)
CONTRIBUTION = ColorRamp(
    name="MRSynth contribution",
    singleton_tag="MRSynthContribution",
    anchors=((0.0, (0.09, 0.08, 0.42)), (0.5, (0.08, 0.58, 0.6)), (1.0, (0.96, 0.9, 0.16))),
)
RAMPS = {"uncertainty": UNCERTAINTY, "error": UNCERTAINTY, "contribution": CONTRIBUTION}


def color_table_node(scene, ramp: ColorRamp):
    """The scene's ``vtkMRMLColorTableNode`` for ``ramp``, created on first use."""
    node = scene.GetSingletonNode(ramp.singleton_tag, "vtkMRMLColorTableNode")
    if node is not None:
        return node
    import slicer

    node = slicer.vtkMRMLColorTableNode()
    node.SetName(ramp.name)
    node.SetSingletonTag(ramp.singleton_tag)
    node.SetTypeToUser()
    node.SetNumberOfColors(NUMBER_OF_COLORS)
    for index, (r, g, b) in enumerate(ramp.colors()):
        node.SetColor(index, f"{index}", float(r), float(g), float(b), 1.0)
    return scene.AddNode(node)
