"""Case-parallel throughput: the full-size suite of full_size.py spread over GPUs, one worker process per GPU.

Each worker is what an xdist worker of `pytest -n <GPUs> --parity-device cuda` is: its own process, pinned to
its GPU (worker i renders on cuda:i through parity's Engine), building the model once (here: the same random
full-size weights, same seed) and rendering cases one after another; cases are handed out one at a time to
whichever worker is free (xdist's dynamic load scheduling, at its finest grain). Runs the suite once per
worker count given, in this one command, on the same weights, and reports:
  - suite wall from start to the last case, the workers' set-up (process start, model build, warm-up) included;
  - busy wall: from each worker's "ready" to its last case, the longest of them (set-up excluded);
  - throughput ratios against the first worker count (normally 1);
  - every case's decoded-output sha256 against the one-worker run (the same bits on every GPU).

    python benchmarks/case_parallel.py --out DIR --workers 1,2
    python benchmarks/case_parallel.py --tiny --out DIR --workers 1,2   # CPU, tiny model: checks the script only
    python benchmarks/case_parallel.py --out DIR --join one/results.json two/results.json   # runs of separate commands
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def worker(index: int, device: str, argv: list[str], tasks, events) -> None:
    """One GPU's worker: set up once, then render the cases it is handed until it gets None."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import full_size

    from parity.render.engine import Engine

    try:
        args = full_size.parse_args([*argv, "--device", device])
        pipe, cases, _, meta = full_size.set_up(args)
        engine = Engine(device)
        engine.adopt(pipe, "full-size")
        if not args.tiny:  # --tiny measures nothing; full_size.py's drivers exercise the warm-up
            full_size.warm_up(engine, cases[0])
        events.put(("ready", index, time.time(), meta))
        previous = None
        while (task := tasks.get()) is not None:
            start = time.time()
            row, _ = full_size.render_case(engine, cases[task], args.size, args.tflops, previous)
            previous = cases[task].effective.lora_scale
            events.put(("case", index, time.time(), {**row, "worker": index, "device": device, "started": start}))
    except BaseException as exc:  # reported to the parent, which stops the run
        events.put(("failed", index, time.time(), f"{type(exc).__name__}: {exc}"))
        raise
    events.put(("done", index, time.time(), None))


def run(workers: int, devices: list[str], argv: list[str], case_count: int) -> dict:
    """The suite on `workers` processes; their events, timed."""
    context = mp.get_context("spawn")
    tasks, events = context.Queue(), context.Queue()
    for task in range(case_count):
        tasks.put(task)
    for _ in range(workers):
        tasks.put(None)
    start = time.time()
    processes = [context.Process(target=worker, args=(i, devices[i], argv, tasks, events)) for i in range(workers)]
    for process in processes:
        process.start()
    ready, done, rows, meta = {}, {}, [], None
    while len(done) < workers:
        kind, index, when, payload = events.get()
        if kind == "failed":
            for process in processes:
                process.kill()
            raise RuntimeError(f"worker {index} failed: {payload}")
        if kind == "ready":
            ready[index], meta = when, payload
        elif kind == "case":
            rows.append(payload)
        else:
            done[index] = when
    for process in processes:
        process.join()
    return {
        "workers": workers,
        "devices": devices[:workers],
        "suite_wall_s": round(max(done.values()) - start, 2),
        "set_up_s": {i: round(ready[i] - start, 2) for i in sorted(ready)},
        "busy_wall_s": round(max(done[i] - ready[i] for i in done), 2),
        "cases_per_worker": {i: [r["case"] for r in rows if r["worker"] == i] for i in sorted(done)},
        "rows": rows,
        "meta": meta,
    }


def markdown(result: dict) -> str:
    lines = ["# Case-parallel benchmark", "", "```", json.dumps(result["meta"], indent=1), "```", ""]
    for run in result["runs"]:
        lines += [f"## {run['workers']} worker(s) on {', '.join(run['devices'])}", "",
                  f"suite wall {run['suite_wall_s']} s (set-up per worker: {run['set_up_s']} s); busy wall {run['busy_wall_s']} s", "",
                  "| case | worker | device | wall s | denoise s | outside denoise s | peak GB |", "|---|---|---|---|---|---|---|"]
        for r in run["rows"]:
            lines.append(f"| {r['case']} | {r['worker']} | {r['device']} | {r['wall_s']} | {r['denoise_s']} | {r['outside_denoise_s']} | {r['peak_memory_gb']} |")
        lines.append("")
    lines += [f"- {key}: {value}" for key, value in result["summary"].items()]
    return "\n".join(lines) + "\n"


def summarize(runs: list[dict]) -> dict:
    base = runs[0]
    base_sha = {r["case"]: r["decoded_sha256"] for r in base["rows"]}
    summary: dict[str, object] = {}
    for run in runs[1:]:
        n = run["workers"]
        summary[f"throughput {n} vs {base['workers']} worker(s), set-up included"] = round(base["suite_wall_s"] / run["suite_wall_s"], 3)
        summary[f"throughput {n} vs {base['workers']} worker(s), set-up excluded (busy wall)"] = round(base["busy_wall_s"] / run["busy_wall_s"], 3)
        summary[f"outputs of the {n}-worker run equal the {base['workers']}-worker run's (sha256 of the decoded tensor)"] = {
            r["case"]: r["decoded_sha256"] == base_sha.get(r["case"]) for r in run["rows"]
        }
    rows = base["rows"]
    outside = sum(r["outside_denoise_s"] for r in rows)
    summary[f"{base['workers']}-worker run: outside denoising"] = (
        f"{outside:.2f} s of {base['busy_wall_s']} s busy wall ({100 * outside / base['busy_wall_s']:.2f} %)"
    )
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, in order (the first is the base)")
    parser.add_argument("--cases", default="8", help="as full_size.py's --cases: a count or names, comma-separated")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--label", default="")
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU: checks this script, measures nothing")
    parser.add_argument("--join", nargs="+", type=Path, metavar="RESULTS", help="summarise the runs of earlier results.json files (same weights) instead of running")
    args = parser.parse_args(argv)
    if args.join:
        return join(args.join, args.out, args.label)
    import full_size

    try:
        case_count = len(full_size.case_names(args.cases))
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    forwarded = ["--out", str(args.out), "--cases", str(args.cases), "--steps", str(args.steps), "--size", str(args.size)]
    if args.tiny:
        forwarded.append("--tiny")
    counts = [int(n) for n in args.workers.split(",")]
    devices = ["cpu"] * max(counts) if args.tiny else [f"cuda:{i}" for i in range(max(counts))]
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"meta": {}, "runs": [], "summary": {}}
    for count in counts:
        run_result = run(count, devices, forwarded, case_count)
        result["meta"] = {**run_result.pop("meta"), "label": args.label}
        result["runs"].append(run_result)
        result["summary"] = summarize(result["runs"])
        (args.out / "results.json").write_text(json.dumps(result, indent=2))
        (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def join(paths: list[Path], out: Path, label: str) -> int:
    """One summary over runs measured by separate commands; refuses runs built from other weights."""
    parts = [json.loads(p.read_text()) for p in paths]
    weights = {part["meta"]["weights_sample_sha256"] for part in parts}
    if len(weights) != 1:
        print(f"case_parallel: the runs were built from different weights ({len(weights)} fingerprints)", file=sys.stderr)
        return 2
    runs = [run for part in parts for run in part["runs"]]
    meta = {**parts[0]["meta"], "label": label or parts[0]["meta"].get("label", ""), "joined_from": [str(p) for p in paths]}
    result = {"meta": meta, "runs": runs, "summary": summarize(runs)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
