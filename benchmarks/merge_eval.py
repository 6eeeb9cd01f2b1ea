"""Merge results of several ``benchmarks.real_eval`` runs (same protocol) into one report.

    python -m benchmarks.merge_eval runs/real-eval/results.json runs/real-eval-default/results.json \
        --only brats-gli-00001,ms-ljubljana-p26,isbi2015-ms-test02 --output docs/MODEL_CARD_EVAL_HELDOUT.md

A result (model, case, task) and a model's description come from the first run that has them, so a newer run
listed first replaces an older one's rows of the same model. Used for the default model's card: the regression
baseline's leave-one-case-out folds and the phantom model come from the full run; the default model (trained with these cases held out) from its own run on
the held-out cases. Refuses runs whose protocols differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def merge(paths: list[Path], only: list[str] | None) -> dict:
    """One ``{"record", "results"}`` document from several; the protocol must be identical."""
    documents = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    protocols = {json.dumps(d["record"]["protocol"], sort_keys=True) for d in documents}
    if len(protocols) != 1:
        raise SystemExit(f"merge_eval: the runs {', '.join(map(str, paths))} used different protocols: re-run them alike.")
    record = dict(documents[0]["record"])
    record["models"] = {}
    results, seen = [], set()
    for document in documents:
        for name, description in document["record"]["models"].items():  # first wins, as for the results
            record["models"].setdefault(name, description)
        for item in document["results"]:
            key = (item["model"], item["case"], item["target"], tuple(item["inputs"]))
            if (only is None or item["case"] in only) and key not in seen:
                seen.add(key)
                results.append(item)
    cases = sorted({item["case"] for item in results})
    record["cases"] = cases
    record["uncertainty_samples"] = max(int(d["record"].get("uncertainty_samples", 0)) for d in documents)
    record["seconds"] = sum(float(d["record"].get("seconds", 0.0)) for d in documents)
    record["command"] = " + ".join(d["record"].get("command", "?") for d in documents) + (
        f" (merged by benchmarks.merge_eval, cases {', '.join(cases)})")
    return {"record": record, "results": results}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.real_eval import case_task_from_dict
    from benchmarks.real_eval_report import render_report

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files of benchmarks.real_eval runs")
    parser.add_argument("--only", default="", help="comma-separated case ids to keep")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="also write the merged JSON here")
    args = parser.parse_args(argv)
    merged = merge(args.results, [c for c in args.only.split(",") if c] or None)
    results = [case_task_from_dict(item) for item in merged["results"]]
    args.output.write_text(render_report(results, merged["record"]), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
    print(f"report written to {args.output} ({len(results)} results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
