"""Summarise benchmark runs (results.json files of full_size.py) against the issue's targets, as markdown.

    python benchmarks/summarize.py benchmarks/results/h200-2026-11-30/run-a.json benchmarks/results/h200-2026-11-30/run-b.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summarize(paths: list[Path]) -> str:
    runs = {p.stem: json.loads(p.read_text()) for p in paths}
    rows = {(name, driver): data for name, run in runs.items() for driver, data in run["runs"].items()}
    weights = {run["meta"]["weights_sample_sha256"] for run in runs.values()}
    out = ["# Summary", "", f"runs: {', '.join(runs)}; same random weights in all: {len(weights) == 1}", ""]
    for (name, driver), data in rows.items():
        cases = [r for r in data if "denoise_s" in r]
        if cases:
            ratios = [r["denoise_vs_bound"] for r in cases]
            outside = sum(r["outside_denoise_s"] for r in cases)
            wall = sum(r["wall_s"] for r in cases)
            switches = [r["scale_switch_s"] for r in cases if r["scale_switch_s"]]
            out.append(
                f"- {name}/{driver}: {len(cases)} cases, denoise / FLOP bound {min(ratios):.2f}–{max(ratios):.2f}; "
                f"outside denoising {outside:.1f} s of {wall:.1f} s ({100 * outside / wall:.1f} %); scale fuses "
                f"{', '.join(f'{s:.2f}' for s in switches)} s; peak {max(r['peak_memory_gb'] for r in cases):.1f} GB"
            )
    orders = [(n, d) for (n, d) in rows if d.startswith("parity")]
    if len(orders) == 2:
        a, b = (({r["case"]: r["decoded_sha256"] for r in rows[k]}) for k in orders)
        same = {c: a[c] == b.get(c) for c in a}
        out.append(f"- outputs bit-identical across the two orders ({orders[0][1]} vs {orders[1][1]}): {same}")
    for name, run in runs.items():
        for key, value in run.get("summary", {}).items():
            out.append(f"- {name}: {key}: {value}")
    parity = {r["case"]: r for (n, d), data in rows.items() if d == "parity-a" for r in data}
    for (name, driver), data in rows.items():
        if driver.startswith("server"):
            done = [r for r in data if r["case"] in parity]
            if done:
                theirs = sum(r["wall_s"] for r in done) + sum(r["wall_s"] for r in data if r["case"].startswith("("))
                ours = sum(parity[r["case"]]["wall_s"] for r in done)
                out.append(
                    f"- {name}/{driver} vs parity-a on the {len(done)} case(s) it finished: {theirs:.1f} s vs {ours:.1f} s "
                    f"(ratio {theirs / ours:.2f}, its LoRA load included)"
                )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(summarize([Path(p) for p in sys.argv[1:]]), end="")
