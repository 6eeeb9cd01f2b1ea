"""Render the benchmark results (``results.json``) as docs/PERFORMANCE.md: every number comes from the run."""

from __future__ import annotations

STAGES = ("read", "register_resample", "preprocess", "load_model", "encode", "translate", "decode", "features", "trees",
          "uncertainty", "blend", "postprocess", "write")
STAGE_TITLES = {"read": "read", "register_resample": "register / resample", "preprocess": "preprocess",
                "load_model": "load model", "encode": "encode", "translate": "translate", "decode": "decode",
                "features": "features", "trees": "trees", "uncertainty": "uncertainty", "blend": "blend",
                "postprocess": "postprocess", "write": "write"}
BACKENDS = ("torch", "onnx", "numpy")
GRAPHS = ("encoder", "translator_fuse", "translator_head", "decoder")
GIB = 2**30


def _ok(runs: list[dict]) -> list[dict]:
    return [r for r in runs if "result" in r]


def _find(runs: list[dict], **config) -> dict | None:
    for run in _ok(runs):
        if all(run["config"].get(k) == v for k, v in config.items()):
            return run
    return None


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _gib(run: dict) -> float:
    return run["process"]["peak_rss_bytes"] / GIB


def _load(run: dict) -> str:
    return f"{run['process']['load_before'][0]:.1f} → {run['process']['load_after'][0]:.1f}"


def _probe(results: dict, backend: str, threads: int) -> tuple[float, float] | None:
    """The probe convolution's (GFLOP/s, GFLOP per CPU second) for this backend and thread count."""
    for row in results["throughput"]:
        if row["threads"] == threads and backend in row:
            return row[backend], row[f"{backend}_per_cpu_s"]
    return None


def _network(run: dict) -> tuple[float, float]:
    """(GFLOP, seconds) over every network call of the run."""
    graphs = run["result"]["graphs"].values()
    return sum(g["flops"] for g in graphs) / 1e9, sum(g["seconds"] for g in graphs)


def _section_targets(results: dict) -> list[str]:
    t = results["targets"]
    lines = ["## Targets", "",
             f"Issue 8's targets on a 2-core CPU at BraTS size, checked on case `{t['case']}` with {t['threads']} "
             f"thread(s). End-to-end = `synthesize` + writing the outputs, in a process that has already imported "
             f"MRSynthLib (the process column of the stage table adds interpreter start-up and imports).", "",
             "| target | backend | measured | limit | met | CPU-time bound |", "|---|---|---|---|---|---|"]
    misses = []
    measured = {r["config"]["backend"] for r in results["runs"]}
    for backend in [b for b in BACKENDS if b in measured]:
        one = _find(results["runs"], case=t["case"], backend=backend, samples=1, threads=t["threads"], window=None)
        many = _find(results["runs"], case=t["case"], backend=backend, samples=t["samples"], threads=t["threads"],
                     window=None)
        if one is None:
            lines.append(f"| deterministic end-to-end | {backend} | not measured | ≤ {t['end_to_end_s']:.0f} s | – | – |")
            continue
        e2e, cpu = one["result"]["end_to_end_s"], one["result"]["end_to_end_cpu_s"]
        met = e2e <= t["end_to_end_s"]
        lines.append(f"| deterministic end-to-end | {backend} | {e2e:.1f} s (load {_load(one)}) | "
                     f"≤ {t['end_to_end_s']:.0f} s | {'yes' if met else '**no**'} | {cpu:.1f} CPU s: "
                     f"{'fits' if cpu <= t['end_to_end_s'] else 'does not fit'} |")
        if not met:
            misses.append(one)
        peaks = [r for r in (one, many) if r is not None]
        peak = max(_gib(r) * GIB for r in peaks)
        met = peak <= t["peak_memory_bytes"]
        lines.append(f"| peak memory (whole process, {', '.join(str(r['config']['samples']) for r in peaks)} sample(s)) "
                     f"| {backend} | {peak / 1e9:.2f} GB | ≤ {t['peak_memory_bytes'] / 1e9:.0f} GB | "
                     f"{'yes' if met else '**no**'} | – |")
        if many is None:
            lines.append(f"| {t['samples']}-sample / deterministic time | {backend} | not measured | "
                         f"≤ {t['uncertainty_ratio']:.0f}× | – | – |")
            continue
        ratio = many["result"]["end_to_end_s"] / e2e
        cpu_ratio = many["result"]["end_to_end_cpu_s"] / cpu
        met = ratio <= t["uncertainty_ratio"]
        lines.append(f"| {t['samples']}-sample / deterministic time | {backend} | {ratio:.2f}× "
                     f"({many['result']['end_to_end_s']:.1f} s / {e2e:.1f} s) | ≤ {t['uncertainty_ratio']:.0f}× | "
                     f"{'yes' if met else '**no**'} | {cpu_ratio:.2f}× in CPU s |")
        if not met:
            misses.append(many)
    lines += ["", "*CPU-time bound*: the CPU seconds the process used for the same work (all its threads). On an "
              "otherwise idle machine the wall time of a CPU-bound run is at most that (plus file I/O waits), so a "
              "run whose CPU time fits the target would meet it without the other processes; under contention the "
              "CPU time is the steadier number.", ""]
    if misses:
        lines += ["Where the time goes in the configurations that miss a target (the largest stages by CPU time):", ""]
        for run in misses:
            lines.append(f"- `{run['label']}`: {_profile(run)}")
        lines.append("")
    return lines


