"""Write a :class:`SynthesisResult`: volumes with a SYNTHETIC header note plus JSON sidecars, all atomic,
nothing written unless every output path is free (or ``overwrite``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from collections.abc import Iterable
from pathlib import Path

from MRSynthLib.files.atomic import check_writable, write_json
from MRSynthLib.files.imageio import check_output_path, image_suffix, write_image
from MRSynthLib.files.path_guard import Role, check_outputs
from MRSynthLib.synthesis import SynthesisResult


@dataclass(frozen=True)
class OutputPlan:
    """Every file one synthesis will write."""

    synthetic: Path
    uncertainty: Path | None
    contributions: dict[str, Path]

    def sidecar(self, image_path: Path) -> Path:
        return image_path.with_name(image_path.name[: -len(image_suffix(image_path))] + ".json")

    def roles(self) -> list[tuple[str, Path]]:
        """``(role, path)`` of every file, sidecars included, for :func:`MRSynthLib.files.path_guard.check_outputs`."""
        images = [("--output", self.synthetic)] + ([("--uncertainty", self.uncertainty)] if self.uncertainty else [])
        images += [(f"contribution map of {c}", p) for c, p in self.contributions.items()]
        return [pair for role, image in images for pair in ((role, image), (f"sidecar of {role}", self.sidecar(image)))]

    def all_paths(self) -> list[Path]:
        images = [self.synthetic] + ([self.uncertainty] if self.uncertainty else []) + list(self.contributions.values())
        return [p for image in images for p in (image, self.sidecar(image))]


def plan_outputs(output: str | os.PathLike, uncertainty: str | os.PathLike | None,
                 contributions_dir: str | os.PathLike | None, input_contrasts: list[str], overwrite: bool,
                 reads: Iterable[Role] = ()) -> OutputPlan:
    """Decide and check every output path before any work is done.

    ``reads``: ``(role, path)`` of every file the run reads (inputs, reference, labels); no output may be one
    of them (:mod:`MRSynthLib.files.path_guard`), whatever ``overwrite`` says.

    Raises:
        OutputError: a bad suffix, an output that is an input or another output, an existing file without
            ``overwrite``, or an unwritable folder.
    """
    synthetic = check_output_path(output, "--output")
    suffix = image_suffix(synthetic)
    unc = check_output_path(uncertainty, "--uncertainty") if uncertainty else None
    contributions = {}
    if contributions_dir:
        folder = Path(contributions_dir)
        contributions = {c: folder / f"contribution_{c}{suffix}" for c in input_contrasts}
    plan = OutputPlan(synthetic, unc, contributions)
    check_outputs(plan.roles(), reads)
    for path in plan.all_paths():
        check_writable(path, overwrite)
    return plan


def header_description(result: SynthesisResult, kind: str) -> str:
    bundle = result.provenance["bundle"]
    return (f"SYNTHETIC {kind} {result.provenance['target']} {bundle['name']} {bundle['version']} "
            f"sha {bundle['sha256'][:12]} {bundle['method']} seed {result.provenance['seed']}")


def write_result(result: SynthesisResult, plan: OutputPlan, overwrite: bool = False) -> list[Path]:
    """Write every planned output; returns the written paths."""
    written = []
    jobs = [(plan.synthetic, result.synthetic, "synthetic", {})]
    if plan.uncertainty is not None and result.uncertainty is not None:
        jobs.append((plan.uncertainty, result.uncertainty, "uncertainty", {}))
    for contrast, path in plan.contributions.items():
        jobs.append((path, result.contributions[contrast], "contribution", {"input": contrast}))
    for path, image, kind, extra in jobs:
        metadata = {"MRSynth.kind": kind, "MRSynth.notice": result.provenance["notice"],
                    "MRSynth.bundle": result.provenance["bundle"]["name"]}
        write_image(image, path, overwrite=overwrite, description=header_description(result, kind), metadata=metadata)
        write_json(plan.sidecar(path), {"kind": kind, **extra, **result.provenance}, overwrite=overwrite)
        written += [path, plan.sidecar(path)]
    return written
