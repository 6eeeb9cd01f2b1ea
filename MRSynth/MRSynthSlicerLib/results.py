"""Bring the child's output files into the scene as named, attributed, displayed volume nodes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from MRSynthSlicerLib.commands import OutputFiles
from MRSynthSlicerLib.display import configure_display, show_in_slice_views
from MRSynthSlicerLib.hierarchy import place_under
from MRSynthSlicerLib.provenance import apply_provenance, result_name
from MRSynthSlicerLib.volumes import add_volume_node


@dataclass
class SynthesisNodes:
    """The volume nodes of one synthesis (all on the grid of the first input)."""

    synthetic: object
    uncertainty: object | None = None
    contributions: dict[str, object] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.synthetic.GetAttribute("MRSynth.model") or ""

    def maps(self) -> dict[str, object]:
        """Overlay choices: ``"uncertainty"`` and ``"contribution of <input>"`` → node."""
        out = {"uncertainty": self.uncertainty} if self.uncertainty is not None else {}
        out.update({f"contribution of {c}": node for c, node in self.contributions.items()})
        return out

    def all_nodes(self) -> list:
        return [self.synthetic] + list(self.maps().values())


def read_sidecar(image_path: Path) -> dict:
    """The JSON provenance written next to an output image (empty dict when it is missing)."""
    path = OutputFiles.sidecar(Path(image_path))
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def import_volume(scene, image_path: Path, kind: str, name: str, parent_item: int | None,
                  input_names: dict[str, str] | None = None):
    """One output file → a volume node with provenance attributes and display settings.

    ``input_names`` (contrast → input node name) replaces the temporary input file paths in the
    recorded provenance.
    """
    import SimpleITK as sitk

    image = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
    node = add_volume_node(scene, image, scene.GenerateUniqueName(name))
    sidecar = read_sidecar(image_path)
    sidecar.setdefault("kind", kind)
    if input_names:
        sidecar["inputs"] = {contrast: f"volume node {node_name!r}" for contrast, node_name in input_names.items()}
    apply_provenance(node, sidecar)
    configure_display(node, kind, sitk.GetArrayViewFromImage(image))
    if parent_item is not None:
        place_under(scene, node, parent_item)
    return node


def import_outputs(scene, outputs: OutputFiles, input_names: dict[str, str], parent_item: int | None = None) -> SynthesisNodes:
    """Create the nodes of one finished synthesis; names use the bundle name recorded in the sidecar.

    ``input_names``: contrast → name of the input volume node, in input order.
    """
    input_contrasts = list(input_names)
    sidecar = read_sidecar(outputs.synthetic)
    target = sidecar.get("target") or outputs.synthetic.name.split("_", 1)[0]
    model = (sidecar.get("bundle") or {}).get("name", "unknown model")
    synthetic = import_volume(scene, outputs.synthetic, "synthetic", result_name(target, model), parent_item,
                              input_names)
    nodes = SynthesisNodes(synthetic)
    if outputs.uncertainty is not None and outputs.uncertainty.is_file():
        nodes.uncertainty = import_volume(scene, outputs.uncertainty, "uncertainty",
                                          result_name(target, model, "uncertainty"), parent_item, input_names)
    if outputs.contributions_dir is not None:
        for contrast in input_contrasts:
            path = outputs.contribution(contrast)
            if path.is_file():
                nodes.contributions[contrast] = import_volume(
                    scene, path, "contribution", result_name(target, model, "contribution", contrast), parent_item,
                    input_names)
    return nodes


def show_synthesis(scene, nodes: SynthesisNodes, overlay: str | None = "auto", opacity: float = 0.5,
                   composite_nodes=None) -> object | None:
    """Synthetic volume as background and one map as foreground in the slice views; returns that map.

    ``overlay``: a key of :meth:`SynthesisNodes.maps`, ``None`` for no foreground, or ``"auto"``
    (the uncertainty map, else the first contribution map).
    """
    maps = nodes.maps()
    if overlay == "auto":
        foreground = next(iter(maps.values()), None)
    elif overlay is None:
        foreground = None
    elif overlay in maps:
        foreground = maps[overlay]
    else:
        raise ValueError(f"overlay must be one of {', '.join(maps) or 'no maps'}, 'auto' or None, not {overlay!r}")
    show_in_slice_views(scene, nodes.synthetic, foreground, opacity, composite_nodes)
    return foreground
