"""Write a complete bundle of a generative translator kind: safetensors per part, ONNX graphs, card.

The folder is assembled in a temporary sibling, checked (the ONNX graphs must reproduce torch within
:data:`training.bundles.stage2_onnx.PARITY_TOLERANCE` on a probe volume) and only then renamed into place.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path

import torch

from MRSynthLib.files.atomic import staged_folder
from MRSynthLib.models.bundle import ModelCard, load_bundle, sha256_file, write_card
from MRSynthLib.errors import MRSynthError
from MRSynthLib.methods.translators.engines import KIND_PARTS, TorchGraphEngine, method_kind, weight_file
from training.bundles.stage2_onnx import OPSET, PARITY_TOLERANCE, export_graphs, measure_parity

UNCERTAINTY = {
    "ldm": "std over N diffusion samples from independent seeded noise (sample 0 is the synthetic image)",
    "cyclegan": "std over stochastic passes (MC channel dropout in the generator head + left-right test-time flip)",
    "targetcode": "std over stochastic passes (MC channel dropout in the translator head + left-right test-time flip)",
    "vqseq2seq": ("std over N reparameterised samples of the common latent's Gaussian (per-input predicted spread "
                  "combined with the inputs' disagreement), each decoded; the synthetic image decodes the mean"),
    "sscf": ("std over stochastic passes (MC channel dropout in the decoder head + left-right test-time flip, "
             "cycling through the top-k retrieved prototypes)"),
    "wldm": ("std over N diffusion samples from independent seeded noise (sample 0 is the synthetic image); "
             "for a ct target in Hounsfield units"),
    "msgldm": "std over N diffusion samples from independent seeded noise (sample 0 is the synthetic image)",
}


def write_translator_bundle(output: Path, card: ModelCard, parts: dict[str, torch.nn.Module],
                            overwrite: bool = False, onnx_graphs: bool = True) -> Path:
    """Write ``card`` (whose ``weights`` are filled in here) with the state of ``parts`` into ``output``.

    Args:
        onnx_graphs: also export the kind's ONNX graphs and check them against torch (False: a torch-only bundle).
        card: the card without weights; ``card.method`` must be a generative translator kind and
            ``card.networks`` must hold the config of every part.
        parts: part name (``autoencoder``, ``translator``, ``denoiser``, ``generator``, ``targetcode``) → module.
    Raises:
        MRSynthError: the folder exists without ``overwrite``, or the ONNX graphs disagree with torch.
    """
    import onnx
    import onnxruntime
    from safetensors.torch import save_file

    output = Path(output)
    kind = method_kind(card.method)
    if kind is None or set(parts) != set(KIND_PARTS[kind]):
        raise ValueError(f"method {card.method!r} needs parts {KIND_PARTS.get(kind or '', ())}, not {sorted(parts)}")
    if output.exists() and not overwrite:
        raise MRSynthError(f"Bundle folder {output} already exists: pass --overwrite to replace it.")
    with staged_folder(output) as staging:  # the old bundle stays whole until the new one is complete
        weights = {}
        for name, module in parts.items():
            tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(tensors, str(staging / weight_file(name)), metadata={"format": "pt"})
            weights[weight_file(name)] = sha256_file(staging / weight_file(name))
        card = dataclasses.replace(card, weights=weights, uncertainty=UNCERTAINTY[kind])
        write_card(card, staging)
        if not onnx_graphs:
            return output
        engine = TorchGraphEngine(load_bundle(staging), "cpu")
        graphs = export_graphs(engine.graphs, kind, card.networks, engine.downsampling, staging)
        weights.update({path: sha256_file(staging / path) for path in graphs.values()})
        meta = {"graphs": graphs, "opset": OPSET,
                "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                                  "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}}
        card = dataclasses.replace(card, networks={**card.networks, "onnx": meta}, weights=weights)
        write_card(card, staging)
        parity = measure_parity(load_bundle(staging))
        if parity > PARITY_TOLERANCE:
            raise MRSynthError(f"ONNX graphs of {output} differ from torch by {parity:.2e} (> {PARITY_TOLERANCE}): not written.")
        meta["parity"] = {"max_relative_difference": parity, "probe": "random 24x32x24, 3 samples, float32"}
        write_card(card, staging)
    return output