def _profile(run: dict, top: int = 4) -> str:
    """The ``top`` stages by CPU seconds, with wall seconds and shares of the end-to-end totals."""
    cpu = run["result"].get("stage_cpu_s", {})
    wall = run["result"]["timings_s"]
    total_cpu, total_wall = run["result"]["end_to_end_cpu_s"], run["result"]["end_to_end_s"]
    ranked = sorted(((v, k) for k, v in cpu.items()), reverse=True)[:top]
    network_gflop, network_s = _network(run)
    parts = [f"{STAGE_TITLES.get(k, k)} {v:.1f} CPU s ({100 * v / total_cpu:.0f} %; wall {wall.get(k, 0.0):.1f} s, "
             f"{100 * wall.get(k, 0.0) / total_wall:.0f} %)" for v, k in ranked]
    networks = f"; the networks compute {network_gflop:.0f} GFLOP in {network_s:.1f} s wall" if network_s else ""
    return ", ".join(parts) + networks


def _section_machine(results: dict) -> list[str]:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return ["## Machine", "",
            f"- CPU: {m['cpu']} ({', '.join(m.get('simd', [])) or 'no AVX'}); {m['usable_cores']} usable cores "
            f"({m['logical_cpus']} logical CPUs), "
            f"{m['memory_gib']} GiB memory; {m['os']}",
            f"- Software: {versions}",
            f"- Bundle: {results['bundle']}",
            f"- Run: `{results['command']}`, started {results['started']}, took {results['duration_s'] / 60:.1f} min",
            f"- Load average (1, 5, 15 min) at the start {tuple(m['load_average'])}, at the end "
            f"{tuple(results['load_end'])}. **This machine is shared with other busy processes**: a load above "
            f"the number of cores means the benchmark got less than the whole CPU, so its times are upper bounds. "
            f"Every row below gives the 1-minute load before → after that configuration.", ""]


def _method_networks(results: dict) -> list[str]:
    """The Method items on network FLOPs and the convolution probe (network bundles only)."""
    return [
        "- FLOPs: each network call's input shapes are recorded (the engine's four methods are wrapped; "
        "the pipeline is unchanged) and its FLOPs are counted from the bundle's ONNX graph with shape inference "
        "for exactly those shapes: 2 × multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul "
        "(element-wise ops are not counted). The torch networks are the same layers (the graphs are exported "
        "from them), so the same counts apply to both backends. Network seconds are the wall time of those "
        "calls.",
        f"- Machine throughput: the best of {results['throughput'][0]['probe']['repeats']} calls of one float32 "
        f"3×3×3 Conv3d with {results['throughput'][0]['probe']['channels']} channels in and out on a "
        f"{results['throughput'][0]['probe']['edge']}³ volume "
        f"({results['throughput'][0]['gflop']:.3g} GFLOP), after a warm-up, in torch and in onnxruntime, in a "
        "fresh process per thread count. 'Efficiency' = achieved network GFLOP/s ÷ that probe's GFLOP/s for the "
        "same backend and thread count."]


