"""The ``mrsynth`` command line: synthesize, batch, evaluate, compare, models, phantom, demo.

Every user-facing failure is one line on stderr and exit code 2 (see :class:`MRSynthLib.errors.MRSynthError`);
heavy imports happen inside the commands so ``mrsynth --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

from MRSynthLib import __version__
from MRSynthLib.errors import MRSynthError


#: Inputs excluded by the input screening in at least this fraction of the brain get a note on stderr.
SCREENING_NOTE_FRACTION = 0.25


def _seed(text: str) -> int:
    """``--seed``: a whole number 0 .. 2**32 - 1 (what the random generators accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 4294967295, not {value}")
    return value


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                   help="auto: onnxruntime on the CPU when the bundle has ONNX graphs, else torch")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the networks (0 = library default)")
    p.add_argument("--window", type=int, default=None,
                   help="sliding-window edge in model voxels (default: automatic; 0 = whole volume at once)")
    p.add_argument("--no-screening", action="store_true",
                   help="skip input screening (down-weighting input regions the model's autoencoder cannot "
                        "reconstruct; one decoder pass per input)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="bundle name (see `mrsynth models`) or folder; default: the built-in default")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _add_backend_args(p)
    p.add_argument("--seed", type=_seed, default=0, help="seed of the stochastic passes (default 0)")
    p.add_argument("--samples", type=int, default=None,
                   help="1 = deterministic (default); N >= 2 adds an uncertainty map from N passes (default 8 with "
                        "--uncertainty)")
    p.add_argument("--no-register", action="store_true", help="only resample inputs onto the reference grid, never register")
    p.add_argument("--progress", choices=("bar", "jsonl", "none"), default="bar",
                   help="bar: messages on stderr; jsonl: JSON lines on stdout (for the Slicer module)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrsynth", description="Synthesize missing MRI contrasts (research use, not for diagnosis).")
    parser.add_argument("--version", action="version", version=f"mrsynth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthesize", help="synthesize one missing contrast for one case")
    p.add_argument("--input", action="append", default=[], metavar="CONTRAST=PATH",
                   help="an available contrast, e.g. --input t1=t1.nii.gz (repeat; the first is the reference grid)")
    p.add_argument("--target", required=True, help="contrast to synthesize (t1, t1ce, t2, flair, pd)")
    p.add_argument("--output", required=True, type=Path, help="synthetic volume (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--series", action="append", default=[], metavar="CONTRAST=UID",
                   help="for an --input that is a DICOM folder with several series: the SeriesInstanceUID to read")
    p.add_argument("--uncertainty", type=Path, help="uncertainty map path (implies --samples 8 unless given)")
    p.add_argument("--contributions-dir", type=Path, help="folder for one contribution map per input")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_model_args(p)

    p = sub.add_parser("batch", help="synthesize for every case of a folder (resumable)")
    p.add_argument("--input-dir", required=True, type=Path)
    p.add_argument("--target", required=True)
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--layout", default="auto", choices=("auto", "plain", "brats2021", "brats2023", "nnunet"))
    p.add_argument("--resume", action="store_true", help="skip cases whose outputs are complete")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--contributions", action="store_true", help="also write contribution maps")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT|local:N",
                   help="run the cases on a Dask cluster: a running scheduler's address, or N worker processes on "
                        "this machine (needs dask[distributed]; docs/SCALING.md)")
    p.add_argument("--worker-retries", type=int, default=None, metavar="N",
                   help="with --scheduler local:N: rerun a case whose worker died at most N times (default: Dask's 3)")
    _add_model_args(p)

    p = sub.add_parser("evaluate", help="PSNR / SSIM / MAE of a synthetic volume against the real one")
    p.add_argument("--reference", required=True, type=Path, help="the real contrast")
    p.add_argument("--prediction", required=True, type=Path, help="the synthetic volume (same grid)")
    p.add_argument("--mask", type=Path, help="brain mask (default: reference foreground)")
    p.add_argument("--labels", type=Path, help="label map for region metrics (tumour 4/5/6, lesion 7 by default)")
    p.add_argument("--region", action="append", default=[], metavar="NAME=L1,L2",
                   help="label region, e.g. --region lesion=1 (repeat); replaces the defaults")
    p.add_argument("--output", type=Path, help="metrics JSON")
    p.add_argument("--hounsfield", action="store_true",
                   help="reference and prediction are CT in Hounsfield units: also report MAE in HU (mae_hu)")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("compare", help="several models on one case: figure PNG + metrics CSV")
    p.add_argument("--input", action="append", required=True, metavar="CONTRAST=PATH")
    p.add_argument("--target", required=True)
    p.add_argument("--reference", type=Path, help="the real target contrast, for metrics and error maps")
    p.add_argument("--labels", type=Path)
    p.add_argument("--model", action="append", default=[], dest="models", help="bundle name or folder (repeat)")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _add_backend_args(p)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--overwrite", action="store_true")

    sub.add_parser("models", help="list installed model bundles").add_argument("--json", action="store_true")

    p = sub.add_parser("phantom", help="write a seeded multi-contrast phantom case with labels")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--size", type=int, nargs=3, default=(96, 112, 96), metavar=("X", "Y", "Z"))
    p.add_argument("--spacing", type=float, nargs=3, default=(2.0, 2.0, 2.0), metavar=("X", "Y", "Z"))
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--field-strength", type=float, default=3.0, choices=(1.5, 3.0))
    p.add_argument("--no-tumour", action="store_true")
    p.add_argument("--ms-lesions", type=int, default=0)
    p.add_argument("--ct", action="store_true",
                   help="also write a pseudo-CT (ct.nii.gz, Hounsfield units per tissue; skull-stripped, so no bone)")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("demo", help="phantom case → synthetic t1ce + uncertainty + contributions + montage + metrics")
    p.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    p.add_argument("--model", default=None)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _add_backend_args(p)
    p.add_argument("--real-data", type=Path, default=None, help="shared/data/cases folder (default: ../shared/data/cases if present)")
    p.add_argument("--overwrite", action="store_true")
    return parser


