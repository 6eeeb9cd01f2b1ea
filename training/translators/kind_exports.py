"""How the translator kinds' bundle parts are made from their best checkpoints (named by :data:`training.kinds.TRAIN_KINDS`).

Each ``export_<kind>(config, autoencoder, fusion_or_slots, best) -> KindExport``: the trained network modules, their
card entries and the contrasts the bundle takes and gives.
"""

from __future__ import annotations

from typing import Callable

from training.kinds import KindExport, resolve


def _mr(slots) -> tuple[str, ...]:
    from MRSynthLib.contrasts import MR_CONTRASTS

    return tuple(c for c in slots if c in MR_CONTRASTS)


def with_latent_scale(sampling, best: dict):
    """``sampling`` with the latent scale measured by the run (``best["extra"]["latent_scale"]``)."""
    return type(sampling)(**{**sampling.to_dict(), "latent_scale": float(best["extra"]["latent_scale"])})


def export_ldm(config, autoencoder, fusion, best) -> KindExport:
    from MRSynthLib.networks.denoiser import LatentDenoiser

    slots = fusion.config.contrasts
    denoiser = LatentDenoiser(config.method.ldm.denoiser_for(autoencoder.config, slots))
    denoiser.load_state_dict(best["modules"]["denoiser"])
    sampling = with_latent_scale(config.method.ldm.sampling, best)
    return KindExport({"translator": fusion, "denoiser": denoiser},
                      {"translator": fusion.config.to_dict(), "denoiser": denoiser.config.to_dict(),
                       "diffusion": sampling.to_dict()}, _mr(slots), _mr(slots))


def export_cyclegan(config, autoencoder, slots, best) -> KindExport:
    from MRSynthLib.networks.cyclegan import LatentGenerator

    generator = LatentGenerator(config.method.cyclegan.generator_for(autoencoder.config))
    generator.load_state_dict(best["modules"]["generator"])
    return KindExport({"generator": generator}, {"generator": generator.config.to_dict()},
                      (generator.config.source,), (generator.config.target,))


def single_network(part: str, network: str, settings: str) -> Callable:
    """Export of a kind with one network part ``part`` (class ``"module:Class"``) whose config comes from
    ``config.method.<settings>.network_for(autoencoder_config, slots)``."""

    def export(config, autoencoder, slots, best) -> KindExport:
        trained = resolve(network)(getattr(config.method, settings).network_for(autoencoder.config, slots))
        trained.load_state_dict(best["modules"][part])
        return KindExport({part: trained}, {part: trained.config.to_dict()}, _mr(slots), _mr(slots))

    return export


export_targetcode = single_network("targetcode", "MRSynthLib.networks.targetcode:TargetCodeTranslator", "targetcode")
export_vqseq2seq = single_network("vqseq2seq", "MRSynthLib.networks.vqseq2seq:VQSeq2SeqTranslator", "vqseq2seq")
export_sscf = single_network("sscf", "MRSynthLib.networks.sscf:SSCFTranslator", "sscf")


def export_msgldm(config, autoencoder, slots, best) -> KindExport:
    exported = single_network("msgldm", "MRSynthLib.networks.msgldm:MSGLDM", "msgldm")(config, autoencoder, slots, best)
    exported.networks["diffusion"] = with_latent_scale(config.method.msgldm.sampling, best).to_dict()
    return exported
