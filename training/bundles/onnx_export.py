"""Add ONNX graphs to an ``fsq-fusion`` bundle so it runs on onnxruntime (no torch needed at inference).

Four graphs, each with dynamic batch / spatial axes (and a dynamic number of given inputs ``K``):

- ``onnx/encoder.onnx``          image ``(B, 1, Z, Y, X)`` → latents ``(B, L, z, y, x)``
- ``onnx/translator_fuse.onnx``  latents ``(B, K, L, *s)``, slot_codes ``(K, M)``, target_onehot ``(B, M)``,
  mask ``(B, K)`` → hidden ``(B, H, *s)``, weights ``(B, K, *s)``
- ``onnx/translator_head.onnx``  hidden ``(B, H, *s)``, channel_scale ``(B, H)`` → latent ``(B, L, *s)``
- ``onnx/decoder.onnx``          latents ``(B, L, *s)`` → image ``(B, 1, Z, Y, X)``

After export both backends run on a probe volume; the card records the largest relative difference
(``networks.onnx.parity``) and the export refuses graphs that differ by more than
:data:`training.bundles.stage2_onnx.PARITY_TOLERANCE` (1e-3).

    python -m training.bundles.onnx_export Resources/Models/mrsynth-phantom-fsq
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from MRSynthLib.files.atomic import staged_folder
from MRSynthLib.models.bundle import Bundle, load_bundle, sha256_file, write_card
from MRSynthLib.errors import MRSynthError
from training.bundles.stage2_onnx import PARITY_TOLERANCE

OPSET = 17


class _Encoder(nn.Module):
    def __init__(self, autoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, image):
        return self.autoencoder.encode(image)


class _Decoder(nn.Module):
    def __init__(self, autoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, latents):
        return self.autoencoder.decode(latents)


class _Fuse(nn.Module):
    def __init__(self, translator) -> None:
        super().__init__()
        self.translator = translator

    def forward(self, latents, slot_codes, target_onehot, mask):
        return self.translator.fuse_active(latents, slot_codes, target_onehot, mask)


class _Head(nn.Module):
    def __init__(self, translator) -> None:
        super().__init__()
        self.translator = translator

    def forward(self, hidden, channel_scale):
        return self.translator.head_from(hidden, channel_scale)


def _export(module: nn.Module, args: tuple, path: Path, inputs: dict[str, dict[int, str]], outputs: dict[str, dict[int, str]]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=OPSET,
            input_names=list(inputs), output_names=list(outputs),
            dynamic_axes={**inputs, **outputs}, do_constant_folding=True,
        )


def _spatial(prefix: str, first: int) -> dict[int, str]:
    return {first + i: f"{prefix}{axis}" for i, axis in enumerate("zyx")}


def export_graphs(engine, folder: Path) -> dict[str, str]:
    """Write the four graphs of a loaded :class:`MRSynthLib.runtime.torch_backend.TorchEngine` into ``folder/onnx``."""
    ae, tr = engine.autoencoder.cpu().eval(), engine.translator.cpu().eval()
    ds, m, h = engine.downsampling, len(engine.slots), engine.hidden_channels
    size = 4 * ds
    latent_channels = tr.config.latent_channels
    graphs = {name: f"onnx/{name}.onnx" for name in ("encoder", "translator_fuse", "translator_head", "decoder")}
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    image = torch.rand(1, 1, size, size, size)
    latents = torch.rand(1, 2, latent_channels, 4, 4, 4) * 2 - 1
    with torch.no_grad():
        _export(_Encoder(ae), (image,), folder / graphs["encoder"],
                {"image": {0: "batch", **_spatial("Z", 2)}}, {"latents": {0: "batch", **_spatial("z", 2)}})
        _export(_Fuse(tr), (latents, torch.eye(m)[:2], torch.eye(m)[2:3], torch.rand(1, 2, 4, 4, 4)), folder / graphs["translator_fuse"],
                {"latents": {0: "batch", 1: "given", **_spatial("z", 3)}, "slot_codes": {0: "given"},
                 "target_onehot": {0: "batch"}, "mask": {0: "batch", 1: "given", **_spatial("z", 2)}},
                {"hidden": {0: "batch", **_spatial("z", 2)}, "weights": {0: "batch", 1: "given", **_spatial("z", 2)}})
        _export(_Head(tr), (torch.rand(1, h, 4, 4, 4), torch.ones(1, h)), folder / graphs["translator_head"],
                {"hidden": {0: "batch", **_spatial("z", 2)}, "channel_scale": {0: "batch"}},
                {"latent": {0: "batch", **_spatial("z", 2)}})
        _export(_Decoder(ae), (latents[:, 0],), folder / graphs["decoder"],
                {"latents": {0: "batch", **_spatial("z", 2)}}, {"image": {0: "batch", **_spatial("Z", 2)}})
    return graphs


def measure_parity(bundle: Bundle, shape: tuple[int, int, int] = (32, 40, 32), samples: int = 4) -> float:
    """Largest relative difference (max |a-b| / max |a|) between torch and onnxruntime outputs of a full
    prediction (synthetic, uncertainty, contributions) on a random probe volume with two inputs."""
    from MRSynthLib.runtime.inference import predict
    from MRSynthLib.runtime.onnx_backend import OnnxEngine
    from MRSynthLib.runtime.torch_backend import TorchEngine

    rng = np.random.default_rng(0)
    slots = bundle.card.networks["onnx"]["slots"]
    arrays = {name: rng.random(shape, dtype=np.float32) for name in slots[:2]}
    target = slots[2]
    engines = [TorchEngine(bundle, "cpu"), OnnxEngine(bundle)]
    results = [predict(e, arrays, target, samples=samples, seed=3) for e in engines]
    worst = 0.0
    pairs = [(results[0].synthetic, results[1].synthetic), (results[0].uncertainty, results[1].uncertainty)]
    pairs += [(results[0].contributions[n], results[1].contributions[n]) for n in arrays]
    for a, b in pairs:
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)))
    return worst


def add_onnx_parts(bundle_dir: str | Path) -> Path:
    """Export the ONNX graphs of the bundle at ``bundle_dir`` in place (atomically: staged, verified, swapped in).

    Raises:
        MRSynthError: the bundle cannot be loaded, or the graphs do not reproduce torch within tolerance.
    """
    import onnx
    import onnxruntime

    from MRSynthLib.runtime.torch_backend import TorchEngine

    folder = Path(bundle_dir)
    bundle = load_bundle(folder)
    with staged_folder(folder, copy_existing=True, ignore=shutil.ignore_patterns("onnx")) as staging:
        if "onnx" in bundle.card.networks:  # re-export: the staged copy starts without the old graphs
            previous = bundle.card
            write_card(dataclasses.replace(
                previous, networks={k: v for k, v in previous.networks.items() if k != "onnx"},
                weights={k: v for k, v in previous.weights.items() if not k.startswith("onnx/")}), staging)
        engine = TorchEngine(load_bundle(staging), "cpu")
        graphs = export_graphs(engine, staging)
        card = bundle.card
        weights = {k: v for k, v in card.weights.items() if not k.startswith("onnx/")}
        weights.update({path: sha256_file(staging / path) for path in graphs.values()})
        meta = {
            "graphs": graphs,
            "opset": OPSET,
            "slots": list(engine.slots),
            "downsampling": engine.downsampling,
            "hidden_channels": engine.hidden_channels,
            "dropout": engine.dropout,
            **({"latent_multiple": engine.latent_multiple} if engine.latent_multiple > 1 else {}),
            "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__,
                              "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        }
        networks = {**card.networks, "onnx": meta}
        write_card(dataclasses.replace(card, networks=networks, weights=weights), staging)
        parity = measure_parity(load_bundle(staging))
        if parity > PARITY_TOLERANCE:
            raise MRSynthError(f"ONNX graphs of {folder} differ from torch by {parity:.2e} (> {PARITY_TOLERANCE}): not written.")
        meta["parity"] = {"max_relative_difference": parity, "probe": "random 32x40x32, 2 inputs, 4 samples, float32"}
        write_card(dataclasses.replace(card, networks=networks, weights=weights), staging)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mrsynth-train export-onnx", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path, help="bundle folder to add ONNX graphs to (rewritten in place)")
    args = parser.parse_args(argv)
    try:
        folder = add_onnx_parts(args.bundle)
    except MRSynthError as error:
        print(f"mrsynth-train: {error}", file=sys.stderr)
        return 2
    card = load_bundle(folder).card
    print(f"ONNX graphs written into {folder} (parity {card.networks['onnx']['parity']['max_relative_difference']:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