def cmd_synthesize(args) -> int:
    from MRSynthLib.commands.outputs import plan_outputs, write_result
    from MRSynthLib.files.path_guard import image_reads
    from MRSynthLib.progress import Progress
    from MRSynthLib.synthesis import parse_input_pairs, parse_series_pairs, synthesize

    inputs = parse_input_pairs(args.input)
    series = parse_series_pairs(args.series, inputs)
    samples = args.samples if args.samples is not None else (8 if args.uncertainty else 1)
    if args.uncertainty and samples < 2:
        raise MRSynthError(f"--uncertainty needs --samples of at least 2, not {samples}: drop --samples (8 passes) or "
                           f"give 2 or more.")
    plan = plan_outputs(args.output, args.uncertainty, args.contributions_dir, list(inputs), args.overwrite,
                        reads=image_reads(inputs))
    progress = Progress(args.progress)
    result = synthesize(inputs, args.target, model=args.model, samples=samples, seed=args.seed,
                        device=args.device, backend=args.backend, threads=args.threads, window=args.window,
                        register=False if args.no_register else None, progress=progress,
                        contributions=args.contributions_dir is not None, screen=not args.no_screening,
                        series=series)
    progress("write", 0.0)
    written = write_result(result, plan, overwrite=args.overwrite)
    progress.done(outputs=[str(p) for p in written], timings=result.timings)
    for name, path in inputs.items():
        note = result.provenance.get("alignment", {}).get(name, {}).get("note")
        if note:
            print(f"mrsynth synthesize: note: input {name} ({path}): {note}.", file=sys.stderr)
        fraction = result.provenance.get("input_screening", {}).get("excluded_fraction", {}).get(name, 0.0)
        if fraction >= SCREENING_NOTE_FRACTION:
            print(f"mrsynth synthesize: note: the model cannot reconstruct input {name} ({path}) in {fraction:.0%} of the "
                  f"brain, so it was treated as missing there: check that file (see input_screening in the sidecar).",
                  file=sys.stderr)
    if args.progress != "jsonl":
        print(f"synthetic {result.provenance['target']} written to {plan.synthetic} (SYNTHETIC - not for diagnosis)")
        for path in written[2:]:
            if path.suffix != ".json":
                print(f"  also: {path}")
    return 0