def _section_method(results: dict) -> list[str]:
    return ["## Method", "",
            "- Every configuration runs in a fresh Python process (`benchmarks/worker.py`) doing what "
            "`mrsynth synthesize` does: plan the outputs, `MRSynthLib.synthesis.synthesize` (seed 0, CPU), "
            "`MRSynthLib.commands.outputs.write_result` (the synthetic volume, plus the uncertainty map with more than one "
            "sample; `.nii.gz`). Stage times are the pipeline's own `result.timings`; `write` is timed around "
            "`write_result`.",
            "- Threads: the parent sets `OMP_NUM_THREADS`, `MKL_NUM_THREADS`, `OPENBLAS_NUM_THREADS` and "
            "`ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS` to the configuration's thread count before the process starts "
            "and passes `threads=` to `synthesize` (torch intra-op threads or onnxruntime intra-op threads), so "
            "'1 thread' means the whole pipeline.",
            "- Peak memory is the process's peak resident set size as the kernel reports it to the parent "
            "(`os.wait4`, `ru_maxrss`), or, where the worker could read it, the worker's own `VmHWM` "
            "(`/proc/self/status`): Linux carries the high-water mark of the forked image across `exec` into "
            "`ru_maxrss`, so that number also counts the parent's memory at fork time (the parent generates the "
            "input cases). Either way everything, including the Python interpreter, numpy, SimpleITK and the "
            "backend's libraries. CPU seconds are the process's CPU time (`time.process_time`, all threads): "
            "for the whole run, per stage (between the pipeline's progress reports) and per network call.",
            *(_method_networks(results) if results["throughput"] else [
                "- A regression bundle (numpy trees per voxel at the bundle's spacing): stages `features` (multi-scale "
                "intensity features), `trees` (the ensemble, with path attributions only when contribution maps are "
                "asked for, which the benchmark does not) and `uncertainty` (the error model, with more than one "
                "sample: one pass whatever the number). The threads setting caps SimpleITK and numpy's libraries and "
                "is the number of threads that walk the trees (chunks of voxels in parallel; the output does not "
                "depend on it)."]),
            "- Inputs are seeded phantoms (`MRSynthLib.phantom`) saved as int16 `.nii.gz` like scanner exports "
            "(`benchmarks/inputs.py`, cached in `runs/bench-cache/`); the target is t1ce from t1, t2 and flair.",
            "- Each configuration runs once (the whole benchmark has to fit in about 15 minutes), so with the "
            "machine shared, differences of 10-20 % between rows are within the noise.", ""]


def _section_cases(results: dict) -> list[str]:
    lines = ["## Inputs", "", "| case | description | inputs (size, spacing mm, pixel, file) | model space (z, y, x) at the "
             "bundle's spacing | windows |", "|---|---|---|---|---|"]
    for name, case in results["cases"].items():
        inputs = "; ".join(f"{c} {'×'.join(map(str, i['size']))}, {'×'.join(f'{s:g}' for s in i['spacing'])}, "
                           f"{i['pixel']}, {i['file_mib']} MiB" for c, i in case["inputs"].items())
        runs = [r for r in _ok(results["runs"]) if r["config"]["case"] == name]
        shapes = sorted({"×".join(map(str, r["result"]["model_shape_zyx"])) for r in runs})
        windows = sorted({(r["config"]["window"], r["result"]["windows"]) for r in runs}, key=str)
        window_text = ", ".join(f"{n} ({'automatic' if w is None else f'--window {w}'})" for w, n in windows)
        lines.append(f"| {name} | {case['description']} | {inputs} | {', '.join(shapes) or '–'} | {window_text or '–'} |")
    return lines + [""]


def _section_throughput(results: dict) -> list[str]:
    if not results["throughput"]:  # a regression bundle: no convolutions
        return []
    lines = ["## Machine convolution throughput", "",
             "float32 unless stated; *bfloat16* is the same convolution in torch with bfloat16 tensors, for "
             "comparison only (the pipeline runs float32).", "",
             "| threads | torch GFLOP/s | onnxruntime GFLOP/s | torch GFLOP per CPU s | onnxruntime GFLOP per CPU s "
             "| torch bfloat16 GFLOP per CPU s | load before → after |", "|---|---|---|---|---|---|---|"]
    for row in results["throughput"]:
        bf16 = f"{row['torch_bf16_per_cpu_s']:.1f}" if "torch_bf16_per_cpu_s" in row else "–"
        lines.append(f"| {row['threads']} | {row['torch']:.1f} | {row['onnx']:.1f} | {row['torch_per_cpu_s']:.1f} | "
                     f"{row['onnx_per_cpu_s']:.1f} | {bf16} | {row['load_before'][0]:.1f} → {row['load_after'][0]:.1f} |")
    return lines + [""]


