"""The `parity` command: parse arguments, hand the work to the session, print a summary. No torch here."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from parity.cases.suite import discover, load_all
from parity.core.environment import reproducible_cpu_math
from parity.core.errors import ParityError
from parity.core.visible import visible
from parity.results.record import Status, counts
from parity.run.outdir import OutDirError
from parity.run.planner import parse_shard

from .options import add_cli_options, assign_devices, check_device, check_offload

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:  # a table of sub-commands and their arguments: read whole
    parser = argparse.ArgumentParser(
        prog="parity",
        description="Prove that reference inference reproduces the training previews (or pinned outputs) of a LoRA.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run case files and write results.json and index.html")
    run.add_argument("paths", nargs="*", default=["cases"], metavar="PATHS", help="case files or folders (default: cases/)")
    add_cli_options(run)
    report = sub.add_parser("report", help="work with results.json files")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    merge = report_sub.add_parser("merge", help="join the results of shards (or xdist workers) into one report")
    merge.add_argument("inputs", nargs="+", metavar="DIR", help="folders holding results.json")
    merge.add_argument("--out", required=True, metavar="DIR", help="folder for the joined results.json and index.html")
    summary = report_sub.add_parser(
        "summary", help="a run's results as a short table, worst first, each case linked to the report (for CI pages)"
    )
    summary.add_argument("results", metavar="RESULTS", help="a results.json, or the folder that holds it")
    summary.add_argument("--markdown", action="store_true", help="markdown (for $GITHUB_STEP_SUMMARY), else plain text")
    summary.add_argument(
        "--report-url",
        metavar="URL",
        help="where the report's index.html will be read (e.g. the CI artifact's URL); default: its path here",
    )
    validate = sub.add_parser("validate", help="check case files without running them")
    validate.add_argument("paths", nargs="+", metavar="PATHS", help="case files or folders")
    sub.add_parser("fields", help="print the case-file reference (markdown, generated from the schema)")
    calibrate = sub.add_parser(
        "calibrate",
        help="measure each case's noise floor in this environment (repeat render, another kernel set, JPEG) and "
        "write thresholds with a margin to <baselines>/<environment class>/calibration.yaml",
    )
    calibrate.add_argument("paths", nargs="+", metavar="PATHS", help="case files or folders")
    calibrate.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu (float32) or cuda[:N] (bf16)")
    calibrate.add_argument("--dry-run", action="store_true", help="print the measurements and thresholds, write nothing")
    job = sub.add_parser("import", help="turn an ai-toolkit training job folder into a parity suite")
    job.add_argument("job_dir", metavar="JOB_DIR", help="<training_folder>/<job name>")
    job.add_argument("--step", default="latest", help="training step to import, or latest (default): the highest step with previews and a checkpoint")
    job.add_argument("--out", dest="case_out", metavar="CASE", help="case file to write (default cases/<job name>.yaml)")
    job.add_argument("--baselines", metavar="DIR", help="folder for the copied previews (default baselines/<job name>/)")
    job.add_argument("--base-model", dest="import_base_model", metavar="X", help="base model for the suite (default: the job's model.name_or_path)")
    job.add_argument("--config", metavar="FILE", help="the job config, if not <JOB_DIR>/config.yaml")
    job.add_argument("--run", action="store_true", help="run the imported suite right away (with the run options below)")
    job.add_argument("--report", metavar="DIR", help="with --run: folder for the report (default reports/<case name>)")
    add_cli_options(job, exclude=("out", "base-model", "shard"))
    draw = sub.add_parser(
        "draw-previews",
        help="render each sample with the trainer's (preview) wiring and save it at its baseline path, as "
        "ai-toolkit saves previews (for building preview suites from the tiny model)",
    )
    draw.add_argument("paths", nargs="+", metavar="PATHS", help="case files or folders")
    draw.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    draw.add_argument("--force", action="store_true", help="overwrite existing files")
    tiny = sub.add_parser("tiny", help="build the bundled tiny model (cached) and print its folder")
    tiny.add_argument("--lora", metavar="PATH", help="also write the tiny ai-toolkit-format LoRA to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    reproducible_cpu_math()  # before anything computes (see parity/environment.py)
    args = build_parser().parse_args(argv)
    try:
        commands = {
            "run": _run,
            "validate": _validate,
            "fields": _fields,
            "tiny": _tiny,
            "draw-previews": _draw,
            "import": _import,
            "report": _report,
            "calibrate": _calibrate,
        }
        return commands[args.command](args)
    except ParityError as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _import(args) -> int:
    from parity.cases.importer import import_job

    step = args.step if args.step == "latest" else _int_or_usage(args.step)
    if step is None:
        print(f"parity: --step takes a number or latest, not {args.step!r}", file=sys.stderr)
        return EXIT_USAGE
    result = import_job(
        args.job_dir, step=step, out=args.case_out, baselines=args.baselines, base_model=args.import_base_model, config=args.config
    )
    print(f"parity: imported step {result.step} ({result.samples} samples, LoRA {result.checkpoint.name}) into {result.case_file}")
    for note in result.notes:
        print(f"  note: {note}")
    for load in load_all([Path(result.case_file)]):
        for line in _lora_lines(load):
            print(visible(f"  LoRA audit: {line}"))
    if not args.run:
        return EXIT_OK
    args.paths = [str(result.case_file)]
    args.out = args.report or str(Path("reports") / result.case_file.stem)
    args.base_model = None
    return _run(args)


def _report(args) -> int:
    return _summary(args) if args.report_command == "summary" else _merge(args)


def _summary(args) -> int:
    from parity.report import summary
    from parity.results.format import read_json

    path = Path(args.results)
    if path.is_dir():
        path = path / "results.json"
    try:
        run, results = read_json(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"parity: cannot read {path}: {exc}. Fix: point at the results.json a run wrote", file=sys.stderr)
        return EXIT_USAGE
    url = args.report_url or str(path.parent / "index.html")
    print((summary.markdown if args.markdown else summary.text)(run, results, url), end="")
    return EXIT_OK


def _merge(args) -> int:
    from parity.report.merge import merge_results

    paths = merge_results([Path(p) for p in args.inputs], Path(args.out))
    print(f"parity: merged {len(args.inputs)} result folder(s) — report: {paths.index_html}")
    return EXIT_OK


def _int_or_usage(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _validate(args) -> int:
    files = discover(args.paths)
    if not files:
        print(f"parity: no case files under {' '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    bad = 0
    for load in load_all(files, decode_images=True):  # every control image decoded, as the run will
        if load.error is not None:
            bad += 1
            print(visible(f"INVALID {load.path}"))
            for problem in load.error.problems:
                print(visible(f"  {problem}"))
        else:
            print(visible(f"ok      {load.path}: {len(load.cases)} case(s)"))
        for line in _lora_lines(load):
            print(visible(f"  LoRA audit: {line}"))
    return EXIT_USAGE if bad else EXIT_OK


def _lora_lines(load) -> list[str]:
    """The file-level LoRA audit of a case file's LoRAs (what `validate` can tell without the model)."""
    from parity.run.loras import LoraBook

    book = LoraBook()
    if load.error is not None:
        for path in load.error.loras:
            book.saw_file(path, load.error.training)
    for case in load.cases:
        book.saw_case(case)
    return [entry.line for entry in book.entries()]