def cmd_models(args) -> int:
    from MRSynthLib.models.bundle import load_bundle
    from MRSynthLib.models.registry import default_model_name, list_models

    rows = []
    for entry in list_models():
        try:
            card = load_bundle(entry.path, verify=False).card
            rows.append({"name": entry.name, "version": card.version, "method": card.method, "source": entry.source,
                         "inputs": list(card.input_contrasts), "outputs": list(card.output_contrasts),
                         "default": entry.name == default_model_name(), "path": str(entry.path)})
        except MRSynthError as error:
            rows.append({"name": entry.name, "source": entry.source, "error": str(error), "path": str(entry.path)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no model bundles installed")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<28} BROKEN  {row['error']}")
            continue
        mark = " (default)" if row["default"] else ""
        print(f"{row['name']:<28} {row['version']:<8} {row['method']:<12} {row['source']:<9} "
              f"{','.join(row['inputs'])} -> {','.join(row['outputs'])}{mark}\n{'':<28} {row['path']}")
    return 0


def cmd_phantom(args) -> int:
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case

    config = PhantomConfig(size=tuple(args.size), spacing=tuple(args.spacing), seed=args.seed,
                           field_strength=args.field_strength, tumour=not args.no_tumour, ms_lesions=args.ms_lesions,
                           ct=args.ct)
    folder = write_phantom_case(generate_phantom(config), args.output_dir, overwrite=args.overwrite)  # OutputError if it exists
    print(f"phantom case written to {folder}")
    return 0


def cmd_evaluate(args) -> int:
    from MRSynthLib.quality.evaluation import evaluate_files

    regions = None
    if args.region:
        regions = {}
        for item in args.region:
            name, _, labels = item.partition("=")
            try:
                regions[name] = [int(v) for v in labels.split(",")]
            except ValueError:
                raise MRSynthError(f"--region {item!r} must look like NAME=1,2 (integer labels).") from None
    report = evaluate_files(args.reference, args.prediction, args.mask, args.labels, regions, args.output, args.overwrite,
                            hounsfield=args.hounsfield)
    print(json.dumps(report, indent=2))
    return 0


def cmd_compare(args) -> int:
    from MRSynthLib.commands.compare import compare_models

    outputs = compare_models(args)
    for path in outputs:
        print(f"written: {path}")
    return 0


def cmd_batch(args) -> int:
    from MRSynthLib.commands.batch import run_batch

    return run_batch(args)


def cmd_demo(args) -> int:
    from MRSynthLib.commands.demo import run_demo

    return run_demo(args)


COMMANDS = {"synthesize": cmd_synthesize, "batch": cmd_batch, "evaluate": cmd_evaluate, "compare": cmd_compare,
            "models": cmd_models, "phantom": cmd_phantom, "demo": cmd_demo}


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (``kill``, batch schedulers, ``docker stop``) unwinds like Ctrl-C, so temp files are removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _note_thread_cap(args) -> None:
    """One note on stderr when ``--threads`` exceeds the cores (the library caps it: :func:`effective_threads`)."""
    from MRSynthLib.runtime.backends import available_cores

    threads = getattr(args, "threads", 0) or 0
    if threads > available_cores():
        print(f"mrsynth {args.command}: note: --threads {threads} is more than the {available_cores()} CPU cores this "
              f"process may use; using {available_cores()}.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _note_thread_cap(args)
    try:
        with _sigterm_as_interrupt():
            return COMMANDS[args.command](args)
    except MRSynthError as error:
        if getattr(args, "progress", None) == "jsonl":
            from MRSynthLib.progress import Progress

            Progress("jsonl").error(str(error))
        print(f"mrsynth {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"mrsynth {args.command}: interrupted; finished outputs are complete, nothing partial was left.", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"mrsynth {args.command}: error: out of memory: use a smaller input or a machine with more RAM.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
