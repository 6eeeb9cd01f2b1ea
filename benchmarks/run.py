"""``make bench``: measure the synthesis pipeline on this machine and regenerate docs/PERFORMANCE.md.

    python -m benchmarks.run            # the default model (~10 min on 2 cores) → docs/PERFORMANCE.md
    python -m benchmarks.run --model mrsynth-phantom-fsq --output docs/PERFORMANCE-networks.md   # ~15 min
    python -m benchmarks.run --quick    # tiny volumes, seconds → runs/bench-quick/PERFORMANCE.md

Every configuration runs in a fresh Python process (``benchmarks.worker``) with its thread counts fixed
through the environment; its peak resident memory and CPU time come from the kernel (``os.wait4``), the
load average is read before and after it. Results go to ``<work-dir>/results.json``, then the report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks import machine
from benchmarks.flops import graph_flops
from benchmarks.inputs import TARGET, CaseSpec, ExistingCase, ensure_case, input_paths
from benchmarks.plans import REPO, BenchPlan, RunConfig, full_plan, quick_plan
from benchmarks.report import render

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_child(args: list[str], threads: int, timeout_s: float) -> dict:
    """Run ``python args...`` in a fresh process; wall time, peak RSS and CPU seconds from ``os.wait4``."""
    load_before = machine.load_average()
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=_env(threads),
                                   stdout=log, stderr=subprocess.STDOUT)
        deadline = start + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
    return {"returncode": process.returncode, "wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime, "load_before": load_before,
            "load_after": machine.load_average(), "output_tail": output[-2000:]}


def measure_throughput(plan: BenchPlan, work: Path) -> list[dict]:
    rows = []
    for threads in plan.probe_threads:
        out = work / f"throughput-{threads}.json"
        code = ("import json, sys; from benchmarks.throughput import ConvProbe, measure; "
                f"json.dump(measure(ConvProbe(**{asdict(plan.probe)!r}), {threads}), open(sys.argv[1], 'w'))")
        child = run_child(["-c", code, str(out)], threads, plan.timeout_s)
        if child["returncode"] != 0:
            raise RuntimeError(f"the convolution probe failed:\n{child['output_tail']}")
        rows.append({**json.loads(out.read_text()), "load_before": child["load_before"],
                     "load_after": child["load_after"]})
    return rows


def ensure_onnx_bundle(model: str, cache: Path) -> tuple[str, str]:
    """The bundle to benchmark (with ONNX graphs) and a note on where it came from.

    When the installed bundle has no ONNX graphs yet, a copy in the cache gets them
    (``python -m training.bundles.onnx_export``, needs torch)."""
    from MRSynthLib.runtime.onnx_backend import has_onnx_parts
    from MRSynthLib.models.registry import resolve_model

    bundle = resolve_model(model)
    if has_onnx_parts(bundle):
        return str(bundle.path), f"{bundle.card.name} {bundle.card.version} ({bundle.path})"
    copy = cache / f"bundle-{bundle.card.name}-{bundle.sha256[:10]}"
    if not copy.is_dir():
        partial = cache / f".{copy.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(bundle.path, partial)
        subprocess.run([sys.executable, "-m", "training.bundles.onnx_export", str(partial)], cwd=REPO, check=True,
                       env=_env(2))
        partial.rename(copy)
    return str(copy), f"{bundle.card.name} {bundle.card.version} ({bundle.path}; ONNX graphs exported into a copy)"


def graph_summary(calls: list, onnx_dir: Path) -> dict[str, dict]:
    """Per graph: calls, wall and CPU seconds, FLOPs (counted from the ONNX graph for each call's shapes)."""
    out: dict[str, dict] = {}
    for graph, shapes, seconds, cpu_seconds in calls:
        row = out.setdefault(graph, {"calls": 0, "seconds": 0.0, "cpu_seconds": 0.0, "flops": 0})
        row["calls"] += 1
        row["seconds"] += seconds
        row["cpu_seconds"] += cpu_seconds
        row["flops"] += graph_flops(onnx_dir / f"{graph}.onnx", {k: tuple(v) for k, v in shapes.items()})
    return out


def prepare_cases(plan: BenchPlan, cache: Path, only: set[str] | None) -> dict[str, dict]:
    cases = {}
    for case in plan.cases:
        if only and case.name not in only:
            continue
        start = time.perf_counter()
        folder = case.folder if isinstance(case, ExistingCase) else ensure_case(case, cache)
        info = _image_info(folder)
        cases[case.name] = {"folder": str(folder), "description": case.description, "inputs": info,
                            "prepare_s": time.perf_counter() - start}
        print(f"[bench] case {case.name}: {folder} ({time.perf_counter() - start:.1f} s)", flush=True)
    return cases


def _image_info(folder: Path) -> dict[str, dict]:
    import SimpleITK as sitk

    info = {}
    for contrast, path in input_paths(folder).items():
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        info[contrast] = {"size": list(reader.GetSize()), "spacing": [round(s, 4) for s in reader.GetSpacing()],
                          "pixel": sitk.GetPixelIDValueAsString(reader.GetPixelID()),
                          "file_mib": round(os.path.getsize(path) / 2**20, 1)}
    return info


def measure_run(config: RunConfig, case: dict, bundle: str, work: Path, timeout_s: float) -> dict:
    out = work / "runs" / config.label.replace(" ", "_").replace(",", "")
    out.mkdir(parents=True, exist_ok=True)
    spec = {"inputs": input_paths(Path(case["folder"])), "target": TARGET, "model": bundle,
            "backend": config.backend, "samples": config.samples, "threads": config.threads,
            "window": config.window, "output_dir": str(out / "outputs")}
    result_path = out / "result.json"
    result_path.unlink(missing_ok=True)
    child = run_child(["-m", "benchmarks.worker", json.dumps(spec), str(result_path)], config.threads, timeout_s)
    record = {"config": asdict(config), "label": config.label, "process": child}
    if child["returncode"] != 0 or not result_path.is_file():
        record["error"] = child["output_tail"].strip().splitlines()[-1:] or ["no output"]
        return record
    result = json.loads(result_path.read_text())
    if result.get("peak_rss_bytes"):  # the worker's own VmHWM: ru_maxrss also counts the parent at fork time
        record["process"]["peak_rss_bytes"] = result["peak_rss_bytes"]
        record["process"]["peak_rss_source"] = "VmHWM"
    result["graphs"] = graph_summary(result.pop("calls"), Path(bundle) / "onnx")
    shutil.rmtree(out / "outputs", ignore_errors=True)  # large volumes; the numbers are what matters
    record["result"] = result
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny volumes and few configurations (seconds)")
    parser.add_argument("--output", type=Path, help="report path (default docs/PERFORMANCE.md; "
                                                    "--quick: <work-dir>/PERFORMANCE.md)")
    parser.add_argument("--work-dir", type=Path, help="results and run folders (default runs/bench or runs/bench-quick)")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "bench-cache", help="generated input cases")
    parser.add_argument("--model", help="bundle name or folder (default: the default model, mrsynth models)")
    parser.add_argument("--only", action="append", help="only this case (repeatable)")
    parser.add_argument("--from-results", type=Path, metavar="RESULTS_JSON",
                        help="measure nothing: render the report again from a results.json of an earlier run")
    args = parser.parse_args(argv)
    if args.from_results:
        output = args.output or REPO / "docs" / "PERFORMANCE.md"
        output.write_text(render(json.loads(args.from_results.read_text())), encoding="utf-8")
        print(f"[bench] wrote {output} from {args.from_results}", flush=True)
        return 0

    from MRSynthLib.models.registry import default_model_name, resolve_model

    model = args.model or default_model_name()
    chosen = resolve_model(model)
    regression = chosen.card.method == "regression"
    backends = ("numpy",) if regression else (("onnx",) if args.quick else ("torch", "onnx"))
    plan = quick_plan(backends) if args.quick else full_plan(backends=backends)
    work = args.work_dir or REPO / "runs" / ("bench-quick" if args.quick else "bench")
    output = args.output or (work / "PERFORMANCE.md" if args.quick else REPO / "docs" / "PERFORMANCE.md")
    work.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    only = set(args.only) if args.only else None

    started = time.time()
    host = machine.describe()
    if regression:  # numpy trees: no ONNX graphs, no convolutions to compare with
        bundle, bundle_note = str(chosen.path), f"{chosen.card.name} {chosen.card.version} ({chosen.path})"
    else:
        bundle, bundle_note = ensure_onnx_bundle(model, args.cache)
    cases = prepare_cases(plan, args.cache, only)
    throughput = []
    if not regression:
        print("[bench] convolution throughput", flush=True)
        throughput = measure_throughput(plan, work)
    runs = []
    for config in plan.runs:
        if config.case not in cases:
            continue
        print(f"[bench] {config.label}", flush=True)
        record = measure_run(config, cases[config.case], bundle, work, plan.timeout_s)
        process = record["process"]
        outcome = f"FAILED {record['error']}" if "error" in record else f"{record['result']['end_to_end_s']:.1f} s"
        print(f"[bench]   {outcome}, peak {process['peak_rss_bytes'] / 2**30:.2f} GiB, load {process['load_after']}",
              flush=True)
        runs.append(record)
    results = {"plan": plan.name, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
               "duration_s": time.time() - started, "machine": host, "load_end": machine.load_average(),
               "bundle": bundle_note, "cases": cases, "throughput": throughput, "runs": runs,
               "targets": asdict(plan.targets), "command": "python -m benchmarks.run" + (" --quick" if args.quick else "")
               + (f" --model {args.model}" if args.model else "") + (f" --output {args.output}" if args.output else "")}
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results), encoding="utf-8")
    print(f"[bench] wrote {output} and {work / 'results.json'} in {time.time() - started:.0f} s", flush=True)
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
