"""The ``metafast`` command (also ``python -m metafast``).

    metafast demo [--quick] [--out PNG]         meta-train on sinusoid, print a table, plot fits
    metafast bench SUITE [--quick] [--out DIR]  run a benchmark suite (regression, speed, ...)
    metafast plugins                            installed plugins and what they provide
    metafast basis [NAME]                       basis families: parameters and one-line descriptions
    metafast tasks [NAME]                       task loaders, likewise
    metafast fit TABLE.csv --group G --target Y -o MODEL   meta-train on a table (see cli_table)
    metafast predict MODEL TABLE.csv -o OUT.csv            predict its empty targets
    metafast info MODEL                                    what a model file holds

Unknown commands, suites or names exit with status 2 and the valid choices; a benchmark in
which some case failed exits with status 1 after reporting everything else.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger("metafast.cli")

DEMO_PNG = "metafast-demo.png"
SUITE_ALL = "all"


# ---------------------------------------------------------------------------------- helpers
def _describe(obj: Callable) -> tuple[str, str]:
    """(parameters from the signature, first docstring line) of a class or function."""
    try:
        params = [
            p for p in inspect.signature(obj).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        sig = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params)
    except (TypeError, ValueError):
        sig = "..."
    doc = inspect.getdoc(obj) or ""
    return sig, (doc.strip().splitlines() or ["(no description)"])[0]


def _list_registry(
    kind: str, names: list[str], get: Callable[[str], Callable], only: str | None, parser: argparse.ArgumentParser
) -> int:
    from metafast.bench.suites import unknown_name_message

    if only is not None:
        if only not in names:
            parser.error(unknown_name_message(kind, only, names))
        names = [only]
    if not names:
        print(f"no {kind} is installed")
        return 0
    for name in names:
        sig, doc = _describe(get(name))
        print(f"{name}({sig})\n    {doc}")
    return 0


def format_plugin_report(report: list[dict] | None = None) -> str:
    """The text ``metafast plugins`` prints: loaded plugins, then failed and disabled ones."""
    from metafast._version import __version__
    from metafast.plugins import DISABLE_ENV, GROUP, plugin_report

    report = plugin_report() if report is None else report
    lines = [f"metafast {__version__}: plugins of the entry-point group {GROUP!r}"]

    def title(r: dict) -> str:
        dist = r["distribution"] or "in-process"
        version = f" {r['version']}" if r["version"] else ""
        kind = "built-in " if r["builtin"] else ""
        return f"  {kind}{r['name']}  [{dist}{version}]"

    for r in report:
        if r["status"] == "loaded":
            lines.append(title(r))
            for kind, names in r["provides"].items():
                plural = {"basis family": "basis families"}.get(kind, kind + "s")
                lines.append(f"      {plural}: {', '.join(names)}")
            if not r["provides"]:
                lines.append("      (provides nothing)")
    failed = [r for r in report if r["status"] == "failed"]
    if failed:
        lines.append("Failed to load (skipped):")
        lines += [f"{title(r)}\n      {r['error']}" for r in failed]
    disabled = [r for r in report if r["status"] == "disabled"]
    if disabled:
        lines.append(f"Disabled by {DISABLE_ENV}:")
        lines += [title(r) for r in disabled]
    return "\n".join(lines)


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 1 else logging.INFO if verbose == 2 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("metafast").setLevel(level)


# ---------------------------------------------------------------------------------- commands
def cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from metafast.bench import format_table, get_suite, noise_free_target, run_suite
    from metafast.bench._files import OutputError, writable_file
    from metafast.bench.plots import PlotUnavailable, plot_task_fits

    try:  # checked before the run: an unwritable --out must not cost the run
        out = writable_file(args.out, DEMO_PNG)
    except OutputError as exc:
        parser.error(f"--out: {exc}")
    suite = get_suite("demo", quick=args.quick, seed=args.seed)
    case = suite.cases[0]
    _say(
        args,
        f"metafast demo: meta-training on {case.n_train} sinusoid tasks (y = A sin(x - phi)), "
        f"40 RBF basis functions; testing on {case.n_test} new tasks with K = 5 and 10 support points.",
    )
    results = run_suite(suite, verbose=args.verbose, keep_models=True)
    print(format_table(results))
    if results.failed():
        print("some cases failed: see above (rerun with -vv for tracebacks)", file=sys.stderr)
    shots = min((k for (_, k) in results.tasks), default=None)
    if shots is None:
        print("nothing to plot: no model could be fitted", file=sys.stderr)
        return 1
    tasks = results.tasks[("sinusoid", shots)]
    models = {
        label: m
        for (fam, k, label), m in results.models.items()
        if k == shots and label not in ("pooled ridge", "oracle")
    }

    def truth(i, X):
        return noise_free_target("sinusoid", [tasks.info[i]], X, [0, len(X)])

    try:
        path = plot_task_fits(
            tasks, models, out, truth=truth, title=f"metafast demo: few-shot fits on sinusoid test tasks (K={shots})"
        )
    except PlotUnavailable as exc:  # the table is the main result: still a success
        print(f"\nNo plot written: {exc}", file=sys.stderr)
        return _demo_classification(args, out) or (1 if results.failed() else 0)
    except OSError as exc:
        print(f"\nCould not write the plot to {out}: {exc}", file=sys.stderr)
        return 1
    print(f"\nPlot of 4 test tasks (support points, true curve, predictive means and 90% bands): {path}")
    status = _demo_classification(args, out) or (1 if results.failed() else 0)
    if args.select:
        status = _demo_selection(args, out) or status
    return status


def _demo_classification(args: argparse.Namespace, out: Path) -> int:
    """The classification part of the demo (metafast.bench.demo_classification): its own PNG next
    to the main plot ``out`` (the resolved --out)."""
    from metafast.bench import demo_classification as demo
    from metafast.bench.plots import PlotUnavailable

    _say(args, "\nClassification: MetaClassifier heads on 3-class 'logistic' tasks in 2-D, K = 5 per class.")
    rows, models, test = demo.run(quick=args.quick, seed=args.seed)
    print(demo.format_rows(rows))
    out = Path(out)
    try:
        path = demo.plot(models, test, out.with_name(out.stem + "_classification" + (out.suffix or ".png")))
    except PlotUnavailable as exc:  # the table is the main result
        print(f"\nNo classification plot written: {exc}", file=sys.stderr)
        return 0
    except OSError as exc:
        print(f"\nCould not write the classification plot: {exc}", file=sys.stderr)
        return 1
    print(f"\nPlot of adapted class regions on 3 test tasks and the reliability diagram: {path}")
    return 0


def _demo_selection(args: argparse.Namespace, out: Path) -> int:
    """demo --select: choose Fourier frequencies for harmonic tasks, no bands set by hand (a PNG
    next to the main plot ``out``)."""
    import numpy as np

    import metafast as mf
    from metafast.bench.plots import PlotUnavailable, plot_selected_frequencies
    from metafast.bench.selection import WIDE_FOURIER

    n_tasks = 300 if args.quick else 2000
    _say(
        args,
        f"\nChoosing the basis: group lasso over {WIDE_FOURIER[1]['n_basis'] // 2} Fourier "
        f"frequencies in 0.5-20 on {n_tasks} harmonic tasks (frequencies w ~ U[5, 7] and 2w).",
    )
    train = mf.tasks.load("harmonic", n_tasks=n_tasks, n_support=10, n_query=10, seed=args.seed)
    dictionary = mf.basis.make(WIDE_FOURIER[0], **WIDE_FOURIER[1])
    selector = mf.BasisSelector(dictionary, method="group-lasso").fit(train)
    freqs = selector.basis_.frequencies_[np.unique(selector.support_ // 2)]
    print(f"selected {selector.support_.size} columns; frequencies: " + ", ".join(f"{f:.2f}" for f in freqs))
    out = Path(out)
    path = out.with_name(out.stem + "-selection.png")
    try:
        written = plot_selected_frequencies(
            selector, path, bands=((5, 7), (10, 14)), title="harmonic: frequencies chosen by group lasso"
        )
    except PlotUnavailable as exc:
        print(f"No plot written: {exc}", file=sys.stderr)
        return 0
    print(f"Plot of the chosen frequencies (true bands shaded): {written}")
    return 0


def cmd_bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from metafast.bench import available_suites, format_table, get_suite, run_suite, write_results
    from metafast.bench._files import OutputError, writable_dir
    from metafast.bench.suites import unknown_name_message

    names = [n for n in available_suites() if n != "demo"]
    if args.suite == SUITE_ALL:
        chosen = names
    elif args.suite in names or args.suite == "demo":
        chosen = [args.suite]
    else:
        parser.error(unknown_name_message("benchmark suite", args.suite, names + [SUITE_ALL]))
    outs = {name: (Path(args.out) / name if len(chosen) > 1 else Path(args.out)) for name in chosen} if args.out else {}
    for out in outs.values():  # checked before the (long) runs
        try:
            writable_dir(out)
        except OutputError as exc:
            parser.error(f"--out: {exc}")
    status = 0
    for name in chosen:
        try:
            suite = get_suite(name, quick=args.quick, seed=args.seed)
        except Exception as exc:  # a broken plugin suite: report it, run the others
            print(f"suite {name!r} could not be built: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        _say(args, f"metafast bench {name}{' --quick' if args.quick else ''}: {len(suite)} cases. {suite.description}")
        results = run_suite(suite, verbose=args.verbose)
        print(format_table(results))
        if args.out:
            try:
                written = write_results(results, outs[name])
            except OSError as exc:
                print(f"could not write the results of {name!r} to {outs[name]}: {exc}", file=sys.stderr)
                status = 1
                continue
            print("wrote " + ", ".join(written["written"]))
            for note in written["notes"]:
                print(f"No plots written: {note}", file=sys.stderr)
        if results.failed():
            status = 1
        print()
    return status


def cmd_plugins(args, parser) -> int:
    """List the plugins.  Under METAFAST_STRICT_PLUGINS=1 a broken plugin is listed like the others
    (the listing is how to find it), then one line on stderr names it and the status is 1."""
    import warnings

    from metafast.plugins import STRICT_ENV, MetafastPluginWarning, PluginError, get_host

    host = get_host()
    try:
        report = host.report()
    except PluginError:
        with warnings.catch_warnings():  # the listing reports them
            warnings.simplefilter("ignore", MetafastPluginWarning)
            report = host.lenient_copy().report()
    print(format_plugin_report(report))
    failed = [r["name"] for r in report if r["status"] == "failed"]
    if failed and host.strict():
        print(
            f"metafast plugins: error: {len(failed)} plugin(s) failed to load ({', '.join(failed)}) and "
            f"{STRICT_ENV}=1 makes that an error",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_basis(args, parser) -> int:
    import metafast as mf
    from metafast.plugins import basis_registry

    return _list_registry("basis family", mf.basis.available(), basis_registry().get, args.name, parser)


def cmd_tasks(args, parser) -> int:
    import metafast as mf
    from metafast.plugins import loader_registry

    return _list_registry("task loader", mf.tasks.available(), loader_registry().get, args.name, parser)


def _say(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(text, flush=True)


# ---------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from metafast._version import __version__

    parser = argparse.ArgumentParser(
        prog="metafast",
        description="Fast meta-learning of basis-function models.",
        epilog="Run 'metafast COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"metafast {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q",
        "--quiet",
        dest="verbose",
        action="store_const",
        const=0,
        default=1,
        help="no progress bars or headings, only results and errors",
    )
    common.add_argument(
        "-v", "--verbose", dest="verbose", action="count", help="more diagnostics (-vv: debug logging with tracebacks)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="meta-train on sinusoid tasks, print a table, plot fits",
        description="Meta-train MetaBayes and MetaRidge on sinusoid tasks, compare them with "
        "the baselines on new tasks at K = 5 and 10, and plot 4 test tasks.",
    )
    p.add_argument("--quick", action="store_true", help="fewer tasks (a few seconds)")
    p.add_argument(
        "--out",
        default=DEMO_PNG,
        help=f"where to write the PNG: a file, or a folder to write {DEMO_PNG} into (default: {DEMO_PNG})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the task samples (default: 0)")
    p.add_argument(
        "--select",
        action="store_true",
        help="also choose Fourier frequencies for harmonic tasks with BasisSelector and plot them",
    )
    p.set_defaults(func=cmd_demo, parser=p)

    p = sub.add_parser(
        "bench",
        parents=[common],
        help="run a benchmark suite",
        description="Run a benchmark suite: regression, classification, speed, a plugin's suite, or all of them.",
    )
    p.add_argument("suite", metavar="SUITE", help="suite name (see 'metafast plugins'), or 'all'")
    p.add_argument("--quick", action="store_true", help="a CI-sized run (under a minute)")
    p.add_argument("--out", metavar="DIR", help="write results.json, results.md and PNG plots into DIR")
    p.add_argument("--seed", type=int, default=0, help="seed of the task samples (default: 0)")
    p.set_defaults(func=cmd_bench, parser=p)

    from metafast.cli_table import add_table_commands

    add_table_commands(sub, common)
    p = sub.add_parser("plugins", help="installed plugins and what they provide")
    p.set_defaults(func=cmd_plugins, parser=p)
    p = sub.add_parser("basis", help="basis families with their parameters")
    p.add_argument("name", nargs="?", help="show only this family")
    p.set_defaults(func=cmd_basis, parser=p)
    p = sub.add_parser("tasks", help="task loaders with their parameters")
    p.add_argument("name", nargs="?", help="show only this loader")
    p.set_defaults(func=cmd_tasks, parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metafast`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "verbose"):
        args.verbose = 1
    _configure_logging(args.verbose)
    try:  # args.parser is the sub-command's parser, so errors show that command's usage
        return int(args.func(args, args.parser) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
