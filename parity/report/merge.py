"""Join the results of several runs (CI shards, xdist workers) into one results.json and one report."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from parity.report.html import write_report
from parity.results.format import read_json, write_json
from parity.results.record import CasePaths, ReportPaths, RunInfo


def merge_results(inputs: list[Path], out: Path) -> ReportPaths:
    """Cases of every input in input order; their images are copied under `out/cases/`; the run is complete only
    if every input was."""
    runs: list[RunInfo] = []
    results = []
    for folder in inputs:
        run, cases = read_json(folder / "results.json")
        runs.append(run)
        for case in cases:
            results.append(dataclasses.replace(case, paths=_copy_images(case.paths, folder, out)))
    first = runs[0]
    merged = dataclasses.replace(
        first,
        started=min(r.started for r in runs),
        finished=None if any(r.finished is None for r in runs) else max(r.finished for r in runs),
        complete=all(r.complete for r in runs),
        command=" + ".join(r.command for r in runs),
        unused_baselines=tuple(dict.fromkeys(path for r in runs for path in r.unused_baselines)),
        loras=_merged_loras(runs),
    )
    write_json(out / "results.json", merged, results)
    return ReportPaths(out / "results.json", write_report(out, merged, results))


def _merged_loras(runs: list[RunInfo]) -> tuple:
    """Each LoRA and model once; an audit checked against the model wins over the file's own."""
    found: dict = {}
    for entry in (e for r in runs for e in r.loras):
        key = (entry.path, entry.model)
        found.setdefault(key, entry)
    checked = {path for path, model in found if model is not None}
    return tuple(e for (path, model), e in found.items() if model is not None or path not in checked)


def _copy_images(paths: CasePaths, source: Path, out: Path) -> CasePaths:
    def copy(rel: str | None) -> str | None:
        if rel is None:
            return None
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (source / rel).is_file() and (source / rel).resolve() != target.resolve():
            shutil.copyfile(source / rel, target)
        return rel

    return dataclasses.replace(
        paths,
        output=copy(paths.output),
        baseline=copy(paths.baseline),
        diff=copy(paths.diff),
        controls=tuple(copy(c) for c in paths.controls),
    )
