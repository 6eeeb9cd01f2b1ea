"""Throughput of ``mrsynth batch`` in this process and on local Dask clusters of 1, 2 and 4 worker processes.

Every configuration runs the real CLI in a child process on the same ``--cases`` BraTS-size cases (one seeded
phantom, 240x240x155 at 1 mm, t1/t2/flair as int16 NIfTI, hard-linked into each case folder: the same work per case)
with the default bundle, target t1ce, and reports cases per minute end to end (start-up, bundle loading and
the cluster's start included), the cases' own seconds in ``summary.csv`` and the CPU seconds of the whole process
tree per case (start-up included; steadier than wall time on a shared machine). A sampler thread records the
peak resident memory of the batch's process tree and of its largest single process (one case at a time per
worker: the per-case memory to size a cluster with). The machine and its load before/after each run are recorded;
the result is JSON (``--json``) and a markdown table on stdout, for docs/SCALING.md.

    python -m benchmarks.batch_scaling --cases 6 --json docs/measurements/batch-scaling.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.inputs import INPUTS, CaseSpec, ensure_case
from benchmarks.machine import describe, load_average

REPO = Path(__file__).resolve().parents[1]
CASE = CaseSpec("brats", (240, 240, 155), description="BraTS size: 240x240x155 at 1 mm, the three inputs on one grid")


@dataclass(frozen=True)
class Result:
    scheduler: str
    cases: int
    wall_s: float
    cases_per_min: float
    case_seconds_mean: float
    cpu_s_per_case: float
    peak_tree_gib: float
    peak_process_gib: float
    load_before: float
    load_after: float
    exit_code: int


class MemorySampler(threading.Thread):
    """Peak RSS of a process tree (sum) and of its largest process, sampled every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.peak_tree = self.peak_process = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            try:
                root = psutil.Process(self.pid)
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for process in processes:
                try:
                    sizes.append(process.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            self.peak_tree = max(self.peak_tree, sum(sizes))
            self.peak_process = max([self.peak_process, *sizes])
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def make_dataset(work: Path, cases: int) -> Path:
    """``cases`` case folders holding (hard links to) the same BraTS-size phantom inputs."""
    source = ensure_case(CASE, work / "cache")
    data = work / f"data-{cases}"
    for index in range(cases):
        folder = data / f"case{index:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for contrast in INPUTS:
            target = folder / f"{contrast}.nii.gz"
            if not target.exists():
                os.link(source / f"{contrast}.nii.gz", target)
    return data


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(data: Path, out: Path, scheduler: str | None, timeout_s: float, model: str | None = None) -> Result:
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "MRSynthLib.commands.cli", "batch", "--input-dir", str(data), "--target", "t1ce",
               "--output-dir", str(out), "--progress", "none", *(["--scheduler", scheduler] if scheduler else []),
               *(["--model", model] if model else [])]
    load_before = load_average()[0]
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = MemorySampler(process.pid)
    sampler.start()
    _, err = process.communicate(timeout=timeout_s)
    wall = time.perf_counter() - start
    cpu = _children_cpu_s() - cpu_before  # the whole tree: every worker was reaped by the batch, the batch by us
    sampler.stop()
    rows = list(csv.DictReader(open(out / "summary.csv"))) if (out / "summary.csv").exists() else []
    if process.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    seconds = [float(r["seconds"]) for r in rows if r["status"] == "ok"]
    gib = 1024 ** 3
    return Result(scheduler or "none (this process)", len(seconds), round(wall, 1), round(60 * len(seconds) / wall, 2),
                  round(sum(seconds) / max(1, len(seconds)), 1), round(cpu / max(1, len(seconds)), 1),
                  round(sampler.peak_tree / gib, 2),
                  round(sampler.peak_process / gib, 2), load_before, load_average()[0], process.returncode)


def markdown(results: list[Result]) -> str:
    lines = ["| scheduler | cases | wall s | cases/min | mean s per case (in its worker) | CPU s per case (all processes) "
             "| peak memory, all processes GiB | peak memory, largest process GiB | load 1 min before → after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.scheduler} | {r.cases} | {r.wall_s} | {r.cases_per_min} | {r.case_seconds_mean} | "
                     f"{r.cpu_s_per_case} | "
                     f"{r.peak_tree_gib} | {r.peak_process_gib} | {r.load_before:.2f} → {r.load_after:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--schedulers", nargs="+", default=["none", "local:1", "local:2", "local:4"])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench-batch-scaling")
    parser.add_argument("--model", default=None, help="bundle name or folder (default: the built-in default)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    data = make_dataset(args.work, args.cases)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results = []
    for scheduler in args.schedulers:
        result = run_one(data, args.work / "out", None if scheduler == "none" else scheduler, args.timeout, args.model)
        print(json.dumps(asdict(result)), flush=True)
        results.append(result)
    report = {"started": started, "machine": describe(), "case": asdict(CASE), "model": args.model or "default",
              "results": [asdict(r) for r in results]}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
