"""``mrsynth compare``: several bundles on one case → volumes, metrics CSV and a side-by-side PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from MRSynthLib.files.atomic import check_writable, write_text
from MRSynthLib.errors import MRSynthError
from MRSynthLib.files.path_guard import check_outputs, image_reads


def compare_models(args) -> list[Path]:
    """Run every ``--model`` on the same inputs; returns the written files."""
    from MRSynthLib.quality.evaluation import absolute_error_image
    from MRSynthLib.files.imageio import load_input, read_image
    from MRSynthLib.quality.metrics import evaluate_images
    from MRSynthLib.quality.montage import save_montage
    from MRSynthLib.commands.outputs import plan_outputs, write_result
    from MRSynthLib.models.registry import resolve_model
    from MRSynthLib.synthesis import parse_input_pairs, synthesize

    models = args.models or [None]
    bundles = [resolve_model(m) for m in models]
    names = [b.card.name for b in bundles]
    if len(set(names)) != len(names):
        raise MRSynthError(f"--model names the same bundle twice ({', '.join(names)}): give each model once.")
    inputs = parse_input_pairs(args.input)
    out = Path(args.output_dir)
    csv_path, png_path = out / "metrics.csv", out / "comparison.png"
    reads = image_reads(inputs)
    reads += [(flag, path) for flag, path in (("--reference", args.reference), ("--labels", args.labels)) if path]
    for path in (csv_path, png_path):
        check_writable(path, args.overwrite)
    plans = {b.card.name: plan_outputs(out / b.card.name / "synthetic.nii.gz", None, None, list(inputs), args.overwrite,
                                       reads=reads) for b in bundles}
    check_outputs([("metrics table", csv_path), ("comparison image", png_path)]
                  + [pair for plan in plans.values() for pair in plan.roles()], reads)
    reference = load_input(args.reference, "--reference") if args.reference else None
    labels = read_image(args.labels, "--labels") if args.labels else None
    rows, metric_rows, written = [], [], []
    from MRSynthLib.contrasts import canonical_contrast

    hounsfield = canonical_contrast(args.target) == "ct"  # CT: also the MAE in Hounsfield units
    scores = ("psnr", "ssim", "mae") + (("mae_hu",) if hounsfield else ())
    first_input = load_input(next(iter(inputs.values())), "first input")
    header = [(f"input {next(iter(inputs))}", first_input, None)]
    if reference is not None:
        header.append((f"real {args.target}", reference, None))
    rows.append(header)
    try:
        for bundle in bundles:
            result = synthesize(inputs, args.target, model=bundle, samples=1, seed=args.seed, device=args.device, backend=args.backend, threads=args.threads, window=args.window,
                                screen=not getattr(args, "no_screening", False))
            written += write_result(result, plans[bundle.card.name], overwrite=args.overwrite)
            row = [(bundle.card.name, result.synthetic, None)]
            if reference is not None:
                report = evaluate_images(reference, result.synthetic, label_map=labels, hounsfield=hounsfield)
                metric_rows.append({"model": bundle.card.name, "version": bundle.card.version, "method": bundle.card.method,
                                    "region": "brain", **{k: report["brain"][k] for k in scores},
                                    "seconds": round(sum(result.timings.values()), 2)})
                for region, values in report.get("regions", {}).items():
                    metric_rows.append({"model": bundle.card.name, "version": bundle.card.version,
                                        "method": bundle.card.method, "region": region,
                                        **{k: values[k] for k in scores}, "seconds": ""})
                row.append((f"|error| {bundle.card.name}", absolute_error_image(reference, result.synthetic), (0.0, 0.5)))
            rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["model", "version", "method", "region", *scores, "seconds"])
        writer.writeheader()
        writer.writerows(metric_rows)
        written.append(write_text(csv_path, buffer.getvalue(), overwrite=args.overwrite))
        written.append(save_montage(rows, png_path, overwrite=args.overwrite))
    except BaseException:
        _remove_new(written)  # a later model failed (or Ctrl-C): no half-finished comparison is left behind
        raise
    return written


def _remove_new(paths: list[Path]) -> None:
    """Remove the files this comparison wrote, then the folders it left empty."""
    for path in paths:
        Path(path).unlink(missing_ok=True)
    for folder in sorted({Path(p).parent for p in paths}, key=lambda f: len(f.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass
