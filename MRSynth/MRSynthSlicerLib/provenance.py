"""Names and provenance attributes of result nodes.

Names: ``"<target> (synthetic, <model>)"`` for the synthetic volume, and the same suffix for its maps
(``"t1ce uncertainty (synthetic, m)"``, ``"t1ce contribution of t2 (synthetic, m)"``,
``"t1ce |error| (synthetic, m)"``), so every derived volume is recognisably synthetic.

Attributes (``MRSynth.*``) come from the JSON sidecar the command line writes next to each output.
"""

from __future__ import annotations

import json

ATTRIBUTE_PREFIX = "MRSynth."
PROVENANCE_ATTRIBUTE = "MRSynth.provenance"
NOTICE_FALLBACK = "SYNTHETIC - not for diagnosis"

# Sidecar key -> attribute name (after the prefix), for the values people filter and sort by.
_SCALAR_KEYS = {
    "kind": "kind",
    "target": "target",
    "input": "input",
    "method": "method",
    "device": "device",
    "backend": "backend",
    "seed": "seed",
    "samples": "samples",
    "notice": "notice",
    "reference_input": "referenceInput",
    "mrsynth_version": "mrsynthVersion",
    "created": "created",
}
_BUNDLE_KEYS = {"name": "model", "version": "modelVersion", "sha256": "modelSha256"}


def result_name(target: str, model: str, kind: str = "synthetic", input_contrast: str | None = None) -> str:
    """Node name of a result; ``input_contrast`` is required for ``kind == "contribution"``."""
    suffix = f"(synthetic, {model})"
    if kind == "synthetic":
        return f"{target} {suffix}"
    if kind == "uncertainty":
        return f"{target} uncertainty {suffix}"
    if kind == "contribution":
        if not input_contrast:
            raise ValueError("input_contrast must name the input of a contribution map, not be empty")
        return f"{target} contribution of {input_contrast} {suffix}"
    if kind == "error":
        return f"{target} |error| {suffix}"
    raise ValueError(f"kind must be synthetic, uncertainty, contribution or error, not {kind!r}")


def provenance_attributes(sidecar: dict) -> dict[str, str]:
    """``MRSynth.*`` node attributes from a sidecar: the main values one by one plus the full JSON."""
    attributes = {}
    for key, name in _SCALAR_KEYS.items():
        if sidecar.get(key) is not None:
            attributes[ATTRIBUTE_PREFIX + name] = str(sidecar[key])
    bundle = sidecar.get("bundle") or {}
    for key, name in _BUNDLE_KEYS.items():
        if bundle.get(key) is not None:
            attributes[ATTRIBUTE_PREFIX + name] = str(bundle[key])
    if isinstance(sidecar.get("inputs"), dict):
        attributes[ATTRIBUTE_PREFIX + "inputs"] = ",".join(sidecar["inputs"])
    attributes.setdefault(ATTRIBUTE_PREFIX + "notice", NOTICE_FALLBACK)
    attributes[PROVENANCE_ATTRIBUTE] = json.dumps(sidecar, sort_keys=True)
    return attributes


def apply_provenance(node, sidecar: dict) -> None:
    """Set the attributes on ``node`` and put the notice in its description."""
    attributes = provenance_attributes(sidecar)
    for name, value in attributes.items():
        node.SetAttribute(name, value)
    node.SetDescription(f"{attributes[ATTRIBUTE_PREFIX + 'notice']}. Made by MRSynth; see the MRSynth.* attributes.")