def _run(args) -> int:
    from parity.run.session import ParitySession, RunOptions

    try:
        device, cfg_device = assign_devices(args.device, args.cfg_device)
        check_offload(args.offload)
        this_shard = parse_shard(args.shard) if getattr(args, "shard", None) else None
    except ValueError as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return EXIT_USAGE
    files = discover(args.paths)
    if not files:
        print(f"parity: no case files under {' '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    session = ParitySession(
        RunOptions(
            out_dir=Path(args.out),
            device=device,
            cfg_device=cfg_device,
            base_model=args.base_model,
            offload=args.offload,
            update=args.update,
            diagnose=args.diagnose,
            self_contained=args.self_contained,
            command="parity " + " ".join(sys.argv[1:]),
        )
    )
    try:
        session.claim()  # before anything renders: an unusable or busy --out costs nothing
    except OutDirError as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return EXIT_USAGE
    loads = load_all(files)
    for load in loads:
        if load.error is not None:
            print(visible(f"parity: invalid case file {load.path}:"), file=sys.stderr)
            print("\n".join(visible(f"  {problem}") for problem in load.error.problems), file=sys.stderr)
    start = time.perf_counter()
    planned = session.plan(loads, this_shard)
    for entry in session.loras.entries():  # before any pixel: is the served LoRA the trained one?
        print(visible(f"parity: LoRA audit: {entry.line}"), file=sys.stderr)
    complete, paths = session.run_all(planned, progress=_progress, on_result=_print_problem)
    _print_end(session, complete, paths, time.perf_counter() - start)
    if not complete:
        return 130
    if any(load.error is not None for load in loads):
        return EXIT_USAGE
    tally = counts(session.results)
    return EXIT_OK if tally["fail"] == tally["error"] == 0 else EXIT_FAILED


