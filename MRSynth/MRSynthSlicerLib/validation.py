"""Why Apply (or Compare) cannot run yet: each reason one sentence, shown in the button's tooltip."""

from __future__ import annotations

from MRSynthLib.contrasts import canonical_contrast
from MRSynthSlicerLib.models import ModelInfo


def volume_problem(node, role: str) -> str | None:
    """Why a volume node cannot be an input (None when it can); ``role`` names it, e.g. ``"input t1"``."""
    name = node.GetName()
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        return f"The {role} {name!r} is a label map: select a scalar image volume."
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        return f"The {role} {name!r} is not a scalar volume: select a scalar image volume."
    image_data = node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        return f"The {role} {name!r} has no voxels: load an image into it."
    if image_data.GetPointData().GetScalars().GetNumberOfComponents() != 1:
        return f"The {role} {name!r} has several values per voxel: select a single-channel volume."
    dimensions = image_data.GetDimensions()
    if sum(d > 1 for d in dimensions) < 3:
        return f"The {role} {name!r} is not a 3D volume ({'x'.join(map(str, dimensions))} voxels): select a 3D scan."
    if node.GetParentTransformNode() is not None:
        return (f"The {role} {name!r} is under a transform: harden it (Data module, right-click, "
                "Harden transform) so the synthesis sees the volume where it is shown.")
    return None


def synthesis_blockers(inputs: dict[str, object | None], target: str, model: ModelInfo | None) -> list[str]:
    """Every reason the synthesis cannot start, in the order a user would fix them (empty: ready)."""
    if model is None:
        return ["Choose a model: no bundle is installed (see the MRSynth documentation, section Models)."]
    if model.error:
        return [f"Model {model.name} cannot be used: {model.error}"]
    reasons = []
    target = canonical_contrast(target) if target else ""
    if not target:
        reasons.append("Choose the contrast to synthesize (Target).")
    elif target not in model.outputs:
        reasons.append(f"Model {model.name} cannot synthesize {target}: it produces {', '.join(model.outputs)}.")
    chosen = {canonical_contrast(c): node for c, node in inputs.items() if node is not None}
    if not chosen:
        reasons.append("Select at least one input volume.")
    if target and target in chosen:
        reasons.append(f"The target {target} is also selected as an input: clear that input or choose another target.")
    unsupported = [c for c in chosen if c not in model.inputs]
    if unsupported:
        reasons.append(f"Model {model.name} does not accept {', '.join(unsupported)}: clear "
                       f"{'that input' if len(unsupported) == 1 else 'those inputs'}.")
    seen: dict[str, str] = {}
    for contrast, node in chosen.items():
        if node.GetID() in seen:
            reasons.append(f"Volume {node.GetName()!r} is selected for both {seen[node.GetID()]} and {contrast}: "
                           "select each scan once.")
        seen.setdefault(node.GetID(), contrast)
        problem = volume_problem(node, f"input {contrast}")
        if problem:
            reasons.append(problem)
    return reasons


def compare_blockers(inputs: dict[str, object | None], target: str, models: list[ModelInfo], reference=None) -> list[str]:
    """Reasons the comparison cannot start: every model must accept the inputs and produce the target."""
    if not models:
        return ["Tick at least one model to compare."]
    reasons: list[str] = []
    for model in models:
        reasons += [r for r in synthesis_blockers(inputs, target, model) if r not in reasons]
    if reference is not None:
        chosen = [node for node in inputs.values() if node is not None]
        if any(node.GetID() == reference.GetID() for node in chosen):
            reasons.append(f"The reference {reference.GetName()!r} is also an input: the reference must be the real "
                           "target contrast, which the models do not see.")
        problem = volume_problem(reference, "reference")
        if problem:
            reasons.append(problem)
    return reasons
