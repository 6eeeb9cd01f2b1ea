"""``mrsynth demo``: the main job on built-in data, with truth to compare against.

A seeded phantom case (never seen in training) → synthetic t1ce from t1, t2 and FLAIR with an
uncertainty map and contribution maps → metrics against the true t1ce → a PNG montage. When the
real cases of the development data folder are present, one real case is synthesized too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from MRSynthLib.files.atomic import write_json
from MRSynthLib.errors import OutputError

DEMO_SEED = 7  # training phantoms use seeds >= 1000: the demo case is held out
DEMO_TARGET = "t1ce"
DEMO_INPUTS = ("t1", "t2", "flair")
REAL_CASE = "brats-gli-00001"


def default_real_data() -> Path:
    """``../shared/data/cases`` beside the repository (development machines and CI only)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "cases"


def _run_case(name: str, inputs: dict[str, Path], truth: Path, folder: Path, bundle, samples: int, engine_options: dict,
              brain_mask: Path | None, labels: Path | None, progress) -> tuple[dict, list]:
    from MRSynthLib.quality.evaluation import absolute_error_image
    from MRSynthLib.files.imageio import load_input, read_image
    from MRSynthLib.quality.metrics import evaluate_images
    from MRSynthLib.commands.outputs import plan_outputs, write_result
    from MRSynthLib.synthesis import synthesize

    plan = plan_outputs(folder / f"{DEMO_TARGET}_synthetic.nii.gz", folder / f"{DEMO_TARGET}_uncertainty.nii.gz",
                        folder / "contributions", list(inputs), overwrite=True)
    result = synthesize(inputs, DEMO_TARGET, model=bundle, samples=samples, seed=0, progress=progress, **engine_options)
    write_result(result, plan, overwrite=True)
    reference = load_input(truth, f"true {DEMO_TARGET}")
    mask = read_image(brain_mask, "brain mask") if brain_mask else None
    label_map = read_image(labels, "labels") if labels else None
    report = evaluate_images(reference, result.synthetic, brain_mask=mask, label_map=label_map)
    report["case"] = name
    report["timings_s"] = result.timings
    images = {c: load_input(p, c) for c, p in inputs.items()}
    row = [(c, images[c], None) for c in inputs]
    row += [("synthetic " + DEMO_TARGET, result.synthetic, None), ("true " + DEMO_TARGET, reference, None)]
    row += [("|error| (normalised)", absolute_error_image(reference, result.synthetic, mask), (0.0, 0.5)),
            ("uncertainty (std)", result.uncertainty, None)]
    contrib_row = [(f"contribution {c}", img, (0.0, 1.0)) for c, img in result.contributions.items()]
    return report, [row, contrib_row]


def run_demo(args) -> int:
    from MRSynthLib.quality.montage import save_montage
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
    from MRSynthLib.progress import Progress
    from MRSynthLib.models.registry import resolve_model

    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise OutputError(f"Demo folder {out} already has results: pass --overwrite or choose another --output-dir.")
    bundle = resolve_model(args.model)
    progress = Progress("bar")
    engine_options = {"device": args.device, "backend": getattr(args, "backend", "auto"),
                      "threads": getattr(args, "threads", 0), "window": getattr(args, "window", None)}
    print(f"MRSynth demo with model {bundle.card.short_description}: {DEMO_TARGET} from {', '.join(DEMO_INPUTS)}")

    progress("phantom case", 0.0)
    case_dir = out / "phantom-case"
    if case_dir.exists():
        shutil.rmtree(case_dir)
    phantom = generate_phantom(PhantomConfig(size=(120, 140, 120), spacing=(1.6, 1.6, 1.6), seed=DEMO_SEED,
                                             tumour=True, ms_lesions=2))
    write_phantom_case(phantom, case_dir, overwrite=True)
    inputs = {c: case_dir / f"{c}.nii.gz" for c in DEMO_INPUTS}
    report, rows = _run_case("phantom (seed 7, held out)", inputs, case_dir / f"{DEMO_TARGET}.nii.gz",
                             out / "phantom", bundle, args.samples, engine_options,
                             case_dir / "brainmask.nii.gz", case_dir / "labels.nii.gz", progress)
    reports = {"phantom": report}

    real_root = Path(args.real_data) if args.real_data else default_real_data()
    real_case = real_root / REAL_CASE
    if all((real_case / f"{c}.nii.gz").exists() for c in DEMO_INPUTS + (DEMO_TARGET,)):
        progress(f"real case {REAL_CASE}", 0.0)
        real_inputs = {c: real_case / f"{c}.nii.gz" for c in DEMO_INPUTS}
        seen = bundle.card.seen_in_training(REAL_CASE)
        name = REAL_CASE + {True: " (in training data)", False: " (held out)", None: ""}[seen]
        real_report, real_rows = _run_case(name, real_inputs, real_case / f"{DEMO_TARGET}.nii.gz", out / REAL_CASE,
                                           bundle, args.samples, engine_options, None, None, progress)
        real_report["seen_in_training"] = seen
        reports[REAL_CASE] = real_report
        rows += real_rows
        if seen:
            print(f"(note: {REAL_CASE} was in the training data of {bundle.card.name}: its numbers are in-sample, not a "
                  f"held-out result; docs/MODEL_CARD.md has the leave-one-case-out evaluation)")
    else:
        print(f"(no real case at {real_case}: phantom only)")

    montage = save_montage(rows, out / "montage.png", overwrite=True)
    metrics = write_json(out / "metrics.json", {"model": bundle.provenance(), "target": DEMO_TARGET,
                                                  "inputs": list(DEMO_INPUTS), "samples": args.samples,
                                                  "cases": reports}, overwrite=True)
    print("\nResults (SYNTHETIC - research use, not for diagnosis):")
    for name, rep in reports.items():
        brain = rep["brain"]
        line = f"  {name:<28} brain PSNR {brain['psnr']:.2f} dB  SSIM {brain['ssim']:.3f}  MAE {brain['mae']:.4f}"
        for region, values in rep.get("regions", {}).items():
            line += f" | {region} PSNR {values['psnr']:.2f}"
        print(line)
    print(f"  protocol: {report['protocol']['description']}")
    print(f"\nOutputs in {out.resolve()}:")
    volumes = sorted(p for p in out.rglob("*.nii.gz") if "phantom-case" not in p.relative_to(out).parts)
    for path in volumes + [metrics]:
        print(f"  {path.relative_to(out)}")
    print("  phantom-case/  (the inputs and the true t1ce, labels, brain mask)")
    print(f"Montage: {montage.resolve()}")
    return 0