def _section_stages(results: dict) -> list[str]:
    stages = [s for s in STAGES if any(s in r["result"]["timings_s"] for r in _ok(results["runs"]))]
    head = ["configuration"] + [STAGE_TITLES[s] for s in stages] + ["end-to-end", "CPU s", "process", "peak GiB",
                                                                    "load"]
    lines = ["## Wall time per stage (seconds) and peak memory", "",
             "Configuration = case, backend, samples (s), threads (t). *CPU s*: CPU seconds (all threads) of the "
             "end-to-end part. *process*: wall time of the whole child process (interpreter start-up, imports, "
             "synthesis, write). *peak GiB*: the process's peak resident memory. *load*: 1-minute load average "
             "before → after.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in results["runs"]:
        if "result" not in run:
            lines.append(f"| {run['label']} | failed: {' '.join(run['error'])} |")
            continue
        timings = run["result"]["timings_s"]
        cells = [run["label"]] + [_s(timings.get(s)) for s in stages]
        cells += [f"**{_s(run['result']['end_to_end_s'])}**", _s(run["result"]["end_to_end_cpu_s"]),
                  _s(run["process"]["wall_s"]), f"{_gib(run):.2f}", _load(run)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _section_stage_cpu(results: dict) -> list[str]:
    runs = _ok(results["runs"])
    stages = [s for s in STAGES if any(r["result"].get("stage_cpu_s", {}).get(s, 0) >= 0.005 for r in runs)]
    head = ["configuration"] + [STAGE_TITLES[s] for s in stages] + ["end-to-end"]
    lines = ["## CPU seconds per stage", "",
             "CPU time of the process (all its threads) per stage, from the pipeline's progress reports: steadier "
             "than wall time on a shared machine, and an upper bound of a stage's wall time on an idle one (short "
             "set-up steps between reports count towards the stage before).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        cpu = run["result"].get("stage_cpu_s", {})
        cells = [run["label"]] + [_s(cpu.get(s)) for s in stages] + [f"**{_s(run['result']['end_to_end_cpu_s'])}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _section_networks(results: dict) -> list[str]:
    if not any(r["result"]["graphs"] for r in _ok(results["runs"])):  # a regression bundle: no networks
        return []
    lines = ["## Networks: FLOPs and the fraction of the machine's throughput they achieve", "",
             "GFLOP per graph summed over all calls of the run (encoder: one call per input and window; "
             "translator_fuse: one per window, plus the left-right flipped pass with samples; translator_head and "
             "decoder: one per pass, stochastic passes batched by 4).", "",
             "*Efficiency* = achieved GFLOP/s ÷ the probe convolution's GFLOP/s (same backend and threads, "
             "table above); *per CPU s* compares GFLOP per CPU second instead, which other processes on the machine "
             "disturb less.", "",
             "| configuration | encoder | fuse | head | decoder | total GFLOP | network s | GFLOP/s | efficiency "
             "| efficiency per CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in _ok(results["runs"]):
        graphs = run["result"]["graphs"]
        gflop, seconds = _network(run)
        cpu_seconds = sum(g["cpu_seconds"] for g in graphs.values())
        achieved = gflop / seconds if seconds else 0.0
        probe = _probe(results, run["config"]["backend"], run["config"]["threads"])
        efficiency = f"{100 * achieved / probe[0]:.0f} %" if probe else "–"
        per_cpu = f"{100 * gflop / cpu_seconds / probe[1]:.0f} %" if probe and cpu_seconds else "–"
        cells = [f"{graphs[g]['flops'] / 1e9:.1f}" if g in graphs else "–" for g in GRAPHS]
        lines.append(f"| {run['label']} | " + " | ".join(cells) +
                     f" | {gflop:.0f} | {seconds:.1f} | {achieved:.1f} | {efficiency} | {per_cpu} |")
    return lines + [""]


def _e2e(run: dict) -> tuple[float, float]:
    return run["result"]["end_to_end_s"], run["result"]["end_to_end_cpu_s"]


def _pair(value: tuple[float, float]) -> str:
    return f"{value[0]:.1f} ({value[1]:.1f})"


def _ratio(numerator: tuple[float, float], denominator: tuple[float, float]) -> str:
    return f"{numerator[0] / denominator[0]:.2f}× ({numerator[1] / denominator[1]:.2f}×)"


def _section_comparisons(results: dict) -> list[str]:
    runs = _ok(results["runs"])
    lines = ["## Comparisons", "", "End-to-end wall seconds, with CPU seconds in brackets (the steadier number "
             "while other processes load the machine).", ""]
    rows = []
    for run in runs:
        c = run["config"]
        if c["backend"] != "torch" or c["window"] is not None:
            continue
        other = _find(runs, case=c["case"], backend="onnx", samples=c["samples"], threads=c["threads"], window=None)
        if other:
            a, b = _e2e(run), _e2e(other)
            rows.append(f"| {c['case']} {c['samples']}s {c['threads']}t | {_pair(a)} | {_pair(b)} | "
                        f"{_ratio(b, a)} |")
    if rows:
        lines += ["| configuration | torch | onnxruntime | onnxruntime / torch |", "|---|---|---|---|"] + rows + [""]
    rows = []
    for run in runs:
        c = run["config"]
        if c["threads"] != 1 or c["window"] is not None:
            continue
        other = _find(runs, case=c["case"], backend=c["backend"], samples=c["samples"], threads=2, window=None)
        if other:
            a, b = _e2e(run), _e2e(other)
            rows.append(f"| {c['case']} {c['backend']} {c['samples']}s | {_pair(a)} | {_pair(b)} | {_ratio(a, b)} |")
    if rows:
        lines += ["| configuration | 1 thread | 2 threads | 1 thread / 2 threads |", "|---|---|---|---|"] + rows + [""]
    rows = []
    for run in runs:
        c = run["config"]
        if c["samples"] != 1 or c["window"] is not None:
            continue
        for other in runs:
            o = other["config"]
            if (o["case"], o["backend"], o["threads"], o["window"]) == (c["case"], c["backend"], c["threads"], None) \
                    and o["samples"] > 1:
                a, b = _e2e(run), _e2e(other)
                rows.append(f"| {c['case']} {c['backend']} {c['threads']}t | {_pair(a)} | {o['samples']} | "
                            f"{_pair(b)} | {_ratio(b, a)} |")
    if rows:
        lines += ["| configuration | 1 sample | samples | with samples | ratio |", "|---|---|---|---|---|"] + rows + [""]
    return lines


def _section_memory(results: dict) -> list[str]:
    runs = [r for r in results["runs"] if r["config"]["case"] == "large"]
    if not runs:
        return []
    lines = ["## Memory: a 512×512×400 input", ""]
    for run in runs:
        if "result" not in run:
            lines.append(f"- `{run['label']}` failed: {' '.join(run['error'])}")
            continue
        r = run["result"]
        window = "automatic windows" if run["config"]["window"] is None else f"`--window {run['config']['window']}`"
        lines.append(f"- `{run['label']}` ({window}): model space {'×'.join(map(str, r['model_shape_zyx']))}, "
                     f"{r['windows']} window(s); end-to-end {r['end_to_end_s']:.1f} s, peak memory {_gib(run):.2f} GiB "
                     f"of {results['machine']['memory_gib']} GiB; {_profile(run, top=3)}.")
    lines += ["", "The pipeline crops to the head's foreground before the network, so the network's input is set by "
              "the head's size at the bundle's spacing, not by the file's matrix: a finely sampled input costs memory "
              "and time in the full-resolution stages (reading, mapping the outputs back onto the input grid in "
              "postprocess, writing), not in the networks. Sliding windows start above "
              "160³ model-space voxels (`MRSynthLib.runtime.inference.AUTO_WINDOW_VOXELS`); the `--window` row shows them "
              "running at this size.", ""]
    return lines


def render(results: dict) -> str:
    lines = ["# Performance", "",
             f"Generated by `make bench` (`{results['command']}`); do not edit by hand, rerun it. "
             "Numbers are single measurements on the machine below.", ""]
    lines += _section_targets(results)
    lines += _section_machine(results)
    lines += _section_cases(results)
    lines += _section_stages(results)
    lines += _section_stage_cpu(results)
    lines += _section_comparisons(results)
    lines += _section_throughput(results)
    lines += _section_networks(results)
    lines += _section_memory(results)
    lines += _section_method(results)
    return "\n".join(lines).rstrip() + "\n"