def _print_end(session, complete: bool, paths, seconds: float) -> None:
    if not complete:
        print("parity: interrupted; the report holds the finished cases", file=sys.stderr)
    tally = counts(session.results)
    skipped = f", {tally['skip']} skipped" if tally["skip"] else ""
    print(
        f"parity: {tally['pass']} passed, {tally['fail']} failed, {tally['error']} errors{skipped} "
        f"in {seconds:.1f}s — report: {paths.index_html}"
    )
    for reason in dict.fromkeys(r.reason for r in session.results if r.status is Status.SKIP):
        print(f"parity: {reason}", file=sys.stderr)
    for path in session.unused_baselines:
        print(visible(f"parity: no case uses this baseline any more (left in place): {path}"), file=sys.stderr)


def _print_problem(result) -> None:
    if result.status not in (Status.PASS, Status.SKIP):  # skips share one line, printed at the end
        print(visible(f"{result.status.value.upper():5} {result.id}: {result.reason}"), file=sys.stderr)


def _progress(cases):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with transformers; without it, no bar
        return cases
    return tqdm(cases, desc="parity", unit="case", disable=None, file=sys.stderr, leave=False)


def _draw(args) -> int:
    from parity.cases.resolve import resolve_suite
    from parity.cases.schema import load_suite
    from parity.render.engine import Engine
    from parity.render.previews import draw_previews

    engine = Engine(check_device(args.device))
    for path in discover(args.paths):
        # the previews are what this writes, so the check that they exist is skipped
        said = lambda text: print(visible(f"parity: {text}"), file=sys.stderr)
        for written in draw_previews(resolve_suite(load_suite(path)), engine, force=args.force, said=said):
            print(written)
    return EXIT_OK


def _calibrate(args) -> int:
    from parity.run.calibrate import calibrate, table

    files = discover(args.paths)
    if not files:
        print(f"parity: no case files under {' '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    loads = load_all(files)
    for load in loads:
        if load.error is not None:
            print(visible(f"parity: invalid case file {load.path} (not calibrated):"), file=sys.stderr)
            for problem in load.error.problems:
                print(visible(f"  {problem}"), file=sys.stderr)
    results = calibrate(loads, check_device(args.device), write=not args.dry_run)
    for result in results:
        print()
        print(table(result), end="")
    verb = "would write" if args.dry_run else "wrote"
    for result in results:
        print(f"parity: {verb} {result.path}")
    return EXIT_USAGE if any(load.error is not None for load in loads) else EXIT_OK


def _fields(args) -> int:
    from .docs import fields_markdown

    print(fields_markdown(), end="")
    return EXIT_OK


def _tiny(args) -> int:
    from parity.models import DEFAULT_MODEL, get_model

    model = get_model(DEFAULT_MODEL)
    print(model.ensure_tiny())
    if args.lora:
        print(model.write_tiny_lora(args.lora))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
