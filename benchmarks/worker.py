"""Run one benchmark configuration in this (fresh) process and write its measurements as JSON.

    python -m benchmarks.worker '<RunSpec as JSON>' RESULT.json

What it does is what ``mrsynth synthesize`` does: plan the outputs, :func:`MRSynthLib.synthesis.synthesize`,
:func:`MRSynthLib.commands.outputs.write_result` (synthetic, plus the uncertainty map with more than one sample).
The engine the pipeline loads is wrapped so that every network call's input shapes and wall time are
recorded (for the FLOP counts); the pipeline itself is unchanged. Thread counts are fixed through the
environment by the parent (``benchmarks.run``) before this interpreter starts.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

IMPORT_START = time.perf_counter()

GRAPH_OF_METHOD = {"encode": "encoder", "fuse": "translator_fuse", "head": "translator_head", "decode": "decoder"}
INPUT_NAMES = {
    "encoder": ("image",),
    "translator_fuse": ("latents", "slot_codes", "target_onehot", "mask"),
    "translator_head": ("hidden", "channel_scale"),
    "decoder": ("latents",),
}


class CallLog:
    """Network calls of one run: ``(graph, {input: shape}, wall seconds, CPU seconds of the process)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, list[int]], float]] = []
        self.instrumented: set[int] = set()

    def instrument(self, engine) -> None:
        """Shadow the engine's four methods with timed, shape-recording wrappers (once per engine)."""
        if id(engine) in self.instrumented:
            return
        self.instrumented.add(id(engine))
        for method, graph in GRAPH_OF_METHOD.items():
            setattr(engine, method, self._wrap(getattr(engine, method), graph))

    def _wrap(self, call, graph: str):
        def timed(*arrays):
            start, cpu_start = time.perf_counter(), time.process_time()
            out = call(*arrays)
            shapes = {name: list(a.shape) for name, a in zip(INPUT_NAMES[graph], arrays)}
            self.calls.append((graph, shapes, time.perf_counter() - start, time.process_time() - cpu_start))
            return out

        return timed


class StageCpu:
    """CPU seconds of the process per pipeline stage, from the pipeline's progress reports.

    A stage runs from its first report until the next stage's; ``register <input>`` counts as
    ``register_resample``; the engine load (no report of its own) is marked by the wrapped ``load_engine``.
    """

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def mark(self, stage: str) -> None:
        if not self.marks or self.marks[-1][0] != stage:
            self.marks.append((stage, time.process_time()))

    def progress(self, stage: str, fraction: float = 0.0) -> None:
        name = stage.split()[0]
        self.mark("register_resample" if name == "register" else name)

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (stage, start), (_, stop) in zip(self.marks, self.marks[1:]):
            out[stage] = out.get(stage, 0.0) + stop - start
        return out


def own_peak_rss_bytes() -> int | None:
    """The high-water mark of this process's own address space (``VmHWM``), or None off Linux.

    ``ru_maxrss`` is not it: Linux carries the high-water mark of the forked image (the parent's memory)
    across ``exec`` into the child's ``ru_maxrss``, so a parent that generated large cases inflates it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def run(spec: dict) -> dict:
    import MRSynthLib.runtime.backends as backends
    from MRSynthLib.commands.outputs import plan_outputs, write_result
    from MRSynthLib.synthesis import synthesize

    log = CallLog()
    stages = StageCpu()
    original_load_engine = backends.load_engine

    def load_engine(*args, **kwargs):
        stages.mark("load_model")
        engine = original_load_engine(*args, **kwargs)
        log.instrument(engine)
        return engine

    backends.load_engine = load_engine  # synthesize() imports it from the module at call time
    imported = time.perf_counter()

    out = Path(spec["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    samples = int(spec["samples"])
    start, cpu_start = time.perf_counter(), time.process_time()
    plan = plan_outputs(out / "synthetic.nii.gz", out / "uncertainty.nii.gz" if samples > 1 else None, None,
                        list(spec["inputs"]), overwrite=True)
    result = synthesize(spec["inputs"], spec["target"], model=spec["model"], samples=samples, seed=0,
                        device="cpu", backend=spec["backend"], threads=int(spec["threads"]),
                        window=spec.get("window"), contributions=False,  # as the CLI without --contributions-dir
                        progress=stages.progress)
    stages.mark("write")
    written_at = time.perf_counter()
    written = write_result(result, plan, overwrite=True)
    end = time.perf_counter()
    stages.mark("end")

    timings = dict(result.timings)
    timings["write"] = end - written_at
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "spec": spec,
        "timings_s": timings,
        "end_to_end_s": end - start,
        "end_to_end_cpu_s": time.process_time() - cpu_start,
        "stage_cpu_s": stages.totals(),
        "imports_s": imported - IMPORT_START,
        "backend": result.provenance["backend"],
        "windows": result.provenance["windows"],
        "model_shape_zyx": result.provenance["model_space"]["model_shape_zyx"],
        "alignment": {name: record["role"] for name, record in result.provenance["alignment"].items()},
        "calls": log.calls,
        "self_peak_rss_mib": usage.ru_maxrss / 1024,
        "peak_rss_bytes": own_peak_rss_bytes(),
        "written_bytes": sum(p.stat().st_size for p in written),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    record = run(spec)
    Path(args[1]).write_text(json.dumps(record) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
