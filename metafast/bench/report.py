"""Results as text: the console table, results.md, results.json, and writing them to a folder."""

from __future__ import annotations

import json
import math
import os

from metafast.bench.runner import Results

_METRIC_HEADERS = {
    "mse": "MSE (95% CI)",
    "nll": "NLL",
    "coverage90": "90% cover",
    "accuracy": "accuracy (95% CI)",
    "ece": "ECE",
}


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.3e}"


def _with_ci(row: dict, key: str) -> str:
    v, ci = row.get(key), row.get(key + "_ci95")
    if v is None:
        return "-"
    return f"{_num(v)} ± {_num(ci, 2)}" if ci is not None else _num(v)


def table_rows(results: Results, include_speed: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the results table (ok cases only; metrics present in some row)."""
    ok = results.ok()
    metrics = [m for m in _METRIC_HEADERS if any(r.get(m) is not None for r in ok)]
    many_sizes = len({r["n_train"] for r in ok}) > 1
    header = ["family", "K"] + (["tasks"] if many_sizes else []) + ["learner"]
    header += [_METRIC_HEADERS[m] for m in metrics]
    if include_speed:
        header += ["fit s", "eval s"]
    cells = []
    for r in ok:
        line = [r["family"], str(r["shots"])] + ([str(r["n_train"])] if many_sizes else []) + [r["learner"]]
        for m in metrics:
            line.append(_with_ci(r, m) if m in ("mse", "accuracy") else _num(r.get(m)))
        if include_speed:
            line += [_num(r["fit_seconds"], 2), _num(r["eval_seconds"], 2)]
        cells.append(line)
    return header, cells


def format_table(results: Results) -> str:
    """A plain-text table for the terminal, then one line per skipped or failed case."""
    header, cells = table_rows(results)
    lines = []
    if cells:
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        n_left = header.index("learner") + 1
        fmt = "  ".join(f"{{:{'<' if i < n_left else '>'}{w}}}" for i, w in enumerate(widths))
        lines += [fmt.format(*header), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*c) for c in cells]
    else:
        lines.append("(no case ran)")
    lines += _problem_lines(results, bullet="  ")
    return "\n".join(lines)


def _problem_lines(results: Results, bullet: str) -> list[str]:
    """One line per distinct reason a case was skipped or failed, naming the learners and cases."""
    lines = []
    for status, title in (("skipped", "Skipped"), ("error", "Failed")):
        rows = [r for r in results.rows if r["status"] == status]
        if not rows:
            continue
        lines.append(f"{title} ({len(rows)} of {len(results.rows)} cases):")
        for reason in dict.fromkeys(r["error"] for r in rows):
            same = [r for r in rows if r["error"] == reason]
            learners = ", ".join(dict.fromkeys(r["learner"] for r in same))
            where = ", ".join(dict.fromkeys(f"{r['family']} K={r['shots']}" for r in same))
            lines.append(f"{bullet}{reason} [{learners}; {where}]")
    return lines


def to_markdown(results: Results, title: str | None = None) -> str:
    """results.md: title, machine summary, the table, skipped and failed cases."""
    from metafast.bench.machine import format_machine_info

    header, cells = table_rows(results)
    out = [f"## {title or 'metafast bench ' + results.suite}", "", f"Run {results.created}."]
    if results.machine:
        out += ["", format_machine_info(results.machine)]
    out.append("")
    if cells:
        out.append("| " + " | ".join(header) + " |")
        n_left = header.index("learner") + 1
        out.append("|" + "|".join("---" if i < n_left else "---:" for i in range(len(header))) + "|")
        out += ["| " + " | ".join(c) + " |" for c in cells]
    else:
        out.append("No case ran.")
    problems = _problem_lines(results, bullet="- ")
    if problems:
        out += [""] + problems
    out.append("")
    out.append(
        "MSE / accuracy: mean over test tasks of the query-set metric; ± is 1.96 x the standard error "
        "over tasks. NLL: Gaussian negative log predictive density per query point; 90% cover: share "
        "of query points inside the central 90% predictive interval. Seconds are wall-clock: fit on "
        "the training tasks (per-task ridge: basis set-up and choosing its penalty), evaluate on "
        "the test tasks (adapting to each task's support points)."
    )
    return "\n".join(out) + "\n"


def to_json(results: Results) -> str:
    return json.dumps(results.to_dict(), indent=2, allow_nan=False, default=_json_default)


def _json_default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_results(results: Results, out_dir: str | os.PathLike, plots: bool = True) -> dict:
    """Write results.json, results.md and the plots that apply into ``out_dir`` (created).

    Returns {"written": [paths], "notes": [messages]}; a missing matplotlib is a note, not an error.
    """
    from metafast.bench import plots as plots_mod
    from metafast.bench._files import atomic_write_text, writable_dir

    out = writable_dir(out_dir)
    written = []
    for name, text in (("results.json", to_json(results)), ("results.md", to_markdown(results))):
        written.append(atomic_write_text(out / name, text))
    notes = []
    if plots:
        try:
            written += plots_mod.plot_results(results, out)
        except plots_mod.PlotUnavailable as exc:
            notes.append(str(exc))
    return {"written": [str(p) for p in written], "notes": notes}
